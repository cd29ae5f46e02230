"""Retryable writes (wire-protocol.md §4.8, §4.6): a write command with lsid + txnNumber and no
autocommit is executed at most once per statement, however often it is resent.

What a MongoDB 7.0 replica-set member does, and so what these tests require:
* resending the same insert/update/delete/findAndModify with the same lsid and txnNumber
  executes nothing again; the reply reports the original outcome (n, nModified, upserted ids,
  findAndModify value and lastErrorObject) and, since 6.0, lists the statements it did not
  execute again in `retriedStmtIds` (findAndModify: `retriedStmtId`), which the first reply
  does not have (jstests/sharding/internal_txns/retryable_writes_retried_stmt_ids.js);
* statement ids are the indexes in the batch: a retry whose batch has more statements executes
  only the new ones; a statement that failed was not executed and runs again;
* a lower txnNumber is TransactionTooOld (225); the session records are durable, so a retry
  after kill -9 and restart is still deduplicated;
* errors carry RetryableWriteError exactly per error_labels.cpp: retryable writes and
  commit/abort get it for RetriableError codes (top-level or writeConcernError), statements
  inside transactions get TransientTransactionError instead, plain writes get nothing.

The fail-point tests need `--setParameter enableTestCommands=1` and `configureFailPoint
failCommand` (DESIGN.md "Test commands and fail points").
"""

import pytest
from pymongo import monitoring

from txn_helpers import (
    CODES, RETRYABLE, TEST_COMMANDS_ARGS, TRANSIENT, RawConn, Txn, assert_error, assert_ok,
    fail_command, fail_command_off, find_docs, new_lsid, retryable, seed)


@pytest.fixture
def conn(server):
    c = RawConn(server)
    yield c
    c.close()


OUTCOME_FIELDS = ("n", "nModified", "upserted", "writeErrors", "value", "lastErrorObject")


def outcome(reply):
    return {k: reply[k] for k in OUTCOME_FIELDS if k in reply}


def assert_same_outcome(first, retry):
    assert_ok(first, "first attempt")
    assert_ok(retry, "retry")
    assert outcome(retry) == outcome(first), \
        "the retry must report the original outcome:\nfirst: %r\nretry: %r" % (first, retry)


# -- deduplication -------------------------------------------------------------------------

def test_retried_insert_is_applied_once(conn, db):
    lsid = new_lsid()
    cmd = retryable({"insert": "c", "documents": [{"_id": 1}, {"_id": 2}, {"_id": 3}]}, lsid, 1)
    first = assert_ok(conn.run(cmd, db.name))
    assert first["n"] == 3 and "retriedStmtIds" not in first, first
    # Remove them: a retry that executed again would insert them again.
    assert_ok(conn.run({"delete": "c", "deletes": [{"q": {}, "limit": 0}]}, db.name))
    retry = conn.run(cmd, db.name)
    assert_same_outcome(first, retry)
    assert retry.get("retriedStmtIds") == [0, 1, 2], retry
    assert find_docs(conn, db.name, "c") == [], "the retry inserted again"
    again = conn.run(cmd, db.name)
    assert_same_outcome(first, again)


def test_retried_update_is_applied_once_with_upserted_ids(conn, db):
    seed(conn, db.name, "c", [{"_id": 1, "x": 0}, {"_id": 2, "x": 0}])
    lsid = new_lsid()
    cmd = retryable({"update": "c", "updates": [
        {"q": {"_id": 1}, "u": {"$inc": {"x": 1}}},
        {"q": {"_id": 2}, "u": {"$inc": {"x": 1}}},
        {"q": {"_id": 9}, "u": {"$inc": {"x": 1}}, "upsert": True},
    ]}, lsid, 4)
    first = assert_ok(conn.run(cmd, db.name))
    assert (first["n"], first["nModified"]) == (3, 2), first
    assert first["upserted"] == [{"index": 2, "_id": 9}], first
    retry = conn.run(cmd, db.name)
    assert_same_outcome(first, retry)
    assert retry.get("retriedStmtIds") == [0, 1, 2], retry
    assert find_docs(conn, db.name, "c") == [{"_id": 1, "x": 1}, {"_id": 2, "x": 1},
                                            {"_id": 9, "x": 1}]


