"""currentOp and killOp: every running command is an operation in progress, listed with
mongod's fields (opid, desc "conn<N>", connectionId, client, active, secs_running, op, ns,
command, ...) and filtered like mongod's currentOp; killOp ends it with 11601 Interrupted,
a real scan as promptly as a command asleep in a fail point."""

import re
import threading
import time

import pytest
from bson import Int64
from pymongo.errors import OperationFailure

from cairn_server import CairnServer, ServerError

TEST_ARGS = ("--setParameter", "enableTestCommands=1")


@pytest.fixture(scope="module")
def op_server(tmp_path_factory):
    """A server with test commands (blockConnection holds a command still for the tests)."""
    for attempt in range(3):
        srv = CairnServer(str(tmp_path_factory.mktemp("currentop") / "db"), extra_args=TEST_ARGS)
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
def admin(op_server):
    c = op_server.client(appName="ops-admin")
    yield c.admin
    c.close()


@pytest.fixture(autouse=True)
def fail_point_off(admin):
    yield
    admin.command("configureFailPoint", "failCommand", mode="off")


def block(admin, command, app, ms=600000):
    admin.command("configureFailPoint", "failCommand", mode="alwaysOn",
                  data={"failCommands": [command], "blockConnection": True, "blockTimeMS": ms,
                        "appName": app})


class Background:
    """Runs fn in a thread and keeps its outcome (a value or an exception)."""

    def __init__(self, fn):
        self.outcome = None
        self.thread = threading.Thread(target=self._run, args=(fn,))
        self.thread.start()

    def _run(self, fn):
        try:
            self.outcome = fn()
        except Exception as exc:  # inspected by the test
            self.outcome = exc

    def join(self, timeout=60):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the operation did not end"
        return self.outcome


