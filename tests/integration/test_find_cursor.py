"""find options (projection, sort, skip, limit, batch_size), cursors with getMore and
killCursors over many documents, count_documents, estimated_document_count, distinct."""

import datetime

import pytest
from bson import Int64, ObjectId
from pymongo.errors import CursorNotFound, OperationFailure

PEOPLE = [
    {"_id": 1, "name": "ann", "age": 31, "city": "oslo", "addr": {"zip": "0150", "no": 3},
     "tags": ["a", "b"]},
    {"_id": 2, "name": "bob", "age": 25, "city": "rome", "addr": {"zip": "0010", "no": 9},
     "tags": ["b"]},
    {"_id": 3, "name": "cy", "age": 31, "city": "rome", "addr": {"zip": "0200", "no": 1},
     "tags": []},
    {"_id": 4, "name": "dee", "age": 19, "city": "oslo", "addr": {"zip": "0100", "no": 5},
     "tags": ["c", "a"]},
    {"_id": 5, "name": "eve", "age": 40, "city": "lima", "addr": {"zip": "0300", "no": 2}},
]


@pytest.fixture(scope="module")
def people(client):
    c = client["t_find_cursor"]["people"]
    c.drop()
    c.insert_many(PEOPLE)
    return c


def test_projection_inclusion(people):
    assert list(people.find({"_id": 1}, {"name": 1})) == [{"_id": 1, "name": "ann"}]
    assert list(people.find({"_id": 1}, {"name": 1, "_id": 0})) == [{"name": "ann"}]
    assert list(people.find({"_id": 1}, {"addr.zip": 1})) == [{"_id": 1, "addr": {"zip": "0150"}}]
    assert list(people.find({"_id": 1}, {"missing": 1})) == [{"_id": 1}]


def test_projection_exclusion(people):
    assert list(people.find({"_id": 2}, {"addr": 0, "tags": 0})) == [
        {"_id": 2, "name": "bob", "age": 25, "city": "rome"}]
    assert list(people.find({"_id": 2}, {"_id": 0, "addr.no": 0, "tags": 0, "city": 0})) == [
        {"name": "bob", "age": 25, "addr": {"zip": "0010"}}]


def test_projection_keeps_field_order(people):
    d = people.find_one({"_id": 1}, {"city": 1, "name": 1})
    assert list(d.keys()) == ["_id", "name", "city"]


def test_projection_mixed_is_error(people):
    with pytest.raises(OperationFailure):
        list(people.find({}, {"name": 1, "age": 0}))


def test_sort(people):
    assert [d["_id"] for d in people.find().sort([("age", 1), ("_id", 1)])] == [4, 2, 1, 3, 5]
    assert [d["_id"] for d in people.find().sort([("age", -1), ("_id", 1)])] == [5, 1, 3, 2, 4]
    assert [d["_id"] for d in people.find().sort("name", 1)] == [1, 2, 3, 4, 5]
    assert [d["_id"] for d in people.find().sort([("age", -1), ("_id", -1)])] == [5, 3, 1, 2, 4]
    assert [d["_id"] for d in people.find().sort([("city", 1), ("age", -1)])] == [5, 1, 4, 3, 2]
    assert [d["_id"] for d in people.find().sort("addr.zip", 1)] == [2, 4, 1, 3, 5]
    assert [d["_id"] for d in people.find({"city": "rome"}).sort("name", -1)] == [3, 2]


def test_sort_by_array_uses_min_or_max_element(people):
    # ascending sorts by the smallest element, descending by the largest
    flt = {"_id": {"$in": [1, 2, 4]}}
    asc = [d["_id"] for d in people.find(flt).sort([("tags", 1), ("_id", 1)])]
    assert asc == [1, 4, 2]
    desc = [d["_id"] for d in people.find(flt).sort([("tags", -1), ("_id", 1)])]
    assert desc == [4, 1, 2]


def test_skip_limit(people):
    ids = [d["_id"] for d in people.find().sort("_id", 1).skip(1).limit(2)]
    assert ids == [2, 3]
    assert [d["_id"] for d in people.find().sort("_id", -1).limit(3)] == [5, 4, 3]
    assert [d["_id"] for d in people.find().sort("_id", 1).skip(4)] == [5]
    assert list(people.find().skip(10)) == []
    assert len(list(people.find().limit(0))) == 5