def test_retried_delete_is_applied_once(conn, db):
    seed(conn, db.name, "c", [{"_id": 1}, {"_id": 2}])
    lsid = new_lsid()
    cmd = retryable({"delete": "c", "deletes": [{"q": {"_id": 1}, "limit": 1}]}, lsid, 1)
    first = assert_ok(conn.run(cmd, db.name))
    assert first["n"] == 1, first
    seed(conn, db.name, "c", [{"_id": 1, "back": True}])
    retry = conn.run(cmd, db.name)
    assert_same_outcome(first, retry)
    assert retry.get("retriedStmtIds") == [0], retry
    assert find_docs(conn, db.name, "c") == [{"_id": 1, "back": True}, {"_id": 2}], \
        "the retry deleted again"


FAM_CASES = [
    ("update new", {"query": {"_id": 1}, "update": {"$inc": {"x": 1}}, "new": True},
     {"_id": 1, "x": 1}),
    ("update old", {"query": {"_id": 1}, "update": {"$inc": {"x": 1}}},
     {"_id": 1, "x": 0}),
    ("replace", {"query": {"_id": 1}, "update": {"x": 7}, "new": True}, {"_id": 1, "x": 7}),
    ("remove", {"query": {"_id": 1}, "remove": True}, {"_id": 1, "x": 0}),
    ("upsert", {"query": {"_id": 5}, "update": {"$inc": {"x": 1}}, "upsert": True, "new": True},
     {"_id": 5, "x": 1}),
]


@pytest.mark.parametrize("case", FAM_CASES, ids=[c[0] for c in FAM_CASES])
def test_retried_find_and_modify_replies_the_same(conn, db, case):
    name, spec, value = case
    seed(conn, db.name, "c", [{"_id": 1, "x": 0}])
    cmd = retryable(dict({"findAndModify": "c"}, **spec), new_lsid(), 3)
    first = assert_ok(conn.run(cmd, db.name))
    assert first["value"] == value, first
    if name == "upsert":
        assert first["lastErrorObject"] == {"n": 1, "updatedExisting": False, "upserted": 5}, first
    elif name == "remove":
        assert first["lastErrorObject"] == {"n": 1}, first
        seed(conn, db.name, "c", [{"_id": 1, "x": 0, "back": True}])
    else:
        assert first["lastErrorObject"] == {"n": 1, "updatedExisting": True}, first
    after_first = find_docs(conn, db.name, "c")
    retry = conn.run(cmd, db.name)
    assert_same_outcome(first, retry)
    assert retry.get("retriedStmtId") == 0, retry
    assert "retriedStmtId" not in first, first
    assert find_docs(conn, db.name, "c") == after_first, "the retry modified again"


@pytest.mark.parametrize("case", FAM_CASES, ids=[c[0] for c in FAM_CASES])
def test_retried_find_and_modify_answers_the_document_as_it_was(conn, db, case):
    """The record keeps a reference to the image, not the document: a retry after the document
    changed again answers the version the first execution saw or made, projected by the
    retry's `fields`."""
    name, spec, value = case
    seed(conn, db.name, "c", [{"_id": 1, "x": 0, "y": "keep"}])
    spec = dict(spec, fields={"y": 0})
    cmd = retryable(dict({"findAndModify": "c"}, **spec), new_lsid(), 4)
    first = assert_ok(conn.run(cmd, db.name))
    assert first["value"] == value, first
    assert_ok(conn.run({"update": "c", "updates": [
        {"q": {"_id": {"$in": [1, 5]}}, "u": {"$set": {"x": 99}}, "multi": True}]}, db.name))
    retry = assert_ok(conn.run(cmd, db.name))
    assert retry.get("retriedStmtId") == 0, retry
    assert retry["value"] == first["value"], (first, retry)
    assert retry["lastErrorObject"] == first["lastErrorObject"], (first, retry)


