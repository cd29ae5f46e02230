"""configureFailPoint and the failCommand fail point, as drivers use them against mongod 7.0.

Without --setParameter enableTestCommands=1 the command does not exist (59). With it,
failCommand makes chosen commands fail with a code (labels computed as for real errors,
or exactly errorLabels), close the connection, sleep first (blockConnection), or succeed
with an injected writeConcernError; appName, threadName and namespace narrow it down; the
modes alwaysOn / {times} / {skip} / {activationProbability} / off decide how often; the
reply's count says how many times it has fired. pymongo's retryable writes must see a
retryable error (91) or a closed connection once, retry, and apply the insert once."""

import random
import socket
import struct
import threading
import time

import bson
import pymongo
import pytest
from bson import Binary, Decimal128, Int64, MaxKey, ObjectId
from pymongo import monitoring
from pymongo.errors import (ConnectionFailure, ExecutionTimeout, NotPrimaryError,
                            OperationFailure, WriteConcernError)

from cairn_server import CairnServer, ServerError

TEST_ARGS = ("--setParameter", "enableTestCommands=1")


@pytest.fixture(scope="module")
def fp_server(tmp_path_factory):
    """One server with test commands enabled, shared by this module."""
    for attempt in range(3):
        srv = CairnServer(str(tmp_path_factory.mktemp("failpoints") / "db"), extra_args=TEST_ARGS)
        try:
            srv.start()
            break
        except ServerError:
            srv.kill9()
            if "in use" in srv.log_text() and attempt < 2:
                continue
            raise
    yield srv
    srv.stop()
    problems = srv.check_clean()
    if problems:
        pytest.fail(problems, pytrace=False)


@pytest.fixture(scope="module")
def admin_client(fp_server):
    c = fp_server.client(appName="fp-admin")
    yield c
    c.close()


@pytest.fixture(autouse=True)
def fail_point_off(fp_server):
    """Every test leaves failCommand off, whatever happened."""
    yield
    if fp_server.alive():
        c = fp_server.client()
        try:
            c.admin.command("configureFailPoint", "failCommand", mode="off")
        finally:
            c.close()


def configure(client, mode, **data):
    cmd = {"configureFailPoint": "failCommand", "mode": mode}
    if data:
        cmd["data"] = data
    return client.admin.command(cmd)


def fired(client):
    """How many times failCommand has fired so far (configuring 'off' reports it)."""
    return client.admin.command("configureFailPoint", "failCommand", mode="off")["count"]


class Commands(monitoring.CommandListener):
    """Records the commands a client sends (name, and how each ended)."""

    def __init__(self):
        self.events = []

    def started(self, event):
        self.events.append(("started", event.command_name))

    def succeeded(self, event):
        self.events.append(("succeeded", event.command_name))

    def failed(self, event):
        self.events.append(("failed", event.command_name))

    def of(self, name):
        return [kind for kind, n in self.events if n == name]


@pytest.fixture
def db(admin_client, request):
    name = "fp_" + request.node.name.replace("[", "_").replace("]", "_")[:40]
    admin_client.drop_database(name)
    return admin_client[name]


# ---- The command itself ----------------------------------------------------------------


def test_configure_fail_point_is_unknown_without_test_commands(server, client):
    with pytest.raises(OperationFailure) as e:
        client.admin.command("configureFailPoint", "failCommand", mode="alwaysOn",
                             data={"failCommands": ["ping"], "errorCode": 2})
    assert e.value.code == 59
    assert e.value.details["codeName"] == "CommandNotFound"
    assert "configureFailPoint" not in client.admin.command("listCommands")["commands"]
    assert client.admin.command("getParameter", 1, enableTestCommands=1)[
        "enableTestCommands"] is False


def test_enable_test_commands_zero_keeps_it_unknown(server_factory):
    srv = server_factory(extra_args=("--setParameter", "enableTestCommands=0"))
    c = srv.client()
    try:
        with pytest.raises(OperationFailure) as e:
            c.admin.command("configureFailPoint", "failCommand", mode="off")
        assert e.value.code == 59
    finally:
        c.close()


def test_listed_and_admin_only_with_test_commands(admin_client):
    cmds = admin_client.admin.command("listCommands")["commands"]
    assert cmds["configureFailPoint"]["adminOnly"] is True
    with pytest.raises(OperationFailure) as e:
        admin_client.test.command("configureFailPoint", "failCommand", mode="off")
    assert e.value.code == 13


