"""Errors inside transactions and the labels that drive the drivers' retry loops
(wire-protocol.md §4.4, §4.6, §4.7; mongod's error_labels.cpp; the transactions spec's
error-labels.yml expectations).

Server side (raw commands): TransientTransactionError on statement errors that are transient
(WriteConflict, LockTimeout, snapshot errors, NoSuchTransaction, RetriableError codes), never on
DuplicateKey or MaxTimeMSExpired; on commit/abort only for NoSuchTransaction without a
writeConcernError; RetryableWriteError on commit/abort for RetriableError codes, top-level or in
the writeConcernError, and never on an ordinary statement of a transaction.

Driver side (pymongo's with_transaction): a callback that hits a transient error is rerun; a
non-transient error is raised at once with nothing committed; a commit that fails with a
RetryableWriteError is retried with w:majority and wtimeout 10000; a commit that fails with
NoSuchTransaction + TransientTransactionError reruns the whole transaction.
"""

import pytest
from pymongo import WriteConcern, monitoring
from pymongo.errors import DuplicateKeyError, OperationFailure

from txn_helpers import (
    CODES, RETRYABLE, TEST_COMMANDS_ARGS, TRANSIENT, RawConn, Txn, assert_error, assert_ok,
    fail_command, find_docs, seed)