def test_retried_find_and_modify_after_a_drop_is_incomplete_history(conn, db):
    seed(conn, db.name, "c", [{"_id": 1, "x": 0}])
    cmd = retryable({"findAndModify": "c", "query": {"_id": 1}, "update": {"$inc": {"x": 1}},
                     "new": True}, new_lsid(), 1)
    assert_ok(conn.run(cmd, db.name))
    assert_ok(conn.run({"drop": "c"}, db.name))
    assert_error(conn.run(cmd, db.name), CODES["IncompleteTransactionHistory"])


def test_retry_with_more_statements_runs_only_the_new_ones(conn, db):
    lsid = new_lsid()
    first = assert_ok(conn.run(retryable({"insert": "c", "documents": [{"_id": "a"}, {"_id": "b"}]},
                                         lsid, 7), db.name))
    assert first["n"] == 2
    r = assert_ok(conn.run(retryable({"insert": "c", "documents": [
        {"_id": "a"}, {"_id": "b"}, {"_id": "c"}]}, lsid, 7), db.name), "longer retry")
    assert r["n"] == 3 and "writeErrors" not in r, \
        "statements 0 and 1 are reported as done, not as duplicates: %r" % r
    assert r.get("retriedStmtIds") == [0, 1], r
    assert [d["_id"] for d in find_docs(conn, db.name, "c")] == ["a", "b", "c"]

    seed(conn, db.name, "u", [{"_id": 1, "x": 0}, {"_id": 2, "x": 0}])
    one = {"q": {"_id": 1}, "u": {"$inc": {"x": 1}}}
    two = {"q": {"_id": 2}, "u": {"$inc": {"x": 1}}}
    assert_ok(conn.run(retryable({"update": "u", "updates": [one]}, lsid, 8), db.name))
    r = assert_ok(conn.run(retryable({"update": "u", "updates": [one, two]}, lsid, 8), db.name))
    assert (r["n"], r["nModified"]) == (2, 2) and r.get("retriedStmtIds") == [0], r
    assert find_docs(conn, db.name, "u") == [{"_id": 1, "x": 1}, {"_id": 2, "x": 1}]


def test_failed_statement_is_not_remembered(conn, db):
    seed(conn, db.name, "c", [{"_id": 1, "seed": True}])
    lsid = new_lsid()
    cmd = retryable({"insert": "c", "documents": [{"_id": 1}]}, lsid, 1)
    r = assert_ok(conn.run(cmd, db.name))
    assert r["writeErrors"][0]["code"] == CODES["DuplicateKey"], r
    assert_ok(conn.run({"delete": "c", "deletes": [{"q": {"_id": 1}, "limit": 1}]}, db.name))
    r = assert_ok(conn.run(cmd, db.name), "retry of the failed statement")
    assert r["n"] == 1 and "writeErrors" not in r and "retriedStmtIds" not in r, r
    assert find_docs(conn, db.name, "c") == [{"_id": 1}]


def test_older_txn_number_is_transaction_too_old(conn, db):
    lsid = new_lsid()
    assert_ok(conn.run(retryable({"insert": "c", "documents": [{"_id": 1}]}, lsid, 1), db.name))
    assert_ok(conn.run(retryable({"insert": "c", "documents": [{"_id": 2}]}, lsid, 2), db.name))
    r = conn.run(retryable({"insert": "c", "documents": [{"_id": 3}]}, lsid, 1), db.name)
    assert_error(r, CODES["TransactionTooOld"], "TransactionTooOld", labels=[],
                 msg="Retryable write with txnNumber 1 is prohibited on session")
    assert [d["_id"] for d in find_docs(conn, db.name, "c")] == [1, 2]


