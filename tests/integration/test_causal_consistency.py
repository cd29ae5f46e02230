"""Cluster time and causal consistency (wire-protocol.md §5; mongod's VectorClock and
read_concern_mongod.cpp; the causal-consistency spec).

* Every reply, success or error, carries `$clusterTime` {clusterTime: Timestamp, signature:
  {hash: 20 zero bytes, keyId: 0}} and `operationTime`; a write's operationTime is its commit
  time and never exceeds the cluster time it is sent with.
* A causally consistent session reads its own writes: reads and a transaction's first statement
  carry afterClusterTime = the session's operationTime, and the server waits (bounded by
  maxTimeMS) until it has applied that time; on a primary an afterClusterTime above its last
  write but not above its cluster time is reached at once by a no-op write, not by waiting for
  the wall clock.
* Gossip: a `$clusterTime` sent by a client advances the server's cluster time, unless it is
  more than maxAcceptableLogicalClockDriftSecs (365 days) ahead of the server's wall clock:
  ClusterTimeFailsRateLimiter (205). An afterClusterTime above the cluster time is
  InvalidOptions (72).
"""

import time

import pytest
from bson import Timestamp
from pymongo import monitoring
from pymongo.read_concern import ReadConcern

from txn_helpers import (
    CODES, RawConn, assert_error, assert_ok, cluster_time, cluster_time_doc, seed,
    ts_add, ts_key)


@pytest.fixture
def conn(server):
    c = RawConn(server)
    yield c
    c.close()


def check_envelope(reply, what):
    ct = reply.get("$clusterTime")
    assert isinstance(ct, dict), "%s: no $clusterTime in %r" % (what, reply)
    assert isinstance(ct.get("clusterTime"), Timestamp), "%s: %r" % (what, ct)
    sig = ct.get("signature", {})
    assert bytes(sig.get("hash", b"")) == b"\x00" * 20, \
        "%s: signature hash must be 20 zero bytes: %r" % (what, ct)
    assert sig.get("keyId") == 0 and isinstance(sig.get("keyId"), int), "%s: %r" % (what, ct)
    assert isinstance(reply.get("operationTime"), Timestamp), \
        "%s: no operationTime in %r" % (what, reply)


def test_every_reply_carries_cluster_time_and_operation_time(conn, db):
    seed(conn, db.name, "c", [{"_id": 1}])
    cases = [
        ("ping", {"ping": 1}, "admin"),
        ("insert", {"insert": "c", "documents": [{"_id": 2}]}, db.name),
        ("find", {"find": "c", "filter": {}}, db.name),
        ("aggregate", {"aggregate": "c", "pipeline": [], "cursor": {}}, db.name),
        ("duplicate key", {"insert": "c", "documents": [{"_id": 1}]}, db.name),
        ("unknown command", {"noSuchCommandAtAll": 1}, db.name),
        ("bad argument", {"find": "c", "filter": 5}, db.name),
        ("bad readConcern", {"find": "c", "readConcern": {"level": "banana"}}, db.name),
    ]
    for what, cmd, dbname in cases:
        check_envelope(conn.run(cmd, dbname), what)
    write = assert_ok(conn.run({"insert": "c", "documents": [{"_id": 3}]}, db.name))
    assert ts_key(write["operationTime"]) > (0, 0), write
    assert ts_key(write["operationTime"]) <= ts_key(cluster_time(write)), \
        "a write's operationTime cannot exceed the cluster time: %r" % write


def test_operation_times_advance_with_writes(conn, db):
    r1 = assert_ok(conn.run({"insert": "c", "documents": [{"_id": 1}],
                             "writeConcern": {"w": "majority"}}, db.name))
    r2 = assert_ok(conn.run({"insert": "c", "documents": [{"_id": 2}],
                             "writeConcern": {"w": "majority"}}, db.name))
    assert ts_key(r2["operationTime"]) > ts_key(r1["operationTime"]), (r1, r2)
    r3 = assert_ok(conn.run({"find": "c", "filter": {}, "readConcern": {"level": "majority"}},
                            db.name))
    assert ts_key(r3["operationTime"]) >= ts_key(r2["operationTime"]), \
        "a majority read after a majority write reads at or after it: %r %r" % (r2, r3)
    assert ts_key(cluster_time(r3)) >= ts_key(r2["operationTime"]), r3