def test_sort_mixed_types_in_bson_order(coll):
    t = datetime.datetime(2020, 1, 1)
    oid = ObjectId()
    coll.insert_many([
        {"_id": 1, "v": "abc"}, {"_id": 2, "v": 5}, {"_id": 3, "v": None},
        {"_id": 4, "v": {"x": 1}}, {"_id": 5, "v": True}, {"_id": 6, "v": 2.5},
        {"_id": 7, "v": t}, {"_id": 8, "v": oid}, {"_id": 9}, {"_id": 10, "v": Int64(3)},
        {"_id": 11, "v": False},
    ])
    got = [d["_id"] for d in coll.find().sort([("v", 1), ("_id", 1)])]
    assert got == [3, 9, 6, 10, 2, 1, 4, 8, 11, 5, 7]
    got = [d["_id"] for d in coll.find().sort([("v", -1), ("_id", 1)])]
    assert got == [7, 5, 11, 8, 4, 1, 2, 10, 6, 3, 9]


def test_many_documents_cursor(coll):
    n = 10000
    coll.insert_many([{"_id": i, "pad": "x" * 50, "i": i} for i in range(n)])
    ids = [d["_id"] for d in coll.find()]
    assert ids == list(range(n)), "without sort, documents come back once each in _id order"
    ids = [d["_id"] for d in coll.find().batch_size(333)]
    assert ids == list(range(n))
    ids = [d["_id"] for d in coll.find({"i": {"$gte": 5000}}).sort("i", -1).batch_size(1000)]
    assert ids == list(range(n - 1, 4999, -1))
    assert coll.count_documents({}) == n
    assert coll.count_documents({"i": {"$lt": 100}}) == 100
    assert coll.estimated_document_count() == n


def test_insert_order_differs_from_id_order(coll):
    import random

    ids = list(range(2000))
    random.Random(7).shuffle(ids)
    coll.insert_many([{"_id": i} for i in ids])
    assert [d["_id"] for d in coll.find()] == list(range(2000))


def test_get_more_and_kill_cursors(db):
    db.c.insert_many([{"_id": i} for i in range(25)])
    r = db.command("find", "c", batchSize=10)
    cur = r["cursor"]
    assert cur["ns"] == db.name + ".c"
    assert [d["_id"] for d in cur["firstBatch"]] == list(range(10))
    cid = cur["id"]
    assert isinstance(cid, Int64) or isinstance(cid, int)
    assert cid != 0
    r = db.command("getMore", cid, collection="c", batchSize=10)
    assert [d["_id"] for d in r["cursor"]["nextBatch"]] == list(range(10, 20))
    assert r["cursor"]["id"] == cid
    k = db.command("killCursors", "c", cursors=[cid])
    assert k["cursorsKilled"] == [cid]
    with pytest.raises(OperationFailure) as e:
        db.command("getMore", cid, collection="c")
    assert e.value.code == 43  # CursorNotFound


def test_cursor_exhausted_has_id_zero(db):
    db.c.insert_many([{"_id": i} for i in range(3)])
    r = db.command("find", "c", batchSize=10)
    assert r["cursor"]["id"] == 0
    assert len(r["cursor"]["firstBatch"]) == 3
    r = db.command("find", "c", batchSize=3)
    cid = r["cursor"]["id"]
    if cid != 0:
        r = db.command("getMore", cid, collection="c")
        assert r["cursor"]["nextBatch"] == []
        assert r["cursor"]["id"] == 0


def test_closed_cursor_is_killed(coll):
    coll.insert_many([{"_id": i} for i in range(300)])
    cur = coll.find().batch_size(10)
    next(cur)
    cid = cur.cursor_id
    assert cid
    cur.close()
    with pytest.raises((CursorNotFound, OperationFailure)) as e:
        coll.database.command("getMore", cid, collection=coll.name)
    assert e.value.code == 43


def test_find_on_missing_collection_is_empty(db):
    assert list(db.nothing_here.find()) == []
    assert db.nothing_here.count_documents({}) == 0
    assert db.nothing_here.estimated_document_count() == 0


def test_count_documents_with_skip_limit(people):
    assert people.count_documents({"city": "rome"}) == 2
    assert people.count_documents({}, skip=2) == 3
    assert people.count_documents({}, limit=2) == 2
    assert people.count_documents({"age": {"$gt": 100}}) == 0


def test_count_command(people):
    assert people.database.command("count", people.name)["n"] == 5
    assert people.database.command("count", people.name, query={"age": 31})["n"] == 2


def test_distinct(people):
    assert sorted(people.distinct("city")) == ["lima", "oslo", "rome"]
    assert sorted(people.distinct("tags")) == ["a", "b", "c"]
    assert sorted(people.distinct("age", {"city": "oslo"})) == [19, 31]
    assert sorted(people.distinct("addr.zip", {"age": {"$gte": 31}})) == ["0150", "0200", "0300"]
    assert people.distinct("nothing") == []


def test_distinct_numbers_compare_across_types(coll):
    coll.insert_many([{"_id": 1, "v": 1}, {"_id": 2, "v": 1.0}, {"_id": 3, "v": Int64(1)},
                      {"_id": 4, "v": 2}])
    assert len(coll.distinct("v")) == 2
