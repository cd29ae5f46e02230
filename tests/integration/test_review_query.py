"""Reviewer R2: MongoDB query-language corner cases (matching, update operators, projection,
sort, aggregation). Expected results are what mongod 4.4-7.0 returns."""

import datetime

import pytest
from bson import Decimal128, Int64, MaxKey, MinKey, Regex, Timestamp
from bson.son import SON
from pymongo.errors import OperationFailure

def typed(v):
    """A structure that tells int, Int64, float and bool apart (repr(Int64(1)) is '1')."""
    if isinstance(v, dict):
        return [(k, typed(x)) for k, x in v.items()]
    if isinstance(v, list):
        return ["list"] + [typed(x) for x in v]
    return (type(v).__name__, repr(v))


M_DOCS = [
    {"_id": 1, "a": [0, 5]},
    {"_id": 2, "a": 2},
    {"_id": 3, "a": [[1, 2], [3]]},
    {"_id": 4, "a": None},
    {"_id": 5},
    {"_id": 6, "a": [None]},
    {"_id": 7, "a": []},
    {"_id": 8, "a": [{"b": 1}, {"b": [2, 3]}]},
    {"_id": 9, "a": {"b": [[4]]}},
    {"_id": 10, "a": [[{"b": 5}]]},
    {"_id": 11, "a": [1, "x"]},
    {"_id": 12, "a": 2.5},
    {"_id": 13, "a": Int64(3)},
    {"_id": 14, "a": [{"b": None}]},
    {"_id": 15, "a": [{"c": 1}]},
]
M_ALL = {d["_id"] for d in M_DOCS}

M_CASES = [
    ({"a": {"$gt": 1, "$lt": 3}}, {1, 2, 12}),
    ({"a": {"$elemMatch": {"$gt": 1, "$lt": 3}}}, set()),
    ({"a": {"$elemMatch": {"$gte": 5}}}, {1}),
    ({"a": {"$elemMatch": {"b": {"$gte": 2}}}}, {8}),
    ({"a": None}, {4, 5, 6}),
    ({"a": {"$eq": None}}, {4, 5, 6}),
    ({"a": {"$ne": None}}, M_ALL - {4, 5, 6}),
    ({"a": {"$lte": None}}, {4, 5, 6}),
    ({"a": {"$gte": None}}, {4, 5, 6}),
    ({"a": {"$gt": None}}, set()),
    ({"a": {"$lt": None}}, set()),
    ({"a": []}, {7}),
    ({"a": [None]}, {6}),
    ({"a": [0, 5]}, {1}),
    ({"a": {"$size": 0}}, {7}),
    ({"a": {"$size": 2}}, {1, 3, 8, 11}),
    ({"a": {"$size": 2.0}}, {1, 3, 8, 11}),
    ({"a": {"$type": "array"}}, {1, 3, 6, 7, 8, 10, 11, 14, 15}),
    ({"a": {"$type": "number"}}, {1, 2, 11, 12, 13}),
    ({"a": {"$type": "null"}}, {4, 6}),
    ({"a": {"$type": ["string", "long"]}}, {11, 13}),
    ({"a": {"$type": 4}}, {1, 3, 6, 7, 8, 10, 11, 14, 15}),
    ({"a": {"$exists": False}}, {5}),
    ({"a": {"$exists": True}}, M_ALL - {5}),
    ({"a.b": {"$exists": False}}, {1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 15}),
    ({"a.b": {"$exists": True}}, {8, 9, 14}),
    ({"a.b": 2}, {8}),
    ({"a.b": [2, 3]}, {8}),
    ({"a.b": [4]}, {9}),
    ({"a.b": [[4]]}, {9}),
    ({"a.b": 4}, set()),
    ({"a.0": [1, 2]}, {3}),
    ({"a.0.b": 5}, {10}),
    ({"a.1": 5}, {1}),
    ({"a.1.0": 3}, {3}),
    ({"a.1.b": 2}, {8}),
    ({"a": {"$all": [[1, 2]]}}, {3}),
    ({"a": {"$all": [0, 5]}}, {1}),
    ({"a": {"$all": [5]}}, {1}),
    ({"a": {"$all": []}}, set()),
    ({"a": {"$all": [2]}}, {2}),
    ({"a": {"$all": [{"$elemMatch": {"b": 1}}]}}, {8}),
    ({"a": {"$in": [None]}}, {4, 5, 6}),
    ({"a": {"$in": [Regex("^x")]}}, {11}),
    ({"a": {"$in": [Regex("^x"), 2]}}, {2, 11}),
    ({"a": {"$in": [[]]}}, {7}),
    ({"a": {"$in": []}}, set()),
    ({"a": {"$nin": [None, 2]}}, M_ALL - {2, 4, 5, 6}),
    ({"a": {"$nin": [0]}}, M_ALL - {1}),
    ({"a": {"$ne": 5}}, M_ALL - {1}),
    ({"a": {"$ne": [0, 5]}}, M_ALL - {1}),
    ({"a": {"$not": Regex("x")}}, M_ALL - {11}),
    ({"a": {"$not": {"$regex": "x"}}}, M_ALL - {11}),
    ({"a": {"$not": {"$in": [2, 5]}}}, M_ALL - {1, 2}),
    ({"a": {"$not": {"$gt": 2}}}, M_ALL - {1, 12, 13}),
    ({"a": {"$not": {"$size": 2}}}, M_ALL - {1, 3, 8, 11}),
    ({"a": Regex("x")}, {11}),
    ({"a": {"$regex": "X", "$options": "i"}}, {11}),
    ({"a": {"$gt": [0]}}, {1, 3, 8, 10, 11, 14, 15}),
    ({"a": {"$eq": [0, 5]}}, {1}),
    ({"a": {"$gte": MinKey()}}, M_ALL),
    ({"a": {"$lte": MaxKey()}}, M_ALL),
    ({"a": {"$gt": MinKey()}}, M_ALL),
    ({"a": {"$lt": MaxKey()}}, M_ALL),
    ({"a": 3}, {13}),
    ({"a": 3.0}, {13}),
    ({"a": Decimal128("2.5")}, {12}),
    ({"a.b": None}, {1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15}),
    ({"a": {"$elemMatch": {"$eq": None}}}, {6}),
    ({"a": {"$elemMatch": {"$type": "array"}}}, {3, 10}),
    ({"$and": [{"a": {"$gt": 0}}, {"a": {"$lt": 1}}]}, {1}),
    ({"$or": [{"a": 2}, {"a.b": 1}]}, {2, 8}),
    ({"$nor": [{"a": {"$exists": True}}]}, {5}),
    ({"a.b": {"$size": 2}}, {8}),
    ({"a.b": {"$type": "array"}}, {8, 9}),
    ({"a.b": {"$gt": 2}}, {8}),
]


