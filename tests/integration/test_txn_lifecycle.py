"""The per-session transaction state machine (wire-protocol.md §4.2-§4.4), pinned with raw
commands carrying explicit lsid / txnNumber / autocommit / startTransaction, as a MongoDB 7.0
replica-set member answers them (mongod's TransactionParticipant::beginOrContinue,
_continueMultiDocumentTransaction, _checkIsCommandValidWithTxnState,
initializeOperationSessionInfo, txn_cmds.cpp and error_labels.cpp).

Two kinds of refusal are distinguished, as in mongod: errors raised before the session is
checked out (bad session fields, readConcern/writeConcern on a later statement, startTransaction
at the active number, commands not allowed in transactions) leave an open transaction as it
was; errors raised while a statement runs inside the transaction (DuplicateKey, a refused write,
WriteConflict) abort it, and its next statement or commit gets NoSuchTransaction.
"""

import pytest
from bson import Int64, Timestamp

from txn_helpers import (
    CODES, TRANSIENT, RawConn, Txn, assert_code_in, assert_error, assert_ok, cluster_time,
    find_docs, new_lsid, retryable, seed, ts_add, txn_find)


@pytest.fixture
def conn(server):
    c = RawConn(server)
    yield c
    c.close()


def ins(*ids, coll="c"):
    return {"insert": coll, "documents": [{"_id": i} for i in ids]}


def ids(docs):
    return [d["_id"] for d in docs]


# -- commit and abort ----------------------------------------------------------------------

def test_commit_makes_writes_visible_abort_discards_them(conn, db):
    t = Txn(conn, db.name)
    r = assert_ok(t.start(ins(1, 2)), "first statement")
    assert r["n"] == 2
    assert ids(txn_find(t, "c")) == [1, 2], "a transaction reads its own writes"
    assert find_docs(conn, db.name, "c") == [], "uncommitted writes are invisible outside"
    assert_ok(t.commit(), "commitTransaction")
    assert ids(find_docs(conn, db.name, "c")) == [1, 2]

    t2 = t.next()
    assert_ok(t2.start(ins(3)))
    assert_ok(t2.run({"delete": "c", "deletes": [{"q": {"_id": 1}, "limit": 1}]}))
    assert_ok(t2.abort(), "abortTransaction")
    assert ids(find_docs(conn, db.name, "c")) == [1, 2], "an aborted transaction leaves no trace"


# -- txnNumber ordering --------------------------------------------------------------------

