"""Unique indexes against one cairnd: DuplicateKey (11000) with mongod's errmsg, keyPattern and
keyValue on every write path, inside and outside transactions; duplicates inside one batch
(ordered and unordered); builds over existing duplicates fail and leave nothing behind;
concurrent inserts of one key (statements and transactions) have exactly one winner."""

import random
import threading

import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from workers import Workers


def dup_details(exc):
    d = exc.details
    return d.get("writeErrors", [d])[0] if "writeErrors" in d else d


def test_insert_duplicate_reports_key_pattern_and_value(coll):
    coll.create_index([("a", 1), ("b", -1)], unique=True, name="ab")
    coll.insert_one({"a": 1, "b": "x"})
    with pytest.raises(DuplicateKeyError) as exc:
        coll.insert_one({"a": 1, "b": "x"})
    e = exc.value.details
    assert e["code"] == 11000
    assert e["keyPattern"] == {"a": 1, "b": -1}
    assert e["keyValue"] == {"a": 1, "b": "x"}
    assert e["errmsg"] == ('E11000 duplicate key error collection: %s index: ab dup key: '
                           '{ a: 1, b: "x" }' % coll.full_name)
    coll.insert_one({"a": 1, "b": "y"})  # another key is fine
    assert coll.count_documents({}) == 2


def test_missing_fields_collide_unless_sparse(coll):
    coll.create_index("u", unique=True)
    coll.create_index("s", unique=True, sparse=True)
    coll.insert_one({"_id": 1})
    with pytest.raises(DuplicateKeyError) as exc:
        coll.insert_one({"_id": 2})  # u missing twice: null twice
    assert exc.value.details["keyValue"] == {"u": None}
    coll.insert_one({"_id": 3, "u": 3})  # s missing again: sparse skips it


def test_partial_unique_only_constrains_matching_documents(coll):
    coll.create_index("e", unique=True, partialFilterExpression={"active": True})
    coll.insert_many([{"e": "x", "active": False}, {"e": "x", "active": False},
                      {"e": "x", "active": True}])
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"e": "x", "active": True})


def test_batch_duplicates_ordered_and_unordered(coll):
    coll.create_index("k", unique=True)
    docs = [{"_id": i, "k": k} for i, k in enumerate([1, 2, 1, 3, 2, 4])]
    with pytest.raises(BulkWriteError) as exc:
        coll.insert_many(docs, ordered=True)
    r = exc.value.details
    assert r["nInserted"] == 2
    assert [(w["index"], w["code"]) for w in r["writeErrors"]] == [(2, 11000)]
    coll.delete_many({})
    with pytest.raises(BulkWriteError) as exc:
        coll.insert_many(docs, ordered=False)
    r = exc.value.details
    assert r["nInserted"] == 4
    assert [(w["index"], w["keyValue"]) for w in r["writeErrors"]] == [(2, {"k": 1}),
                                                                       (4, {"k": 2})]
    assert sorted(d["k"] for d in coll.find()) == [1, 2, 3, 4]
    assert coll.database.command("validate", coll.name)["valid"] is True


def test_update_and_find_and_modify_duplicates(coll):
    coll.create_index("k", unique=True)
    coll.insert_many([{"_id": 1, "k": 1}, {"_id": 2, "k": 2}])
    with pytest.raises(DuplicateKeyError) as exc:
        coll.update_one({"_id": 2}, {"$set": {"k": 1}})
    assert exc.value.details["keyPattern"] == {"k": 1}
    with pytest.raises(DuplicateKeyError) as exc:
        coll.find_one_and_update({"_id": 2}, {"$inc": {"k": -1}})
    assert exc.value.details["keyValue"] == {"k": 1}
    with pytest.raises(DuplicateKeyError):
        coll.replace_one({"_id": 1}, {"k": 2})
    # Freeing a key lets another document take it.
    coll.update_one({"_id": 1}, {"$set": {"k": 10}})
    coll.update_one({"_id": 2}, {"$set": {"k": 1}})
    assert {d["_id"]: d["k"] for d in coll.find()} == {1: 10, 2: 1}
    coll.delete_one({"_id": 2})
    coll.insert_one({"_id": 3, "k": 1})
    assert coll.database.command("validate", coll.name)["valid"] is True


def test_multikey_unique_values_across_documents(coll):
    coll.create_index("tags", unique=True)
    coll.insert_one({"_id": 1, "tags": ["a", "b", "a"]})  # repeated inside one document: fine
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": 2, "tags": ["c", "b"]})
    coll.update_one({"_id": 1}, {"$pull": {"tags": "b"}})
    coll.insert_one({"_id": 2, "tags": ["c", "b"]})


def test_array_elements_without_the_field_collide_as_null(coll):
    """As mongod: in {m.k: 1}, an element of m without k keys as null, so two documents that
    each have one collide on null; a sparse unique index skips those elements."""
    coll.create_index("m.k", unique=True)
    coll.create_index("s.k", unique=True, sparse=True, name="sparse_sk")
    coll.insert_one({"_id": 1, "m": [{"k": 1}, {"other": 1}], "s": [{"k": 1}, {}]})
    with pytest.raises(DuplicateKeyError) as exc:
        coll.insert_one({"_id": 2, "m": [{"k": 2}, 5]})
    assert exc.value.details["keyValue"] == {"m.k": None}
    coll.insert_one({"_id": 3, "m": [{"k": 3}], "s": [{"k": 2}, {}]})  # sparse: no null key
    v = coll.database.command("validate", coll.name)
    assert v["valid"] is True
    assert v["keysPerIndex"] == {"_id_": 2, "m.k_1": 3, "sparse_sk": 2}


