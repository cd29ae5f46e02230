"""Catalog operations and refused commands inside transactions, as a MongoDB 7.0 replica-set
member answers them:

* `create` and implicit creation (insert, upsert) inside a transaction: the collection exists
  for the transaction at once, for everyone else only after commit, and not at all after abort
  (jstests/core/txns/create_collection.js, implicit_collection_creation_in_txn.js); `create` of
  an existing collection is NamespaceExists (48) and aborts the transaction.
* `createIndexes` on an existing non-empty collection: OperationNotSupportedInTransaction (263),
  and the transaction is aborted (create_indexes.js).
* Commands not allowed in transactions (count, listCollections, drop, ping, ...): 263 whether
  first or later statement; refused before the session is checked out, so a refused first
  statement starts nothing and a refused later statement leaves the transaction open
  (commands_not_allowed_in_txn.js; "Cannot run '<cmd>' in a multi-document transaction." or,
  for commands that need no auth, "This command is not supported in transactions").
* The config and local databases: 263 "Cannot run command against the '<db>' database in a
  transaction." (CommandHelpers::canUseTransactions; banned_txn_dbs_unsharded.js). The admin
  database is not banned since 4.2; its system collections are, like every `system.*`.
* Writes to `<db>.system.*`: 50791 "Cannot write to system collection <ns> within a
  transaction." (doTransactionValidationForWrites), raised while the statement runs, so the
  transaction is aborted.
"""

import pytest
from bson import Int64

from txn_helpers import (
    CODES, TRANSIENT, RawConn, Txn, assert_error, assert_ok, collection_names, find_docs,
    seed, txn_find)


@pytest.fixture
def conn(server):
    c = RawConn(server)
    yield c
    c.close()


def ids(docs):
    return [d["_id"] for d in docs]


# -- creating collections ------------------------------------------------------------------

def test_create_inside_transaction_visible_only_after_commit(conn, db):
    seed(conn, db.name, "other", [{"_id": 0}])  # the database exists
    t = Txn(conn, db.name)
    assert_ok(t.start({"create": "made"}), "create inside a transaction")
    assert_ok(t.run({"insert": "made", "documents": [{"_id": 1}]}))
    assert ids(txn_find(t, "made")) == [1], "the transaction uses its new collection"
    assert "made" not in collection_names(conn, db.name), "invisible outside before commit"
    assert find_docs(conn, db.name, "made") == []
    assert_ok(t.commit())
    assert "made" in collection_names(conn, db.name)
    assert ids(find_docs(conn, db.name, "made")) == [1]


def test_create_inside_aborted_transaction_leaves_nothing(conn, db):
    seed(conn, db.name, "other", [{"_id": 0}])
    t = Txn(conn, db.name)
    assert_ok(t.start({"create": "gone"}))
    assert_ok(t.run({"insert": "gone", "documents": [{"_id": 1}]}))
    assert_ok(t.abort())
    assert "gone" not in collection_names(conn, db.name)
    assert find_docs(conn, db.name, "gone") == []


def test_create_in_new_database_inside_transaction(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start({"create": "first"}), "create implicitly creating the database")
    assert_ok(t.run({"insert": "first", "documents": [{"_id": 1}]}))
    assert_ok(t.commit())
    assert collection_names(conn, db.name) == ["first"]