def test_lower_txn_number_is_transaction_too_old(conn, db):
    t5 = Txn(conn, db.name, number=5)
    assert_ok(t5.start(ins(1)))
    assert_ok(t5.commit())
    t4 = Txn(conn, db.name, lsid=t5.lsid, number=4)
    assert_error(t4.start(ins(2)), CODES["TransactionTooOld"], "TransactionTooOld", labels=[],
                 msg="because a newer transaction", what="startTransaction at 4 after 5")
    assert_error(t4.run(ins(2)), CODES["TransactionTooOld"], "TransactionTooOld", labels=[],
                 what="continue at 4 after 5")
    assert_error(t4.commit(), CODES["TransactionTooOld"], "TransactionTooOld", labels=[],
                 what="commit at 4 after 5")
    r = conn.run(retryable(ins(2), t5.lsid, 4), db.name)
    assert_error(r, CODES["TransactionTooOld"], "TransactionTooOld", labels=[],
                 msg="Retryable write with txnNumber 4 is prohibited on session",
                 what="retryable write at 4 after 5")
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_continue_unknown_number_is_no_such_transaction(conn, db):
    t = Txn(conn, db.name, number=3)
    assert_error(t.run(ins(1)), CODES["NoSuchTransaction"], "NoSuchTransaction",
                 labels=[TRANSIENT], msg="does not match any in-progress transactions",
                 what="autocommit:false without startTransaction on a new session")
    assert_error(t.commit(), CODES["NoSuchTransaction"], "NoSuchTransaction", labels=[TRANSIENT],
                 what="commit of a transaction that never started")
    assert_error(t.abort(), CODES["NoSuchTransaction"], "NoSuchTransaction", labels=[TRANSIENT],
                 what="abort of a transaction that never started")
    assert_ok(t.start(ins(1)))
    assert_ok(t.commit())
    t4 = t.next()
    assert_error(t4.run(ins(2)), CODES["NoSuchTransaction"], "NoSuchTransaction",
                 labels=[TRANSIENT], msg="does not match any in-progress transactions",
                 what="continue at a number above the committed one")
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_transaction_statement_at_a_retryable_write_number(conn, db):
    lsid = new_lsid()
    assert_ok(conn.run(retryable(ins(1), lsid, 1), db.name), "retryable write")
    t = Txn(conn, db.name, lsid=lsid, number=1)
    assert_error(t.run(ins(2)), CODES["NoSuchTransaction"], "NoSuchTransaction",
                 labels=[TRANSIENT], what="continue a transaction at a retryable write's number")
    assert_error(t.start(ins(3)), CODES["ConflictingOperationInProgress"],
                 "ConflictingOperationInProgress", labels=[],
                 what="start a transaction at a retryable write's number")
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_retryable_write_at_a_transaction_number_is_incomplete_history(conn, db):
    t = Txn(conn, db.name, number=2)
    assert_ok(t.start(ins(1)))
    r = conn.run(retryable(ins(2), t.lsid, 2), db.name)
    assert_error(r, CODES["IncompleteTransactionHistory"], "IncompleteTransactionHistory",
                 labels=[], msg="Cannot retry a retryable write that has been converted into a "
                 "transaction", what="retryable write at an open transaction's number")
    assert_ok(t.commit(), "the open transaction is unaffected")
    r = conn.run(retryable(ins(3), t.lsid, 2), db.name)
    assert_error(r, CODES["IncompleteTransactionHistory"], "IncompleteTransactionHistory",
                 what="retryable write at a committed transaction's number")
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_start_at_active_number_is_conflicting_operation(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(1)))
    assert_error(t.start({"find": "c", "filter": {}}), CODES["ConflictingOperationInProgress"],
                 "ConflictingOperationInProgress", labels=[],
                 msg="Only servers in a sharded cluster can start a new transaction at the active "
                 "transaction number", what="second startTransaction at the same number")
    assert_ok(t.run(ins(2)), "the open transaction goes on")
    assert_ok(t.commit())
    assert ids(find_docs(conn, db.name, "c")) == [1, 2]
    assert_error(t.start(ins(3)), CODES["ConflictingOperationInProgress"],
                 "ConflictingOperationInProgress", labels=[],
                 what="startTransaction at a committed transaction's number")
    assert ids(find_docs(conn, db.name, "c")) == [1, 2]


# -- after commit / after abort ------------------------------------------------------------