class Commands(monitoring.CommandListener):
    def __init__(self):
        self.events = []

    def started(self, event):
        self.events.append((event.command_name, event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def last(self, name):
        cmds = [c for n, c in self.events if n == name]
        assert cmds, "no %s command was sent" % name
        return cmds[-1]


@pytest.fixture
def recorded(server):
    rec = Commands()
    c = server.client(event_listeners=[rec])
    yield c, rec
    c.close()


def test_causal_session_reads_its_own_writes(recorded, db):
    client, rec = recorded
    coll = client[db.name].get_collection("c", read_concern=ReadConcern("majority"))
    with client.start_session(causal_consistency=True) as s:
        for i in range(20):
            coll.insert_one({"_id": i}, session=s)
            op_time = s.operation_time
            assert op_time is not None
            assert coll.find_one({"_id": i}, session=s) == {"_id": i}, "read %d missed a write" % i
            find = rec.last("find")
            assert find["readConcern"]["afterClusterTime"] == op_time, find
            assert find["readConcern"]["level"] == "majority"


def test_after_cluster_time_of_last_write_is_read_promptly(conn, db):
    w = assert_ok(conn.run({"insert": "c", "documents": [{"_id": 1}]}, db.name))
    for level in ("local", "majority"):
        started = time.monotonic()
        r = assert_ok(conn.run({"find": "c", "filter": {}, "maxTimeMS": 10000,
                                "readConcern": {"level": level,
                                                "afterClusterTime": w["operationTime"]}},
                               db.name), level)
        assert r["cursor"]["firstBatch"] == [{"_id": 1}], (level, r)
        assert time.monotonic() - started < 5, "%s read waited %.1fs" % (
            level, time.monotonic() - started)


@pytest.mark.parametrize("ahead", [(0, 1), (2, 0)], ids=["one increment", "two seconds"])
def test_after_cluster_time_above_last_write_within_cluster_time_returns_promptly(conn, db, ahead):
    w = assert_ok(conn.run({"insert": "c", "documents": [{"_id": 1}],
                            "writeConcern": {"w": "majority"}}, db.name))
    last = w["operationTime"]
    target = Timestamp(last.time + ahead[0], last.inc + ahead[1])
    # Make the cluster time reach `target` by gossip, as a client that talked to another
    # member would.
    assert_ok(conn.run({"ping": 1, "$clusterTime": cluster_time_doc(target)}, "admin"))
    for level in ("local", "majority"):
        started = time.monotonic()
        r = conn.run({"find": "c", "filter": {}, "maxTimeMS": 10000,
                      "readConcern": {"level": level, "afterClusterTime": target}}, db.name)
        elapsed = time.monotonic() - started
        assert_ok(r, "afterClusterTime %r (%s)" % (target, level))
        assert elapsed < 5, "a %s read after %r stalled %.1fs" % (level, target, elapsed)
        assert r["cursor"]["firstBatch"] == [{"_id": 1}], r
        assert ts_key(r["operationTime"]) >= ts_key(target), \
            "the read must be at or after afterClusterTime: %r" % r


def test_after_cluster_time_wait_is_bounded_by_max_time(conn, db):
    """On a primary the wait is normally ended at once by a no-op write; what must never
    happen is a wait past maxTimeMS. Either outcome below is mongod's."""
    w = assert_ok(conn.run({"insert": "c", "documents": [{"_id": 1}]}, db.name))
    target = ts_add(w["operationTime"], 3)
    assert_ok(conn.run({"ping": 1, "$clusterTime": cluster_time_doc(target)}, "admin"))
    started = time.monotonic()
    r = conn.run({"find": "c", "filter": {}, "maxTimeMS": 200,
                  "readConcern": {"level": "majority", "afterClusterTime": target}}, db.name)
    elapsed = time.monotonic() - started
    assert elapsed < 5, "the afterClusterTime wait ignored maxTimeMS (%.1fs)" % elapsed
    if r.get("ok") != 1.0:
        assert_error(r, CODES["MaxTimeMSExpired"], "MaxTimeMSExpired")


def test_after_cluster_time_above_cluster_time_is_invalid_options(conn, db):
    now = cluster_time(assert_ok(conn.run({"ping": 1}, "admin")))
    r = conn.run({"find": "c", "filter": {},
                  "readConcern": {"level": "majority", "afterClusterTime": ts_add(now, 3600)}},
                 db.name)
    assert_error(r, CODES["InvalidOptions"], "InvalidOptions",
                 msg="afterClusterTime value must not be greater than the current clusterTime")
    check_envelope(r, "the error reply")


def test_gossiped_cluster_time_advances_the_server(conn):
    now = cluster_time(assert_ok(conn.run({"ping": 1}, "admin")))
    ahead = Timestamp(max(now.time, int(time.time())) + 100, 1)
    r = assert_ok(conn.run({"ping": 1, "$clusterTime": cluster_time_doc(ahead)}, "admin"))
    assert ts_key(cluster_time(r)) >= ts_key(ahead), r
    with RawConn(conn.sock.getpeername()[1]) as other:
        r2 = assert_ok(other.run({"ping": 1}, "admin"))
        assert ts_key(cluster_time(r2)) >= ts_key(ahead), \
            "the server's cluster time, not the connection's: %r" % r2


def test_cluster_time_beyond_allowed_drift_is_refused(conn):
    limit = assert_ok(conn.run({"getParameter": 1, "maxAcceptableLogicalClockDriftSecs": 1},
                               "admin"))
    assert limit["maxAcceptableLogicalClockDriftSecs"] == 365 * 86400, limit
    far = Timestamp(int(time.time()) + 2 * 365 * 86400, 1)
    r = conn.run({"ping": 1, "$clusterTime": cluster_time_doc(far)}, "admin")
    assert_error(r, CODES["ClusterTimeFailsRateLimiter"], "ClusterTimeFailsRateLimiter")
    r2 = assert_ok(conn.run({"ping": 1}, "admin"))
    assert ts_key(cluster_time(r2)) < ts_key(far), "the refused time was not adopted: %r" % r2


def test_driver_gossips_cluster_time(recorded, db):
    client, rec = recorded
    client[db.name].c.insert_one({"_id": 1})
    r = client.admin.command("ping")
    ping = rec.last("ping")
    assert "$clusterTime" in ping, "pymongo gossips $clusterTime once the server sent one"
    assert ts_key(ping["$clusterTime"]["clusterTime"]) <= ts_key(r["$clusterTime"]["clusterTime"])


def test_transaction_first_statement_carries_after_cluster_time(recorded, db):
    client, rec = recorded
    coll = client[db.name].c
    with client.start_session(causal_consistency=True) as s:
        coll.insert_one({"_id": 1}, session=s)
        op_time = s.operation_time
        with s.start_transaction():
            assert coll.find_one({"_id": 1}, session=s) == {"_id": 1}
            coll.insert_one({"_id": 2}, session=s)
        first = rec.last("find")
        assert first["readConcern"]["afterClusterTime"] == op_time, first
        assert first.get("startTransaction") is True, first
    assert find_docs_client(coll) == [1, 2]


def find_docs_client(coll):
    return [d["_id"] for d in coll.find({}).sort("_id", 1)]
