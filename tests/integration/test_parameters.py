"""Server parameters: getParameter and setParameter as mongod 7.0 answers them, and cairnd's
--setParameter name=value at startup (an unknown name or a bad value stops cairnd with exit
status 2 and a clear message). transactionLifetimeLimitSeconds and cursorTimeoutMillis may be
changed at startup and at runtime; enableTestCommands only at startup; the others are
reported as the code uses them and refuse to change."""

import random
import subprocess
import time

import pytest
from bson import Decimal128, Int64, MaxKey, ObjectId
from pymongo.errors import OperationFailure

from cairn_server import cairnd_binary


def get(client, *names):
    return client.admin.command({"getParameter": 1, **{n: 1 for n in names}})


def test_get_all_parameters_keeps_its_answers(client):
    r = client.admin.command("getParameter", "*")
    assert r["ok"] == 1.0
    assert r["transactionLifetimeLimitSeconds"] == 60
    assert type(r["transactionLifetimeLimitSeconds"]) is int
    assert r["cursorTimeoutMillis"] == 600000 and isinstance(r["cursorTimeoutMillis"], Int64)
    assert r["enableTestCommands"] is False
    assert r["featureCompatibilityVersion"] == {"version": "7.0"}
    assert r["localLogicalSessionTimeoutMinutes"] == 30
    assert r["maxWriteBatchSize"] == 100000
    assert r["maxSessions"] == 1000000
    assert r["authenticationMechanisms"] == []
    assert "logLevel" in r and "maxTransactionLockRequestTimeoutMillis" in r
    # Sorted by name, as mongod's parameter map.
    names = [k for k in r if k not in ("ok", "$clusterTime", "operationTime")]
    assert names == sorted(names)
    assert client.admin.command({"getParameter": {"allParameters": True}}).keys() == r.keys()


def test_get_named_parameters(client):
    r = get(client, "transactionLifetimeLimitSeconds", "featureCompatibilityVersion")
    assert set(r) - {"ok", "$clusterTime", "operationTime"} == {
        "transactionLifetimeLimitSeconds", "featureCompatibilityVersion"}
    # As mongod: unknown names are ignored when a known one is named ...
    r = get(client, "noSuchParameter", "maxWriteBatchSize")
    assert r["maxWriteBatchSize"] == 100000 and "noSuchParameter" not in r
    # ... and "no option found to get" when none is.
    with pytest.raises(OperationFailure) as e:
        get(client, "noSuchParameter")
    assert e.value.code == 72
    assert e.value.details["errmsg"] == "no option found to get"
    with pytest.raises(OperationFailure) as e:
        client.admin.command("getParameter", 1)
    assert e.value.code == 72


def test_show_details(client):
    r = client.admin.command({"getParameter": {"showDetails": True},
                              "transactionLifetimeLimitSeconds": 1, "enableTestCommands": 1,
                              "featureCompatibilityVersion": 1})
    assert r["transactionLifetimeLimitSeconds"] == {
        "value": 60, "settableAtRuntime": True, "settableAtStartup": True}
    assert r["enableTestCommands"] == {
        "value": False, "settableAtRuntime": False, "settableAtStartup": True}
    assert r["featureCompatibilityVersion"]["settableAtRuntime"] is False
    r = client.admin.command({"getParameter": {"showDetails": True, "allParameters": True}})
    assert r["cursorTimeoutMillis"]["settableAtRuntime"] is True


@pytest.mark.parametrize("opts,code", [
    ({"showDetails": 1}, 14),
    ({"allParameters": "yes"}, 14),
    ({"noSuchOption": True}, 40415),
])
def test_get_parameter_option_errors(client, opts, code):
    with pytest.raises(OperationFailure) as e:
        client.admin.command({"getParameter": opts, "maxWriteBatchSize": 1})
    assert e.value.code == code


def test_parameters_are_admin_only(client):
    for cmd in ({"getParameter": "*"},
                {"setParameter": 1, "transactionLifetimeLimitSeconds": 60}):
        with pytest.raises(OperationFailure) as e:
            client.test.command(cmd)
        assert e.value.code == 13