def test_statement_after_commit_is_transaction_committed(conn, db):
    t = Txn(conn, db.name, number=7)
    assert_ok(t.start(ins(1)))
    assert_ok(t.commit())
    assert_error(t.run(ins(2)), CODES["TransactionCommitted"], "TransactionCommitted",
                 labels=[], msg="has been committed", what="insert after commit")
    assert_error(t.run({"find": "c", "filter": {}}), CODES["TransactionCommitted"],
                 "TransactionCommitted", labels=[], what="find after commit")
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_commit_of_committed_transaction_succeeds_again(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(1)))
    assert_ok(t.commit())
    r = assert_ok(t.commit(), "second commit")
    assert "writeConcernError" not in r and "errorLabels" not in r, r
    # A driver's retry of commit arrives with w:majority and wtimeout (transactions spec).
    r = assert_ok(t.commit(writeConcern={"w": "majority", "wtimeout": 10000}),
                  "retried commit with majority write concern")
    assert "writeConcernError" not in r, r
    assert_ok(t.commit(writeConcern={"w": 1}), "retried commit with w:1")
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_abort_after_commit_is_transaction_committed(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(1)))
    assert_ok(t.commit())
    assert_error(t.abort(), CODES["TransactionCommitted"], "TransactionCommitted", labels=[],
                 msg="has been committed", what="abort after commit")
    assert_ok(t.commit(), "commit still answers success")
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_commit_or_abort_or_statement_after_abort_is_no_such_transaction(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(1)))
    assert_ok(t.abort())
    assert_error(t.commit(), CODES["NoSuchTransaction"], "NoSuchTransaction",
                 labels=[TRANSIENT], what="commit after abort")
    assert_error(t.abort(), CODES["NoSuchTransaction"], "NoSuchTransaction",
                 labels=[TRANSIENT], what="abort after abort")
    assert_error(t.run(ins(2)), CODES["NoSuchTransaction"], "NoSuchTransaction",
                 labels=[TRANSIENT], msg="has been aborted", what="statement after abort")
    assert find_docs(conn, db.name, "c") == []
    t2 = t.next()
    assert_ok(t2.start(ins(3)), "a new number starts a new transaction after an abort")
    assert_ok(t2.commit())
    assert ids(find_docs(conn, db.name, "c")) == [3]


def test_new_transaction_aborts_the_open_one(conn, db):
    t1 = Txn(conn, db.name, number=1)
    assert_ok(t1.start(ins("a")))
    t2 = t1.next()
    assert_ok(t2.start(ins("b")), "startTransaction at a higher number")
    assert_ok(t2.commit())
    assert ids(find_docs(conn, db.name, "c")) == ["b"]
    assert_error(t1.run(ins("a2")), CODES["TransactionTooOld"], what="statement of the old one")
    assert_error(t1.commit(), CODES["TransactionTooOld"], what="commit of the old one")

    t3 = t2.next()
    assert_ok(t3.start(ins("c")))
    assert_ok(conn.run(retryable(ins("d"), t3.lsid, 4), db.name),
              "a retryable write at a higher number")
    assert_error(t3.commit(), CODES["TransactionTooOld"],
                 what="commit of a transaction superseded by a retryable write")
    assert ids(find_docs(conn, db.name, "c")) == ["b", "d"]


# -- errors inside a transaction -----------------------------------------------------------