@pytest.fixture
def mcoll(coll):
    coll.insert_many(M_DOCS)
    return coll


@pytest.mark.parametrize("flt,want", M_CASES, ids=[repr(c[0]) for c in M_CASES])
def test_match(mcoll, flt, want):
    got = {d["_id"] for d in mcoll.find(flt)}
    assert got == want


NOW = datetime.datetime(2020, 1, 1)

# (initial document without _id, update, expected document without _id) -- order matters
U_CASES = [
    ({"a": [1]}, {"$set": {"a.3": 9}}, {"a": [1, None, None, 9]}),
    ({"a": [1, 2]}, {"$unset": {"a.0": ""}}, {"a": [None, 2]}),
    ({"a": [1, 2]}, {"$unset": {"a.5": ""}}, {"a": [1, 2]}),
    ({}, {"$inc": {"x.y": 2}}, {"x": {"y": 2}}),
    ({}, {"$inc": {"x": Int64(2)}}, {"x": Int64(2)}),
    ({}, {"$mul": {"x": 5}}, {"x": 0}),
    ({}, {"$mul": {"x": 2.5}}, {"x": 0.0}),
    ({}, {"$mul": {"x": Int64(5)}}, {"x": Int64(0)}),
    ({"x": 2}, {"$mul": {"x": 2.5}}, {"x": 5.0}),
    ({"x": 2}, {"$mul": {"x": Int64(3)}}, {"x": Int64(6)}),
    ({"x": 2147483647}, {"$inc": {"x": 1}}, {"x": Int64(2147483648)}),
    ({"x": Int64(3)}, {"$inc": {"x": 1}}, {"x": Int64(4)}),
    ({"x": 1}, {"$inc": {"x": 1.5}}, {"x": 2.5}),
    ({"x": 1}, {"$min": {"x": "s"}}, {"x": 1}),
    ({"x": 1}, {"$max": {"x": "s"}}, {"x": "s"}),
    ({"x": 1}, {"$min": {"x": None}}, {"x": None}),
    ({"x": 1}, {"$max": {"x": 1.0}}, {"x": 1}),
    ({}, {"$min": {"x": 3}}, {"x": 3}),
    ({"x": [1, 2]}, {"$max": {"x": 5}}, {"x": [1, 2]}),
    ({"a": {"b": 1}, "z": 0}, {"$rename": {"a.b": "c.d"}}, {"a": {}, "z": 0, "c": {"d": 1}}),
    ({"a": 1, "b": 2}, {"$rename": {"a": "b"}}, {"b": 1}),
    ({"b": 2}, {"$rename": {"a": "c"}}, {"b": 2}),
    ({"a": [1]}, {"$push": {"a": {"$each": [3, 2], "$sort": 1}}}, {"a": [1, 2, 3]}),
    ({"a": [{"x": 2}, {"x": 1}]},
     {"$push": {"a": {"$each": [{"x": 3}], "$sort": {"x": -1}, "$slice": 2}}},
     {"a": [{"x": 3}, {"x": 2}]}),
    ({"a": [1, 2, 3]}, {"$push": {"a": {"$each": [4], "$slice": -2}}}, {"a": [3, 4]}),
    ({"a": [1, 2, 3]}, {"$push": {"a": {"$each": [], "$slice": 0}}}, {"a": []}),
    ({"a": [1, 2, 3]}, {"$push": {"a": {"$each": [9], "$position": 1}}}, {"a": [1, 9, 2, 3]}),
    ({"a": [1, 2, 3]}, {"$push": {"a": {"$each": [9], "$position": -1}}}, {"a": [1, 2, 9, 3]}),
    ({"a": [1, 2, 3]}, {"$push": {"a": {"$each": [9], "$position": -10}}}, {"a": [9, 1, 2, 3]}),
    ({"a": [1, 2, 3]}, {"$push": {"a": {"$each": [9], "$position": 10}}}, {"a": [1, 2, 3, 9]}),
    ({}, {"$push": {"a": 1}}, {"a": [1]}),
    ({"a": [1]}, {"$push": {"a": [2, 3]}}, {"a": [1, [2, 3]]}),
    ({"a": [{"x": 1, "y": 2}]}, {"$addToSet": {"a": {"y": 2, "x": 1}}},
     {"a": [{"x": 1, "y": 2}, {"y": 2, "x": 1}]}),
    ({"a": [{"x": 1, "y": 2}]}, {"$addToSet": {"a": {"x": 1, "y": 2}}}, {"a": [{"x": 1, "y": 2}]}),
    ({"a": [1, 2]}, {"$addToSet": {"a": {"$each": [2, 3, 3, 1.0, 4]}}}, {"a": [1, 2, 3, 4]}),
    ({"a": [1, 2, 3, 4, 5]}, {"$pull": {"a": {"$gte": 3}}}, {"a": [1, 2]}),
    ({"a": [1, 2, 3, 4, 5]}, {"$pull": {"a": {"$in": [2, 4]}}}, {"a": [1, 3, 5]}),
    ({"a": [{"x": 1, "y": 1}, {"x": 2}]}, {"$pull": {"a": {"x": 1}}}, {"a": [{"x": 2}]}),
    ({"a": [{"x": 1, "y": 1}, {"x": 2}]}, {"$pull": {"a": {"x": {"$gt": 1}}}},
     {"a": [{"x": 1, "y": 1}]}),
    ({"a": [[1, 2], [3]]}, {"$pull": {"a": [1, 2]}}, {"a": [[3]]}),
    ({"a": [{"b": [1, 2]}, {"b": [3]}]}, {"$pull": {"a": {"b": 2}}}, {"a": [{"b": [3]}]}),
    ({"a": [1, "x", 2]}, {"$pull": {"a": Regex("x")}}, {"a": [1, 2]}),
    ({"a": [1, 2, 1.0, Int64(1)]}, {"$pullAll": {"a": [1]}}, {"a": [2]}),
    ({"a": [1, 2, 3]}, {"$pop": {"a": 1}}, {"a": [1, 2]}),
    ({"a": [1, 2, 3]}, {"$pop": {"a": -1}}, {"a": [2, 3]}),
    ({"a": []}, {"$pop": {"a": 1}}, {"a": []}),
    ({}, {"$pop": {"a": 1}}, {}),
    ({"a": {"b": 1}}, {"$set": {"a.c": 2}}, {"a": {"b": 1, "c": 2}}),
    ({"a": [{"b": 1}]}, {"$set": {"a.0.c": 2}}, {"a": [{"b": 1, "c": 2}]}),
    ({"a": 1}, {"$set": {"b": 2, "a": 3}}, {"a": 3, "b": 2}),
    ({}, {"$set": {"z": 1, "a": 1}}, {"a": 1, "z": 1}),
    ({}, {"$set": {"b.10": 1, "b.9": 2}}, {"b": {"9": 2, "10": 1}}),
    ({"a": []}, {"$set": {"a.10": 1, "a.9": 2}}, {"a": [None] * 9 + [2, 1]}),
    ({"a": {}}, {"$set": {"a.b": 1}, "$unset": {"a.c": 1}}, {"a": {"b": 1}}),
    ({"a": [1, 2]}, {"$set": {"a.0": 5}, "$push": {"b": 1}}, {"a": [5, 2], "b": [1]}),
]