@pytest.mark.parametrize("how", ["insert", "upsert", "findAndModify-upsert"])
def test_implicit_creation_inside_transaction(conn, db, how):
    seed(conn, db.name, "other", [{"_id": 0}])
    t = Txn(conn, db.name)
    if how == "insert":
        r = assert_ok(t.start({"insert": "imp", "documents": [{"_id": 1}]}))
        assert r["n"] == 1
    elif how == "upsert":
        r = assert_ok(t.start({"update": "imp", "updates": [
            {"q": {"_id": 1}, "u": {"$set": {"x": 1}}, "upsert": True}]}))
        assert r["n"] == 1 and r["upserted"][0]["_id"] == 1, r
    else:
        r = assert_ok(t.start({"findAndModify": "imp", "query": {"_id": 1},
                               "update": {"$set": {"x": 1}}, "upsert": True}))
        assert r["value"] is None, r
    assert ids(txn_find(t, "imp")) == [1]
    assert "imp" not in collection_names(conn, db.name), "invisible outside before commit"
    assert_ok(t.commit())
    assert "imp" in collection_names(conn, db.name)
    assert ids(find_docs(conn, db.name, "imp")) == [1]

    t2 = t.next()
    r = assert_ok(t2.start({"insert": "imp2", "documents": [{"_id": 2}]}))
    assert_ok(t2.abort())
    assert "imp2" not in collection_names(conn, db.name), "abort undoes the implicit creation"


def test_update_without_upsert_on_missing_collection_creates_nothing(conn, db):
    seed(conn, db.name, "other", [{"_id": 0}])
    t = Txn(conn, db.name)
    r = assert_ok(t.start({"update": "none", "updates": [{"q": {"_id": 1},
                                                          "u": {"$set": {"x": 1}}}]}))
    assert r["n"] == 0 and r["nModified"] == 0, r
    assert_ok(t.commit())
    assert find_docs(conn, db.name, "none") == []


def test_create_existing_collection_is_namespace_exists_and_aborts(conn, db):
    seed(conn, db.name, "there", [{"_id": 0}])
    t = Txn(conn, db.name)
    assert_ok(t.start({"insert": "other", "documents": [{"_id": 1}]}))
    assert_error(t.run({"create": "there"}), CODES["NamespaceExists"], "NamespaceExists",
                 labels=[], what="create of an existing collection in a transaction")
    assert_error(t.abort(), CODES["NoSuchTransaction"], labels=[TRANSIENT],
                 what="the failed create aborted the transaction")
    assert find_docs(conn, db.name, "other") == []


def test_create_indexes_on_existing_non_empty_collection_is_refused(conn, db):
    seed(conn, db.name, "c", [{"_id": 1, "a": 1}])
    t = Txn(conn, db.name)
    assert_ok(t.start({"insert": "c", "documents": [{"_id": 2, "a": 2}]}))
    r = t.run({"createIndexes": "c", "indexes": [{"key": {"a": 1}, "name": "a_1"}]})
    assert_error(r, CODES["OperationNotSupportedInTransaction"],
                 "OperationNotSupportedInTransaction", labels=[],
                 what="createIndexes on an existing collection with documents")
    assert_error(t.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT],
                 what="the refused createIndexes aborted the transaction")
    assert ids(find_docs(conn, db.name, "c")) == [1]


# -- commands not allowed in transactions --------------------------------------------------

NOT_ALLOWED = [
    ("count", {"count": "c"}, "Cannot run 'count' in a multi-document transaction"),
    ("count with query", {"count": "c", "query": {"a": 1}},
     "Cannot run 'count' in a multi-document transaction"),
    ("listCollections", {"listCollections": 1},
     "Cannot run 'listCollections' in a multi-document transaction"),
    ("listIndexes", {"listIndexes": "c"},
     "Cannot run 'listIndexes' in a multi-document transaction"),
    ("drop", {"drop": "c"}, "Cannot run 'drop' in a multi-document transaction"),
    ("dropDatabase", {"dropDatabase": 1},
     "Cannot run 'dropDatabase' in a multi-document transaction"),
    ("ping", {"ping": 1}, ("This command is not supported in transactions",
                           "Cannot run 'ping' in a multi-document transaction")),
    ("buildInfo", {"buildInfo": 1}, ("This command is not supported in transactions",
                                     "Cannot run 'buildInfo' in a multi-document transaction")),
    ("isMaster", {"isMaster": 1}, ("This command is not supported in transactions",
                                   "Cannot run 'isMaster' in a multi-document transaction")),
]