def test_transaction_lifetime_round_trip(client):
    a = client.admin
    try:
        r = a.command("setParameter", 1, transactionLifetimeLimitSeconds=30)
        assert r["was"] == 60 and r["ok"] == 1.0
        assert get(client, "transactionLifetimeLimitSeconds")[
            "transactionLifetimeLimitSeconds"] == 30
        r = a.command("setParameter", 1, transactionLifetimeLimitSeconds=Int64(45))
        assert r["was"] == 30
        r = a.command("setParameter", 1, transactionLifetimeLimitSeconds=90.0)
        assert r["was"] == 45
        assert get(client, "transactionLifetimeLimitSeconds")[
            "transactionLifetimeLimitSeconds"] == 90
    finally:
        a.command("setParameter", 1, transactionLifetimeLimitSeconds=60)


@pytest.mark.parametrize("value", [0, -1, Int64(-2 ** 63), 2 ** 31, 1.5, float("nan"), "30",
                                   None, [30], {"v": 30}, True])
def test_bad_values_are_2_and_change_nothing(client, value):
    with pytest.raises(OperationFailure) as e:
        client.admin.command("setParameter", 1, transactionLifetimeLimitSeconds=value)
    assert e.value.code == 2
    assert get(client, "transactionLifetimeLimitSeconds")[
        "transactionLifetimeLimitSeconds"] == 60


def test_bound_message_is_mongods(client):
    with pytest.raises(OperationFailure) as e:
        client.admin.command("setParameter", 1, transactionLifetimeLimitSeconds=0)
    assert e.value.details["errmsg"] == ("Invalid value for parameter "
                                         "transactionLifetimeLimitSeconds: 0 is not greater "
                                         "than or equal to 1")


@pytest.mark.parametrize("name", ["enableTestCommands", "featureCompatibilityVersion",
                                  "authenticationMechanisms", "logLevel", "maxWriteBatchSize",
                                  "localLogicalSessionTimeoutMinutes"])
def test_parameters_not_settable_at_runtime_are_20(client, name):
    with pytest.raises(OperationFailure) as e:
        client.admin.command("setParameter", 1, **{name: 1})
    assert e.value.code == 20
    assert e.value.details["errmsg"] == "not allowed to change [%s] at runtime" % name


def test_unknown_and_missing_parameters_are_72(client):
    with pytest.raises(OperationFailure) as e:
        client.admin.command("setParameter", 1, noSuchParameter=1)
    assert e.value.code == 72
    assert "attempted to set unrecognized parameter [noSuchParameter]" in \
        e.value.details["errmsg"]
    with pytest.raises(OperationFailure) as e:
        client.admin.command("setParameter", 1, comment="only a generic argument")
    assert e.value.code == 72
    assert e.value.details["errmsg"].startswith("no option found to set")


def test_one_bad_name_sets_nothing(client):
    with pytest.raises(OperationFailure):
        client.admin.command("setParameter", 1, transactionLifetimeLimitSeconds=10,
                             enableTestCommands=1)
    assert get(client, "transactionLifetimeLimitSeconds")[
        "transactionLifetimeLimitSeconds"] == 60


def test_several_at_once_report_the_first_by_name(client):
    try:
        r = client.admin.command("setParameter", 1, transactionLifetimeLimitSeconds=20,
                                 cursorTimeoutMillis=700000)
        assert r["was"] == 600000  # cursorTimeoutMillis sorts first
        r = get(client, "transactionLifetimeLimitSeconds", "cursorTimeoutMillis")
        assert r["transactionLifetimeLimitSeconds"] == 20
        assert r["cursorTimeoutMillis"] == 700000
    finally:
        client.admin.command("setParameter", 1, transactionLifetimeLimitSeconds=60,
                             cursorTimeoutMillis=600000)


def test_cursor_timeout_millis_expires_idle_cursors(client):
    coll = client.params_db.cursors
    coll.drop()
    coll.insert_many([{"_id": i} for i in range(5)])
    try:
        client.admin.command("setParameter", 1, cursorTimeoutMillis=300)
        r = client.params_db.command("find", "cursors", batchSize=1)
        cid = r["cursor"]["id"]
        assert cid != 0
        time.sleep(1.0)
        with pytest.raises(OperationFailure) as e:
            client.params_db.command("getMore", cid, collection="cursors")
        assert e.value.code == 43
    finally:
        client.admin.command("setParameter", 1, cursorTimeoutMillis=600000)
    r = client.params_db.command("find", "cursors", batchSize=1)
    time.sleep(0.5)
    more = client.params_db.command("getMore", r["cursor"]["id"], collection="cursors")
    assert more["cursor"]["nextBatch"] == [{"_id": i} for i in range(1, 5)]