@pytest.mark.parametrize("doc,upd,want", U_CASES, ids=[repr(c[1]) for c in U_CASES])
def test_update(coll, doc, upd, want):
    coll.insert_one(dict({"_id": 1}, **doc))
    coll.update_one({"_id": 1}, upd)
    got = coll.find_one({"_id": 1})
    got.pop("_id")
    assert list(got.items()) == list(want.items())
    # types must match too (1 vs 1.0 vs Int64(1))
    assert typed(got) == typed(want)


# (initial document, update, mongo error code)
UE_CASES = [
    ({"a": 1}, {"$set": {"a.b": 1}}, 28),
    ({"a": "x"}, {"$inc": {"a": 1}}, 14),
    ({"a": 1}, {"$push": {"a": 1}}, 2),
    ({"a": 1}, {"$pop": {"a": 1}}, 14),
    ({"a": 1}, {"$rename": {"a": "a.b"}}, 2),
    ({"a": 1}, {"$set": {"a": 1, "a.b": 2}}, 40),
    ({"a": 1}, {"$set": {"_id": 2}}, 66),
    ({"a": 1}, {"$inc": {"a": "x"}}, 14),
    ({"a": 1}, {"$pop": {"a": 2}}, 9),
    ({"a": [1]}, {"$addToSet": {"a": {"$each": 1}}}, 2),
    ({"a": [1]}, {"$push": {"a": {"$each": [1], "$slice": 1.5}}}, 2),
]