@pytest.mark.parametrize("case", NOT_ALLOWED, ids=[c[0] for c in NOT_ALLOWED])
def test_refused_as_first_statement_starts_nothing(conn, db, case):
    _name, cmd, msg = case
    seed(conn, db.name, "c", [{"_id": 1, "a": 1}])
    t = Txn(conn, db.name)
    assert_error(t.start(cmd), CODES["OperationNotSupportedInTransaction"],
                 "OperationNotSupportedInTransaction", labels=[], msg=msg)
    assert_error(t.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT],
                 what="no transaction was started")
    assert ids(find_docs(conn, db.name, "c")) == [1], "the refused command did nothing"


@pytest.mark.parametrize("case", NOT_ALLOWED, ids=[c[0] for c in NOT_ALLOWED])
def test_refused_as_later_statement_leaves_transaction_open(conn, db, case):
    _name, cmd, msg = case
    seed(conn, db.name, "c", [{"_id": 1, "a": 1}])
    t = Txn(conn, db.name)
    assert_ok(t.start({"insert": "c", "documents": [{"_id": 2}]}))
    assert_error(t.run(cmd), CODES["OperationNotSupportedInTransaction"],
                 "OperationNotSupportedInTransaction", labels=[], msg=msg)
    assert_ok(t.commit(), "the transaction is still open and commits")
    assert ids(find_docs(conn, db.name, "c")) == [1, 2]


def test_kill_cursors_cannot_start_a_transaction(conn, db):
    t = Txn(conn, db.name)
    r = t.start({"killCursors": "c", "cursors": [Int64(12345)]})
    assert_error(r, CODES["OperationNotSupportedInTransaction"],
                 msg="Cannot run killCursors as the first operation in a multi-document "
                 "transaction")


def test_allowed_read_commands_inside_transaction(conn, db):
    seed(conn, db.name, "c", [{"_id": i, "k": i % 2} for i in range(1, 5)])
    t = Txn(conn, db.name)
    r = assert_ok(t.start({"distinct": "c", "key": "k"}))
    assert sorted(r["values"]) == [0, 1]
    r = assert_ok(t.run({"aggregate": "c", "pipeline": [{"$match": {"k": 1}}, {"$count": "n"}],
                         "cursor": {}}))
    assert r["cursor"]["firstBatch"] == [{"n": 2}]
    r = assert_ok(t.run({"find": "c", "filter": {}, "batchSize": 1}))
    cid = r["cursor"]["id"]
    assert cid != 0 and len(r["cursor"]["firstBatch"]) == 1
    r = assert_ok(t.run({"getMore": cid, "collection": "c"}), "getMore inside the transaction")
    assert len(r["cursor"]["nextBatch"]) == 3
    assert_ok(t.commit())


# -- banned databases and system collections -----------------------------------------------

@pytest.mark.parametrize("dbname", ["config", "local"])
@pytest.mark.parametrize("cmd", [
    {"find": "cairn_txn_banned", "filter": {}},
    {"insert": "cairn_txn_banned", "documents": [{"_id": 1}]},
], ids=["find", "insert"])
def test_config_and_local_databases_refused(conn, dbname, cmd):
    t = Txn(conn, dbname)
    assert_error(t.start(cmd), CODES["OperationNotSupportedInTransaction"],
                 "OperationNotSupportedInTransaction", labels=[],
                 msg=("Cannot run command against the '%s' database in a transaction" % dbname,
                      "Cannot run command against the %s database in a transaction" % dbname))
    assert_error(t.abort(), CODES["NoSuchTransaction"], what="nothing was started")
    assert find_docs(conn, dbname, "cairn_txn_banned") == []


def test_config_database_refused_as_later_statement(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start({"insert": "c", "documents": [{"_id": 1}]}))
    assert_error(t.run({"insert": "cairn_txn_banned", "documents": [{"_id": 1}]}, db="config"),
                 CODES["OperationNotSupportedInTransaction"])
    assert_ok(t.commit(), "refused before checkout: the transaction is intact")
    assert ids(find_docs(conn, db.name, "c")) == [1]
    assert find_docs(conn, "config", "cairn_txn_banned") == []


