"""CRUD through pymongo: inserts, finds, updates, replacements, deletes, findAndModify,
upserts, duplicate keys and bulk write errors, argument type errors."""

import pytest
from bson import Int64, ObjectId
from pymongo import ReturnDocument
from pymongo.errors import (BulkWriteError, DocumentTooLarge, DuplicateKeyError,
                            OperationFailure, WriteError)


def test_insert_one_and_find_one(coll):
    r = coll.insert_one({"_id": 1, "name": "a", "n": 5})
    assert r.acknowledged and r.inserted_id == 1
    assert coll.find_one({"_id": 1}) == {"_id": 1, "name": "a", "n": 5}
    assert coll.find_one({"_id": 2}) is None


def test_insert_one_generates_object_id_client_side(coll):
    r = coll.insert_one({"x": 1})
    assert isinstance(r.inserted_id, ObjectId)
    assert coll.find_one({"_id": r.inserted_id})["x"] == 1


def test_server_generates_missing_id(db):
    r = db.command("insert", "c", documents=[{"x": 1}, {"x": 2}])
    assert r["n"] == 2
    docs = list(db.c.find())
    assert len(docs) == 2
    for d in docs:
        assert isinstance(d["_id"], ObjectId)
        assert list(d.keys())[0] == "_id"
    assert docs[0]["_id"] != docs[1]["_id"]


def test_id_moved_first(db):
    db.command("insert", "c", documents=[{"x": 1, "_id": 7}])
    d = db.c.find_one()
    assert list(d.keys()) == ["_id", "x"]


def test_insert_many_and_find(coll):
    docs = [{"_id": i, "v": i * 10, "odd": i % 2 == 1} for i in range(50)]
    r = coll.insert_many(docs)
    assert r.inserted_ids == list(range(50))
    assert list(coll.find({"odd": True}).sort("_id", 1)) == [d for d in docs if d["odd"]]
    assert coll.count_documents({}) == 50


def test_value_types_round_trip(coll):
    import datetime

    from bson import Binary, Decimal128, MaxKey, MinKey, Regex, Timestamp

    doc = {
        "_id": "types",
        "i32": 1, "i64": Int64(1 << 40), "dbl": 1.5, "s": "h\u00e9llo", "b": True, "nul": None,
        "arr": [1, "two", [3], {"four": 4}], "sub": {"a": {"b": {"c": 1}}},
        "oid": ObjectId(), "date": datetime.datetime(2020, 1, 2, 3, 4, 5, 678000),
        "bin": b"\x00\x01\x02", "bin5": Binary(b"abc", 5), "ts": Timestamp(5, 6), "re": Regex("^a", "i"),
        "dec": Decimal128("1.25"), "min": MinKey(), "max": MaxKey(),
    }
    coll.insert_one(doc)
    got = coll.find_one({"_id": "types"})
    assert got == doc
    assert type(got["i64"]) is Int64
    assert type(got["i32"]) is int
    assert list(got.keys()) == list(doc.keys())


def test_update_one(coll):
    coll.insert_many([{"_id": i, "g": "a", "v": 0} for i in range(3)])
    r = coll.update_one({"g": "a"}, {"$set": {"v": 1}})
    assert (r.matched_count, r.modified_count) == (1, 1)
    assert coll.count_documents({"v": 1}) == 1


def test_update_many(coll):
    coll.insert_many([{"_id": i, "g": "a" if i < 5 else "b", "v": 0} for i in range(8)])
    r = coll.update_many({"g": "a"}, {"$inc": {"v": 2}})
    assert (r.matched_count, r.modified_count) == (5, 5)
    assert sorted(d["_id"] for d in coll.find({"v": 2})) == [0, 1, 2, 3, 4]
    assert coll.count_documents({"v": 0}) == 3