def test_build_over_duplicates_fails_and_leaves_nothing(coll):
    coll.insert_many([{"_id": i, "k": i % 7} for i in range(50)])
    with pytest.raises(OperationFailure) as exc:
        coll.create_index("k", unique=True)
    assert exc.value.code == 11000
    assert [ix["name"] for ix in coll.list_indexes()] == ["_id_"]
    v = coll.database.command("validate", coll.name)
    assert v["nIndexes"] == 1 and v["valid"] is True
    # The same build succeeds once the duplicates are gone.
    coll.delete_many({"_id": {"$gte": 7}})
    coll.create_index("k", unique=True)
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"k": 3})


def test_duplicate_in_transaction_and_commit_after(client, coll):
    coll.create_index("k", unique=True)
    coll.insert_one({"_id": 0, "k": 0})
    with client.start_session() as s:
        s.start_transaction()
        coll.insert_one({"_id": 1, "k": 1}, session=s)
        with pytest.raises(DuplicateKeyError) as exc:
            coll.insert_one({"_id": 2, "k": 1}, session=s)
        assert exc.value.details["keyValue"] == {"k": 1}
        # As with mongod, the error aborted the transaction.
        with pytest.raises(OperationFailure) as exc:
            s.commit_transaction()
        assert exc.value.code == 251
    assert coll.count_documents({}) == 1
    with client.start_session() as s:
        with s.start_transaction():
            coll.insert_one({"_id": 1, "k": 1}, session=s)
            coll.update_one({"_id": 0}, {"$set": {"k": 5}}, session=s)
            coll.insert_one({"_id": 2, "k": 0}, session=s)  # freed inside the transaction
    assert {d["_id"]: d["k"] for d in coll.find()} == {0: 5, 1: 1, 2: 0}
    assert coll.database.command("validate", coll.name)["valid"] is True


def test_concurrent_transactions_on_one_key_conflict(client, coll):
    coll.create_index("k", unique=True)
    s1, s2 = client.start_session(), client.start_session()
    try:
        s1.start_transaction()
        s2.start_transaction()
        coll.insert_one({"_id": 1, "k": "same"}, session=s1)
        with pytest.raises(OperationFailure) as exc:
            coll.insert_one({"_id": 2, "k": "same"}, session=s2)
        assert exc.value.code == 112
        assert exc.value.has_error_label("TransientTransactionError")
        s1.commit_transaction()
    finally:
        s1.end_session()
        s2.end_session()
    assert [d["_id"] for d in coll.find()] == [1]


def test_concurrent_statement_inserts_exactly_one_wins(server, coll):
    coll.create_index("k", unique=True)
    rng = random.Random(8)
    keys = [rng.randrange(5) for _ in range(16)]
    wins, dups = [], []
    lock = threading.Lock()
    barrier = threading.Barrier(len(keys))

    def insert(i, k):
        c = server.client()
        try:
            barrier.wait()
            try:
                c[coll.database.name][coll.name].insert_one({"_id": i, "k": k})
                with lock:
                    wins.append(k)
            except DuplicateKeyError:
                with lock:
                    dups.append(k)
        finally:
            c.close()

    w = Workers()
    for i, k in enumerate(keys):
        w.start(insert, i, k)
    w.join()
    w.check()
    assert sorted(wins) == sorted(set(keys))
    assert len(wins) + len(dups) == len(keys)
    assert coll.database.command("validate", coll.name)["valid"] is True


def test_concurrent_transactions_exactly_one_commits(server, coll):
    coll.create_index("k", unique=True)
    n = 12
    committed = []
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def attempt(i):
        c = server.client()
        try:
            with c.start_session() as s:
                barrier.wait()
                try:
                    with s.start_transaction():
                        c[coll.database.name][coll.name].insert_one({"_id": i, "k": 42},
                                                                    session=s)
                    with lock:
                        committed.append(i)
                except OperationFailure as e:
                    assert e.code in (112, 11000, 251), e
        finally:
            c.close()

    w = Workers()
    for i in range(n):
        w.start(attempt, i)
    w.join()
    w.check()
    assert len(committed) == 1
    assert [d["_id"] for d in coll.find()] == committed


def test_large_build_over_duplicates_drops_what_it_committed(server, coll):
    """A build that commits several chunks before meeting a duplicate drops its index again,
    while other clients go on writing the collection (their writes maintained the index)."""
    n = 30000
    coll.insert_many([{"_id": i, "k": "key-%06d" % i} for i in range(n)])
    coll.insert_one({"_id": n, "k": "key-%06d" % (n - 1)})  # the duplicate, scanned last
    stop = threading.Event()

    def writer(seed):
        r = random.Random(seed)
        c = server.client()
        try:
            w = c[coll.database.name][coll.name]
            while not stop.is_set():
                w.update_one({"_id": r.randrange(n)}, {"$set": {"x": r.randrange(9)}})
        finally:
            c.close()

    ws = Workers()
    for s in range(2):
        ws.start(writer, s)
    try:
        with pytest.raises(OperationFailure) as exc:
            coll.create_index("k", unique=True)
        assert exc.value.code == 11000
    finally:
        stop.set()
        ws.finish()
    assert [ix["name"] for ix in coll.list_indexes()] == ["_id_"]
    v = coll.database.command("validate", coll.name)
    assert v["nIndexes"] == 1 and v["valid"] is True
