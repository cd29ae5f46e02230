"""Deduplication and membership in the query layer cost O(n), not O(n^2): distinct, the
$addToSet accumulator, $in/$nin, and the $addToSet-with-$each and $pullAll updates look values
up in a hash set. Checked by counting BSON value comparisons (serverStatus
metrics.query.valueComparisons, Cairn's complexity probe) rather than by timing: a linear
search makes about n^2/2 comparisons, the hash set about none (sorting the distinct output,
n log n). A generous maxTimeMS keeps a regression from hanging the run. The equality rules
are mongod's: 1, 1.0, NumberLong(1) and NumberDecimal("1") are one value; strings compare
byte-wise; null matches a missing field; regexes in $in still match; arrays elementwise."""

import re

import pytest
from bson import Decimal128, Int64, Regex

GUARD_MS = 25000  # under the test client's 30 s socket timeout


def comparisons(client):
    return client.admin.command("serverStatus")["metrics"]["query"]["valueComparisons"]


@pytest.fixture(scope="module")
def many_values(client):
    """200 documents holding 1,000 distinct integers each: 200,000 distinct values."""
    coll = client.linear_cost.many
    coll.drop()
    coll.insert_many([{"_id": d, "vals": list(range(d * 1000, d * 1000 + 1000))}
                      for d in range(200)])
    return coll


def test_distinct_of_200k_values_is_linear(client, many_values):
    before = comparisons(client)
    r = many_values.database.command("distinct", "many", key="vals", maxTimeMS=GUARD_MS)
    used = comparisons(client) - before
    assert len(r["values"]) == 200000
    assert r["values"][:3] == [0, 1, 2] and r["values"][-1] == 199999
    # Sorting 200k values is ~3.5M comparisons; a linear search would be 2e10.
    assert used < 40 * 200000, used


def test_group_add_to_set_of_200k_values_is_linear(client, many_values):
    before = comparisons(client)
    r = list(many_values.aggregate([
        {"$unwind": "$vals"},
        {"$group": {"_id": None, "s": {"$addToSet": "$vals"}}},
        {"$project": {"n": {"$size": "$s"}}},
    ], maxTimeMS=GUARD_MS))
    used = comparisons(client) - before
    assert r == [{"_id": None, "n": 200000}]
    assert used < 40 * 200000, used


def test_distinct_and_add_to_set_use_mongods_equality(db):
    db.c.insert_many([
        {"_id": 1, "a": 1}, {"_id": 2, "a": 1.0}, {"_id": 3, "a": Int64(1)},
        {"_id": 4, "a": Decimal128("1")}, {"_id": 5, "a": "x"}, {"_id": 6, "a": "X"},
        {"_id": 7, "a": [2, 2.0, "x"]}, {"_id": 8, "a": {"k": 1}}, {"_id": 9, "a": {"k": 1.0}},
        {"_id": 10, "a": -0.0}, {"_id": 11, "a": 0},
    ])
    values = db.c.distinct("a")
    assert len(values) == 6, values  # 0, 1, 2, "X", "x", {k: 1}
    assert values[0] == 0 and values[1] == 1 and values[2] == 2
    assert values[3:5] == ["X", "x"] and values[5] == {"k": 1}
    r = list(db.c.aggregate([{"$group": {"_id": None, "s": {"$addToSet": "$a"}}}]))
    # $addToSet keeps whole arrays as values: 0, 1, "x", "X", [2, 2.0, "x"], {k: 1}.
    assert len(r[0]["s"]) == 6, r


def test_in_with_200k_values_is_linear(client, db):
    db.c.insert_many([{"_id": i, "x": i * 7} for i in range(2000)])
    wanted = list(range(0, 1400000, 7))[::-1][:200000]  # 200,000 values, 2,000 of them present
    before = comparisons(client)
    got = db.c.count_documents({"x": {"$in": wanted}}, maxTimeMS=GUARD_MS)
    nin = db.c.count_documents({"x": {"$nin": wanted}}, maxTimeMS=GUARD_MS)
    used = comparisons(client) - before
    assert got == 2000 and nin == 0
    # A linear $in would compare up to 200k values per document: 4e8.
    assert used < 20 * (200000 + 2000), used


IN_CASES = [
    ({"a": {"$in": [1]}}, {1, 2, 3, 4, 9}),
    ({"a": {"$in": [Int64(1)]}}, {1, 2, 3, 4, 9}),
    ({"a": {"$in": [None]}}, {5, 6, 10}),
    ({"a": {"$in": [Regex("^ab")]}}, {7}),
    ({"a": {"$in": [re.compile("^AB", re.I), 2]}}, {7, 8}),
    ({"a": {"$in": [[2, 3]]}}, {8}),
    ({"a": {"$in": [3]}}, {8}),
    ({"a": {"$in": [{"k": 1.0}]}}, {11}),
    ({"a": {"$in": [float("nan")]}}, {12}),
    ({"a": {"$in": []}}, set()),
    ({"a": {"$nin": [1, None]}}, {7, 8, 11, 12}),
]