@pytest.mark.parametrize("doc,upd,code", UE_CASES, ids=[repr(c[1]) for c in UE_CASES])
def test_update_error(coll, doc, upd, code):
    coll.insert_one(dict({"_id": 1}, **doc))
    with pytest.raises(OperationFailure) as ei:
        coll.update_one({"_id": 1}, upd)
    assert ei.value.code == code


def test_update_misc(coll):
    coll.insert_one({"_id": 1, "a": 1})
    coll.update_one({"_id": 1}, {"$currentDate": {"d": True, "t": {"$type": "timestamp"},
                                                  "e": {"$type": "date"}}})
    got = coll.find_one({"_id": 1})
    assert isinstance(got["d"], datetime.datetime)
    assert isinstance(got["e"], datetime.datetime)
    assert isinstance(got["t"], Timestamp)
    assert list(got) == ["_id", "a", "d", "e", "t"]


UPSERT_CASES = [
    ({"a": 1, "b.c": 2}, {"$set": {"z": 1}}, {"a": 1, "b": {"c": 2}, "z": 1}),
    ({"$and": [{"a": {"$eq": 1}}, {"b": 2}]}, {"$set": {"z": 1}}, {"a": 1, "b": 2, "z": 1}),
    ({"a": {"$gt": 1}, "b": 2}, {"$set": {"z": 1}}, {"b": 2, "z": 1}),
    ({"a": 1}, {"$setOnInsert": {"b": 2}, "$inc": {"c": 1}}, {"a": 1, "b": 2, "c": 1}),
    ({"a": 1}, {"$set": {"a": 5}}, {"a": 5}),
    ({"a.b": 1}, {"$set": {"a.c": 5}}, {"a": {"b": 1, "c": 5}}),
    ({"a": {"$in": [7]}}, {"$set": {"z": 1}}, {"a": 7, "z": 1}),
    ({"$or": [{"a": 3}]}, {"$set": {"z": 1}}, {"a": 3, "z": 1}),
    ({"a": {"$eq": {"x": 1}}}, {"$set": {"z": 1}}, {"a": {"x": 1}, "z": 1}),
    ({"a": {"x": 1}}, {"$set": {"a.y": 1}}, {"a": {"x": 1, "y": 1}}),
    ({"a": {"$elemMatch": {"x": 1}}}, {"$set": {"z": 1}}, {"z": 1}),
]


@pytest.mark.parametrize("flt,upd,want", UPSERT_CASES, ids=[repr(c[0]) for c in UPSERT_CASES])
def test_upsert_seed(coll, flt, upd, want):
    coll.update_one(flt, upd, upsert=True)
    got = coll.find_one({})
    got.pop("_id")
    assert list(got.items()) == list(want.items())


def test_upsert_id_first(coll):
    coll.update_one({"a": 1, "_id": 5}, {"$set": {"b": 1}}, upsert=True)
    assert list(coll.find_one({}).items()) == [("_id", 5), ("a", 1), ("b", 1)]
    coll.replace_one({"x": 1}, {"y": 2}, upsert=True)
    got = coll.find_one({"y": 2})
    assert list(got)[0] == "_id" and "x" not in got



P_DOC = {"_id": 1, "a": [{"b": 1, "c": 2}, 3, {"c": 4}, [{"b": 5, "c": 6}]],
         "s": [1, 2, 3, 4, 5], "x": {"y": 1, "z": 2}, "n": 7}

# (projection, expected)
P_CASES = [
    ({"a.b": 1}, {"_id": 1, "a": [{"b": 1}, {}, [{"b": 5}]]}),
    ({"a.b": 0}, {"_id": 1, "a": [{"c": 2}, 3, {"c": 4}, [{"c": 6}]], "s": [1, 2, 3, 4, 5],
                  "x": {"y": 1, "z": 2}, "n": 7}),
    ({"s": {"$slice": -2}, "n": 1}, {"_id": 1, "s": [4, 5], "n": 7}),
    ({"s": {"$slice": 2}}, {"_id": 1, "a": P_DOC["a"], "s": [1, 2], "x": {"y": 1, "z": 2},
                           "n": 7}),
    ({"s": {"$slice": [1, 2]}, "_id": 0, "n": 1}, {"s": [2, 3], "n": 7}),
    ({"s": {"$slice": [-2, 1]}, "_id": 0, "n": 1}, {"s": [4], "n": 7}),
    ({"s": {"$slice": [-10, 2]}, "_id": 0, "n": 1}, {"s": [1, 2], "n": 7}),
    ({"s": {"$slice": [10, 2]}, "_id": 0, "n": 1}, {"s": [], "n": 7}),
    ({"n": {"$slice": 1}, "_id": 0, "x": 1}, {"x": {"y": 1, "z": 2}, "n": 7}),
    ({"_id": 0}, {"a": P_DOC["a"], "s": [1, 2, 3, 4, 5], "x": {"y": 1, "z": 2}, "n": 7}),
    ({"_id": 0, "x.y": 1}, {"x": {"y": 1}}),
    ({"_id": 1, "x.z": 0}, {"_id": 1, "a": P_DOC["a"], "s": [1, 2, 3, 4, 5], "x": {"y": 1},
                          "n": 7}),
    ({"x.z": 0, "n": 1}, None),
    ({"x": 0, "_id": 0, "a": 0}, {"s": [1, 2, 3, 4, 5], "n": 7}),
    ({"n": 1, "x": 1}, {"_id": 1, "x": {"y": 1, "z": 2}, "n": 7}),
    ({"missing": 1}, {"_id": 1}),
    ({"x.missing": 1}, {"_id": 1, "x": {}}),
    ({"s": {"$elemMatch": {"$gt": 3}}, "n": 1}, {"_id": 1, "s": [4], "n": 7}),
    ({"a": {"$elemMatch": {"c": 4}}}, {"_id": 1, "a": [{"c": 4}]}),
    ({"a": {"$elemMatch": {"c": 99}}}, {"_id": 1}),
]