class Commands(monitoring.CommandListener):
    def __init__(self):
        self.events = []

    def started(self, event):
        self.events.append((event.command_name, event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def named(self, name):
        return [c for n, c in self.events if n == name]


@pytest.fixture
def conn(server):
    c = RawConn(server)
    yield c
    c.close()


@pytest.fixture
def tc_server(server_factory):
    return server_factory(extra_args=TEST_COMMANDS_ARGS)


# -- server-side labels from real errors ---------------------------------------------------

def test_write_conflict_statement_is_transient(server, db):
    with RawConn(server) as ca, RawConn(server) as cb:
        seed(ca, db.name, "c", [{"_id": 1, "v": 0}])
        a, b = Txn(ca, db.name), Txn(cb, db.name)
        assert_ok(a.start({"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"v": 1}}}]}))
        r = b.start({"update": "c", "updates": [{"q": {"_id": 1}, "u": {"$inc": {"v": 1}}}]})
        assert_error(r, CODES["WriteConflict"], "WriteConflict", labels=[TRANSIENT])
        assert "writeErrors" not in r, "a transient error is a top-level error: %r" % r
        assert_ok(a.commit())


def test_max_time_expired_statement_is_not_transient(conn, db):
    seed(conn, db.name, "c", [{"_id": i, "x": i % 1000, "pad": "p" * 100} for i in range(40000)])
    t = Txn(conn, db.name)
    assert_ok(t.start({"find": "c", "filter": {"_id": 0}}))
    r = t.run({"find": "c", "filter": {"x": {"$gt": 5000}}, "maxTimeMS": 1})
    assert_error(r, CODES["MaxTimeMSExpired"], "MaxTimeMSExpired", labels=[],
                 what="MaxTimeMSExpired inside a transaction carries no label")


def test_no_such_transaction_labels(conn, db):
    t = Txn(conn, db.name, number=9)
    assert_error(t.run({"find": "c", "filter": {}}), CODES["NoSuchTransaction"],
                 labels=[TRANSIENT], what="statement")
    assert_error(t.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT], what="commit")
    assert_error(t.abort(), CODES["NoSuchTransaction"], labels=[TRANSIENT], what="abort")


def test_commit_of_unknown_transaction_with_write_concern_is_transient(conn, db):
    t = Txn(conn, db.name)
    r = t.commit(writeConcern={"w": "majority", "wtimeout": 1000})
    assert_error(r, CODES["NoSuchTransaction"], labels=[TRANSIENT])
    assert "writeConcernError" not in r, r


# -- server-side labels through the fail point ---------------------------------------------

@pytest.mark.parametrize("code,labels", [
    (CODES["WriteConflict"], [TRANSIENT]),
    (24, [TRANSIENT]),                           # LockTimeout
    (CODES["SnapshotTooOld"], [TRANSIENT]),
    (246, [TRANSIENT]),                          # SnapshotUnavailable
    (CODES["NoSuchTransaction"], [TRANSIENT]),
    (CODES["NotWritablePrimary"], [TRANSIENT]),  # RetriableError: transient, not retryable
    (CODES["ShutdownInProgress"], [TRANSIENT]),
    (11602, [TRANSIENT]),
    (CODES["DuplicateKey"], []),
    (CODES["MaxTimeMSExpired"], []),
    (CODES["BadValue"], []),
], ids=lambda v: str(v))
def test_statement_labels(tc_server, code, labels):
    with RawConn(tc_server) as c:
        t = Txn(c, "lbl")
        assert_ok(t.start({"find": "c", "filter": {}}))
        fail_command(c, {"times": 1}, failCommands=["insert"], errorCode=code)
        r = t.run({"insert": "c", "documents": [{"_id": 1}]})
        assert_error(r, code, labels=labels, what="insert in a transaction failing with %d" % code)


@pytest.mark.parametrize("cmd", ["commitTransaction", "abortTransaction"])
@pytest.mark.parametrize("code,labels", [
    (CODES["NoSuchTransaction"], [TRANSIENT]),
    (CODES["WriteConflict"], [TRANSIENT]),
    (CODES["NotWritablePrimary"], [RETRYABLE]),
    (CODES["ShutdownInProgress"], [RETRYABLE]),
    (11602, [RETRYABLE]),
    (189, [RETRYABLE]),
    (CODES["MaxTimeMSExpired"], []),
    (CODES["BadValue"], []),
], ids=lambda v: str(v))
def test_commit_and_abort_labels(tc_server, cmd, code, labels):
    with RawConn(tc_server) as c:
        t = Txn(c, "lbl")
        assert_ok(t.start({"insert": "c", "documents": [{"_id": 1}]}))
        fail_command(c, {"times": 1}, failCommands=[cmd], errorCode=code)
        r = t.commit() if cmd == "commitTransaction" else t.abort()
        assert_error(r, code, labels=labels, what="%s failing with %d" % (cmd, code))


@pytest.mark.parametrize("wce_code,labels", [
    (CODES["ShutdownInProgress"], [RETRYABLE]),
    (CODES["NotWritablePrimary"], [RETRYABLE]),
    (64, []),    # WriteConcernFailed (wtimeout): drivers add UnknownTransactionCommitResult
    (100, []),   # UnsatisfiableWriteConcern
    (79, []),    # UnknownReplWriteConcern
], ids=lambda v: str(v))
def test_commit_write_concern_error_labels(tc_server, wce_code, labels):
    with RawConn(tc_server) as c:
        t = Txn(c, "lbl")
        assert_ok(t.start({"insert": "c", "documents": [{"_id": 1}]}))
        wce = {"code": wce_code, "errmsg": "injected write concern error"}
        if wce_code == 64:
            wce["errInfo"] = {"wtimeout": True}
        fail_command(c, {"times": 1}, failCommands=["commitTransaction"], writeConcernError=wce)
        r = assert_ok(t.commit(writeConcern={"w": "majority"}), "commit with an injected wce")
        assert r["writeConcernError"]["code"] == wce_code, r
        assert sorted(r.get("errorLabels", [])) == sorted(labels), r
        if labels:
            assert sorted(r["writeConcernError"].get("errorLabels", [])) == sorted(labels), \
                "labels are copied into the writeConcernError for old drivers: %r" % r
        assert find_docs(c, "lbl", "c") == [{"_id": 1}], "the commit itself happened"


def test_statement_write_concern_error_is_not_retryable(tc_server):
    with RawConn(tc_server) as c:
        t = Txn(c, "lbl")
        assert_ok(t.start({"find": "c", "filter": {}}))
        fail_command(c, {"times": 1}, failCommands=["insert"],
                     writeConcernError={"code": CODES["ShutdownInProgress"], "errmsg": "injected"})
        r = t.run({"insert": "c", "documents": [{"_id": 1}]})
        assert RETRYABLE not in r.get("errorLabels", []), r
        assert TRANSIENT not in r.get("errorLabels", []), r


# -- pymongo's with_transaction ------------------------------------------------------------

def test_with_transaction_reruns_callback_after_write_conflict(server, db):
    client = server.client()
    try:
        coll = client[db.name].c
        coll.insert_one({"_id": 1, "v": 0})
        with RawConn(server) as holder:
            blocker = Txn(holder, db.name)
            assert_ok(blocker.start({"update": "c", "updates": [
                {"q": {"_id": 1}, "u": {"$set": {"v": 100}}}]}))
            calls = []

            def callback(session):
                calls.append(1)
                if len(calls) == 2:
                    assert_ok(blocker.commit(), "the holder commits before the rerun")
                coll.update_one({"_id": 1}, {"$inc": {"v": 1}}, session=session)

            with client.start_session() as s:
                s.with_transaction(callback)
        assert len(calls) == 2, "the callback runs again after the transient WriteConflict"
        assert coll.find_one({"_id": 1}) == {"_id": 1, "v": 101}
    finally:
        client.close()


def test_with_transaction_raises_non_transient_error_at_once(server, db):
    client = server.client()
    try:
        coll = client[db.name].c
        coll.insert_one({"_id": 1})
        calls = []

        def callback(session):
            calls.append(1)
            coll.insert_one({"_id": 2}, session=session)
            coll.insert_one({"_id": 1}, session=session)

        with client.start_session() as s:
            with pytest.raises(DuplicateKeyError) as e:
                s.with_transaction(callback)
        assert TRANSIENT not in (e.value.details or {}).get("errorLabels", [])
        assert len(calls) == 1
        assert [d["_id"] for d in coll.find({})] == [1], "nothing of the failed callback committed"
    finally:
        client.close()


def test_with_transaction_retries_commit_with_majority(tc_server):
    rec = Commands()
    client = tc_server.client(event_listeners=[rec])
    try:
        coll = client.wt.c
        coll.insert_one({"_id": 0})
        with RawConn(tc_server) as c:
            fail_command(c, {"times": 1}, failCommands=["commitTransaction"],
                         errorCode=CODES["NotWritablePrimary"])
        calls = []

        def callback(session):
            calls.append(1)
            coll.insert_one({"_id": 1}, session=session)

        with client.start_session() as s:
            s.with_transaction(callback, write_concern=WriteConcern(w=1))
        commits = rec.named("commitTransaction")
        assert len(calls) == 1, "a RetryableWriteError on commit retries the commit only"
        assert len(commits) == 2, commits
        assert commits[0]["txnNumber"] == commits[1]["txnNumber"]
        assert commits[1]["writeConcern"] == {"w": "majority", "wtimeout": 10000}, commits[1]
        assert coll.count_documents({"_id": 1}) == 1
    finally:
        client.close()


def test_with_transaction_reruns_after_no_such_transaction_on_commit(tc_server):
    rec = Commands()
    client = tc_server.client(event_listeners=[rec])
    try:
        coll = client.wt.c
        coll.insert_one({"_id": 0})
        with RawConn(tc_server) as c:
            fail_command(c, {"times": 1}, failCommands=["commitTransaction"],
                         errorCode=CODES["NoSuchTransaction"])
        calls = []

        def callback(session):
            calls.append(1)
            coll.insert_one({"_id": len(calls) + 10}, session=session)

        with client.start_session() as s:
            s.with_transaction(callback)
        assert len(calls) == 2, "NoSuchTransaction + TransientTransactionError reruns the callback"
        assert [d["_id"] for d in coll.find({}).sort("_id", 1)] == [0, 12], \
            "only the second attempt committed"
    finally:
        client.close()


def test_driver_adds_unknown_commit_result_to_wtimeout(tc_server):
    client = tc_server.client()
    try:
        coll = client.wt.c
        coll.insert_one({"_id": 0})
        with RawConn(tc_server) as c:
            fail_command(c, {"times": 1}, failCommands=["commitTransaction"],
                         writeConcernError={"code": 64, "errmsg": "waiting for replication timed out",
                                            "errInfo": {"wtimeout": True}})
        with client.start_session() as s:
            s.start_transaction(write_concern=WriteConcern(w="majority", wtimeout=100))
            coll.insert_one({"_id": 1}, session=s)
            with pytest.raises(OperationFailure) as e:
                s.commit_transaction()
            assert e.value.has_error_label("UnknownTransactionCommitResult"), e.value.details
            s.commit_transaction()  # retrying the commit after an unknown result is allowed
        assert coll.count_documents({"_id": 1}) == 1
    finally:
        client.close()
