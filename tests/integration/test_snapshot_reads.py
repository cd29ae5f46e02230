"""Snapshot reads outside transactions (MongoDB 5.0+, so maxWireVersion >= 13; Cairn will
advertise 7.0, wire version 21), per the snapshot-sessions spec and mongod 7.0:

* find, aggregate and distinct accept readConcern {level: "snapshot"} with or without
  atClusterTime (or with afterClusterTime) outside a transaction; the reply names the time it
  read at: `cursor.atClusterTime` for find/aggregate, top-level `atClusterTime` for distinct;
* with atClusterTime T the read sees exactly the data committed at or before T, and getMore of
  such a cursor goes on reading the same snapshot whatever is written meanwhile;
* T older than the history window is SnapshotTooOld (239, no label outside a transaction); T
  above the cluster time is InvalidOptions (72);
* pymongo's start_session(snapshot=True) reads every operation of the session at the time of
  its first read.
"""

import pytest
from bson import Timestamp

from txn_helpers import (
    CODES, RawConn, assert_error, assert_ok, cluster_time, find_docs, seed, ts_add, ts_key)


@pytest.fixture
def conn(server):
    c = RawConn(server)
    yield c
    c.close()


def write(conn, db, cmd):
    r = assert_ok(conn.run(dict(cmd, writeConcern={"w": "majority"}), db))
    assert "writeErrors" not in r, r
    return r["operationTime"]


def test_server_advertises_mongodb_7_0(conn):
    r = assert_ok(conn.run({"hello": 1}, "admin"))
    assert r["maxWireVersion"] == 21, "MongoDB 7.0 is wire version 21: %r" % r["maxWireVersion"]
    assert r["minWireVersion"] == 0
    b = assert_ok(conn.run({"buildInfo": 1}, "admin"))
    assert b["version"].startswith("7.0."), b["version"]
    assert b["versionArray"][:2] == [7, 0], b


def test_find_snapshot_reports_its_read_time(conn, db):
    t1 = write(conn, db.name, {"insert": "c", "documents": [{"_id": 1}]})
    r = assert_ok(conn.run({"find": "c", "filter": {}, "readConcern": {"level": "snapshot"}},
                           db.name))
    at = r["cursor"].get("atClusterTime")
    assert isinstance(at, Timestamp), "find must report cursor.atClusterTime: %r" % r
    assert ts_key(at) >= ts_key(t1), (t1, r)
    assert r["cursor"]["firstBatch"] == [{"_id": 1}]


def test_snapshot_reads_at_cluster_time(conn, db):
    t1 = write(conn, db.name, {"insert": "c", "documents": [{"_id": 1, "v": "old", "k": "a"},
                                                          {"_id": 2, "v": "old", "k": "b"}]})
    write(conn, db.name, {"update": "c", "updates": [{"q": {}, "u": {"$set": {"v": "new"}},
                                                      "multi": True}]})
    write(conn, db.name, {"insert": "c", "documents": [{"_id": 3, "v": "new", "k": "c"}]})
    rc = {"level": "snapshot", "atClusterTime": t1}

    r = assert_ok(conn.run({"find": "c", "filter": {}, "sort": {"_id": 1}, "readConcern": rc},
                           db.name), "find at t1")
    assert r["cursor"]["firstBatch"] == [{"_id": 1, "v": "old", "k": "a"},
                                         {"_id": 2, "v": "old", "k": "b"}], r
    assert r["cursor"].get("atClusterTime") == t1, r

    r = assert_ok(conn.run({"aggregate": "c", "pipeline": [{"$group": {"_id": "$v",
                                                                       "n": {"$sum": 1}}}],
                            "cursor": {}, "readConcern": rc}, db.name), "aggregate at t1")
    assert r["cursor"]["firstBatch"] == [{"_id": "old", "n": 2}], r
    assert r["cursor"].get("atClusterTime") == t1, r

    r = assert_ok(conn.run({"distinct": "c", "key": "k", "readConcern": rc}, db.name),
                  "distinct at t1")
    assert sorted(r["values"]) == ["a", "b"], r
    assert r.get("atClusterTime") == t1, "distinct reports atClusterTime at the top level: %r" % r

    r = assert_ok(conn.run({"find": "c", "filter": {}, "sort": {"_id": 1},
                            "readConcern": {"level": "snapshot"}}, db.name), "latest snapshot")
    assert [d["v"] for d in r["cursor"]["firstBatch"]] == ["new", "new", "new"], r