@pytest.mark.parametrize("proj,want", P_CASES, ids=[repr(c[0]) for c in P_CASES])
def test_projection(coll, proj, want):
    coll.insert_one(P_DOC)
    if want is None:
        with pytest.raises(OperationFailure):
            coll.find_one({}, proj)
        return
    got = coll.find_one({}, proj)
    assert list(got.items()) == list(want.items())


S_DOCS = [
    {"_id": 1, "a": [3, 1]},
    {"_id": 2, "a": 2},
    {"_id": 3},
    {"_id": 4, "a": None},
    {"_id": 5, "a": [0, 4]},
    {"_id": 6, "a": "s"},
    {"_id": 7, "a": [{"b": 9}, {"b": -1}]},
    {"_id": 8, "a": {"b": 3}},
]


@pytest.mark.parametrize("spec,want", [
    ([("a", 1), ("_id", 1)], [3, 4, 5, 1, 2, 6, 7, 8]),
    ([("a", -1), ("_id", 1)], [7, 8, 6, 5, 1, 2, 3, 4]),
    ([("a.b", 1), ("_id", 1)], [1, 2, 3, 4, 5, 6, 7, 8]),
    ([("a.b", -1), ("_id", 1)], [7, 8, 1, 2, 3, 4, 5, 6]),
    ([("a", 1), ("_id", -1)], [4, 3, 5, 1, 2, 6, 7, 8]),
])
def test_sort(coll, spec, want):
    coll.insert_many(S_DOCS)
    assert [d["_id"] for d in coll.find({}, sort=spec)] == want
    assert [d["_id"] for d in coll.find({}, sort=spec, limit=3)] == want[:3]


def test_sort_empty_array_before_null(coll):
    coll.insert_many([{"_id": 1, "a": None}, {"_id": 2, "a": []}, {"_id": 3, "a": 1},
                      {"_id": 4, "a": [[]]}])
    assert [d["_id"] for d in coll.find({}, sort=[("a", 1)])] == [2, 1, 3, 4]
    assert [d["_id"] for d in coll.find({}, sort=[("a", -1)])] == [4, 3, 1, 2]


A_DOCS = [
    {"_id": 1, "g": "x", "v": 1, "w": Int64(2), "arr": [1, 2], "o": {"p": 1, "q": 2}},
    {"_id": 2, "g": "x", "v": 2.5, "w": 3, "arr": [], "o": {"p": 2}},
    {"_id": 3, "g": "y", "v": "str", "arr": None},
    {"_id": 4, "g": "y", "w": 2147483647, "arr": 5},
    {"_id": 5, "v": 4, "w": 1},
]


def agg(coll, pipeline):
    coll.insert_many(A_DOCS)
    return list(coll.aggregate(pipeline))


def pairs(docs):
    return [list(d.items()) for d in docs]