def test_sessions_are_independent(conn, db):
    l1, l2 = new_lsid(), new_lsid()
    cmd1 = retryable({"insert": "c", "documents": [{"_id": 1}]}, l1, 5)
    assert_ok(conn.run(cmd1, db.name))
    r = assert_ok(conn.run(retryable({"insert": "c", "documents": [{"_id": 2}]}, l2, 5), db.name))
    assert r["n"] == 1 and "retriedStmtIds" not in r, "same number, other session: new write"
    r = assert_ok(conn.run(retryable({"insert": "c", "documents": [{"_id": 3}]}, l1, 6), db.name))
    assert r["n"] == 1, r
    assert [d["_id"] for d in find_docs(conn, db.name, "c")] == [1, 2, 3]


# -- durability ----------------------------------------------------------------------------

def test_dedup_survives_kill9_and_restart(server_factory):
    srv = server_factory()
    lsid = new_lsid()
    ins = retryable({"insert": "c", "documents": [{"_id": 1}, {"_id": 2}],
                     "writeConcern": {"w": "majority"}}, lsid, 1)
    fam = retryable({"findAndModify": "c", "query": {"_id": 1}, "update": {"$inc": {"x": 1}},
                     "new": True, "writeConcern": {"w": "majority"}}, lsid, 2)
    with RawConn(srv) as c:
        assert assert_ok(c.run(ins, "rw"))["n"] == 2
        first_fam = assert_ok(c.run(fam, "rw"))
    srv.crash_restart()
    with RawConn(srv) as c:
        r = c.run(ins, "rw")
        assert_error(r, CODES["TransactionTooOld"], what="the session's active number survived")
        retry_fam = c.run(fam, "rw")
        assert_same_outcome(first_fam, retry_fam)
        assert retry_fam.get("retriedStmtId") == 0, retry_fam
        assert find_docs(c, "rw", "c") == [{"_id": 1, "x": 1}, {"_id": 2}]

    lsid2 = new_lsid()
    ins2 = retryable({"insert": "d", "documents": [{"_id": 1}],
                      "writeConcern": {"w": "majority"}}, lsid2, 1)
    with RawConn(srv) as c:
        first = assert_ok(c.run(ins2, "rw"))
        assert_ok(c.run({"delete": "d", "deletes": [{"q": {}, "limit": 0}],
                         "writeConcern": {"w": "majority"}}, "rw"))
    srv.crash_restart()
    with RawConn(srv) as c:
        retry = c.run(ins2, "rw")
        assert_same_outcome(first, retry)
        assert retry.get("retriedStmtIds") == [0], retry
        assert find_docs(c, "rw", "d") == [], "the retry after a crash inserted again"


def test_dedup_of_batches_committed_in_parts_survives_restart(server_factory):
    """Each statement of an update batch commits on its own, with a session record of its
    own: after a crash every statement of the newest txnNumber is still answered from the
    records, the records left by an older, longer batch are not mistaken for it, and a retry
    with more statements runs only the new ones."""
    srv = server_factory()
    lsid = new_lsid()

    def batch(txn, n):
        return retryable({"update": "c", "updates": [
            {"q": {"_id": i}, "u": {"$inc": {"x": 1}}, "upsert": True} for i in range(n)],
            "writeConcern": {"w": "majority"}}, lsid, txn)

    with RawConn(srv) as c:
        assert assert_ok(c.run(batch(1, 5), "rw"))["n"] == 5
        assert assert_ok(c.run(batch(2, 2), "rw"))["n"] == 2
    srv.crash_restart()
    with RawConn(srv) as c:
        retry = assert_ok(c.run(batch(2, 2), "rw"))
        assert retry.get("retriedStmtIds") == [0, 1], retry
        assert retry["n"] == 2, retry
        more = assert_ok(c.run(batch(2, 4), "rw"))
        assert more.get("retriedStmtIds") == [0, 1], more
        assert_error(c.run(batch(1, 5), "rw"), CODES["TransactionTooOld"])
        assert find_docs(c, "rw", "c") == [{"_id": 0, "x": 2}, {"_id": 1, "x": 2},
                                           {"_id": 2, "x": 2}, {"_id": 3, "x": 2},
                                           {"_id": 4, "x": 1}]