def test_get_more_continues_the_same_snapshot(conn, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(10)])
    r = assert_ok(conn.run({"find": "c", "filter": {}, "sort": {"_id": 1}, "batchSize": 3,
                            "readConcern": {"level": "snapshot"}}, db.name))
    cid = r["cursor"]["id"]
    assert cid != 0 and len(r["cursor"]["firstBatch"]) == 3, r
    write(conn, db.name, {"delete": "c", "deletes": [{"q": {}, "limit": 0}]})
    write(conn, db.name, {"insert": "c", "documents": [{"_id": 100}]})
    got = [d["_id"] for d in r["cursor"]["firstBatch"]]
    while cid:
        r = assert_ok(conn.run({"getMore": cid, "collection": "c", "batchSize": 3}, db.name))
        got += [d["_id"] for d in r["cursor"]["nextBatch"]]
        cid = r["cursor"]["id"]
    assert got == list(range(10)), "the cursor must read its snapshot to the end: %r" % got
    assert find_docs(conn, db.name, "c") == [{"_id": 100}]


def test_snapshot_with_after_cluster_time(conn, db):
    t1 = write(conn, db.name, {"insert": "c", "documents": [{"_id": 1}]})
    r = assert_ok(conn.run({"find": "c", "filter": {},
                            "readConcern": {"level": "snapshot", "afterClusterTime": t1}},
                           db.name))
    assert ts_key(r["cursor"]["atClusterTime"]) >= ts_key(t1), r
    assert r["cursor"]["firstBatch"] == [{"_id": 1}]


def test_snapshot_older_than_history_is_snapshot_too_old(conn, db):
    seed(conn, db.name, "c", [{"_id": 1}])
    r = conn.run({"find": "c", "filter": {},
                  "readConcern": {"level": "snapshot", "atClusterTime": Timestamp(1, 1)}}, db.name)
    assert_error(r, CODES["SnapshotTooOld"], "SnapshotTooOld", labels=[])


def test_snapshot_in_the_future_is_invalid_options(conn, db):
    now = cluster_time(assert_ok(conn.run({"ping": 1}, "admin")))
    r = conn.run({"find": "c", "filter": {},
                  "readConcern": {"level": "snapshot", "atClusterTime": ts_add(now, 3600)}},
                 db.name)
    assert_error(r, CODES["InvalidOptions"], "InvalidOptions",
                 msg="must not be greater than the current clusterTime")


def test_at_cluster_time_needs_snapshot_level(conn, db):
    now = cluster_time(assert_ok(conn.run({"ping": 1}, "admin")))
    for level in ("local", "majority"):
        r = conn.run({"find": "c", "filter": {},
                      "readConcern": {"level": level, "atClusterTime": now}}, db.name)
        assert_error(r, CODES["InvalidOptions"], "InvalidOptions", what=level)


def test_pymongo_snapshot_session(server, db):
    client = server.client()
    try:
        coll = client[db.name].c
        coll.insert_many([{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
        coll.database.command("ping")
        with client.start_session(snapshot=True) as s:
            assert coll.find_one({"_id": 1}, session=s) == {"_id": 1, "v": 0}
            coll.update_many({}, {"$set": {"v": 1}})
            coll.insert_one({"_id": 3, "v": 1})
            assert list(coll.find({}, session=s).sort("_id", 1)) == [
                {"_id": 1, "v": 0}, {"_id": 2, "v": 0}], "the session reads its first snapshot"
            assert coll.distinct("v", session=s) == [0]
            assert list(coll.aggregate([{"$count": "n"}], session=s)) == [{"n": 2}]
        assert sorted(coll.distinct("v")) == [1]
    finally:
        client.close()