def test_unknown_fail_point_is_266(admin_client):
    for name in ("noSuchFailPoint", 5):
        with pytest.raises(OperationFailure) as e:
            admin_client.admin.command({"configureFailPoint": name, "mode": "off"})
        assert e.value.code == 266
        assert e.value.details["codeName"] == "FailPointSetFailed"
        assert "not found" in e.value.details["errmsg"]


@pytest.mark.parametrize("extra,code", [
    ({}, 20),                                          # no mode
    ({"mode": "sometimes"}, 2),
    ({"mode": 5}, 14),
    ({"mode": {}}, 2),
    ({"mode": {"times": -1}}, 2),
    ({"mode": {"times": "x"}}, 14),
    ({"mode": {"times": 1.5}}, 2),
    ({"mode": {"times": 2 ** 31}}, 2),
    ({"mode": {"skip": -3}}, 2),
    ({"mode": {"skip": float("nan")}}, 2),
    ({"mode": {"activationProbability": 1.5}}, 2),
    ({"mode": {"activationProbability": -0.1}}, 2),
    ({"mode": {"activationProbability": float("nan")}}, 2),
    ({"mode": {"activationProbability": "half"}}, 14),
    ({"mode": "alwaysOn", "data": "x"}, 14),
])
def test_bad_modes_are_refused_like_mongod(admin_client, extra, code):
    with pytest.raises(OperationFailure) as e:
        admin_client.admin.command({"configureFailPoint": "failCommand", **extra})
    assert e.value.code == code
    assert fired(admin_client) >= 0  # still answering


@pytest.mark.parametrize("data,code", [
    ({}, 2),                                           # failCommands missing
    ({"errorCode": 2}, 2),
    ({"failCommands": "insert", "errorCode": 2}, 14),
    ({"failCommands": ["insert", 5], "errorCode": 2}, 14),
    ({"failCommands": ["insert"], "errorCode": "x"}, 14),
    ({"failCommands": ["insert"], "errorCode": 1.5}, 2),
    ({"failCommands": ["insert"], "errorCode": 2 ** 40}, 2),
    ({"failCommands": ["insert"], "errorLabels": "RetryableWriteError"}, 14),
    ({"failCommands": ["insert"], "errorLabels": [1]}, 14),
    ({"failCommands": ["insert"], "closeConnection": "yes"}, 14),
    ({"failCommands": ["insert"], "blockConnection": True}, 72),
    ({"failCommands": ["insert"], "blockConnection": True, "blockTimeMS": -1}, 72),
    ({"failCommands": ["insert"], "blockConnection": True, "blockTimeMS": "x"}, 72),
    ({"failCommands": ["insert"], "writeConcernError": 64}, 14),
    ({"failCommands": ["insert"], "appName": 1}, 14),
    ({"failCommands": ["insert"], "errorExtraInfo": {}}, 2),
    ({"failCommands": ["insert"], "noSuchOption": 1}, 2),
])
def test_bad_fail_command_data_is_refused(admin_client, data, code):
    with pytest.raises(OperationFailure) as e:
        configure(admin_client, "alwaysOn", **data)
    assert e.value.code == code
    # Refused means not set: inserts still work.
    admin_client.fp_bad.c.insert_one({})


def test_mode_off_needs_no_data(admin_client):
    assert admin_client.admin.command("configureFailPoint", "failCommand",
                                      mode="off")["ok"] == 1.0


# ---- errorCode -------------------------------------------------------------------------


def test_error_code_fails_the_command_without_running_it(admin_client, db):
    configure(admin_client, "alwaysOn", failCommands=["insert"], errorCode=2)
    with pytest.raises(OperationFailure) as e:
        db.c.insert_one({"_id": 1})
    assert e.value.code == 2
    assert e.value.details["codeName"] == "BadValue"
    assert e.value.details["errmsg"] == "Failing command via 'failCommand' failpoint"
    # Other commands are untouched, and nothing was inserted.
    assert db.c.count_documents({}) == 0
    assert fired(admin_client) >= 1
    db.c.insert_one({"_id": 1})
    assert db.c.count_documents({}) == 1


def test_unnamed_codes_get_a_location_code_name(admin_client, db):
    configure(admin_client, {"times": 1}, failCommands=["find"], errorCode=424242)
    with pytest.raises(OperationFailure) as e:
        db.c.find_one()
    assert e.value.code == 424242
    assert e.value.details["codeName"] == "Location424242"


