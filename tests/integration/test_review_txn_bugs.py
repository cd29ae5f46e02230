"""Review findings on transactions, sessions and retryable writes (concurrent-writers change).

Each test pins one bug found in review; it fails until the bug is fixed. What mongod 7.0 does
is the reference (wire-protocol.md §4-§5 and the jstests cited per test).
"""

import os
import time

import pytest
from bson import Int64

from txn_helpers import (
    CODES, RawConn, Txn, assert_ok, find_docs, new_lsid, retryable, seed)


@pytest.fixture
def conn(server):
    c = RawConn(server, timeout=120.0)
    yield c
    c.close()


@pytest.fixture
def conn2(server):
    c = RawConn(server, timeout=120.0)
    yield c
    c.close()


# -- retryable writes: multi:true / limit:0 -----------------------------------------------------

def test_retryable_multi_update_is_not_applied_twice(conn, conn2, db):
    """A multi:true update in a retryable write: mongod refuses the statement with a writeError
    InvalidOptions (72) "Cannot use (or request) retryable writes with multi=true"
    (write_ops_exec.cpp; jstests/replsets/retryable_writes_direct_write_to_config_transactions
    / retryable_writes runMultiTests). Cairn runs it; when the statement meets an intent it
    commits the documents it updated so far WITHOUT the statement's record (lock_key flushes),
    then the wait fails (maxTimeMS) and a retry with the same txnNumber runs the whole
    statement again: the documents of the first part are incremented twice."""
    seed(conn, db.name, "c", [{"_id": i, "x": 0} for i in range(1, 6)])
    holder = Txn(conn2, db.name)
    assert_ok(holder.start({"update": "c", "updates": [{"q": {"_id": 3},
                                                         "u": {"$set": {"held": True}}}]}))
    lsid = new_lsid()
    cmd = retryable({"update": "c", "updates": [{"q": {}, "u": {"$inc": {"x": 1}},
                                                 "multi": True}]}, lsid, 1)
    first = conn.run(dict(cmd, maxTimeMS=300), db.name)
    assert_ok(holder.abort())
    refused = (first.get("ok") == 1.0 and first.get("writeErrors")
               and first["writeErrors"][0]["code"] == CODES["InvalidOptions"])
    if refused:
        return  # mongod's answer: nothing ran
    retry = conn.run(cmd, db.name)
    docs = find_docs(conn, db.name, "c")
    twice = [d["_id"] for d in docs if d.get("x", 0) > 1]
    assert not twice, ("first attempt %r, retry %r: documents %r were incremented twice by one "
                       "retryable statement; all docs: %r" % (first, retry, twice, docs))


def test_retryable_multi_delete_is_refused(conn, db):
    """mongod: a delete with limit 0 in a retryable write is a writeError 72 (only that
    statement; the others of the batch run)."""
    seed(conn, db.name, "c", [{"_id": 1, "x": 1}, {"_id": 2, "y": 1}])
    r = assert_ok(conn.run(retryable({"delete": "c", "deletes": [
        {"q": {"x": 1}, "limit": 1}, {"q": {"y": 1}, "limit": 0}], "ordered": False},
        new_lsid(), 1), db.name))
    errs = r.get("writeErrors", [])
    assert [(e["index"], e["code"]) for e in errs] == [(1, CODES["InvalidOptions"])], r


# -- transaction cursors -------------------------------------------------------------------------