A_CASES = [
    ([{"$group": {"_id": "$g", "s": {"$sum": "$v"}}}, {"$sort": {"_id": 1}}],
     [{"_id": None, "s": 4}, {"_id": "x", "s": 3.5}, {"_id": "y", "s": 0}]),
    ([{"$group": {"_id": "$g", "s": {"$sum": "$w"}}}, {"$sort": {"_id": 1}}],
     [{"_id": None, "s": 1}, {"_id": "x", "s": Int64(5)}, {"_id": "y", "s": 2147483647}]),
    ([{"$group": {"_id": None, "s": {"$sum": "$w"}}}],
     [{"_id": None, "s": Int64(2147483653)}]),
    ([{"$match": {"_id": {"$in": [4, 5]}}}, {"$group": {"_id": None, "s": {"$sum": "$w"}}}],
     [{"_id": None, "s": Int64(2147483648)}]),
    ([{"$group": {"_id": "$g", "a": {"$avg": "$v"}}}, {"$sort": {"_id": 1}}],
     [{"_id": None, "a": 4.0}, {"_id": "x", "a": 1.75}, {"_id": "y", "a": None}]),
    ([{"$group": {"_id": "$g", "mn": {"$min": "$v"}, "mx": {"$max": "$v"}}},
      {"$sort": {"_id": 1}}],
     [{"_id": None, "mn": 4, "mx": 4}, {"_id": "x", "mn": 1, "mx": 2.5},
      {"_id": "y", "mn": "str", "mx": "str"}]),
    ([{"$match": {"g": "y"}}, {"$group": {"_id": "$g", "mn": {"$min": "$w"},
                                          "p": {"$push": "$v"}}}],
     [{"_id": "y", "mn": 2147483647, "p": ["str"]}]),
    ([{"$match": {"_id": 4}}, {"$group": {"_id": "$g", "mn": {"$min": "$v"},
                                          "mx": {"$max": "$v"}, "p": {"$push": "$v"},
                                          "s": {"$addToSet": "$v"}}}],
     [{"_id": "y", "mn": None, "mx": None, "p": [], "s": []}]),
    # a missing field leaves its key out of an _id document ({"t": "int"} for _id 5), and
    # $type of a missing field is "missing" (_id 4)
    ([{"$group": {"_id": {"g": "$g", "t": {"$type": "$v"}}, "n": {"$sum": 1}}},
      {"$sort": {"_id.g": 1, "_id.t": 1}}],
     [{"_id": {"t": "int"}, "n": 1}, {"_id": {"g": "x", "t": "double"}, "n": 1},
      {"_id": {"g": "x", "t": "int"}, "n": 1}, {"_id": {"g": "y", "t": "missing"}, "n": 1},
      {"_id": {"g": "y", "t": "string"}, "n": 1}]),
    ([{"$group": {"_id": {"a": "$g"}, "n": {"$sum": 1}}}, {"$sort": {"n": -1, "_id.a": 1}}],
     [{"_id": {"a": "x"}, "n": 2}, {"_id": {"a": "y"}, "n": 2}, {"_id": {}, "n": 1}]),
    ([{"$unwind": "$arr"}, {"$project": {"arr": 1}}],
     [{"_id": 1, "arr": 1}, {"_id": 1, "arr": 2}, {"_id": 4, "arr": 5}]),
    ([{"$unwind": {"path": "$arr", "includeArrayIndex": "i",
                   "preserveNullAndEmptyArrays": True}}, {"$project": {"arr": 1, "i": 1}}],
     [{"_id": 1, "arr": 1, "i": Int64(0)}, {"_id": 1, "arr": 2, "i": Int64(1)},
      {"_id": 2, "i": None}, {"_id": 3, "arr": None, "i": None}, {"_id": 4, "arr": 5, "i": None},
      {"_id": 5, "i": None}]),
    ([{"$project": {"o.p": 1, "_id": 0}}],
     [{"o": {"p": 1}}, {"o": {"p": 2}}, {}, {}, {}]),
    ([{"$match": {"_id": 1}}, {"$project": {"o": {"p": 1}, "x": "$o.q", "_id": 0}}],
     [{"o": {"p": 1}, "x": 2}]),
    ([{"$match": {"_id": 1}}, {"$addFields": {"v": "$w", "o.r": 3, "new": {"$add": ["$v", 1]}}}],
     [{"_id": 1, "g": "x", "v": Int64(2), "w": Int64(2), "arr": [1, 2],
       "o": {"p": 1, "q": 2, "r": 3}, "new": 2}]),
    ([{"$match": {"_id": 1}}, {"$addFields": {"arr.k": 1}}, {"$project": {"arr": 1}}],
     [{"_id": 1, "arr": [{"k": 1}, {"k": 1}]}]),
    ([{"$match": {"_id": 99}}, {"$count": "n"}], []),
    ([{"$count": "n"}], [{"n": 5}]),
    ([{"$sort": {"v": -1}}, {"$limit": 2}, {"$project": {"v": 1}}],
     [{"_id": 3, "v": "str"}, {"_id": 5, "v": 4}]),
    ([{"$sort": {"_id": -1}}, {"$skip": 1}, {"$limit": 1}, {"$project": {"_id": 1}}],
     [{"_id": 4}]),
    ([{"$group": {"_id": "$g", "f": {"$first": "$v"}, "l": {"$last": "$v"}}},
      {"$sort": {"_id": 1}}],
     [{"_id": None, "f": 4, "l": 4}, {"_id": "x", "f": 1, "l": 2.5},
      {"_id": "y", "f": "str", "l": None}]),
    ([{"$group": {"_id": None, "c": {"$sum": {"$literal": 1.5}}}}],
     [{"_id": None, "c": 7.5}]),
    ([{"$match": {"_id": 1}}, {"$project": {"_id": 0, "s": {"$size": "$arr"},
                                          "e": {"$arrayElemAt": ["$arr", -1]}}}],
     [{"s": 2, "e": 2}]),
    ([{"$match": {"_id": 1}}, {"$project": {"_id": 0, "x": {"$add": [1, Int64(2)]},
                                          "y": {"$add": [1, 2.0]}, "z": {"$multiply": [2, 3]},
                                          "d": {"$divide": [6, 3]}}}],
     [{"x": Int64(3), "y": 3.0, "z": 6, "d": 2.0}]),
    ([{"$match": {"_id": 1}}, {"$project": {"_id": 0, "a": {"$add": [2147483647, 1]}}}],
     [{"a": Int64(2147483648)}]),
    ([{"$match": {"_id": 1}}, {"$project": {"_id": 0, "e": {"$eq": ["$missing", None]},
                                          "c": {"$cmp": ["$missing", None]},
                                          "l": {"$lt": ["$missing", None]}}}],
     [{"e": False, "c": -1, "l": True}]),
    ([{"$match": {"_id": 1}}, {"$unset": ["o.p", "arr"]}],
     [{"_id": 1, "g": "x", "v": 1, "w": Int64(2), "o": {"q": 2}}]),
]