@pytest.mark.parametrize("flt,want", IN_CASES, ids=[repr(c[0]) for c in IN_CASES])
def test_in_follows_mongods_equality(db, flt, want):
    db.c.insert_many([
        {"_id": 1, "a": 1}, {"_id": 2, "a": 1.0}, {"_id": 3, "a": Int64(1)},
        {"_id": 4, "a": Decimal128("1")}, {"_id": 5, "a": None}, {"_id": 6},
        {"_id": 7, "a": "abc"}, {"_id": 8, "a": [2, 3]}, {"_id": 9, "a": [1, "x"]},
        {"_id": 10, "a": [None, 5]}, {"_id": 11, "a": {"k": 1}}, {"_id": 12, "a": float("nan")},
    ])
    assert {d["_id"] for d in db.c.find(flt)} == want


def test_add_to_set_each_of_50k_values_is_linear(client, db):
    n = 50000
    db.c.insert_one({"_id": 1, "a": [0, 1]})
    each = list(range(n)) + [Int64(5), 7.0, Decimal128("9")]
    before = comparisons(client)
    db.c.update_one({"_id": 1}, {"$addToSet": {"a": {"$each": each}}})
    used = comparisons(client) - before
    a = db.c.find_one({"_id": 1})["a"]
    assert a == list(range(n))
    assert used < 20 * n, used  # a linear search: 1.25e9


def test_add_to_set_each_keeps_first_of_equals(db):
    db.c.insert_one({"_id": 1, "a": [2, 2]})
    db.c.update_one({"_id": 1}, {"$addToSet": {"a": {"$each": [1, 1.0, Int64(1), 2.0, "2"]}}})
    a = db.c.find_one({"_id": 1})["a"]
    assert a == [2, 2, 1, "2"] and type(a[2]) is int


def test_pull_all_of_50k_values_is_linear(client, db):
    n = 50000
    db.c.insert_one({"_id": 1, "a": list(range(n))})
    before = comparisons(client)
    db.c.update_one({"_id": 1}, {"$pullAll": {"a": [float(i) for i in range(1, n, 2)]}})
    used = comparisons(client) - before
    assert db.c.find_one({"_id": 1})["a"] == list(range(0, n, 2))
    assert used < 20 * n, used  # a linear search: 1.25e9


def test_pull_with_in_of_50k_values_is_linear(client, db):
    n = 50000
    db.c.insert_one({"_id": 1, "a": list(range(n))})
    before = comparisons(client)
    db.c.update_one({"_id": 1}, {"$pull": {"a": {"$in": list(range(0, n, 2))}}})
    used = comparisons(client) - before
    assert db.c.find_one({"_id": 1})["a"] == list(range(1, n, 2))
    assert used < 20 * n, used


def key_comparisons(client):
    return client.admin.command("serverStatus")["metrics"]["query"]["indexKeyComparisons"]


def test_multikey_index_of_a_large_array_is_n_log_n(client, db):
    # A document whose indexed array has k elements has k keys: computing, deduplicating and
    # diffing them on update sorts them (k log k) instead of searching linearly (k^2).
    k = 50000
    db.c.create_index("a")
    vals = [(i * 7919) % k for i in range(k)] + [Int64(3), 5.0]  # two duplicates
    before = key_comparisons(client)
    db.c.insert_one({"_id": 1, "a": vals})
    db.c.update_one({"_id": 1}, {"$push": {"a": -1}})
    used = key_comparisons(client) - before
    assert used < 100 * k, used  # k log k is ~8e5 per pass; k^2 / 2 would be 1.25e9
    assert [d["_id"] for d in db.c.find({"a": 49999})] == [1]
    assert [d["_id"] for d in db.c.find({"a": -1})] == [1]
    assert db.c.count_documents({"a": {"$gte": 0}}) == 1
    db.c.update_one({"_id": 1}, {"$pull": {"a": {"$gte": 10}}})
    assert db.c.count_documents({"a": 49999}) == 0 and db.c.count_documents({"a": 5}) == 1


def name_comparisons(client):
    return client.admin.command("serverStatus")["metrics"]["query"]["fieldNameComparisons"]


@pytest.mark.parametrize("how", ["find", "project", "addFields"])
def test_wide_projection_over_a_wide_document_is_linear(client, db, how):
    # n projected fields over a document of n fields: a linear child search is n^2 / 2.
    n = 20000
    doc = {"_id": 1, **{"f%d" % i: i for i in range(n)}}
    db.c.insert_one(doc)
    before = name_comparisons(client)
    if how == "find":
        got = db.c.find_one({}, {"f%d" % i: 1 for i in range(0, n, 2)})
        want = {"_id": 1, **{"f%d" % i: i for i in range(0, n, 2)}}
    elif how == "project":
        got = next(db.c.aggregate([{"$project": {"f%d" % i: 0 for i in range(0, n, 2)}}]))
        want = {"_id": 1, **{"f%d" % i: i for i in range(1, n, 2)}}
    else:
        got = next(db.c.aggregate([{"$addFields": {"f%d" % i: -i for i in range(0, n, 2)}}]))
        want = {"_id": 1, **{"f%d" % i: (-i if i % 2 == 0 else i) for i in range(n)}}
    used = name_comparisons(client) - before
    assert got == want
    assert list(got) == list(want)  # field order kept
    assert used < 20 * n, used