def wait_for_op(admin, filt, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ops = admin.command({"currentOp": 1, **filt})["inprog"]
        if ops:
            return ops
        time.sleep(0.05)
    raise AssertionError("no operation matching %r appeared" % (filt,))


# ---- currentOp -------------------------------------------------------------------------


def test_current_op_lists_itself_with_mongod_shape(op_server, admin):
    r = admin.command("currentOp")
    assert r["ok"] == 1.0
    mine = [op for op in r["inprog"] if "currentOp" in op.get("command", {})]
    assert len(mine) == 1
    op = mine[0]
    assert op["type"] == "op"
    assert op["active"] is True
    assert re.fullmatch(r"conn\d+", op["desc"])
    assert op["desc"] == "conn%d" % op["connectionId"]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", op["client"])
    assert op["host"].endswith(":%d" % op_server.port)
    assert op["appName"] == "ops-admin"
    assert op["clientMetadata"]["application"]["name"] == "ops-admin"
    assert isinstance(op["opid"], int)
    assert isinstance(op["secs_running"], int) and isinstance(op["microsecs_running"], int)
    assert op["op"] == "command"
    assert op["ns"] == "admin.$cmd"
    assert op["command"]["currentOp"] == 1 and op["command"]["$db"] == "admin"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", op["currentOpTime"])
    assert "lsid" in op


def test_current_op_is_admin_only(admin, op_server):
    c = op_server.client()
    try:
        for cmd in ({"currentOp": 1}, {"killOp": 1, "op": 1}):
            with pytest.raises(OperationFailure) as e:
                c.test.command(cmd)
            assert e.value.code == 13
    finally:
        c.close()


def test_running_find_is_listed_and_filtered(op_server, admin):
    client = op_server.client(appName="finder")
    coll = client.ops_db.c
    coll.insert_one({"_id": 1})
    try:
        block(admin, "find", "finder")
        bg = Background(lambda: coll.find_one({"x": 1}, comment="look for me"))
        ops = wait_for_op(admin, {"command.find": "c", "appName": "finder"})
        assert len(ops) == 1
        op = ops[0]
        assert op["op"] == "query"
        assert op["ns"] == "ops_db.c"
        assert op["active"] is True
        assert op["command"]["filter"] == {"x": 1}
        assert op["command"]["comment"] == "look for me"
        # Filters: mongod's forms and arbitrary field equality.
        assert admin.command({"currentOp": 1, "active": True, "ns": "ops_db.c"})["inprog"]
        assert not admin.command({"currentOp": 1, "ns": "nowhere.c"})["inprog"]
        assert admin.command({"currentOp": 1, "opid": op["opid"]})["inprog"][0]["opid"] == \
            op["opid"]
        assert admin.command({"currentOp": 1, "secs_running": {"$gte": 0},
                              "command.find": {"$exists": True},
                              "appName": "finder"})["inprog"]
        admin.command("killOp", op=op["opid"])
        out = bg.join()
        assert isinstance(out, OperationFailure) and out.code == 11601
        assert out.details["codeName"] == "Interrupted"
    finally:
        client.close()


def test_all_adds_idle_connections(op_server, admin):
    idle = op_server.client(appName="idle-one")
    try:
        idle.admin.command("ping")
        assert not admin.command({"currentOp": 1, "appName": "idle-one"})["inprog"]
        ops = admin.command({"currentOp": 1, "$all": True, "appName": "idle-one"})["inprog"]
        assert ops and all(op["active"] is False for op in ops)
        assert all(re.fullmatch(r"conn\d+", op["desc"]) for op in ops)
        assert all("opid" not in op for op in ops)
        # {active: true} keeps only running operations.
        active = admin.command({"currentOp": 1, "$all": True, "active": True})["inprog"]
        assert active and all(op["active"] is True for op in active)
    finally:
        idle.close()


def test_large_commands_are_truncated_like_mongod(op_server, admin):
    client = op_server.client(appName="big-find")
    try:
        block(admin, "find", "big-find")
        big = {"a": {"$in": ["x" * 50 + "\u00e9" * 10 + str(i) for i in range(60)]}}
        bg = Background(lambda: client.ops_db.c.find_one(big, comment="big"))
        op = wait_for_op(admin, {"appName": "big-find", "op": "query"})[0]
        trunc = op["command"]["$truncated"]
        assert isinstance(trunc, str) and trunc.endswith("...")
        assert len(trunc.encode()) <= 1000
        assert op["command"]["comment"] == "big"
        admin.command("killOp", op=op["opid"])
        assert bg.join().code == 11601
    finally:
        client.close()


def test_bad_filters_are_errors(admin):
    with pytest.raises(OperationFailure) as e:
        admin.command({"currentOp": 1, "x": {"$noSuchOperator": 1}})
    assert e.value.code == 2
    assert admin.command({"currentOp": 1, "$ownOps": True, "comment": "generic"})["ok"] == 1.0


def test_current_op_aggregation_stage_is_not_implemented(admin):
    with pytest.raises(OperationFailure) as e:
        admin.command("aggregate", 1, pipeline=[{"$currentOp": {}}], cursor={})
    assert e.value.code == 238


# ---- killOp ----------------------------------------------------------------------------


def test_kill_op_of_unknown_id_still_says_attempting(admin):
    for op in (987654, Int64(5), 5.0, -1):
        r = admin.command("killOp", op=op)
        assert r["info"] == "attempting to kill op" and r["ok"] == 1.0


@pytest.mark.parametrize("extra,code", [
    ({}, 4),
    ({"op": "123"}, 14),
    ({"op": None}, 14),
    ({"op": {"id": 1}}, 14),
    ({"op": 1.5}, 2),
    ({"op": float("nan")}, 2),
    ({"op": float("inf")}, 2),
    ({"op": 2 ** 31}, 26823),
    ({"op": Int64(-2 ** 63)}, 26823),
])
def test_kill_op_bad_ids(admin, extra, code):
    with pytest.raises(OperationFailure) as e:
        admin.command({"killOp": 1, **extra})
    assert e.value.code == code


@pytest.fixture(scope="module")
def slow_coll(op_server):
    """Documents whose regex match is slow enough that a count runs for minutes."""
    c = op_server.client()
    coll = c.ops_db.slow
    coll.drop()
    coll.insert_many([{"_id": i, "s": "ab" * 500} for i in range(20000)])
    yield coll
    c.close()


def test_kill_op_stops_a_long_count(op_server, admin, slow_coll):
    client = op_server.client(appName="long-count", socketTimeoutMS=300000)
    try:
        db = client.ops_db
        # maxTimeMS only as a safety net: a kill that does not work ends with 50, not 11601.
        bg = Background(lambda: db.command("count", "slow",
                                           query={"s": {"$regex": "b.*a.*c$"}},
                                           maxTimeMS=240000))
        op = wait_for_op(admin, {"command.count": "slow", "appName": "long-count"})[0]
        assert op["op"] == "command" and op["ns"] == "ops_db.slow"
        time.sleep(0.2)  # well inside the scan
        r = admin.command("killOp", op=op["opid"])
        assert r["info"] == "attempting to kill op"
        out = bg.join(120)
        assert isinstance(out, OperationFailure), out
        assert out.code == 11601
        # The connection and the server go on.
        assert db.slow.find_one({"_id": 3})["_id"] == 3
        assert not admin.command({"currentOp": 1, "command.count": "slow"})["inprog"]
    finally:
        client.close()


def test_max_time_still_ends_a_scan(admin, slow_coll):
    with pytest.raises(OperationFailure) as e:
        slow_coll.database.command("count", "slow", query={"s": {"$regex": "b.*a.*c$"}},
                                   maxTimeMS=300)
    assert e.value.code == 50


def test_killed_op_shows_kill_pending_until_it_stops(op_server, admin):
    client = op_server.client(appName="blocked-insert")
    try:
        block(admin, "insert", "blocked-insert")
        bg = Background(lambda: client.ops_db.k.insert_one({"_id": 1}))
        op = wait_for_op(admin, {"appName": "blocked-insert", "op": "insert"})[0]
        admin.command("killOp", op=op["opid"])
        out = bg.join()
        assert isinstance(out, OperationFailure) and out.code == 11601
        # Killed while blocked before running: nothing was inserted.
        assert client.ops_db.k.count_documents({}) == 0
    finally:
        client.close()


def test_shutdown_interrupts_blocked_commands(tmp_path):
    srv = CairnServer(str(tmp_path / "db"), extra_args=TEST_ARGS)
    srv.start()
    # (A short server selection: closing the client after the stop tries endSessions.)
    c = srv.client(appName="victim", retryReads=False, retryWrites=False,
                   serverSelectionTimeoutMS=1000)
    try:
        c.admin.command("configureFailPoint", "failCommand", mode="alwaysOn",
                        data={"failCommands": ["find"], "blockConnection": True,
                              "blockTimeMS": 600000, "appName": "victim"})
        bg = Background(lambda: c.test.c.find_one())
        wait_for_op(c.admin, {"appName": "victim", "op": "query"})
        t0 = time.monotonic()
        assert srv.stop() == 0
        assert time.monotonic() - t0 < 25, "a blocked command held up shutdown"
        assert isinstance(bg.join(), Exception)
        assert srv.check_clean() is None, srv.check_clean()
    finally:
        c.close()
        srv.kill9()