def test_retryable_code_on_retryable_insert_is_retried_once(fp_server, admin_client, db):
    listener = Commands()
    c = fp_server.client(retryWrites=True, event_listeners=[listener])
    try:
        before = fired(admin_client)
        configure(admin_client, {"times": 1}, failCommands=["insert"], errorCode=91)
        c[db.name].c.insert_one({"_id": "once"})
        # The fail point fired once, the driver saw that failure and retried.
        assert fired(admin_client) == before + 1
        assert listener.of("insert") == ["started", "failed", "started", "succeeded"]
        assert db.c.count_documents({}) == 1
        assert db.c.find_one() == {"_id": "once"}
    finally:
        c.close()


def test_retryable_code_without_retry_writes_surfaces(fp_server, admin_client, db):
    c = fp_server.client(retryWrites=False)
    try:
        configure(admin_client, {"times": 1}, failCommands=["insert"], errorCode=91)
        # pymongo reports 91 (a "node is shutting down" code) as NotPrimaryError.
        with pytest.raises(NotPrimaryError) as e:
            c[db.name].c.insert_one({"_id": 1})
        assert e.value.details["code"] == 91
        assert db.c.count_documents({}) == 0
    finally:
        c.close()


def retryable_command(db, cmd):
    """Runs `cmd` as a retryable write (txnNumber 1) on a fresh session. pymongo puts its own
    implicit session's lsid on db.command() in place of any we give and reuses pooled
    sessions, whose txnNumbers only grow (a reused one would rightly get TransactionTooOld,
    225): a client of its own gives the command a session nobody used."""
    host, port = db.client.address
    with pymongo.MongoClient(host, port, directConnection=True) as c:
        return c[db.name].command(dict(cmd, txnNumber=Int64(1)), check=False)


def test_labels_are_computed_as_for_real_errors(admin_client, db):
    configure(admin_client, "alwaysOn", failCommands=["insert"], errorCode=91)
    # A retryable write (txnNumber, no autocommit) gets RetryableWriteError ...
    r = retryable_command(db, {"insert": "c", "documents": [{}]})
    assert r["ok"] == 0 and r["code"] == 91
    assert r["errorLabels"] == ["RetryableWriteError"]
    # ... a plain insert gets none, and neither does a non-retryable code.
    r = db.command({"insert": "c", "documents": [{}]}, check=False)
    assert r["code"] == 91 and "errorLabels" not in r
    configure(admin_client, "alwaysOn", failCommands=["insert"], errorCode=11000)
    r = retryable_command(db, {"insert": "c", "documents": [{}]})
    assert r["code"] == 11000 and "errorLabels" not in r


def test_error_labels_replace_the_computed_ones(admin_client, db):
    configure(admin_client, "alwaysOn", failCommands=["insert"], errorCode=91,
              errorLabels=["SomeLabel"])
    r = retryable_command(db, {"insert": "c", "documents": [{}]})
    assert r["errorLabels"] == ["SomeLabel"]
    configure(admin_client, "alwaysOn", failCommands=["insert"], errorCode=2,
              errorLabels=["RetryableWriteError"])
    r = db.command({"insert": "c", "documents": [{}]}, check=False)
    assert r["code"] == 2 and r["errorLabels"] == ["RetryableWriteError"]


def test_empty_error_labels_stop_the_retry(fp_server, admin_client, db):
    listener = Commands()
    c = fp_server.client(retryWrites=True, event_listeners=[listener])
    try:
        configure(admin_client, {"times": 1}, failCommands=["insert"], errorCode=91,
                  errorLabels=[])
        with pytest.raises(NotPrimaryError) as e:
            c[db.name].c.insert_one({"_id": 1})
        assert e.value.details["code"] == 91
        assert "errorLabels" not in e.value.details
        assert listener.of("insert") == ["started", "failed"]
        assert db.c.count_documents({}) == 0
    finally:
        c.close()


def test_error_code_zero_runs_the_command(admin_client, db):
    # As mongod: a zero code is no error, but the fail point still fired.
    before = fired(admin_client)
    configure(admin_client, "alwaysOn", failCommands=["insert"], errorCode=0)
    db.c.insert_one({"_id": 1})
    assert fired(admin_client) == before + 1
    assert db.c.count_documents({}) == 1


# ---- closeConnection -------------------------------------------------------------------


def test_close_connection_on_retryable_insert_is_retried_and_applied_once(fp_server,
                                                                          admin_client, db):
    listener = Commands()
    c = fp_server.client(retryWrites=True, event_listeners=[listener])
    try:
        c.admin.command("ping")
        before = fired(admin_client)
        configure(admin_client, {"times": 1}, failCommands=["insert"], closeConnection=True)
        c[db.name].c.insert_one({"_id": "closed-once"})
        assert fired(admin_client) == before + 1
        assert listener.of("insert") == ["started", "failed", "started", "succeeded"]
        assert list(db.c.find()) == [{"_id": "closed-once"}]
    finally:
        c.close()