def test_update_no_op_counts_as_not_modified(coll):
    coll.insert_one({"_id": 1, "v": 1})
    r = coll.update_one({"_id": 1}, {"$set": {"v": 1}})
    assert (r.matched_count, r.modified_count) == (1, 0)
    r = coll.update_many({"_id": 99}, {"$set": {"v": 1}})
    assert (r.matched_count, r.modified_count) == (0, 0)
    assert r.upserted_id is None


def test_replace_one(coll):
    coll.insert_one({"_id": 1, "a": 1, "b": 2})
    r = coll.replace_one({"_id": 1}, {"c": 3})
    assert (r.matched_count, r.modified_count) == (1, 1)
    assert coll.find_one({"_id": 1}) == {"_id": 1, "c": 3}


def test_replace_cannot_change_id(coll):
    coll.insert_one({"_id": 1, "a": 1})
    with pytest.raises(WriteError) as e:
        coll.replace_one({"_id": 1}, {"_id": 2, "a": 2})
    assert e.value.code == 66  # ImmutableField
    assert coll.find_one({"_id": 1}) == {"_id": 1, "a": 1}
    assert coll.find_one({"_id": 2}) is None


def test_update_cannot_change_id(coll):
    coll.insert_one({"_id": 1, "a": 1})
    with pytest.raises(WriteError) as e:
        coll.update_one({"_id": 1}, {"$set": {"_id": 5}})
    assert e.value.code == 66
    assert coll.find_one({"_id": 1}) == {"_id": 1, "a": 1}


def test_upsert_update_inserts_with_query_fields(coll):
    r = coll.update_one({"name": "x", "k": {"$gt": 1}}, {"$set": {"v": 1}}, upsert=True)
    assert r.matched_count == 0 and r.modified_count == 0
    assert isinstance(r.upserted_id, ObjectId)
    d = coll.find_one({"_id": r.upserted_id})
    assert d == {"_id": r.upserted_id, "name": "x", "v": 1}
    r2 = coll.update_one({"name": "x"}, {"$set": {"v": 2}}, upsert=True)
    assert r2.upserted_id is None and r2.matched_count == 1
    assert coll.count_documents({}) == 1


def test_upsert_with_id_in_query(coll):
    r = coll.update_one({"_id": 42}, {"$inc": {"n": 1}}, upsert=True)
    assert r.upserted_id == 42
    coll.update_one({"_id": 42}, {"$inc": {"n": 1}}, upsert=True)
    assert coll.find_one({"_id": 42}) == {"_id": 42, "n": 2}


def test_upsert_replacement(coll):
    r = coll.replace_one({"_id": "k"}, {"v": 1}, upsert=True)
    assert r.upserted_id == "k"
    assert coll.find_one() == {"_id": "k", "v": 1}


def test_delete_one_and_many(coll):
    coll.insert_many([{"_id": i, "g": i % 3} for i in range(30)])
    r = coll.delete_one({"g": 1})
    assert r.deleted_count == 1
    assert coll.count_documents({"g": 1}) == 9
    r = coll.delete_many({"g": 2})
    assert r.deleted_count == 10
    assert coll.count_documents({}) == 19
    assert coll.delete_many({"g": 7}).deleted_count == 0
    assert coll.delete_many({}).deleted_count == 19
    assert coll.find_one() is None


def test_find_one_and_update(coll):
    coll.insert_many([{"_id": 1, "v": 1, "p": 3}, {"_id": 2, "v": 1, "p": 1}])
    before = coll.find_one_and_update({"v": 1}, {"$inc": {"v": 10}}, sort=[("p", 1)])
    assert before == {"_id": 2, "v": 1, "p": 1}
    after = coll.find_one_and_update({"_id": 1}, {"$set": {"v": 5}},
                                     return_document=ReturnDocument.AFTER,
                                     projection={"_id": 0, "v": 1})
    assert after == {"v": 5}
    assert coll.find_one_and_update({"_id": 9}, {"$set": {"v": 1}}) is None
    up = coll.find_one_and_update({"_id": 9}, {"$set": {"v": 1}}, upsert=True,
                                  return_document=ReturnDocument.AFTER)
    assert up == {"_id": 9, "v": 1}


