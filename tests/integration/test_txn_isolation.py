"""Isolation between transactions, and between transactions and plain operations, with two or
three sessions interleaved step by step in a fixed order (each session is its own lsid on a raw
connection, so every step is one command whose reply is checked before the next is sent).

What a MongoDB 7.0 replica set guarantees, and so what these tests require:
* snapshot isolation: a transaction reads one snapshot, fixed by its first statement, plus its
  own writes: no dirty reads, no non-repeatable reads, no read skew;
* first writer wins: writing a document that another open transaction wrote, or that was
  committed after this transaction's snapshot, fails at once with WriteConflict (112) and the
  TransientTransactionError label, and aborts the transaction (its next statement gets 251);
* write skew is ALLOWED: snapshot isolation is not serializable, two transactions that read an
  overlapping set and write disjoint documents both commit;
* a non-transactional write to a document an open transaction holds waits for that transaction
  to end (bounded by maxTimeMS: 50 MaxTimeMSExpired), as mongod's write-conflict retry loop does;
* commit is atomic across collections and databases; abort leaves no trace.
"""

import threading
import time

import pytest

from txn_helpers import (
    CODES, TRANSIENT, Background, RawConn, Txn, assert_error, assert_ok, find_docs, new_lsid,
    seed, txn_find)


@pytest.fixture
def conns(server):
    made = []

    def make():
        c = RawConn(server)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def upd(_id, update, coll="c", **extra):
    stmt = {"q": {"_id": _id}, "u": update}
    stmt.update(extra)
    return {"update": coll, "updates": [stmt]}


def doc(conn, db, _id, coll="c"):
    docs = find_docs(conn, db, coll, {"_id": _id})
    return docs[0] if docs else None


def assert_write_conflict(reply, what):
    return assert_error(reply, CODES["WriteConflict"], "WriteConflict", labels=[TRANSIENT],
                        what=what)


def test_no_dirty_reads(conns, db):
    c0, ca, cb = conns(), conns(), conns()
    seed(c0, db.name, "c", [{"_id": 1, "v": 0}])
    a = Txn(ca, db.name)
    assert_ok(a.start(upd(1, {"$set": {"v": 1}})))
    assert_ok(a.run({"insert": "c", "documents": [{"_id": 2, "v": 2}]}))
    assert find_docs(c0, db.name, "c") == [{"_id": 1, "v": 0}], "plain read sees no dirty data"
    for level in ("local", "majority"):
        r = assert_ok(c0.run({"find": "c", "filter": {}, "readConcern": {"level": level}},
                             db.name))
        assert r["cursor"]["firstBatch"] == [{"_id": 1, "v": 0}], (level, r)
    b = Txn(cb, db.name)
    assert txn_find(b, "c", start=True) == [{"_id": 1, "v": 0}], "nor does another transaction"
    assert_ok(a.commit())
    assert find_docs(c0, db.name, "c") == [{"_id": 1, "v": 1}, {"_id": 2, "v": 2}]
    assert txn_find(b, "c") == [{"_id": 1, "v": 0}], "b keeps the snapshot of its first read"
    assert_ok(b.commit())