def test_random_shapes_never_hurt_the_server(server, client):
    rng = random.Random(20261206)
    values = [None, True, False, 0, 1, -1, 2 ** 31, Int64(2 ** 63 - 1), 1.5, float("nan"),
              float("-inf"), "", "*", "x" * 500, [], [1], {}, {"showDetails": True},
              {"allParameters": 1}, Decimal128("NaN"), MaxKey(), ObjectId()]
    names = ["transactionLifetimeLimitSeconds", "cursorTimeoutMillis", "enableTestCommands",
             "logLevel", "featureCompatibilityVersion", "x", "", "$db2", "comment"]
    try:
        for _ in range(300):
            cmd = {rng.choice(["getParameter", "setParameter"]): rng.choice(values)}
            for _ in range(rng.randint(0, 3)):
                cmd[rng.choice(names)] = rng.choice(values)
            r = client.admin.command(cmd, check=False)
            assert r["ok"] in (0.0, 1.0)
            if not r["ok"]:
                assert isinstance(r["code"], int) and isinstance(r["errmsg"], str)
    finally:
        client.admin.command("setParameter", 1, transactionLifetimeLimitSeconds=60,
                             cursorTimeoutMillis=600000)
    assert server.alive()


# ---- --setParameter at startup ---------------------------------------------------------


def test_startup_values_apply_and_show_in_cmd_line_opts(server_factory):
    srv = server_factory(extra_args=("--setParameter", "transactionLifetimeLimitSeconds=42",
                                     "--setParameter=cursorTimeoutMillis=123456"))
    c = srv.client()
    try:
        r = get(c, "transactionLifetimeLimitSeconds", "cursorTimeoutMillis")
        assert r["transactionLifetimeLimitSeconds"] == 42
        assert r["cursorTimeoutMillis"] == 123456
        opts = c.admin.command("getCmdLineOpts")
        assert opts["parsed"]["setParameter"] == {"transactionLifetimeLimitSeconds": "42",
                                                  "cursorTimeoutMillis": "123456"}
        assert "transactionLifetimeLimitSeconds=42" in opts["argv"]
        # Runtime changes still work on top.
        assert c.admin.command("setParameter", 1,
                               transactionLifetimeLimitSeconds=7)["was"] == 42
    finally:
        c.close()


def run_cairnd(tmp_path, *args):
    p = subprocess.run([cairnd_binary(), "--replSet", "rs0", "--dbpath", str(tmp_path / "db"),
                        "--port", "27999", *args], capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("arg,message", [
    ("noSuchParameter=1", "Unknown --setParameter 'noSuchParameter'"),
    ("transactionLifetimeLimitSeconds=0", "Bad value for --setParameter "
     "transactionLifetimeLimitSeconds=0: Invalid value for parameter "
     "transactionLifetimeLimitSeconds: 0 is not greater than or equal to 1"),
    ("transactionLifetimeLimitSeconds=abc", "expected an integer"),
    ("transactionLifetimeLimitSeconds=99999999999", "is not less than or equal to"),
    ("transactionLifetimeLimitSeconds=", "expected an integer"),
    ("enableTestCommands=maybe", "expected true, false, 1 or 0"),
    ("cursorTimeoutMillis=-5", "is not greater than or equal to 0"),
    ("featureCompatibilityVersion=7.0", "Cannot use --setParameter to set "
     "'featureCompatibilityVersion' at startup"),
    ("enableTestCommands", "expects NAME=VALUE"),
    ("=1", "expects NAME=VALUE"),
])
def test_bad_startup_parameters_exit_2(tmp_path, arg, message):
    rc, out = run_cairnd(tmp_path, "--setParameter", arg)
    assert rc == 2, out
    assert message in out, out
    assert not (tmp_path / "db").exists()  # refused before anything opened


def test_enable_test_commands_spellings(tmp_path):
    for value in ("true", "1", "false", "0"):
        rc, out = run_cairnd(tmp_path, "--setParameter", "enableTestCommands=" + value,
                             "--setParameter", "noSuchParameter=1")
        # The first is accepted; the run stops at the second.
        assert rc == 2 and "Unknown --setParameter 'noSuchParameter'" in out, out