def test_duplicate_key_is_a_write_error_and_aborts(conn, db):
    seed(conn, db.name, "c", [{"_id": 1}])
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(2)))
    r = assert_ok(t.run(ins(3, 1, 4)), "insert batch hitting a duplicate")
    errs = r.get("writeErrors")
    assert errs and errs[0]["code"] == CODES["DuplicateKey"] and errs[0]["index"] == 1, r
    assert len(errs) == 1, "the batch stops at the first error: %r" % r
    assert "errorLabels" not in r, "DuplicateKey carries no label: %r" % r
    assert_error(t.run({"find": "c", "filter": {}}), CODES["NoSuchTransaction"],
                 "NoSuchTransaction", labels=[TRANSIENT], msg="aborted",
                 what="statement after the failed one")
    assert_error(t.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT],
                 what="commit after the failed statement")
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_failed_first_statement_aborts(conn, db):
    seed(conn, db.name, "c", [{"_id": 1}])
    t = Txn(conn, db.name)
    r = assert_ok(t.start(ins(5, 1)), "first statement hitting a duplicate")
    assert r["writeErrors"][0]["code"] == CODES["DuplicateKey"], r
    assert_error(t.run(ins(6)), CODES["NoSuchTransaction"], labels=[TRANSIENT],
                 what="second statement")
    assert_error(t.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT], what="commit")
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_update_error_aborts(conn, db):
    seed(conn, db.name, "c", [{"_id": 1, "a": "text"}])
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(2)))
    r = assert_ok(t.run({"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"a": 1}}}]}),
                  "$inc of a string")
    assert r.get("writeErrors") and r["writeErrors"][0]["code"] == 14, r
    assert_error(t.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT])
    assert ids(find_docs(conn, db.name, "c")) == [1]


# -- session fields ------------------------------------------------------------------------

BAD_FIELDS = [
    ("txnNumber without lsid", {"txnNumber": Int64(1)}, "InvalidOptions",
     "Transaction number requires a session ID"),
    ("autocommit without txnNumber", {"lsid": "LSID", "autocommit": False}, "InvalidOptions",
     "'autocommit' field requires a transaction number"),
    ("startTransaction without autocommit",
     {"lsid": "LSID", "txnNumber": Int64(1), "startTransaction": True}, "InvalidOptions",
     "'startTransaction' field requires 'autocommit' field"),
    ("autocommit true",
     {"lsid": "LSID", "txnNumber": Int64(1), "autocommit": True, "startTransaction": True},
     "InvalidOptions", "Specifying autocommit=true is not allowed"),
    ("startTransaction false",
     {"lsid": "LSID", "txnNumber": Int64(1), "autocommit": False, "startTransaction": False},
     "InvalidOptions", "Specifying startTransaction=false is not allowed"),
    ("negative txnNumber", {"lsid": "LSID", "txnNumber": Int64(-1)}, "InvalidOptions",
     "Transaction number cannot be negative"),
]


@pytest.mark.parametrize("case", BAD_FIELDS, ids=[c[0] for c in BAD_FIELDS])
def test_bad_session_fields_are_refused(conn, db, case):
    _name, fields, code_name, msg = case
    lsid = new_lsid()
    cmd = ins(1)
    for k, v in fields.items():
        cmd[k] = lsid if v == "LSID" else v
    assert_error(conn.run(cmd, db.name), CODES[code_name], code_name, msg=msg)
    assert find_docs(conn, db.name, "c") == [], "a refused statement wrote nothing"
    # A refused first statement started nothing.
    r = conn.run({"commitTransaction": 1, "lsid": lsid, "txnNumber": Int64(1),
                  "autocommit": False}, "admin")
    assert_error(r, CODES["NoSuchTransaction"], what="commit after the refused statement")


def test_txn_number_on_a_read_is_not_a_retryable_write_command(conn, db):
    r = conn.run({"find": "c", "filter": {}, "lsid": new_lsid(), "txnNumber": Int64(1)}, db.name)
    assert_error(r, CODES["NotARetryableWriteCommand"], "NotARetryableWriteCommand",
                 msg="txnNumber may only be provided for multi-document transactions and "
                 "retryable write commands")


def test_later_statement_with_autocommit_true_leaves_transaction_open(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(1)))
    r = conn.run(dict(ins(2), lsid=t.lsid, txnNumber=Int64(t.number), autocommit=True), db.name)
    assert_error(r, CODES["InvalidOptions"], what="autocommit:true on a later statement")
    assert_ok(t.commit())
    assert ids(find_docs(conn, db.name, "c")) == [1]