def test_dedup_survives_clean_restart(server_factory):
    srv = server_factory()
    lsid = new_lsid()
    cmd = retryable({"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"x": 1}},
                                                  "upsert": True}]}, lsid, 3)
    with RawConn(srv) as c:
        first = assert_ok(c.run(cmd, "rw"))
    srv.restart()
    with RawConn(srv) as c:
        retry = c.run(cmd, "rw")
        assert_same_outcome(first, retry)
        assert find_docs(c, "rw", "c") == [{"_id": 1, "x": 1}]


# -- the driver's retry --------------------------------------------------------------------

class InsertRecorder(monitoring.CommandListener):
    def __init__(self):
        self.events = []

    def started(self, event):
        if event.command_name == "insert":
            self.events.append(event.command)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
def tc_server(server_factory):
    return server_factory(extra_args=TEST_COMMANDS_ARGS)


def test_driver_retries_insert_after_closed_connection(tc_server):
    rec = InsertRecorder()
    client = tc_server.client(retryWrites=True, event_listeners=[rec])
    try:
        coll = client.rw.c
        coll.insert_one({"_id": 0})
        rec.events.clear()
        with RawConn(tc_server) as c:
            fail_command(c, {"times": 1}, failCommands=["insert"], closeConnection=True)
        coll.insert_one({"_id": 1})
        assert coll.count_documents({"_id": 1}) == 1
        assert len(rec.events) == 2, "one attempt and one retry, got %d" % len(rec.events)
        a, b = rec.events
        assert a["lsid"] == b["lsid"] and a["txnNumber"] == b["txnNumber"], \
            "the retry must reuse the lsid and txnNumber"
    finally:
        client.close()


@pytest.mark.parametrize("code", [CODES["NotWritablePrimary"], CODES["ShutdownInProgress"],
                                  11602, 189])
def test_driver_retries_insert_after_retryable_error(tc_server, code):
    rec = InsertRecorder()
    client = tc_server.client(retryWrites=True, event_listeners=[rec])
    try:
        coll = client.rw.c
        coll.insert_one({"_id": 0})
        rec.events.clear()
        with RawConn(tc_server) as c:
            fail_command(c, {"times": 1}, failCommands=["insert"], errorCode=code)
        coll.insert_one({"_id": 1})
        assert len(rec.events) == 2, "the error %d must be retried once" % code
        assert rec.events[0]["txnNumber"] == rec.events[1]["txnNumber"]
        assert coll.count_documents({}) == 2
    finally:
        client.close()


# -- error labels --------------------------------------------------------------------------

RETRIABLE_CODES = [CODES["NotWritablePrimary"], CODES["ShutdownInProgress"], 11602, 189, 6, 89,
                   11600, 13435, 13436]


@pytest.mark.parametrize("code", RETRIABLE_CODES)
def test_retryable_write_error_label(tc_server, code):
    with RawConn(tc_server) as setup:
        fail_command(setup, {"times": 1}, failCommands=["insert"], errorCode=code)
    # A fresh connection that has written nothing (mongod adds NoWritesPerformed only after
    # comparing the client's last optime before and after, which it cannot when there is none).
    with RawConn(tc_server) as c:
        r = c.run(retryable({"insert": "c", "documents": [{"_id": 1}]}, new_lsid(), 1), "rw")
        assert_error(r, code, labels=[RETRYABLE], what="retryable insert failing with %d" % code)
        assert find_docs(c, "rw", "c") == []


