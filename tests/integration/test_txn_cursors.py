"""Cursors belong to the session and transaction of the command that created them, as in a
MongoDB 7.0 replica-set member (src/mongo/db/commands/getmore_cmd.cpp validateLSID and
validateTxnNumber, checked right after the cursor is pinned and before its namespace):

  50736  getMore in a session of a cursor created outside any session
  50737  getMore without an lsid of a cursor created in a session
  50738  getMore in another session than the cursor's
  50739  getMore in a transaction of a cursor not created in a transaction
  50740  getMore without a txnNumber of a cursor created in a transaction
  50741  getMore in another transaction than the cursor's

None of these refusals kills the cursor: its own session (and transaction) goes on reading it.
A getMore inside the transaction is a statement of it: the session is checked out and the
transaction continued first, so after an abort it is NoSuchTransaction (251), after a commit
TransactionCommitted (256), and a refused getMore aborts the transaction like any failed
statement. killCursors is not bound to the session (jstests/core/txns/
kill_transaction_cursors_after_commit.js). Drivers' use (pymongo: implicit sessions, explicit
sessions, transactions) keeps working.
"""

import pytest
from bson import Int64
from pymongo.errors import OperationFailure

from txn_helpers import CODES, RawConn, Txn, assert_error, assert_ok, find_docs, new_lsid, seed

SESSION_NOT_IN_CURSOR = 50736
SESSION_MISSING = 50737
SESSION_MISMATCH = 50738
TXN_NOT_IN_CURSOR = 50739
TXN_MISSING = 50740
TXN_MISMATCH = 50741

# The uid mongod gives every session without authentication (SHA-256 of "" in base64); it
# prints a session as "<id> - <uid> - <txnNumber> - <txnUUID>".
NO_AUTH_UID = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


@pytest.fixture
def conn(server):
    c = RawConn(server)
    yield c
    c.close()


@pytest.fixture
def conn2(server):
    c = RawConn(server)
    yield c
    c.close()


def lsid_text(lsid):
    u = lsid["id"].hex()
    uuid = "-".join((u[:8], u[8:12], u[12:16], u[16:20], u[20:]))
    return "%s - %s -  - " % (uuid, NO_AUTH_UID)


def get_more(cid, coll="c", **fields):
    cmd = {"getMore": Int64(cid), "collection": coll, "batchSize": 1}
    cmd.update(fields)
    return cmd


def open_cursor(conn, db, lsid=None, coll="c"):
    """A find outside transactions (in session `lsid` when given) that leaves a cursor open."""
    cmd = {"find": coll, "filter": {}, "sort": {"_id": 1}, "batchSize": 1}
    if lsid is not None:
        cmd["lsid"] = lsid
    r = assert_ok(conn.run(cmd, db), "find")
    assert r["cursor"]["id"] != 0, r
    return r["cursor"]["id"], r["cursor"]["firstBatch"]


def batch(reply):
    return [d["_id"] for d in reply["cursor"]["nextBatch"]]


# -- sessions ---------------------------------------------------------------------------------