def test_commit_and_abort_need_admin_and_session_fields(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(1)))
    for name in ("commitTransaction", "abortTransaction"):
        r = conn.run(dict({name: 1}, **t.fields()), db.name)
        assert_error(r, CODES["Unauthorized"], "Unauthorized",
                     msg="%s may only be run against the admin database." % name,
                     what="%s on a non-admin database" % name)
        r = conn.run({name: 1, "lsid": t.lsid, "txnNumber": Int64(t.number)}, "admin")
        assert_error(r, CODES["NotARetryableWriteCommand"], what="%s without autocommit" % name)
        r = conn.run({name: 1, "lsid": t.lsid, "txnNumber": Int64(t.number),
                      "autocommit": True}, "admin")
        assert_error(r, CODES["InvalidOptions"], what="%s with autocommit:true" % name)
        r = conn.run({name: 1}, "admin")
        assert_error(r, CODES["CommandFailed"], "CommandFailed",
                     msg="%s must be run within a transaction" % name,
                     what="%s without any session field" % name)
        r = conn.run({name: 1, "txnNumber": Int64(t.number), "autocommit": False}, "admin")
        assert_error(r, CODES["InvalidOptions"], msg="Transaction number requires a session ID",
                     what="%s without lsid" % name)
    r = conn.run({"commitTransaction": 1, "lsid": new_lsid(), "txnNumber": Int64(1),
                  "autocommit": False, "startTransaction": True}, "admin")
    assert_error(r, CODES["OperationNotSupportedInTransaction"],
                 msg="Cannot start a transaction with a commit")
    r = conn.run({"abortTransaction": 1, "lsid": new_lsid(), "txnNumber": Int64(1),
                  "autocommit": False, "startTransaction": True}, "admin")
    assert_error(r, CODES["OperationNotSupportedInTransaction"],
                 msg="Cannot start a transaction with an abort")
    assert_ok(t.commit(), "none of the refused commands touched the open transaction")
    assert ids(find_docs(conn, db.name, "c")) == [1]


# -- read concern and write concern --------------------------------------------------------

def test_read_concern_only_on_the_first_statement(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(1), readConcern={"level": "snapshot"}))
    for level in ("snapshot", "majority", "local"):
        assert_error(t.run({"find": "c", "filter": {}}, readConcern={"level": level}),
                     CODES["InvalidOptions"], "InvalidOptions",
                     msg="Only the first command in a transaction may specify a readConcern",
                     what="find with readConcern %s on a later statement" % level)
    assert_error(t.run(ins(2), readConcern={"level": "local"}), CODES["InvalidOptions"],
                 what="insert with readConcern on a later statement")
    assert_ok(t.commit(), "the refused statements left the transaction open")
    assert ids(find_docs(conn, db.name, "c")) == [1]


WC_MSGS = ("writeConcern is not allowed within a multi-statement transaction",
           "Cannot set write concern after starting a transaction")


def test_write_concern_refused_on_statements(conn, db):
    t = Txn(conn, db.name)
    assert_error(t.start(ins(1), writeConcern={"w": 1}), CODES["InvalidOptions"],
                 "InvalidOptions", msg=WC_MSGS, what="first statement with writeConcern")
    assert_error(t.commit(), CODES["NoSuchTransaction"], what="commit after refused start")
    t2 = t.next()
    assert_ok(t2.start(ins(2)))
    assert_error(t2.run(ins(3), writeConcern={"w": "majority"}), CODES["InvalidOptions"],
                 "InvalidOptions", msg=WC_MSGS, what="later statement with writeConcern")
    assert_ok(t2.commit(writeConcern={"w": "majority"}), "commit carries the write concern")
    assert ids(find_docs(conn, db.name, "c")) == [2]


@pytest.mark.parametrize("level", ["local", "majority", "snapshot", None])
def test_read_concern_levels_accepted_on_first_statement(conn, db, level):
    seed(conn, db.name, "c", [{"_id": 1}])
    t = Txn(conn, db.name)
    extra = {"readConcern": {"level": level}} if level else {}
    assert ids(txn_find(t, "c", start=True, **extra)) == [1]
    assert_ok(t.run(ins(2)))
    assert_ok(t.commit())
    assert ids(find_docs(conn, db.name, "c")) == [1, 2]


@pytest.mark.parametrize("level", ["available", "linearizable"])
def test_read_concern_levels_not_allowed_in_transactions(conn, db, level):
    t = Txn(conn, db.name)
    assert_error(t.start({"find": "c", "filter": {}}, readConcern={"level": level}),
                 CODES["InvalidOptions"], "InvalidOptions",
                 what="readConcern %s in a transaction" % level)
    assert_error(t.commit(), CODES["NoSuchTransaction"], what="nothing was started")