def test_no_non_repeatable_reads(conns, db):
    c0, ca, cb = conns(), conns(), conns()
    seed(c0, db.name, "c", [{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
    a = Txn(ca, db.name)
    assert txn_find(a, "c", {"_id": 1}, start=True) == [{"_id": 1, "v": 0}]
    b = Txn(cb, db.name)
    assert_ok(b.start(upd(1, {"$set": {"v": 1}})))
    assert_ok(b.run({"delete": "c", "deletes": [{"q": {"_id": 2}, "limit": 1}]}))
    assert_ok(b.run({"insert": "c", "documents": [{"_id": 3, "v": 0}]}))
    assert_ok(b.commit())
    assert_ok(c0.run(upd(4, {"$set": {"v": 0}}, upsert=True), db.name), "plain upsert")
    assert txn_find(a, "c", {"_id": 1}) == [{"_id": 1, "v": 0}], "same document, same value"
    assert txn_find(a, "c", {"v": 0}) == [{"_id": 1, "v": 0}, {"_id": 2, "v": 0}], \
        "no phantoms, no vanished documents"
    assert txn_find(a, "c", {"v": 1}) == []
    r = assert_ok(a.run({"aggregate": "c", "pipeline": [{"$count": "n"}], "cursor": {}}))
    assert r["cursor"]["firstBatch"] == [{"n": 2}], r
    assert_ok(a.commit())
    assert [d["_id"] for d in find_docs(c0, db.name, "c")] == [1, 3, 4]


def test_second_writer_gets_write_conflict_at_once(conns, db):
    c0, ca, cb = conns(), conns(), conns()
    seed(c0, db.name, "c", [{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
    a = Txn(ca, db.name)
    b = Txn(cb, db.name)
    assert_ok(a.start(upd(1, {"$inc": {"v": 1}})))
    assert_ok(b.start(upd(2, {"$inc": {"v": 1}})), "a different document does not conflict")
    started = time.monotonic()
    assert_write_conflict(b.run(upd(1, {"$inc": {"v": 10}})), "second writer of document 1")
    assert time.monotonic() - started < 10, "the conflict is reported, not waited out"
    assert_error(b.run({"find": "c", "filter": {}}), CODES["NoSuchTransaction"],
                 labels=[TRANSIENT], what="the conflicting transaction was aborted")
    assert_ok(a.commit())
    assert_error(b.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT])
    assert find_docs(c0, db.name, "c") == [{"_id": 1, "v": 1}, {"_id": 2, "v": 0}], \
        "no lost update, and nothing of the aborted transaction"


@pytest.mark.parametrize("second", ["delete", "findAndModify", "replace"])
def test_other_writes_of_a_held_document_conflict(conns, db, second):
    c0, ca, cb = conns(), conns(), conns()
    seed(c0, db.name, "c", [{"_id": 1, "v": 0}])
    a = Txn(ca, db.name)
    assert_ok(a.start({"delete": "c", "deletes": [{"q": {"_id": 1}, "limit": 1}]}))
    b = Txn(cb, db.name)
    assert txn_find(b, "c", start=True) == [{"_id": 1, "v": 0}]
    cmd = {
        "delete": {"delete": "c", "deletes": [{"q": {"_id": 1}, "limit": 1}]},
        "findAndModify": {"findAndModify": "c", "query": {"_id": 1}, "update": {"$inc": {"v": 1}}},
        "replace": upd(1, {"v": 5}),
    }[second]
    assert_write_conflict(b.run(cmd), "%s of a document deleted by an open transaction" % second)
    assert_ok(a.commit())
    assert find_docs(c0, db.name, "c") == []


def test_concurrent_inserts_of_the_same_id(conns, db):
    c0, ca, cb = conns(), conns(), conns()
    seed(c0, db.name, "c", [{"_id": 0}])
    a = Txn(ca, db.name)
    b = Txn(cb, db.name)
    assert_ok(a.start({"insert": "c", "documents": [{"_id": 5, "by": "a"}]}))
    assert_write_conflict(b.start({"insert": "c", "documents": [{"_id": 5, "by": "b"}]}),
                          "insert of an id another open transaction inserted")
    assert_ok(a.commit())
    b2 = b.next()
    r = assert_ok(b2.start({"insert": "c", "documents": [{"_id": 5, "by": "b"}]}))
    assert r["writeErrors"][0]["code"] == CODES["DuplicateKey"], r
    assert doc(c0, db.name, 5) == {"_id": 5, "by": "a"}


def test_no_read_skew(conns, db):
    c0, ca, cb = conns(), conns(), conns()
    seed(c0, db.name, "acct", [{"_id": "x", "bal": 50}, {"_id": "y", "bal": 50}])
    a = Txn(ca, db.name)
    x = txn_find(a, "acct", {"_id": "x"}, start=True)[0]["bal"]
    b = Txn(cb, db.name)
    assert_ok(b.start(upd("x", {"$inc": {"bal": -30}}, coll="acct")))
    assert_ok(b.run(upd("y", {"$inc": {"bal": 30}}, coll="acct")))
    assert_ok(b.commit())
    y = txn_find(a, "acct", {"_id": "y"})[0]["bal"]
    assert (x, y) == (50, 50), "a sees both accounts before the transfer, not a mix"
    assert_ok(a.commit())
    assert find_docs(c0, db.name, "acct") == [{"_id": "x", "bal": 20}, {"_id": "y", "bal": 80}]


@pytest.mark.parametrize("writer", ["transaction", "plain write"])
def test_write_after_concurrent_commit_is_write_conflict(conns, db, writer):
    c0, ca, cb = conns(), conns(), conns()
    seed(c0, db.name, "c", [{"_id": 1, "v": 0}, {"_id": 2, "v": 0}])
    a = Txn(ca, db.name)
    assert txn_find(a, "c", {"_id": 2}, start=True) == [{"_id": 2, "v": 0}], "a's snapshot"
    if writer == "transaction":
        b = Txn(cb, db.name)
        assert_ok(b.start(upd(1, {"$set": {"v": "b"}})))
        assert_ok(b.commit())
    else:
        assert_ok(cb.run(upd(1, {"$set": {"v": "b"}}), db.name))
    assert txn_find(a, "c", {"_id": 1}) == [{"_id": 1, "v": 0}], "a still reads its snapshot"
    assert_write_conflict(a.run(upd(1, {"$set": {"v": "a"}})),
                          "write of a document committed after the snapshot")
    assert_error(a.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT])
    assert doc(c0, db.name, 1) == {"_id": 1, "v": "b"}, "the first committer won"


def test_write_skew_is_allowed(conns, db):
    """Snapshot isolation, not serializability: two doctors on call, each transaction checks
    that the other is still on call and takes itself off; both commit and nobody is on call.
    mongod allows this (the documents written are disjoint), so Cairn must too."""
    c0, ca, cb = conns(), conns(), conns()
    seed(c0, db.name, "oncall", [{"_id": "alice", "on": True}, {"_id": "bob", "on": True}])
    a = Txn(ca, db.name)
    b = Txn(cb, db.name)
    assert sum(d["on"] for d in txn_find(a, "oncall", start=True)) == 2
    assert sum(d["on"] for d in txn_find(b, "oncall", start=True)) == 2
    assert_ok(a.run(upd("alice", {"$set": {"on": False}}, coll="oncall")))
    assert_ok(b.run(upd("bob", {"$set": {"on": False}}, coll="oncall")))
    assert_ok(a.commit(), "first commit")
    assert_ok(b.commit(), "second commit: disjoint writes do not conflict")
    assert find_docs(c0, db.name, "oncall") == [{"_id": "alice", "on": False},
                                                {"_id": "bob", "on": False}]


def _blocked_write(server, dbname, cmd):
    with RawConn(server, timeout=60) as c:
        return c.run(cmd, dbname)


@pytest.mark.parametrize("end", ["commit", "abort"])
def test_plain_write_waits_for_the_holding_transaction(server, conns, db, end):
    c0, ca = conns(), conns()
    seed(c0, db.name, "c", [{"_id": 1, "v": 0}])
    a = Txn(ca, db.name)
    assert_ok(a.start(upd(1, {"$set": {"v": 100}})))
    bg = Background(_blocked_write, server, db.name, upd(1, {"$inc": {"v": 1}}))
    assert not bg.done.wait(1.0), \
        "a plain update of a document held by an open transaction must wait, got %r" % bg.result
    assert doc(c0, db.name, 1) == {"_id": 1, "v": 0}
    assert_ok(a.commit() if end == "commit" else a.abort())
    r = assert_ok(bg.join(20), "the waiting update")
    assert r["n"] == 1 and r["nModified"] == 1, r
    assert doc(c0, db.name, 1) == {"_id": 1, "v": 101 if end == "commit" else 1}


def test_plain_insert_of_an_id_inserted_by_open_transaction_waits(server, conns, db):
    c0, ca = conns(), conns()
    seed(c0, db.name, "c", [{"_id": 0}])
    a = Txn(ca, db.name)
    assert_ok(a.start({"insert": "c", "documents": [{"_id": 9, "by": "txn"}]}))
    bg = Background(_blocked_write, server, db.name,
                    {"insert": "c", "documents": [{"_id": 9, "by": "plain"}]})
    assert not bg.done.wait(1.0), "the plain insert must wait, got %r" % bg.result
    assert_ok(a.commit())
    r = assert_ok(bg.join(20))
    assert r["writeErrors"][0]["code"] == CODES["DuplicateKey"], r
    assert doc(c0, db.name, 9) == {"_id": 9, "by": "txn"}


def test_plain_write_wait_is_bounded_by_max_time(conns, db):
    c0, ca = conns(), conns()
    seed(c0, db.name, "c", [{"_id": 1, "v": 0}])
    a = Txn(ca, db.name)
    assert_ok(a.start(upd(1, {"$set": {"v": 100}})))
    r = c0.run(dict(upd(1, {"$inc": {"v": 1}}), maxTimeMS=300), db.name)
    # mongod reports it as the command's error or as the statement's write error.
    if r.get("ok") == 1.0:
        assert r.get("writeErrors") and r["writeErrors"][0]["code"] == 50, r
        assert r["nModified"] == 0, r
    else:
        assert_error(r, CODES["MaxTimeMSExpired"], "MaxTimeMSExpired")
    assert_ok(a.run({"find": "c", "filter": {}}), "the transaction is still open")
    assert_ok(a.commit())
    assert doc(c0, db.name, 1) == {"_id": 1, "v": 100}


def test_plain_reads_do_not_wait_for_open_transactions(conns, db):
    c0, ca = conns(), conns()
    seed(c0, db.name, "c", [{"_id": 1, "v": 0}])
    a = Txn(ca, db.name)
    assert_ok(a.start(upd(1, {"$set": {"v": 100}})))
    started = time.monotonic()
    assert find_docs(c0, db.name, "c", maxTimeMS=5000) == [{"_id": 1, "v": 0}]
    r = assert_ok(c0.run({"aggregate": "c", "pipeline": [{"$count": "n"}], "cursor": {},
                          "maxTimeMS": 5000}, db.name))
    assert r["cursor"]["firstBatch"] == [{"n": 1}]
    assert time.monotonic() - started < 5
    assert_ok(a.abort())


def test_commit_is_atomic_across_collections_and_databases(server, conns, db):
    """Each transaction sets v=i on one document in db1.a and one in db2.b. A reader without
    snapshot reads a then b (then b then a): commits are ordered, so if commits are atomic the
    value read second is never behind the value read first."""
    c0 = conns()
    db1, db2 = db.name, db.name[:55] + "_2"
    seed(c0, db1, "a", [{"_id": "k", "v": 0}])
    seed(c0, db2, "b", [{"_id": "k", "v": 0}])
    stop = threading.Event()
    stats = {"reads": 0, "violations": []}

    def reader():
        with RawConn(server) as rc:
            flip = False
            while not stop.is_set():
                first, second = (("b", db2), ("a", db1)) if flip else (("a", db1), ("b", db2))
                v1 = find_docs(rc, first[1], first[0])[0]["v"]
                v2 = find_docs(rc, second[1], second[0])[0]["v"]
                if v2 < v1:
                    stats["violations"].append((first[0], v1, second[0], v2))
                stats["reads"] += 1
                flip = not flip

    rt = threading.Thread(target=reader, daemon=True)
    rt.start()
    try:
        cw = conns()
        lsid = new_lsid()
        n = 150
        for i in range(1, n + 1):
            t = Txn(cw, db1, lsid=lsid, number=i)
            assert_ok(t.start(upd("k", {"$set": {"v": i}}, coll="a")), "txn %d on %s.a" % (i, db1))
            assert_ok(t.run(upd("k", {"$set": {"v": i}}, coll="b"), db=db2),
                      "txn %d on %s.b" % (i, db2))
            assert_ok(t.commit(), "commit %d" % i)
    finally:
        stop.set()
        rt.join(30)
    assert not rt.is_alive(), "reader thread did not stop"
    assert not stats["violations"], "a commit was seen half-applied: %r" % stats["violations"][:5]
    assert stats["reads"] >= 20, "the reader barely ran (%d reads)" % stats["reads"]
    assert find_docs(c0, db1, "a") == [{"_id": "k", "v": n}]
    assert find_docs(c0, db2, "b") == [{"_id": "k", "v": n}]


def test_abort_leaves_no_trace(conns, db):
    c0, ca = conns(), conns()
    before_c = [{"_id": i, "v": i} for i in range(1, 6)]
    before_d = [{"_id": "x", "n": 1}]
    seed(c0, db.name, "c", before_c)
    seed(c0, db.name, "d", before_d)
    a = Txn(ca, db.name)
    assert_ok(a.start({"insert": "c", "documents": [{"_id": 10}, {"_id": 11}]}))
    assert_ok(a.run({"update": "c", "updates": [{"q": {"v": {"$gte": 3}}, "u": {"$inc": {"v": 100}},
                                                 "multi": True}]}))
    assert_ok(a.run({"delete": "c", "deletes": [{"q": {"_id": 1}, "limit": 1}]}))
    assert_ok(a.run(upd("y", {"$set": {"n": 2}}, coll="d", upsert=True)))
    assert_ok(a.run({"findAndModify": "d", "query": {"_id": "x"}, "remove": True}))
    assert_ok(a.run({"insert": "fresh", "documents": [{"_id": 1}]}))
    assert_ok(a.abort())
    assert find_docs(c0, db.name, "c") == before_c
    assert find_docs(c0, db.name, "d") == before_d
    assert find_docs(c0, db.name, "fresh") == []
    b = a.next()
    assert txn_find(b, "c", start=True) == before_c, "a later transaction sees the old state"
    assert_ok(b.commit())


def test_transaction_reads_its_own_writes(conns, db):
    c0, ca = conns(), conns()
    seed(c0, db.name, "c", [{"_id": 0, "k": 0, "tag": "old"}])
    a = Txn(ca, db.name)
    assert_ok(a.start({"insert": "c", "documents": [{"_id": i, "k": i} for i in range(1, 6)]}))
    assert [d["_id"] for d in txn_find(a, "c")] == [0, 1, 2, 3, 4, 5]
    assert [d["_id"] for d in txn_find(a, "c", {"k": {"$gt": 2}})] == [3, 4, 5]
    r = assert_ok(a.run({"aggregate": "c", "pipeline": [{"$match": {"k": {"$gte": 1}}},
                                                         {"$count": "n"}], "cursor": {}}))
    assert r["cursor"]["firstBatch"] == [{"n": 5}], r
    assert txn_find(a, "c", {"_id": 4}) == [{"_id": 4, "k": 4}], "find one by _id"
    r = assert_ok(a.run(upd(4, {"$set": {"seen": True}})), "update of an own insert")
    assert r["n"] == 1 and r["nModified"] == 1, r
    assert txn_find(a, "c", {"_id": 4}) == [{"_id": 4, "k": 4, "seen": True}]
    r = assert_ok(a.run({"delete": "c", "deletes": [{"q": {"_id": 5}, "limit": 1}]}),
                  "delete of an own insert")
    assert r["n"] == 1, r
    assert txn_find(a, "c", {"_id": 5}) == []
    assert_ok(a.run(upd(0, {"$set": {"tag": "new"}})))
    r = assert_ok(a.run({"findAndModify": "c", "query": {"_id": 0}, "update": {"$inc": {"k": 1}},
                         "new": True}))
    assert r["value"] == {"_id": 0, "k": 1, "tag": "new"}, r
    r = assert_ok(a.run({"distinct": "c", "key": "k"}))
    assert sorted(r["values"]) == [1, 2, 3, 4], r
    assert find_docs(c0, db.name, "c") == [{"_id": 0, "k": 0, "tag": "old"}], "nothing outside"
    assert_ok(a.commit())
    assert find_docs(c0, db.name, "c") == [
        {"_id": 0, "k": 1, "tag": "new"}, {"_id": 1, "k": 1}, {"_id": 2, "k": 2},
        {"_id": 3, "k": 3}, {"_id": 4, "k": 4, "seen": True}]
