"""Durability: clean restart on the same dbpath keeps everything; kill -9 loses no write that
was acknowledged with w:"majority" or j:true; write concern semantics on a one-member set."""

import threading
import time

import pytest
from pymongo import WriteConcern
from pymongo.errors import OperationFailure, PyMongoError

from workers import Workers, wait_until


def _wait_visible(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        if fn():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_restart_keeps_data(server_factory):
    srv = server_factory()
    c = srv.client()
    db = c["persist"]
    db.a.insert_many([{"_id": i, "v": i} for i in range(200)])
    db.a.update_many({"_id": {"$lt": 50}}, {"$set": {"v": -1}})
    db.a.delete_many({"_id": {"$gte": 150}})
    db.b.insert_one({"_id": "x", "nested": {"k": [1, 2, 3]}})
    db.create_collection("empty")
    c["gone"].g.insert_one({"_id": 1})
    c.drop_database("gone")
    c.close()

    srv.restart()
    assert srv.problems == [], srv.problems

    c = srv.client()
    db = c["persist"]
    assert db.a.count_documents({}) == 150
    assert db.a.count_documents({"v": -1}) == 50
    assert db.a.find_one({"_id": 100}) == {"_id": 100, "v": 100}
    assert db.b.find_one() == {"_id": "x", "nested": {"k": [1, 2, 3]}}
    assert sorted(db.list_collection_names()) == ["a", "b", "empty"]
    assert "gone" not in c.list_database_names()
    h = c.admin.command("hello")
    assert h["isWritablePrimary"] is True and h["setName"] == "rs0"
    assert h["hosts"] == [srv.host]
    db.a.insert_one({"_id": 1000})
    assert db.a.count_documents({}) == 151
    c.close()


def test_restart_twice_and_ids_continue(server_factory):
    srv = server_factory()
    c = srv.client()
    t1 = c.d.c.insert_one({"k": 1}).inserted_id
    op1 = c.d.command("insert", "c", documents=[{"_id": "m"}])["operationTime"]
    c.close()
    srv.restart()
    srv.restart()
    c = srv.client()
    assert c.d.c.count_documents({}) == 2
    assert c.d.c.find_one({"_id": t1})["k"] == 1
    op2 = c.d.command("insert", "c", documents=[{"_id": "n"}])["operationTime"]
    assert op2 > op1, "cluster time must keep increasing across restarts"
    c.close()


@pytest.mark.parametrize("wc", [WriteConcern(w="majority"), WriteConcern(w=1, j=True),
                                WriteConcern(w="majority", j=True)],
                         ids=["w_majority", "w1_j", "w_majority_j"])
def test_kill9_keeps_acknowledged_writes(server_factory, wc):
    srv = server_factory()
    c = srv.client()
    coll = c.crash.get_collection("c", write_concern=wc)
    for i in range(300):
        coll.insert_one({"_id": i, "v": i})
    coll.update_one({"_id": 0}, {"$set": {"v": "updated"}})
    coll.delete_one({"_id": 1})
    coll.insert_many([{"_id": 1000 + i} for i in range(100)])
    c.close()

    srv.crash_restart()

    c = srv.client()
    coll = c.crash.c
    ids = {d["_id"] for d in coll.find({}, {"_id": 1})}
    expected = set(range(300)) - {1} | set(range(1000, 1100))
    assert ids == expected
    assert coll.find_one({"_id": 0})["v"] == "updated"
    assert coll.find_one({"_id": 299}) == {"_id": 299, "v": 299}
    c.crash.c.insert_one({"_id": "after"})
    c.close()


def test_kill9_under_concurrent_load(server_factory):
    srv = server_factory()
    acked = [set() for _ in range(4)]
    stop = threading.Event()
    killed = threading.Event()

    def writer(k):
        c = srv.client(serverSelectionTimeoutMS=2000, socketTimeoutMS=5000, retryWrites=False)
        coll = c.load.get_collection("c", write_concern=WriteConcern(w="majority"))
        i = 0
        try:
            while not stop.is_set():
                try:
                    coll.insert_one({"_id": "%d-%d" % (k, i), "pad": "p" * 100})
                    acked[k].add("%d-%d" % (k, i))
                except PyMongoError:
                    if killed.is_set():
                        return  # the server is gone: expected
                    raise       # a write failed while the server was up: recorded
                i += 1
        finally:
            c.close()

    workers = Workers()
    for k in range(4):
        workers.start(writer, k)
    wait_until(lambda: sum(len(a) for a in acked) >= 400 or workers.errors, 30,
               lambda: "400 writes were acknowledged (%d)" % sum(len(a) for a in acked))
    killed.set()
    srv.kill9()
    stop.set()
    workers.finish(timeout=30)
    all_acked = set().union(*acked)
    assert len(all_acked) >= 400, "only %d writes acknowledged before the kill" % len(all_acked)

    srv.start()
    c = srv.client()
    present = [d["_id"] for d in c.load.c.find({}, {"_id": 1})]
    assert len(present) == len(set(present)), "duplicate documents after recovery"
    missing = all_acked - set(present)
    assert not missing, "%d acknowledged writes lost, e.g. %r" % (len(missing),
                                                                  sorted(missing)[:5])
    for d in c.load.c.find().limit(50):
        assert d["pad"] == "p" * 100
    c.close()


def test_write_concern_variants_acknowledged(coll):
    for wc in (WriteConcern(w=1), WriteConcern(w="majority"), WriteConcern(j=True),
               WriteConcern(w="majority", wtimeout=5000), WriteConcern(w=1, j=False)):
        r = coll.with_options(write_concern=wc).insert_one({})
        assert r.acknowledged
    assert coll.count_documents({}) == 5


def test_unacknowledged_write(coll):
    r = coll.with_options(write_concern=WriteConcern(w=0)).insert_one({"_id": "w0"})
    assert not r.acknowledged
    assert _wait_visible(lambda: coll.find_one({"_id": "w0"}) is not None)


def test_w2_on_one_member_is_100(coll):
    with pytest.raises(OperationFailure) as e:
        coll.with_options(write_concern=WriteConcern(w=2)).insert_one({"_id": 1})
    assert e.value.code == 100  # UnsatisfiableWriteConcern


def test_unknown_w_mode_is_error(coll):
    with pytest.raises(OperationFailure) as e:
        coll.with_options(write_concern=WriteConcern(w="noSuchTag")).insert_one({"_id": 1})
    assert e.value.code == 79  # UnknownReplWriteConcern


def test_bad_write_concern_type(db):
    with pytest.raises(OperationFailure) as e:
        db.command("insert", "c", documents=[{"_id": 1}], writeConcern={"w": [1]})
    assert e.value.code in (9, 14)


def test_kill9_after_raft_snapshots_keeps_acknowledged_writes(server_factory):
    """More raft entries than the snapshot threshold (4096): raft takes descriptor snapshots
    and deletes the log segments below them, so recovery must find everything those
    segments held in the storage engine, and replay only what came after."""
    import os

    srv = server_factory()
    c = srv.client()
    coll = c.snap.get_collection("c", write_concern=WriteConcern(w="majority"))
    n = 9000  # one raft entry per sequential write: at least two snapshots
    for i in range(n):
        coll.insert_one({"_id": i})
    coll.update_one({"_id": 5}, {"$set": {"u": 1}})
    c.close()
    raft_dir = os.path.join(srv.dbpath, "raft")
    assert any(f.startswith("snapshot-") for f in os.listdir(raft_dir)), os.listdir(raft_dir)

    srv.crash_restart()

    c = srv.client()
    coll = c.snap.c
    assert coll.count_documents({}) == n
    assert coll.find_one({"_id": 5}) == {"_id": 5, "u": 1}
    assert coll.find_one({"_id": n - 1}) == {"_id": n - 1}
    coll.insert_one({"_id": "after"})
    c.close()
    # and once more, now with a snapshot loaded at start-up
    srv.crash_restart()
    c = srv.client()
    assert c.snap.c.count_documents({}) == n + 1
    c.close()