def test_close_connection_without_retry_is_a_network_error(fp_server, admin_client, db):
    c = fp_server.client(retryWrites=False)
    try:
        c.admin.command("ping")
        configure(admin_client, {"times": 1}, failCommands=["insert"], closeConnection=True)
        with pytest.raises(ConnectionFailure):
            c[db.name].c.insert_one({"_id": 1})
        # Closed before running: nothing written; the client reconnects.
        assert db.c.count_documents({}) == 0
        c[db.name].c.insert_one({"_id": 2})
        assert db.c.count_documents({}) == 1
    finally:
        c.close()


# ---- writeConcernError -----------------------------------------------------------------

WCE = {"code": 100, "codeName": "UnsatisfiableWriteConcern",
       "errmsg": "Not enough data-bearing nodes", "errInfo": {}}


def test_write_concern_error_on_insert_applies_the_write(fp_server, admin_client, db):
    c = fp_server.client(retryWrites=True)
    try:
        before = fired(admin_client)
        configure(admin_client, {"times": 1}, failCommands=["insert"], writeConcernError=WCE)
        with pytest.raises(WriteConcernError) as e:
            c[db.name].c.insert_one({"_id": "w"})
        assert e.value.code == 100
        assert e.value.details["errmsg"] == "Not enough data-bearing nodes"
        assert fired(admin_client) == before + 1
        assert list(db.c.find()) == [{"_id": "w"}]
    finally:
        c.close()


def test_write_concern_error_reply_and_labels(admin_client, db):
    configure(admin_client, "alwaysOn", failCommands=["insert"],
              writeConcernError={"code": 91, "errmsg": "Replication is being shut down"})
    r = retryable_command(db, {"insert": "c", "documents": [{"_id": 1}]})
    assert r["ok"] == 1.0 and r["n"] == 1
    assert r["writeConcernError"]["code"] == 91
    assert r["errorLabels"] == ["RetryableWriteError"]
    configure(admin_client, "alwaysOn", failCommands=["insert"],
              writeConcernError={"code": 91, "errmsg": "x"}, errorLabels=["Mine"])
    r = retryable_command(db, {"insert": "c", "documents": [{"_id": 2}]})
    assert r["errorLabels"] == ["Mine"]
    assert db.c.count_documents({}) == 2


def test_write_concern_error_spares_commands_without_write_concern(admin_client, db):
    db.c.insert_one({"_id": 1})
    before = fired(admin_client)
    configure(admin_client, "alwaysOn", failCommands=["find", "insert"], writeConcernError=WCE)
    r = db.command("find", "c")
    assert "writeConcernError" not in r
    assert fired(admin_client) == before


# ---- blockConnection -------------------------------------------------------------------


def test_block_connection_delays_then_runs(admin_client, db):
    db.c.insert_one({"_id": 1})
    configure(admin_client, {"times": 1}, failCommands=["find"], blockConnection=True,
              blockTimeMS=400)
    t0 = time.monotonic()
    assert db.c.find_one() == {"_id": 1}
    assert time.monotonic() - t0 >= 0.4


def test_block_connection_then_error(admin_client, db):
    configure(admin_client, {"times": 1}, failCommands=["find"], blockConnection=True,
              blockTimeMS=300, errorCode=2)
    t0 = time.monotonic()
    with pytest.raises(OperationFailure) as e:
        db.c.find_one()
    assert e.value.code == 2
    assert time.monotonic() - t0 >= 0.3


def test_block_connection_ends_at_max_time(admin_client, db):
    configure(admin_client, "alwaysOn", failCommands=["find"], blockConnection=True,
              blockTimeMS=600000)
    with pytest.raises(ExecutionTimeout) as e:
        db.c.find_one(max_time_ms=200)
    assert e.value.code == 50


def test_block_connection_blocks_only_its_connection(fp_server, admin_client, db):
    configure(admin_client, {"times": 1}, failCommands=["find"], blockConnection=True,
              blockTimeMS=1500, appName="blocked")
    slow = fp_server.client(appName="blocked")
    try:
        outcome = []

        def run():
            try:
                slow[db.name].c.find_one()
                outcome.append("done")
            except Exception as exc:  # reported below
                outcome.append(exc)

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.3)
        # Meanwhile other connections are served, while that find still sleeps.
        db.c.insert_one({"_id": 1})
        admin_client.admin.command("ping")
        assert outcome == []
        t.join(60)
        assert outcome == ["done"]
    finally:
        slow.close()