def test_plain_write_gets_no_label(tc_server):
    with RawConn(tc_server) as c:
        fail_command(c, {"times": 1}, failCommands=["insert"], errorCode=CODES["NotWritablePrimary"])
        r = c.run({"insert": "c", "documents": [{"_id": 1}]}, "rw")
        assert_error(r, CODES["NotWritablePrimary"], labels=[],
                     what="an insert without txnNumber")


def test_non_retriable_error_gets_no_label(tc_server):
    with RawConn(tc_server) as c:
        fail_command(c, {"times": 1}, failCommands=["insert"], errorCode=CODES["BadValue"])
        r = c.run(retryable({"insert": "c", "documents": [{"_id": 1}]}, new_lsid(), 1), "rw")
        assert_error(r, CODES["BadValue"], labels=[], what="retryable insert failing with 2")


def test_statement_in_transaction_gets_transient_label_not_retryable(tc_server):
    with RawConn(tc_server) as c:
        t = Txn(c, "rw")
        assert_ok(t.start({"find": "c", "filter": {}}))
        fail_command(c, {"times": 1}, failCommands=["insert"], errorCode=CODES["NotWritablePrimary"])
        r = t.run({"insert": "c", "documents": [{"_id": 1}]})
        assert_error(r, CODES["NotWritablePrimary"], labels=[TRANSIENT],
                     what="a statement inside a transaction")


@pytest.mark.parametrize("cmd", ["commitTransaction", "abortTransaction"])
def test_commit_and_abort_get_retryable_label(tc_server, cmd):
    with RawConn(tc_server) as c:
        t = Txn(c, "rw")
        assert_ok(t.start({"insert": "c", "documents": [{"_id": 1}]}))
        fail_command(c, {"times": 1}, failCommands=[cmd], errorCode=CODES["NotWritablePrimary"])
    with RawConn(tc_server) as c2:
        t2 = Txn(c2, "rw", lsid=t.lsid, number=t.number)
        r = t2.commit() if cmd == "commitTransaction" else t2.abort()
        assert_error(r, CODES["NotWritablePrimary"], labels=[RETRYABLE], what=cmd)
        assert_ok(t2.commit() if cmd == "commitTransaction" else t2.abort(),
                  "the fail point fired once; the transaction is still there")


def test_write_concern_error_gets_retryable_label(tc_server):
    with RawConn(tc_server) as c:
        fail_command(c, {"times": 1}, failCommands=["insert"],
                     writeConcernError={"code": CODES["ShutdownInProgress"],
                                        "codeName": "ShutdownInProgress",
                                        "errmsg": "Replication is being shut down"})
    with RawConn(tc_server) as c:
        r = c.run(retryable({"insert": "c", "documents": [{"_id": 1}]}, new_lsid(), 1), "rw")
        assert_ok(r, "a write concern error is ok:1")
        assert r["writeConcernError"]["code"] == CODES["ShutdownInProgress"], r
        assert RETRYABLE in r.get("errorLabels", []), r
        assert find_docs(c, "rw", "c") == [{"_id": 1}], "the write itself was done"


def test_fail_point_off_and_unknown_without_test_commands(server):
    with RawConn(server) as c:
        r = c.run({"configureFailPoint": "failCommand", "mode": "off"}, "admin")
        assert_error(r, CODES["CommandNotFound"], "CommandNotFound",
                     what="configureFailPoint without enableTestCommands")


def test_fail_point_can_be_switched_off(tc_server):
    with RawConn(tc_server) as c:
        fail_command(c, "alwaysOn", failCommands=["insert"], errorCode=CODES["BadValue"])
        assert_error(c.run({"insert": "c", "documents": [{"_id": 1}]}, "rw"), CODES["BadValue"])
        assert_error(c.run({"insert": "c", "documents": [{"_id": 1}]}, "rw"), CODES["BadValue"])
        fail_command_off(c)
        assert_ok(c.run({"insert": "c", "documents": [{"_id": 1}]}, "rw"))