def test_cursor_of_aborted_transaction_returns_no_uncommitted_writes(conn, db):
    """A cursor opened inside a transaction reads the transaction's own writes. After the
    transaction aborts, a getMore must not hand out those writes (mongod kills the cursor and
    refuses a getMore without the transaction's txnNumber: 50740). Cairn's getMore checks
    neither the session nor the transaction, and the scan copied the staged writes when it
    opened, so it returns documents that were never committed."""
    seed(conn, db.name, "c", [{"_id": 0}])
    txn = Txn(conn, db.name)
    assert_ok(txn.start({"insert": "c", "documents": [{"_id": i, "ghost": True}
                                                      for i in range(1, 6)]}))
    r = assert_ok(txn.run({"find": "c", "filter": {"ghost": True}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    assert cid != 0, r
    assert_ok(txn.abort())
    more = conn.run({"getMore": Int64(cid), "collection": "c"}, db.name)
    leaked = more.get("cursor", {}).get("nextBatch", []) if more.get("ok") == 1.0 else []
    assert find_docs(conn, db.name, "c") == [{"_id": 0}]
    assert not leaked, "getMore after abort returned uncommitted documents: %r" % (more,)


def test_getmore_of_transaction_cursor_outside_the_transaction_is_refused(conn, conn2, db):
    """mongod 50740: "Cannot run getMore on cursor N, which was created in transaction T,
    without a txnNumber". Cairn lets any connection drive the transaction's cursor while the
    transaction's own commands run on its write set (an unsynchronised reader of w->ops)."""
    seed(conn, db.name, "c", [{"_id": i} for i in range(10)])
    txn = Txn(conn, db.name)
    r = assert_ok(txn.start({"find": "c", "filter": {}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    more = conn2.run({"getMore": Int64(cid), "collection": "c"}, db.name)
    txn.abort()
    assert more.get("ok") == 0.0, "getMore outside the transaction was served: %r" % (more,)


# -- sizes: a commit carries the write and the session record -------------------------------------

def test_retryable_find_and_modify_of_a_large_document(conn, db):
    """A findAndModify (retryable, as every driver sends it by default) of a 13 MB document:
    the commit carries the new version (13 MB) and the session record holding the reply's
    `value` (13 MB again): 26 MB > REPL_MAX_COMMIT_BYTES (24 MB), so a valid command fails
    with 10334. mongod keeps images apart from the write (config.image_collection)."""
    big = "x" * (13 << 20)
    seed(conn, db.name, "c", [{"_id": 1, "pad": big, "n": 0}])
    r = conn.run(retryable({"findAndModify": "c", "query": {"_id": 1},
                            "update": {"$inc": {"n": 1}}, "new": True},
                           new_lsid(), 1), db.name)
    assert r.get("ok") == 1.0, {k: v for k, v in r.items() if k != "value"}
    assert r["value"]["n"] == 1


def test_insert_batch_just_under_the_flush_threshold_then_a_16mb_document(db):
    """flush_if_large flushes only AFTER staging, once TXN_FLUSH_BYTES (8 MiB) is passed: a
    batch that has just under 8 MiB staged and then stages a 16 MiB document commits ~24 MiB
    plus framing, above REPL_MAX_COMMIT_BYTES (24 MiB): the insert fails with 10334 although
    every document is within limits and the message is below 48 MB."""
    max_doc = 16 * 1024 * 1024
    failures = []
    for slack in (70, 80):
        coll = "c%d" % slack
        # First document: staged bytes (doc + key + 64) just below 8 MiB.
        pad1 = 8 * 1024 * 1024 - slack - 64 - 40
        d1 = {"_id": 1, "p": "a" * pad1}
        d2 = {"_id": 2, "p": ""}
        overhead = len(__import__("bson").encode(d2))
        d2["p"] = "b" * (max_doc - overhead)
        try:  # pymongo sends both in one OP_MSG document sequence (< 48 MB)
            db[coll].insert_many([d1, d2])
        except Exception as exc:  # noqa: BLE001 - report every failing size
            failures.append((slack, getattr(exc, "code", None), str(exc)[:200]))
    assert not failures, failures


# -- upserts meeting an intent ---------------------------------------------------------------------

def test_upsert_that_waited_for_an_insert_of_the_same_id_updates_it(conn, conn2, db):
    """An upsert {_id: 7} whose view had no document 7 goes to insert it, meets the intent of a
    transaction inserting 7, waits, and then finds 7 committed: it must update it (mongod
    retries the upsert after the write conflict / duplicate key on an _id equality:
    performSingleUpdateOpWithDupKeyRetry), not fail with E11000. Cairn's do_upsert calls
    txn_write_insert after the wait and reports a duplicate key for an upsert."""
    seed(conn, db.name, "c", [{"_id": 0}])
    holder = Txn(conn2, db.name)
    assert_ok(holder.start({"insert": "c", "documents": [{"_id": 7, "n": 10}]}))
    from txn_helpers import Background
    bg = Background(conn.run, {"update": "c", "updates": [
        {"q": {"_id": 7}, "u": {"$inc": {"n": 1}}, "upsert": True}]}, db.name)
    time.sleep(0.5)  # the upsert takes its view and waits for the intent on _id 7
    assert_ok(holder.commit())
    r = bg.join(30)
    assert r.get("ok") == 1.0 and "writeErrors" not in r, r
    assert (r["n"], r["nModified"]) == (1, 1), r
    assert find_docs(conn, db.name, "c", {"_id": 7}) == [{"_id": 7, "n": 11}]


# -- retries with nothing left to run -------------------------------------------------------------

def test_fully_answered_retry_does_not_recreate_a_dropped_collection(conn, db):
    """A retry whose every statement is answered from the session record runs nothing; cairn's
    insert still resolves the collection with create=true first, so the retry of an insert into
    a collection dropped since recreates it (an empty collection the client never asked for)."""
    lsid = new_lsid()
    cmd = retryable({"insert": "gone", "documents": [{"_id": 1}]}, lsid, 1)
    assert_ok(conn.run(cmd, db.name))
    assert_ok(conn.run({"drop": "gone"}, db.name))
    retry = assert_ok(conn.run(cmd, db.name))
    assert retry.get("retriedStmtIds") == [0], retry
    names = [c["name"] for c in assert_ok(conn.run({"listCollections": 1}, db.name))
             ["cursor"]["firstBatch"]]
    assert "gone" not in names, "a fully answered retry created the collection again"


# -- cost of the session record ------------------------------------------------------------------

def _raft_bytes(srv):
    total = 0
    for root, _dirs, files in os.walk(os.path.join(srv.dbpath, "raft")):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def test_retryable_update_batch_log_volume_is_linear(server_factory):
    """Every statement of an update/delete batch commits on its own, and each commit carries the
    WHOLE session record of the retryable write (every earlier statement's result:
    txn_session_record_build): bytes written grow with n^2. Measured: 1000 updates 0.45 s,
    2000: 1.9 s, 4000: 5-14 s and 561 MB of raft log (plain updates: 0.02/0.06/0.09 s).
    A driver's bulk_write of 100,000 UpdateOne (one batch, retryable by default) never ends.
    Asserted on the raft log growth, which does not depend on the machine's speed."""
    srv = server_factory()
    conn = RawConn(srv, timeout=300)
    n = 3000
    seed(conn, "q", "c", [{"_id": i, "x": 0} for i in range(n)])
    ups = [{"q": {"_id": i}, "u": {"$inc": {"x": 1}}} for i in range(n)]
    before = _raft_bytes(srv)
    assert_ok(conn.run({"update": "c", "updates": ups}, "q"))
    plain = _raft_bytes(srv) - before
    before = _raft_bytes(srv)
    r = assert_ok(conn.run(retryable({"update": "c", "updates": ups}, new_lsid(), 1), "q"))
    retr = _raft_bytes(srv) - before
    conn.close()
    assert r["nModified"] == n
    assert retr < 4 * plain + (4 << 20), \
        "raft log grew %d bytes for %d retryable updates, %d for the same plain updates" % (
            retr, n, plain)


# -- a plain write racing a drop --------------------------------------------------------------------

def _running(conn, first_key, coll):
    """Whether a command `first_key` on collection `coll` is in progress (currentOp)."""
    ops = assert_ok(conn.run({"currentOp": 1}, "admin"))["inprog"]
    return any(next(iter(op.get("command", {"": None}))) == first_key and
               op["command"].get(first_key) == coll for op in ops)


def _await(cond, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.02)


def test_plain_insert_racing_a_drop_is_not_a_write_conflict(server, conn, conn2, db):
    """A plain insert flushes its first part when it meets an intent and waits; meanwhile the
    collection is dropped. The client of a NON-transactional insert got WriteConflict (112),
    which drivers do not retry outside transactions. Now a write holds a shared intent on its
    namespace until it ends, so the drop waits for it (and for the transaction that wrote into
    the collection, as mongod's drop waits for its lock); the insert completes whole."""
    seed(conn, db.name, "c", [{"_id": 0}])
    holder = Txn(conn2, db.name)
    assert_ok(holder.start({"insert": "c", "documents": [{"_id": 5}]}))
    from txn_helpers import Background
    watcher = RawConn(server)
    other = RawConn(server, timeout=120.0)
    try:
        bg = Background(conn.run, {"insert": "c", "documents": [{"_id": 1}, {"_id": 5}]},
                        db.name)
        _await(lambda: _running(watcher, "insert", "c"), "the insert to wait for _id 5")
        drop = Background(other.run, {"drop": "c"}, db.name)
        _await(lambda: _running(watcher, "drop", "c"), "the drop to wait for the writers")
        assert not drop.done.is_set()
        assert_ok(holder.abort())
        r = bg.join(30)
        assert r.get("ok") == 1.0 and r.get("n") == 2 and "writeErrors" not in r, r
        assert_ok(drop.join(30))
        assert find_docs(watcher, db.name, "c") == []
    finally:
        watcher.close()
        other.close()


# -- stmtId arithmetic ------------------------------------------------------------------------------

def test_stmt_id_near_int32_max_is_not_undefined_behaviour(server_factory):
    """stmtId + i computed in int32 overflowed (signed overflow, reported by a UBSan build;
    server_factory fails the test on any sanitizer report). As mongod, the ids wrap past
    INT32_MAX, and a retry is answered from the record."""
    srv = server_factory()
    c = RawConn(srv)
    cmd = retryable({"insert": "c", "documents": [{"_id": 1}, {"_id": 2}, {"_id": 3}],
                     "stmtId": 2147483646}, new_lsid(), 1)
    try:
        assert assert_ok(c.run(cmd, "ub"))["n"] == 3
        retry = assert_ok(c.run(cmd, "ub"))
        assert retry["n"] == 3 and retry.get("retriedStmtIds") == [
            2147483646, 2147483647, -2147483648], retry
        assert find_docs(c, "ub", "c") == [{"_id": 1}, {"_id": 2}, {"_id": 3}]
    finally:
        c.close()