def test_find_one_and_replace(coll):
    coll.insert_one({"_id": 1, "a": 1})
    old = coll.find_one_and_replace({"_id": 1}, {"b": 2})
    assert old == {"_id": 1, "a": 1}
    assert coll.find_one({"_id": 1}) == {"_id": 1, "b": 2}
    new = coll.find_one_and_replace({"_id": 1}, {"c": 3}, return_document=ReturnDocument.AFTER)
    assert new == {"_id": 1, "c": 3}


def test_find_one_and_delete(coll):
    coll.insert_many([{"_id": i, "p": -i} for i in range(5)])
    d = coll.find_one_and_delete({}, sort=[("p", 1)])
    assert d == {"_id": 4, "p": -4}
    assert coll.count_documents({}) == 4
    assert coll.find_one_and_delete({"_id": 100}) is None


def test_duplicate_id_is_11000(coll):
    coll.insert_one({"_id": 1, "v": "first"})
    with pytest.raises(DuplicateKeyError) as e:
        coll.insert_one({"_id": 1, "v": "second"})
    assert e.value.code == 11000
    assert "duplicate key" in e.value.details["errmsg"]
    assert coll.find_one({"_id": 1}) == {"_id": 1, "v": "first"}


def test_duplicate_id_across_numeric_types(coll):
    coll.insert_one({"_id": 1})
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": 1.0})
    with pytest.raises(DuplicateKeyError):
        coll.insert_one({"_id": Int64(1)})
    assert coll.count_documents({}) == 1


def test_unordered_insert_many_with_duplicates(coll):
    coll.insert_one({"_id": 1})
    with pytest.raises(BulkWriteError) as e:
        coll.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 2}, {"_id": 3}], ordered=False)
    det = e.value.details
    assert det["nInserted"] == 2
    assert [w["index"] for w in det["writeErrors"]] == [0, 2]
    assert all(w["code"] == 11000 for w in det["writeErrors"])
    assert sorted(d["_id"] for d in coll.find()) == [1, 2, 3]


def test_ordered_insert_many_stops_at_duplicate(coll):
    coll.insert_one({"_id": 1})
    with pytest.raises(BulkWriteError) as e:
        coll.insert_many([{"_id": 10}, {"_id": 1}, {"_id": 11}])
    det = e.value.details
    assert det["nInserted"] == 1
    assert len(det["writeErrors"]) == 1
    assert det["writeErrors"][0]["index"] == 1
    assert det["writeErrors"][0]["code"] == 11000
    assert sorted(d["_id"] for d in coll.find()) == [1, 10]


def test_bulk_write_mixed(coll):
    from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateMany, UpdateOne

    coll.insert_many([{"_id": i, "v": 0} for i in range(5)])
    r = coll.bulk_write([
        InsertOne({"_id": 10, "v": 0}),
        UpdateOne({"_id": 0}, {"$set": {"v": 1}}),
        UpdateMany({"_id": {"$gte": 3}}, {"$set": {"v": 2}}),
        ReplaceOne({"_id": 1}, {"v": 3}),
        DeleteOne({"_id": 2}),
        UpdateOne({"_id": 20}, {"$set": {"v": 4}}, upsert=True),
    ])
    assert r.inserted_count == 1
    assert r.matched_count == 1 + 3 + 1
    assert r.modified_count == 1 + 3 + 1
    assert r.deleted_count == 1
    assert r.upserted_ids == {5: 20}
    assert {d["_id"]: d["v"] for d in coll.find()} == {0: 1, 1: 3, 3: 2, 4: 2, 10: 2, 20: 4}


def test_document_too_large(coll):
    # pymongo refuses it client-side or sends it (it allows a small overhead); the server
    # must then answer BSONObjectTooLarge (10334) and store nothing.
    with pytest.raises((DocumentTooLarge, OperationFailure)) as e:
        coll.insert_one({"_id": 1, "x": "a" * (16 * 1024 * 1024)})
    if isinstance(e.value, OperationFailure):
        assert e.value.code == 10334
    assert coll.count_documents({}) == 0