@pytest.mark.parametrize("pipeline,want", A_CASES, ids=[repr(c[0])[:80] for c in A_CASES])
def test_aggregate(coll, pipeline, want):
    assert want is not None, "every case states its expected result"
    got = agg(coll, pipeline)
    assert pairs(got) == pairs(want)
    assert typed(got) == typed(want)


# expression probes on the single document E_DOC: (expression, expected value)
E_DOC = {"_id": 1, "i": 7, "l": Int64(10), "d": 2.5, "s": "Hello", "n": None,
         "arr": [1, 2, 3], "o": {"x": 1}, "neg": -7, "u": "héllo"}

E_CASES = [
    ({"$add": [1, 2.5]}, 3.5),
    ({"$add": ["$i", "$missing"]}, None),
    ({"$add": ["$i", None]}, None),
    ({"$subtract": ["$i", "$l"]}, Int64(-3)),
    ({"$multiply": ["$i", "$d"]}, 17.5),
    ({"$multiply": [2147483647, 2]}, Int64(4294967294)),
    ({"$divide": ["$i", 2]}, 3.5),
    ({"$mod": ["$i", 3]}, 1),
    ({"$mod": ["$neg", 3]}, -1),
    ({"$mod": [7.5, 2]}, 1.5),
    ({"$mod": ["$l", 3]}, Int64(1)),
    ({"$abs": "$neg"}, 7),
    ({"$abs": -2147483648}, Int64(2147483648)),
    ({"$ceil": 2.1}, 3.0),
    ({"$floor": -2.1}, -3.0),
    ({"$floor": 5}, 5),
    ({"$trunc": -2.7}, -2.0),
    ({"$round": [2.5, 0]}, 2.0),
    ({"$round": [3.5, 0]}, 4.0),
    ({"$round": [1234.5678, 2]}, 1234.57),
    ({"$round": [1234, -2]}, 1200),
    ({"$round": 7}, 7),
    ({"$cmp": ["$i", "$l"]}, -1),
    ({"$eq": [1, 1.0]}, True),
    ({"$gt": ["$s", 5]}, True),
    ({"$gt": ["$missing", None]}, False),
    ({"$lt": ["$missing", None]}, True),
    ({"$ne": ["$n", None]}, False),
    ({"$and": [1, "$s", []]}, True),
    ({"$and": [1, 0]}, False),
    ({"$and": []}, True),
    ({"$or": [None, "$missing", False]}, False),
    ({"$or": []}, False),
    ({"$not": [0]}, True),
    ({"$not": [[]]}, False),
    ({"$not": ["$missing"]}, True),
    ({"$cond": [{"$gt": ["$i", 5]}, "big", "small"]}, "big"),
    ({"$cond": {"if": None, "then": 1, "else": 2}}, 2),
    ({"$ifNull": ["$missing", "$n", "x"]}, "x"),
    ({"$ifNull": ["$n", 5]}, 5),
    ({"$concat": ["$s", " ", "w"]}, "Hello w"),
    ({"$concat": ["$s", "$missing"]}, None),
    ({"$concat": ["$s", None]}, None),
    ({"$toLower": "$s"}, "hello"),
    ({"$toUpper": 5}, "5"),
    ({"$toUpper": None}, ""),
    ({"$toLower": 2.5}, "2.5"),
    ({"$strLenBytes": "$u"}, 6),
    ({"$substrBytes": ["$s", 1, 3]}, "ell"),
    ({"$substr": ["$s", 1, -1]}, "ello"),
    ({"$substrBytes": ["$s", 10, 3]}, ""),
    ({"$size": "$arr"}, 3),
    ({"$arrayElemAt": ["$arr", 5]}, "MISSING"),
    ({"$arrayElemAt": ["$arr", -3]}, 1),
    ({"$arrayElemAt": ["$arr", 1.0]}, 2),
    ({"$concatArrays": ["$arr", [4], []]}, [1, 2, 3, 4]),
    ({"$concatArrays": ["$arr", "$missing"]}, None),
    ({"$isArray": ["$arr"]}, True),
    ({"$isArray": "$o"}, False),
    ({"$in": [2, "$arr"]}, True),
    ({"$in": [2.0, "$arr"]}, True),
    ({"$in": ["$missing", [None]]}, False),
    ({"$type": "$missing"}, "missing"),
    ({"$type": "$l"}, "long"),
    ({"$type": "$arr"}, "array"),
    ({"$mergeObjects": ["$o", {"y": 2}, None, "$missing", {"x": 3}]}, {"x": 3, "y": 2}),
    ({"$max": ["$arr"]}, 3),
    ({"$max": [1, "$s", None]}, "Hello"),
    ({"$min": [1, None, "$missing"]}, 1),
    ({"$min": [None, "$missing"]}, None),
    ({"$sum": ["$arr"]}, 6),
    ({"$sum": [1, "$l", "$s"]}, Int64(11)),
    ({"$sum": "$arr"}, 6),
    ({"$avg": "$arr"}, 2.0),
    ({"$avg": [1, 2, "$s"]}, 1.5),
    ({"$avg": ["$s"]}, None),
    ({"$toString": 2.5}, "2.5"),
    ({"$toString": "$l"}, "10"),
    ({"$toString": True}, "true"),
    ({"$toInt": "42"}, 42),
    ({"$toInt": 2.9}, 2),
    ({"$toInt": -2.9}, -2),
    ({"$toLong": True}, Int64(1)),
    ({"$toDouble": "2.5"}, 2.5),
    ({"$toDouble": "$missing"}, None),
    ({"$toBool": 0}, False),
    ({"$toBool": ""}, True),
    ({"$toBool": "$n"}, None),
    ({"$literal": "$i"}, "$i"),
    ({"$toString": 0.1}, "0.1"),
    ({"$toString": 3.0}, "3"),
    ({"$toString": 1e20}, "1e+20"),
    ({"$toString": -0.0}, "-0"),
    ({"$toString": 1234567.0}, "1234567"),
    ({"$toString": 1.5e-7}, "1.5e-07"),
    ({"$toString": Decimal128("1.50")}, "1.50"),
    ({"$toInt": "  42"}, "ERR"),
    ({"$sum": [Int64(9223372036854775807), 1]}, 9.223372036854776e18),
    ({"$add": [Int64(9223372036854775807), 1]}, 9.223372036854776e18),
    ({"$multiply": [Int64(4611686018427387904), 2]}, 9.223372036854776e18),
    ({"$subtract": [-2147483648, 1]}, Int64(-2147483649)),
    ({"$abs": Int64(-9223372036854775808)}, "ERR"),
    ({"$divide": [1, 0]}, "ERR"),
    ({"$mod": [1, 0]}, "ERR"),
    ({"$max": [[1, 2], 5]}, [1, 2]),
    ({"$eq": [[1, 2], [1, 2]]}, True),
    ({"$in": [[1], [[1], 2]]}, True),
    ({"$cmp": [{"a": 1}, {"a": 1, "b": 2}]}, -1),
    ({"$size": "$missing"}, "ERR"),
    ({"$round": [-2.5, 0]}, -2.0),
    ({"$round": [Int64(25), -1]}, Int64(20)),
    ({"$round": [35, -1]}, 40),
    ({"$trunc": [1234.5678, 2]}, 1234.56),
    ({"$ceil": Int64(5)}, Int64(5)),
    ({"$add": [datetime.datetime(2020, 1, 1), 1000]}, datetime.datetime(2020, 1, 1, 0, 0, 1)),
    ({"$subtract": [datetime.datetime(2020, 1, 1, 0, 0, 1), datetime.datetime(2020, 1, 1)]},
     Int64(1000)),
    ({"$subtract": [datetime.datetime(2020, 1, 1, 0, 0, 1), 1000]},
     datetime.datetime(2020, 1, 1)),
    (["$i", "$missing", "$d"], [7, None, 2.5]),
    ({"a": "$missing", "b": "$i"}, {"b": 7}),
]