def test_getmore_in_a_session_of_a_cursor_created_outside_sessions(conn, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    cid, _ = open_cursor(conn, db.name)
    lsid = new_lsid()
    assert_error(conn.run(get_more(cid, lsid=lsid), db.name), SESSION_NOT_IN_CURSOR,
                 "Location50736",
                 msg="Cannot run getMore on cursor %d, which was not created in a session, in "
                     "session %s" % (cid, lsid_text(lsid)))
    assert batch(assert_ok(conn.run(get_more(cid), db.name))) == [1]


def test_getmore_without_lsid_of_a_session_cursor(conn, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    lsid = new_lsid()
    cid, _ = open_cursor(conn, db.name, lsid)
    r = assert_error(conn.run(get_more(cid), db.name), SESSION_MISSING, "Location50737")
    assert r["errmsg"] == ("Cannot run getMore on cursor %d, which was created in session %s, "
                           "without an lsid" % (cid, lsid_text(lsid))), r
    assert batch(assert_ok(conn.run(get_more(cid, lsid=lsid), db.name))) == [1]


def test_getmore_in_another_session(conn, conn2, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    mine, other = new_lsid(), new_lsid()
    cid, _ = open_cursor(conn, db.name, mine)
    r = assert_error(conn2.run(get_more(cid, lsid=other), db.name), SESSION_MISMATCH,
                     "Location50738")
    # mongod's message names both sessions; Cairn's error messages stop at 255 bytes.
    full = ("Cannot run getMore on cursor %d, which was created in session %s, in session %s"
            % (cid, lsid_text(mine), lsid_text(other)))
    assert r["errmsg"] == full[:255], r
    # Any connection may use the session.
    assert batch(assert_ok(conn2.run(get_more(cid, lsid=mine), db.name))) == [1]
    assert batch(assert_ok(conn.run(get_more(cid, lsid=mine, batchSize=10), db.name))) == [2, 3]


def test_session_is_checked_before_the_namespace(conn, db):
    """mongod validates lsid and txnNumber before comparing namespaces (Unauthorized 13)."""
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    lsid = new_lsid()
    cid, _ = open_cursor(conn, db.name, lsid)
    assert_error(conn.run(get_more(cid, coll="other", lsid=new_lsid()), db.name),
                 SESSION_MISMATCH)
    assert_error(conn.run(get_more(cid, coll="other", lsid=lsid), db.name),
                 CODES["Unauthorized"])
    assert batch(assert_ok(conn.run(get_more(cid, lsid=lsid), db.name))) == [1]


def test_cursor_not_found_comes_before_the_session(conn, db):
    assert_error(conn.run(get_more(123456789, lsid=new_lsid()), db.name), 43, "CursorNotFound")


def test_list_collections_cursor_is_bound_to_its_session(conn, db):
    for i in range(3):
        assert_ok(conn.run({"create": "c%d" % i}, db.name))
    lsid = new_lsid()
    r = assert_ok(conn.run({"listCollections": 1, "cursor": {"batchSize": 1}, "lsid": lsid},
                           db.name))
    cid = r["cursor"]["id"]
    assert cid != 0, r
    coll = "$cmd.listCollections"
    assert_error(conn.run(get_more(cid, coll=coll), db.name), SESSION_MISSING)
    assert_error(conn.run(get_more(cid, coll=coll, lsid=new_lsid()), db.name), SESSION_MISMATCH)
    assert len(assert_ok(conn.run(get_more(cid, coll=coll, lsid=lsid, batchSize=10),
                                  db.name))["cursor"]["nextBatch"]) == 2


# -- transactions -----------------------------------------------------------------------------

def test_getmore_inside_the_transaction_reads_its_writes(conn, db):
    seed(conn, db.name, "c", [{"_id": 0}])
    t = Txn(conn, db.name)
    assert_ok(t.start({"insert": "c", "documents": [{"_id": i} for i in range(1, 5)]}))
    r = assert_ok(t.run({"find": "c", "filter": {}, "batchSize": 2}))
    cid = r["cursor"]["id"]
    got = [d["_id"] for d in r["cursor"]["firstBatch"]]
    while cid != 0:
        r = assert_ok(t.run({"getMore": Int64(cid), "collection": "c", "batchSize": 2}))
        got += [d["_id"] for d in r["cursor"]["nextBatch"]]
        cid = r["cursor"]["id"]
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert_ok(t.commit())


def test_getmore_of_a_transaction_cursor_without_lsid(conn, conn2, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    t = Txn(conn, db.name)
    r = assert_ok(t.start({"find": "c", "filter": {}, "sort": {"_id": 1}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    assert_error(conn2.run(get_more(cid), db.name), SESSION_MISSING, "Location50737",
                 msg="which was created in session %s, without an lsid" % lsid_text(t.lsid))
    # Refused before the transaction was touched: it goes on.
    r = assert_ok(t.run({"getMore": Int64(cid), "collection": "c", "batchSize": 1}))
    assert batch(r) == [1]
    assert_ok(t.commit())


def test_getmore_of_a_transaction_cursor_without_txn_number(conn, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    t = Txn(conn, db.name, number=7)
    r = assert_ok(t.start({"find": "c", "filter": {}, "sort": {"_id": 1}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    r = assert_error(conn.run(get_more(cid, lsid=t.lsid), db.name), TXN_MISSING, "Location50740")
    assert r["errmsg"] == ("Cannot run getMore on cursor %d, which was created in transaction 7, "
                           "without a txnNumber" % cid), r
    assert "errorLabels" not in r, r
    # Not a statement of the transaction: it is still open.
    assert batch(assert_ok(t.run({"getMore": Int64(cid), "collection": "c",
                                  "batchSize": 1}))) == [1]
    assert_ok(t.commit())


def test_getmore_of_a_transaction_cursor_from_another_session(conn, conn2, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    t = Txn(conn, db.name)
    r = assert_ok(t.start({"find": "c", "filter": {}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    other = Txn(conn2, db.name)
    assert_ok(other.start({"find": "c", "filter": {"_id": -1}}))
    # Another session's transaction with the same txnNumber: still the wrong session.
    assert_error(other.run({"getMore": Int64(cid), "collection": "c"}), SESSION_MISMATCH)
    assert_error(conn2.run(get_more(cid, lsid=new_lsid()), db.name), SESSION_MISMATCH)
    assert_ok(t.abort())


def test_getmore_in_a_transaction_of_a_cursor_created_outside_it(conn, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    lsid = new_lsid()
    cid, _ = open_cursor(conn, db.name, lsid)
    t = Txn(conn, db.name, lsid=lsid, number=3)
    assert_ok(t.start({"find": "c", "filter": {"_id": -1}}))
    r = assert_error(t.run(get_more(cid)), TXN_NOT_IN_CURSOR, "Location50739")
    assert r["errmsg"] == ("Cannot run getMore on cursor %d, which was not created in a "
                           "transaction, in transaction 3" % cid), r
    # A failed statement aborts the transaction, as in mongod.
    assert_error(t.commit(), CODES["NoSuchTransaction"])
    # The cursor itself is intact for getMores outside transactions.
    assert batch(assert_ok(conn.run(get_more(cid, lsid=lsid), db.name))) == [1]


def test_getmore_in_a_transaction_of_a_cursor_created_outside_sessions(conn, db):
    """validateLSID comes first: 50736, not 50739."""
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    cid, _ = open_cursor(conn, db.name)
    t = Txn(conn, db.name)
    assert_ok(t.start({"find": "c", "filter": {"_id": -1}}))
    assert_error(t.run(get_more(cid)), SESSION_NOT_IN_CURSOR)
    assert_ok(conn.run(get_more(cid), db.name))


def test_getmore_in_a_later_transaction_of_the_session(conn, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    t1 = Txn(conn, db.name, number=1)
    r = assert_ok(t1.start({"find": "c", "filter": {}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    assert_ok(t1.commit())
    t2 = t1.next()
    assert_ok(t2.start({"find": "c", "filter": {"_id": -1}}))
    r = assert_error(t2.run(get_more(cid)), TXN_MISMATCH, "Location50741")
    assert r["errmsg"] == ("Cannot run getMore on cursor %d, which was created in transaction 1, "
                           "in transaction 2" % cid), r
    assert_error(t2.commit(), CODES["NoSuchTransaction"])


def test_getmore_after_the_transaction_committed(conn, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    t = Txn(conn, db.name)
    r = assert_ok(t.start({"find": "c", "filter": {}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    assert_ok(t.commit())
    assert_error(t.run(get_more(cid)), CODES["TransactionCommitted"])
    assert_error(conn.run(get_more(cid, lsid=t.lsid), db.name), TXN_MISSING)
    assert_error(conn.run(get_more(cid), db.name), SESSION_MISSING)


def test_getmore_after_the_transaction_aborted_returns_no_staged_writes(conn, db):
    seed(conn, db.name, "c", [{"_id": 0}])
    t = Txn(conn, db.name)
    assert_ok(t.start({"insert": "c", "documents": [{"_id": i, "ghost": 1} for i in range(1, 6)]}))
    r = assert_ok(t.run({"find": "c", "filter": {"ghost": 1}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    assert cid != 0, r
    assert_ok(t.abort())
    assert_error(t.run(get_more(cid)), CODES["NoSuchTransaction"])
    assert_error(conn.run(get_more(cid, lsid=t.lsid), db.name), TXN_MISSING)
    assert_error(conn.run(get_more(cid), db.name), SESSION_MISSING)
    assert_error(conn.run(get_more(cid, lsid=new_lsid()), db.name), SESSION_MISMATCH)
    assert find_docs(conn, db.name, "c") == [{"_id": 0}]


def test_getmore_with_txn_number_but_no_autocommit_is_refused_before_the_cursor(conn, db):
    """getMore is not a retryable write: dispatch refuses the txnNumber alone (50768)."""
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    t = Txn(conn, db.name)
    r = assert_ok(t.start({"find": "c", "filter": {}, "sort": {"_id": 1}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    assert_error(conn.run(get_more(cid, lsid=t.lsid, txnNumber=Int64(1)), db.name),
                 CODES["NotARetryableWriteCommand"])
    assert batch(assert_ok(t.run(get_more(cid)))) == [1]
    assert_ok(t.commit())


def test_aggregate_cursor_of_a_transaction(conn, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(5)])
    t = Txn(conn, db.name)
    r = assert_ok(t.start({"aggregate": "c", "pipeline": [{"$sort": {"_id": 1}}],
                           "cursor": {"batchSize": 1}}))
    cid = r["cursor"]["id"]
    assert_error(conn.run(get_more(cid, lsid=t.lsid), db.name), TXN_MISSING)
    assert batch(assert_ok(t.run(get_more(cid, batchSize=10)))) == [1, 2, 3, 4]
    assert_ok(t.commit())


def test_kill_cursors_of_a_transaction_cursor_from_outside(conn, conn2, db):
    """killCursors is not bound to the cursor's session or transaction."""
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    t = Txn(conn, db.name)
    r = assert_ok(t.start({"find": "c", "filter": {}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    r = assert_ok(conn2.run({"killCursors": "c", "cursors": [Int64(cid)]}, db.name))
    assert r["cursorsKilled"] == [cid], r
    assert_error(t.run(get_more(cid)), 43, "CursorNotFound")
    # The failed getMore aborted the transaction.
    assert_error(t.commit(), CODES["NoSuchTransaction"])


def test_kill_cursors_inside_the_transaction(conn, db):
    seed(conn, db.name, "c", [{"_id": i} for i in range(4)])
    t = Txn(conn, db.name)
    r = assert_ok(t.start({"find": "c", "filter": {}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    r = assert_ok(t.run({"killCursors": "c", "cursors": [Int64(cid)]}))
    assert r["cursorsKilled"] == [cid], r
    assert_ok(t.commit())


# -- drivers ----------------------------------------------------------------------------------

def test_pymongo_cursor_inside_a_transaction(client, db):
    coll = db.c
    coll.insert_many([{"_id": i} for i in range(7)])
    with client.start_session() as s:
        with s.start_transaction():
            coll.insert_one({"_id": 7}, session=s)
            got = [d["_id"] for d in coll.find({}, batch_size=2, session=s)]
            assert sorted(got) == list(range(8))
            got = [d["_id"] for d in coll.aggregate([{"$sort": {"_id": -1}}], batchSize=3,
                                                     session=s)]
            assert got == list(range(7, -1, -1))
    assert coll.count_documents({}) == 8


def test_pymongo_implicit_session_cursor(db):
    coll = db.c
    coll.insert_many([{"_id": i} for i in range(25)])
    assert [d["_id"] for d in coll.find({}, batch_size=2).sort("_id", 1)] == list(range(25))
    assert len(list(db.list_collections(batchSize=1))) == 1


def test_pymongo_explicit_session_cursor_outside_transactions(client, db):
    coll = db.c
    coll.insert_many([{"_id": i} for i in range(9)])
    with client.start_session() as s:
        got = [d["_id"] for d in coll.find({}, batch_size=2, session=s).sort("_id", 1)]
    assert got == list(range(9))


def test_pymongo_transaction_cursor_iterated_after_commit_is_refused(client, db):
    """pymongo sends the getMore with the session's lsid and no txnNumber once the transaction
    is over: 50740, as mongod answers."""
    coll = db.c
    coll.insert_many([{"_id": i} for i in range(6)])
    with client.start_session() as s:
        s.start_transaction()
        cur = coll.find({}, batch_size=2, session=s)
        assert next(cur)["_id"] == 0
        s.commit_transaction()
        with pytest.raises(OperationFailure) as exc:
            list(cur)
        assert exc.value.code == TXN_MISSING, exc.value.details