@pytest.mark.parametrize("cmd", [
    {"find": "c", "filter": 5},
    {"find": "c", "limit": "x"},
    {"find": "c", "sort": 1},
    {"find": "c", "projection": "x"},
    {"find": "c", "skip": "x"},
    {"count": "c", "query": 5},
    {"aggregate": "c", "pipeline": 5, "cursor": {}},
], ids=lambda c: "-".join(str(k) for k in c if k != "c"))
def test_wrong_argument_type_is_14(db, cmd):
    with pytest.raises(OperationFailure) as e:
        db.command(cmd)
    assert e.value.code == 14  # TypeMismatch


@pytest.mark.parametrize("cmd", [
    {"insert": "c", "documents": 5},
    {"update": "c", "updates": 5},
    {"delete": "c", "deletes": "x"},
    {"insert": "c", "documents": [{"_id": 1}], "ordered": "yes"},
    {"update": "c", "updates": [{"q": 5, "u": {"$set": {"a": 1}}}]},
    {"update": "c", "updates": [{"q": {}, "u": {"$set": {"a": 1}}, "multi": "yes"}]},
    {"delete": "c", "deletes": [{"q": {}, "limit": "x"}]},
], ids=lambda c: repr(c).replace(" ", "")[:50])
def test_wrong_argument_type_raw_is_14(server, db, cmd):
    # pymongo moves documents/updates/deletes into a document sequence, so these go raw
    from rawwire import raw_command

    reply = raw_command(server, dict(cmd, **{"$db": db.name}))
    assert reply["ok"] == 0, reply
    assert reply["code"] == 14, reply  # TypeMismatch
    assert db.c.count_documents({}) == 0


def test_unknown_query_operator_is_2(coll):
    coll.insert_one({"_id": 1, "a": 1})
    with pytest.raises(OperationFailure) as e:
        list(coll.find({"a": {"$noSuchOp": 1}}))
    assert e.value.code == 2  # BadValue
    with pytest.raises(OperationFailure) as e:
        list(coll.find({"$noSuchTop": [{"a": 1}]}))
    assert e.value.code == 2


def test_failed_write_is_not_partial(coll):
    coll.insert_one({"_id": 1, "a": 1, "s": "str"})
    with pytest.raises(WriteError):
        coll.update_one({"_id": 1}, {"$set": {"a": 2}, "$inc": {"s": 1}})
    assert coll.find_one({"_id": 1}) == {"_id": 1, "a": 1, "s": "str"}


@pytest.mark.parametrize("deletes,code", [
    ([{"q": {}, "limit": 0}, {"q": {}}], 40414),          # second statement lacks limit
    ([{"q": {}, "limit": 0}, {"limit": 0}], 40414),       # second statement lacks q
    ([{"q": {}, "limit": 0}, {"q": {}, "limit": 2}], 9),  # limit must be 0 or 1
    ([{"q": {}, "limit": 0}, {"q": 5, "limit": 0}], 14),  # q must be a document
])
def test_malformed_delete_statement_fails_whole_command(db, deletes, code):
    # Statements are all parsed before any runs: nothing is deleted.
    db.d.insert_many([{"_id": i} for i in range(3)])
    with pytest.raises(OperationFailure) as e:
        db.command("delete", "d", deletes=deletes)
    assert e.value.code == code
    assert db.d.count_documents({}) == 3


def test_malformed_update_statement_fails_whole_command(db):
    db.u.insert_many([{"_id": i, "v": 0} for i in range(3)])
    with pytest.raises(OperationFailure) as e:
        db.command("update", "u", updates=[{"q": {}, "u": {"$inc": {"v": 1}}, "multi": True},
                                           {"q": {}}])
    assert e.value.code == 40414
    assert sorted(d["v"] for d in db.u.find()) == [0, 0, 0]