def test_unknown_read_concern_level_is_refused(conn, db):
    t = Txn(conn, db.name)
    # mongod 6.x answers FailedToParse ("readConcern.level must be either ..."); an
    # IDL-parsed enum answers BadValue. Either refuses the statement.
    assert_code_in(t.start({"find": "c", "filter": {}}, readConcern={"level": "banana"}),
                   (CODES["FailedToParse"], CODES["BadValue"]), "unknown readConcern level")
    assert_error(t.commit(), CODES["NoSuchTransaction"], what="nothing was started")


def test_at_cluster_time_reads_exactly_at_that_time(conn, db):
    r1 = seed(conn, db.name, "c", [{"_id": 1, "v": "old"}])
    t1 = r1["operationTime"]
    r2 = assert_ok(conn.run({"update": "c", "updates": [{"q": {"_id": 1},
                                                           "u": {"$set": {"v": "new"}}}],
                             "writeConcern": {"w": "majority"}}, db.name))
    assert (r2["operationTime"].time, r2["operationTime"].inc) > (t1.time, t1.inc), (r1, r2)
    t = Txn(conn, db.name)
    docs = txn_find(t, "c", start=True, readConcern={"level": "snapshot", "atClusterTime": t1})
    assert docs == [{"_id": 1, "v": "old"}], "a snapshot at the first write's time: %r" % docs
    assert txn_find(t, "c") == [{"_id": 1, "v": "old"}], "and it stays there"
    assert_ok(t.commit())
    t2 = t.next()
    docs = txn_find(t2, "c", start=True,
                    readConcern={"level": "snapshot", "atClusterTime": r2["operationTime"]})
    assert docs == [{"_id": 1, "v": "new"}], docs
    assert_ok(t2.commit())


def test_at_cluster_time_before_history_is_snapshot_too_old(conn, db):
    seed(conn, db.name, "c", [{"_id": 1}])
    t = Txn(conn, db.name)
    r = t.start({"find": "c", "filter": {}},
                readConcern={"level": "snapshot", "atClusterTime": Timestamp(1, 1)})
    assert_error(r, CODES["SnapshotTooOld"], "SnapshotTooOld", labels=[TRANSIENT],
                 what="atClusterTime long before the history window")
    assert_error(t.commit(), CODES["NoSuchTransaction"])


def test_after_cluster_time_in_the_future_is_invalid_options(conn, db):
    now = cluster_time(assert_ok(conn.run({"ping": 1}, "admin")))
    future = ts_add(now, 3600)
    t = Txn(conn, db.name)
    r = t.start({"find": "c", "filter": {}},
                readConcern={"level": "snapshot", "afterClusterTime": future})
    assert_error(r, CODES["InvalidOptions"], "InvalidOptions",
                 msg="must not be greater than the current clusterTime",
                 what="afterClusterTime an hour ahead of the cluster time")
    assert_error(t.commit(), CODES["NoSuchTransaction"])


def test_at_and_after_cluster_time_together_are_refused(conn, db):
    now = cluster_time(assert_ok(conn.run({"ping": 1}, "admin")))
    t = Txn(conn, db.name)
    r = t.start({"find": "c", "filter": {}},
                readConcern={"level": "snapshot", "afterClusterTime": now, "atClusterTime": now})
    assert_error(r, CODES["InvalidOptions"], "InvalidOptions")


def test_first_statement_after_cluster_time_of_own_write(conn, db):
    """What a causally consistent driver sends: afterClusterTime = the last operationTime."""
    r = seed(conn, db.name, "c", [{"_id": 1}])
    t = Txn(conn, db.name)
    docs = txn_find(t, "c", start=True, readConcern={"level": "snapshot",
                                                     "afterClusterTime": r["operationTime"]})
    assert ids(docs) == [1]
    assert_ok(t.commit())