# ---- Which commands, which connections -------------------------------------------------


def test_app_name_filter(fp_server, admin_client, db):
    a = fp_server.client(appName="app-a")
    b = fp_server.client(appName="app-b")
    try:
        configure(admin_client, "alwaysOn", failCommands=["insert"], errorCode=2,
                  appName="app-a")
        with pytest.raises(OperationFailure):
            a[db.name].c.insert_one({"_id": "a"})
        b[db.name].c.insert_one({"_id": "b"})
        assert [d["_id"] for d in db.c.find()] == ["b"]
    finally:
        a.close()
        b.close()


def test_thread_name_filter(fp_server, admin_client, db):
    c = fp_server.client(maxPoolSize=1, appName="threaded")
    try:
        conn_id = c.admin.command("hello")["connectionId"]
        configure(admin_client, "alwaysOn", failCommands=["insert"], errorCode=2,
                  threadName="conn%d" % conn_id)
        with pytest.raises(OperationFailure):
            c[db.name].c.insert_one({"_id": 1})
        db.c.insert_one({"_id": 2})  # another connection
        assert db.c.count_documents({}) == 1
    finally:
        c.close()


def test_namespace_filter(admin_client, db):
    configure(admin_client, "alwaysOn", failCommands=["insert"], errorCode=2,
              namespace=db.name + ".c1")
    with pytest.raises(OperationFailure):
        db.c1.insert_one({})
    db.c2.insert_one({})
    assert db.c1.count_documents({}) == 0 and db.c2.count_documents({}) == 1


def test_other_commands_are_untouched(admin_client, db):
    before = fired(admin_client)
    configure(admin_client, "alwaysOn", failCommands=["delete"], errorCode=2)
    db.c.insert_one({"_id": 1})
    assert db.c.find_one() == {"_id": 1}
    assert fired(admin_client) == before


def test_aliases_count(admin_client, db):
    configure(admin_client, "alwaysOn", failCommands=["findandmodify"], errorCode=2)
    with pytest.raises(OperationFailure):
        db.c.find_one_and_update({"_id": 1}, {"$set": {"a": 1}}, upsert=True)


def test_fail_all_commands_spares_configure_fail_point(admin_client, db):
    configure(admin_client, "alwaysOn", failAllCommands=True, errorCode=2,
              appName="fp-admin")
    with pytest.raises(OperationFailure):
        admin_client.admin.command("ping")
    # configureFailPoint itself is never failed, even when listed or "all".
    configure(admin_client, "alwaysOn", failCommands=["configureFailPoint", "ping"],
              errorCode=2, appName="fp-admin")
    assert admin_client.admin.command("configureFailPoint", "failCommand",
                                      mode="off")["ok"] == 1.0
    admin_client.admin.command("ping")


def ping_as_internal_client(server):
    """hello declaring internalClient (as a mongod would), then ping, on one raw socket."""
    def command(sock, doc, rid):
        body = struct.pack("<I", 0) + b"\x00" + bson.encode(doc)
        sock.sendall(struct.pack("<iiii", 16 + len(body), rid, 0, 2013) + body)
        head = b""
        while len(head) < 16:
            head += sock.recv(16 - len(head))
        length = struct.unpack("<i", head[:4])[0]
        rest = b""
        while len(rest) < length - 16:
            rest += sock.recv(length - 16 - len(rest))
        return bson.decode(rest[5:])

    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        hello = command(sock, {"hello": 1, "internalClient": {"minWireVersion": 0,
                                                              "maxWireVersion": 17},
                               "client": {"driver": {"name": "x", "version": "1"}},
                               "$db": "admin"}, 1)
        assert hello["ok"] == 1.0
        return command(sock, {"ping": 1, "$db": "admin"}, 2)
    finally:
        sock.close()


def test_internal_clients_are_spared_unless_asked(fp_server, admin_client):
    configure(admin_client, "alwaysOn", failCommands=["ping"], errorCode=2)
    assert ping_as_internal_client(fp_server)["ok"] == 1.0
    configure(admin_client, "alwaysOn", failCommands=["ping"], errorCode=2,
              failInternalCommands=True)
    assert ping_as_internal_client(fp_server)["code"] == 2


# ---- Modes and count -------------------------------------------------------------------