@pytest.mark.parametrize("expr,want", E_CASES, ids=[repr(c[0])[:70] for c in E_CASES])
def test_expression(coll, expr, want):
    coll.insert_one(E_DOC)
    if want == "ERR":
        with pytest.raises(OperationFailure):
            list(coll.aggregate([{"$project": {"_id": 0, "r": expr}}]))
        return
    got = list(coll.aggregate([{"$project": {"_id": 0, "r": expr}}]))[0]
    if want == "MISSING":
        assert "r" not in got
        return
    assert "r" in got
    assert typed(got["r"]) == typed(want)


R_STRINGS = ["abc", "ABC", "a.c", "a1c", "ab\nc", "abc\n", "x y", "foo123", "[x]"]

# PCRE semantics mongod uses for $regex: (pattern, options, matching indexes of R_STRINGS)
R_CASES = [
    ("^abc$", "", {0, 5}),          # '$' also matches before a final newline
    ("^a.c$", "", {0, 2, 3, 5}),
    ("c$", "", {0, 2, 3, 4, 5}),
    ("^abc$", "m", {0, 5}),
    ("^c$", "m", {4}),
    ("^abc$", "i", {0, 1, 5}),
    ("\\Aabc\\z", "", {0}),
    ("\\Aabc\\Z", "", {0, 5}),
    ("\\Qa.c\\E", "", {2}),
    ("\\Q[x]", "", {8}),
    ("\\x41", "i", {0, 1, 2, 3, 4, 5}),
    ("^(?:ab|x )", "", {0, 4, 5, 6}),
    ("b.c", "s", {4}),
    ("b.c", "", set()),
    ("\\$", "", set()),
    ("[$]", "", set()),
]


@pytest.mark.parametrize("pat,opts,want", R_CASES, ids=[repr(c[:2]) for c in R_CASES])
def test_regex(coll, pat, opts, want):
    coll.insert_many([{"_id": i, "s": s} for i, s in enumerate(R_STRINGS)])
    got = {d["_id"] for d in coll.find({"s": {"$regex": pat, "$options": opts}})}
    assert got == want
    got = {d["_id"] for d in coll.find({"s": {"$in": [Regex(pat, opts)]}})}
    assert got == want