WRITES_TO_SYSTEM = [
    ("insert", {"insert": "system.js", "documents": [{"_id": "f", "value": 1}]}),
    ("update", {"update": "system.js", "updates": [
        {"q": {"_id": "f"}, "u": {"$set": {"value": 2}}, "upsert": True}]}),
    ("delete", {"delete": "system.js", "deletes": [{"q": {}, "limit": 0}]}),
    ("findAndModify", {"findAndModify": "system.js", "query": {}, "remove": True}),
]


@pytest.mark.parametrize("case", WRITES_TO_SYSTEM, ids=[c[0] for c in WRITES_TO_SYSTEM])
def test_writes_to_system_collections_refused_and_abort(conn, db, case):
    _name, cmd = case
    t = Txn(conn, db.name)
    assert_ok(t.start({"insert": "c", "documents": [{"_id": 1}]}))
    r = t.run(cmd)
    assert_error(r, 50791, labels=[],
                 msg="Cannot write to system collection %s.system.js within a transaction"
                 % db.name)
    assert_error(t.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT],
                 what="the refused write aborted the transaction")
    assert find_docs(conn, db.name, "c") == []


def test_writes_to_admin_system_collection_refused(conn):
    t = Txn(conn, "admin")
    r = t.start({"insert": "system.js", "documents": [{"_id": "f", "value": 1}]})
    assert_error(r, 50791, msg="Cannot write to system collection admin.system.js")
    assert_error(t.commit(), CODES["NoSuchTransaction"])


# -- drops and the writers of a collection -------------------------------------------------

def test_drop_waits_for_a_transaction_that_wrote_the_collection(server, conn, db):
    """A transaction that wrote into a collection holds it until it ends, as mongod's
    transaction holds its collection lock: a drop waits (here until its maxTimeMS), and runs
    once the transaction has committed."""
    seed(conn, db.name, "c", [{"_id": 0}])
    t = Txn(conn, db.name)
    assert_ok(t.start({"insert": "c", "documents": [{"_id": 1}]}))
    other = RawConn(server)
    try:
        assert_error(other.run({"drop": "c", "maxTimeMS": 300}, db.name),
                     CODES["MaxTimeMSExpired"])
        assert ids(find_docs(other, db.name, "c")) == [0], "the timed-out drop dropped nothing"
        assert_ok(t.commit())
        assert_ok(other.run({"drop": "c"}, db.name))
        assert "c" not in collection_names(other, db.name)
    finally:
        other.close()


def test_transaction_writing_a_collection_being_dropped_is_a_transient_conflict(server, conn,
                                                                                  db):
    """While a drop waits for the writers of a collection, a transaction that wants to write
    into it does not wait behind the drop: WriteConflict, labelled TransientTransactionError,
    and the transaction is aborted."""
    seed(conn, db.name, "c", [{"_id": 0}])
    holder = Txn(conn, db.name)
    assert_ok(holder.start({"insert": "c", "documents": [{"_id": 1}]}))
    dropper = RawConn(server, timeout=60.0)
    writer = RawConn(server)
    try:
        from txn_helpers import Background
        drop = Background(dropper.run, {"drop": "c", "maxTimeMS": 20000}, db.name)
        deadline = __import__("time").monotonic() + 20
        while True:  # until the drop holds its place on the namespace
            t = Txn(writer, db.name)
            r = t.start({"insert": "c", "documents": [{"_id": 2}]})
            if r.get("ok") != 1.0:
                break
            assert_ok(t.abort())
            assert __import__("time").monotonic() < deadline, "the drop never queued"
        assert r.get("code") == CODES["WriteConflict"], r
        assert TRANSIENT in r.get("errorLabels", []), r
        assert_ok(holder.abort())
        assert_ok(drop.join(30))
    finally:
        dropper.close()
        writer.close()