def ping_fails(client):
    try:
        client.admin.command("ping")
        return False
    except OperationFailure as e:
        assert e.code == 2
        return True


@pytest.fixture
def pinger(fp_server):
    c = fp_server.client(appName="pinger")
    yield c
    c.close()


def test_times(admin_client, pinger):
    configure(admin_client, {"times": 2}, failCommands=["ping"], errorCode=2, appName="pinger")
    assert [ping_fails(pinger) for _ in range(4)] == [True, True, False, False]


def test_skip(admin_client, pinger):
    configure(admin_client, {"skip": 2}, failCommands=["ping"], errorCode=2, appName="pinger")
    assert [ping_fails(pinger) for _ in range(5)] == [False, False, True, True, True]


def test_off_and_always_on(admin_client, pinger):
    configure(admin_client, "alwaysOn", failCommands=["ping"], errorCode=2, appName="pinger")
    assert all(ping_fails(pinger) for _ in range(3))
    configure(admin_client, "off")
    assert not any(ping_fails(pinger) for _ in range(3))


def test_activation_probability(admin_client, pinger):
    configure(admin_client, {"activationProbability": 0}, failCommands=["ping"], errorCode=2,
              appName="pinger")
    assert not any(ping_fails(pinger) for _ in range(20))
    configure(admin_client, {"activationProbability": 1}, failCommands=["ping"], errorCode=2,
              appName="pinger")
    assert all(ping_fails(pinger) for _ in range(20))
    configure(admin_client, {"activationProbability": 0.5}, failCommands=["ping"],
              errorCode=2, appName="pinger")
    n = sum(ping_fails(pinger) for _ in range(200))
    assert 20 < n < 180


def test_count_counts_activations_only(admin_client, pinger):
    base = fired(admin_client)
    r = configure(admin_client, {"times": 3}, failCommands=["ping"], errorCode=2,
                  appName="pinger")
    assert r["count"] == base
    for _ in range(5):
        ping_fails(pinger)
    # Non-matching commands do not count, and times stops at 3.
    admin_client.admin.command("ping")
    assert fired(admin_client) == base + 3


def test_times_is_exact_under_concurrency(fp_server, admin_client):
    clients = [fp_server.client(appName="pinger") for _ in range(4)]
    failures = []
    lock = threading.Lock()

    def run(c):
        for _ in range(25):
            f = ping_fails(c)
            with lock:
                failures.append(f)

    try:
        base = fired(admin_client)
        configure(admin_client, {"times": 10}, failCommands=["ping"], errorCode=2,
                  appName="pinger")
        threads = [threading.Thread(target=run, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sum(failures) == 10
        assert fired(admin_client) == base + 10
    finally:
        for c in clients:
            c.close()


# ---- Hostile shapes --------------------------------------------------------------------


def test_random_shapes_never_hurt_the_server(fp_server, admin_client):
    rng = random.Random(20261205)
    values = [None, True, 0, -1, 2 ** 31, Int64(2 ** 62), 1.5, float("nan"), float("inf"),
              "", "x" * 1000, "alwaysOn", "off", [], ["insert"], [1, None], {}, {"times": 1},
              {"skip": 2 ** 62}, Decimal128("1E+6000"), MaxKey(), ObjectId(),
              Binary(b"\x00", 0), {"a": {"b": [1]}}]
    fields = ["failCommands", "errorCode", "errorLabels", "closeConnection", "blockConnection",
              "blockTimeMS", "writeConcernError", "appName", "threadName", "namespace",
              "failAllCommands", "times", "x"]
    for _ in range(300):
        cmd = {"configureFailPoint": rng.choice(["failCommand", "failCommand", 1, None, ""])}
        if rng.random() < 0.9:
            cmd["mode"] = rng.choice(values + [{"times": rng.choice(values)},
                                               {"activationProbability": rng.choice(values)}])
        if rng.random() < 0.8:
            data = {}
            for _ in range(rng.randint(0, 4)):
                data[rng.choice(fields)] = rng.choice(values)
            if rng.random() < 0.5:
                data["failCommands"] = ["noSuchCommandHere"]
            cmd["data"] = data if rng.random() < 0.9 else rng.choice(values)
        r = admin_client.admin.command(cmd, check=False)
        assert r["ok"] in (0.0, 1.0)
        if not r["ok"]:
            assert isinstance(r["code"], int) and isinstance(r["errmsg"], str)
    configure(admin_client, "off")
    admin_client.admin.command("ping")
    assert fp_server.alive()
