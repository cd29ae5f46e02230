"""Reviewer pass over query, update and aggregation semantics as a pymongo user meets them.

Expected values are mongod 7.0's: numeric comparison rules from mongo's
src/mongo/base/compare_numbers.h (decimal128 compared exactly with doubles), find's
{gte: 0} validators from src/mongo/db/query/find_command.idl (IDL validator error 51024,
as mongo's cqf find_limit_skip jstest expects), $count's expansion to $group in
src/mongo/db/pipeline/document_source_count.cpp (15948 for "_id"), and PCRE's UTF mode for
$regex. Unsupported features must fail with a clear error instead of a different answer.
"""

import datetime
import math

import pytest
from bson import Decimal128, Int64, Timestamp
from pymongo.errors import OperationFailure

# ---- numeric comparison across types -------------------------------------------------------

N_DOCS = [
    {"_id": 1, "a": Int64(9007199254740993)},
    {"_id": 2, "a": 9007199254740992.0},
    {"_id": 3, "a": Decimal128("0.1")},
    {"_id": 4, "a": 0.1},
    {"_id": 5, "a": Decimal128("1")},
    {"_id": 6, "a": 1},
    {"_id": 7, "a": Decimal128("9007199254740993")},
    {"_id": 8, "a": float("nan")},
    {"_id": 9, "a": Decimal128("NaN")},
    {"_id": 10, "a": -math.inf},
    {"_id": 11, "a": Decimal128("-Infinity")},
]

N_CASES = [
    # decimal128 and double are compared exactly: Decimal128("0.1") is below the double 0.1
    ({"a": 0.1}, {4}),
    ({"a": Decimal128("0.1")}, {3}),
    ({"a": {"$gt": Decimal128("0.1"), "$lt": 1}}, {4}),
    ({"a": {"$gte": 0.1, "$lt": 1}}, {4}),
    ({"a": {"$in": [0.1]}}, {4}),
    # a decimal above 2^53 is not equal to the double 2^53, but equal to the long
    ({"a": 9007199254740992.0}, {2}),
    ({"a": Int64(9007199254740993)}, {1, 7}),
    ({"a": {"$gt": 9007199254740992.0}}, {1, 7}),
    ({"a": Decimal128("1.00")}, {5, 6}),
    ({"a": 1.0}, {5, 6}),
    # NaN equals NaN (double or decimal) and is not below or above anything
    ({"a": float("nan")}, {8, 9}),
    ({"a": {"$gte": Decimal128("NaN")}}, {8, 9}),
    ({"a": {"$lt": 0}}, {10, 11}),
    ({"a": -math.inf}, {10, 11}),
    ({"a": {"$gt": Decimal128("-Infinity"), "$lt": Decimal128("0.1")}}, set()),
    ({"a": {"$gt": Decimal128("-Infinity"), "$lte": Decimal128("0.1")}}, {3}),
]


@pytest.mark.parametrize("flt,want", N_CASES, ids=[repr(c[0]) for c in N_CASES])
def test_numeric_match(coll, flt, want):
    coll.insert_many(N_DOCS)
    assert {d["_id"] for d in coll.find(flt)} == want


def test_sort_decimal_against_double(coll):
    coll.insert_many([{"_id": 1, "a": 0.1}, {"_id": 2, "a": Decimal128("0.1")},
                      {"_id": 3, "a": Decimal128("0.1000000000000000055511151231257828")},
                      {"_id": 4, "a": Decimal128("0.1000000000000000055511151231257827")}])
    # exact values: 0.1 (decimal) < ...257827 (decimal) < 0.1000000000000000055511151231257827021...
    # (the double nearest 0.1) < ...257828 (decimal)
    assert [d["_id"] for d in coll.find(sort=[("a", 1)])] == [2, 4, 1, 3]


def test_dates_and_timestamps_do_not_compare(coll):
    coll.insert_many([{"_id": 1, "a": datetime.datetime(2020, 1, 1)},
                      {"_id": 2, "a": Timestamp(1577836800, 1)},
                      {"_id": 3, "a": Int64(1577836800000)}])
    assert [d["_id"] for d in coll.find({"a": {"$gt": datetime.datetime(1970, 1, 1)}})] == [1]
    assert [d["_id"] for d in coll.find({"a": {"$gt": Timestamp(0, 0)}})] == [2]


# ---- $regex on non-ASCII text (PCRE's UTF mode) ---------------------------------------------

R_DOCS = [{"_id": 1, "s": "éa"}, {"_id": 2, "s": "ea"}, {"_id": 3, "s": "日本"},
          {"_id": 4, "s": "ÉA"}, {"_id": 5, "s": "a\u3000b"}]

R_CASES = [
    ("^.a$", "", {1, 2}),           # '.' is one code point, not one byte
    ("^..$", "", {1, 2, 3, 4}),
    ("^[^x]a", "", {1, 2}),
    ("^éa$", "i", {1, 4}),          # caseless matching folds non-ASCII letters
    ("^\\w+$", "", {2}),            # \w, \s and \d stay ASCII-only (no UCP)
    ("^a\\sb$", "", set()),
    ("^a\\Sb$", "", {5}),
    ("^a[\\s]b$", "", set()),
    ("^\\xe9a", "", {1}),           # \xHH is the code point U+00HH
    ("^.{2}$", "", {1, 2, 3, 4}),
]


@pytest.mark.parametrize("pat,opts,want", R_CASES, ids=[repr(c[:2]) for c in R_CASES])
def test_regex_utf8(coll, pat, opts, want):
    coll.insert_many(R_DOCS)
    assert {d["_id"] for d in coll.find({"s": {"$regex": pat, "$options": opts}})} == want


# ---- find command options -----------------------------------------------------------------

@pytest.mark.parametrize("field", ["skip", "limit", "batchSize"])
def test_find_negative_numbers_are_51024(db, field):
    db.c.insert_many([{"_id": i} for i in range(3)])
    with pytest.raises(OperationFailure) as ei:
        db.command({"find": "c", field: -1})
    assert ei.value.code == 51024
    assert "BSON field '%s' value must be >= 0" % field in str(ei.value)


def test_driver_negative_limit_is_a_single_batch(coll):
    coll.insert_many([{"_id": i} for i in range(5)])
    # pymongo sends limit=2, singleBatch=true for limit(-2)
    assert [d["_id"] for d in coll.find(limit=-2)] == [0, 1]


@pytest.mark.parametrize("opt,val", [("min", {"a": 1}), ("max", {"a": 1}),
                                     ("returnKey", True), ("showRecordId", True)])
def test_find_options_changing_results_are_refused(db, opt, val):
    db.c.insert_one({"_id": 1, "a": 1})
    with pytest.raises(OperationFailure) as ei:
        db.command({"find": "c", opt: val})
    assert ei.value.code == 238


def test_find_options_off_are_accepted(db):
    db.c.insert_one({"_id": 1, "a": 1})
    r = db.command({"find": "c", "returnKey": False, "showRecordId": False, "min": {}})
    assert r["cursor"]["firstBatch"] == [{"_id": 1, "a": 1}]


def test_natural_sort(coll):
    coll.insert_many([{"_id": i} for i in range(5)])
    assert [d["_id"] for d in coll.find(sort=[("$natural", -1)], limit=2)] == [4, 3]
    assert [d["_id"] for d in coll.find(sort=[("$natural", 1)])] == [0, 1, 2, 3, 4]


# ---- aggregation parse errors ---------------------------------------------------------------

AE_CASES = [
    ([{"$count": "_id"}], 15948),
    ([{"$count": ""}], 40157),
    ([{"$count": 1}], 40156),
    ([{"$count": "$n"}], 40158),
    ([{"$count": "a.b"}], 40160),
    ([{"$group": {"n": {"$sum": 1}}}], 15955),
    ([{"$group": {"_id": None, "a.b": {"$sum": 1}}}], 40235),
    ([{"$group": {"_id": None, "s": {"$sum": [1, 2]}}}], 40237),
    ([{"$group": {"_id": None, "s": {"$nope": 1}}}], 15952),
    ([{"$group": {"_id": None, "s": {"$sum": 1, "$max": 1}}}], 40238),
    ([{"$group": {"_id": None, "s": 5}}], 40234),
    ([{"$nope": {}}], 40324),
    ([{"$project": {"x": {"$nope": 1}}}], 168),
    ([{"$project": {"x": {"$add": [1], "$abs": 1}}}], 15983),
    ([{"$project": {}}], 51272),
    ([{"$project": {"a": 1, "b": 0}}], 31254),
    ([{"$replaceRoot": {"newRoot": "$v"}}], 40228),
    ([{"$replaceRoot": {"newRoot": "$missing"}}], 40228),
    ([{"$replaceWith": "$v"}], 40228),
    ([{"$unwind": "v"}], 28818),
    ([{"$unwind": {"path": "$v", "includeArrayIndex": "$i"}}], 28822),
    ([{"$unwind": {"path": "$v", "nope": 1}}], 28811),
    ([{"$limit": 0}], 15958),
    ([{"$skip": -1}], 15956),
    ([{"$sort": {}}], 15976),
    ([{"$lookup": {"from": "x", "localField": "a", "foreignField": "b", "as": "c"}}], 238),
]


@pytest.mark.parametrize("pipeline,code", AE_CASES, ids=[repr(c[0])[:70] for c in AE_CASES])
def test_aggregate_errors(coll, pipeline, code):
    coll.insert_one({"_id": 1, "v": 1})
    with pytest.raises(OperationFailure) as ei:
        list(coll.aggregate(pipeline))
    assert ei.value.code == code


def test_count_stage_and_group_order(coll):
    coll.insert_many([{"_id": i, "g": i % 2} for i in range(5)])
    assert list(coll.aggregate([{"$count": "n"}])) == [{"n": 5}]
    got = list(coll.aggregate([{"$sort": {"_id": -1}},
                               {"$group": {"_id": "$g", "p": {"$push": "$_id"},
                                           "f": {"$first": "$_id"}, "l": {"$last": "$_id"}}},
                               {"$match": {"_id": {"$gte": 0}}}, {"$sort": {"_id": 1}}]))
    assert got == [{"_id": 0, "p": [4, 2, 0], "f": 4, "l": 0},
                   {"_id": 1, "p": [3, 1], "f": 3, "l": 1}]


# ---- queries: operator errors and array paths -----------------------------------------------

QE_CASES = [
    ({"a": {"$size": -1}}, 2),
    ({"a": {"$size": 1.5}}, 2),
    ({"a": {"$all": [{"$elemMatch": {"$gt": 1}}, 1]}}, 2),
    ({"a": {"$not": 5}}, 2),
    ({"$and": []}, 2),
    ({"$nope": 1}, 2),
    ({"a": {"$eq": 1, "b": 2}}, 2),
    ({"a": {"$mod": [0, 1]}}, 2),
    ({"a": {"$regex": "x", "$options": "z"}}, 51108),
    ({"a": {"$ne": __import__("bson").Regex("x")}}, 2),
    ({"a": {"$in": [{"$gt": 1}]}}, 2),
    ({"$where": "true"}, 238),
    ({"$expr": {"$eq": ["$a", 1]}}, 238),
]


@pytest.mark.parametrize("flt,code", QE_CASES, ids=[repr(c[0]) for c in QE_CASES])
def test_query_errors(coll, flt, code):
    coll.insert_one({"_id": 1, "a": 1})
    with pytest.raises(OperationFailure) as ei:
        list(coll.find(flt))
    assert ei.value.code == code


P_DOCS = [{"_id": 1, "a": [1, [2, 3]]}, {"_id": 2, "a": [[1, 2], [3, [4]]]},
          {"_id": 3, "a": {"0": 5, "1": {"b": 1}}}, {"_id": 4, "a": [{"0": 6}, 7]},
          {"_id": 5, "a": 5}, {"_id": 6, "a": [{"b": [{"c": 1}, {"c": 2}]}]}]

P_CASES = [
    ({"a": 2}, set()),                      # no descent into nested arrays
    ({"a.1": [2, 3]}, {1}),
    ({"a.0": 1}, {1, 2}),
    ({"a.0": 6}, {4}),                      # array index 0 or a sub-document's "0"
    ({"a.1.b": 1}, {3}),
    ({"a.b.1.c": 2}, {6}),
    ({"a.1.1": 4}, {2}),
    ({"a.0": None}, {5}),
    ({"a": {"$size": 2}}, {1, 2, 4}),
    ({"a": {"$type": "number"}}, {1, 4, 5}),
    ({"a": {"$elemMatch": {"$elemMatch": {"$gte": 3}}}}, {1, 2}),
    ({"a.5": {"$exists": False}}, {1, 2, 3, 4, 5, 6}),
]


@pytest.mark.parametrize("flt,want", P_CASES, ids=[repr(c[0]) for c in P_CASES])
def test_array_paths(coll, flt, want):
    coll.insert_many(P_DOCS)
    assert {d["_id"] for d in coll.find(flt)} == want


# ---- updates --------------------------------------------------------------------------------

UE_CASES = [
    ({"a": [1, 2]}, {"$set": {"a.b": 1}}, 28),
    ({"a": None}, {"$set": {"a.b": 1}}, 28),
    ({"a": 1}, {"$set": {"a..b": 1}}, 56),
    ({"a": 1}, {"$nope": {"a": 1}}, 9),
    ({"a": {"b": 1}}, {"$set": {"a.b": 1}, "$unset": {"a": 1}}, 40),
    ({"a": [1]}, {"$pull": {"a": 1}, "$push": {"a": 2}}, 40),
    ({"a": Int64(9223372036854775807)}, {"$inc": {"a": 1}}, 2),
    ({"a": 1}, {"$rename": {"a": "a"}}, 2),
    ({"a": [{"b": 1}]}, {"$rename": {"a.b": "c"}}, 2),
    ({"a": 1}, {"$addToSet": {"a": 2}}, 2),
    ({"a": "s"}, {"$mul": {"a": 2}}, 14),
    ({"a": 1, "b": [1, 2]}, {"$set": {"b.$": 5}}, 2),
    ({"a": 1}, {"$inc": {"a.$[]": 1}}, 2),
]


@pytest.mark.parametrize("doc,upd,code", UE_CASES, ids=[repr(c[1]) for c in UE_CASES])
def test_update_errors(coll, doc, upd, code):
    coll.insert_one(dict({"_id": 1}, **doc))
    with pytest.raises(OperationFailure) as ei:
        coll.update_one({"_id": 1, "a": {"$exists": True}}, upd)
    assert ei.value.code == code
    got = coll.find_one({"_id": 1})
    got.pop("_id")
    assert got == doc


def test_update_same_id_and_empty_set_are_no_ops(coll):
    coll.insert_one({"_id": 1, "a": 1})
    r = coll.update_one({"_id": 1}, {"$set": {"_id": 1}})
    assert (r.matched_count, r.modified_count) == (1, 0)
    r = coll.update_one({"_id": 1}, {"$set": {}})
    assert (r.matched_count, r.modified_count) == (1, 0)


def test_int_overflow_promotes_to_long(coll):
    coll.insert_one({"_id": 1, "a": 2147483647, "b": 2147483647})
    coll.update_one({"_id": 1}, {"$inc": {"a": 1}, "$mul": {"b": 2}})
    got = coll.find_one({"_id": 1})
    assert type(got["a"]) is Int64 and got["a"] == 2147483648
    assert type(got["b"]) is Int64 and got["b"] == 4294967294


def test_upsert_ambiguous_equalities_are_54(coll):
    with pytest.raises(OperationFailure) as ei:
        coll.update_one({"a": 1, "a.b": 2}, {"$set": {"z": 1}}, upsert=True)
    assert ei.value.code == 54


@pytest.mark.parametrize("flt,want", [
    ({"$and": [{"a": 1}, {"$and": [{"b": 2}]}]}, {"a": 1, "b": 2, "z": 1}),
    ({"$or": [{"a": 1}, {"b": 2}]}, {"z": 1}),
    ({"a": {"$in": [1, 2]}}, {"z": 1}),
    ({"a": {"$eq": 1, "$gt": 0}}, {"a": 1, "z": 1}),
    ({"a.0": 1}, {"a": {"0": 1}, "z": 1}),
    ({"_id.x": 1}, {"_id": {"x": 1}, "z": 1}),
])
def test_upsert_seeds_from_equalities(coll, flt, want):
    coll.update_one(flt, {"$set": {"z": 1}}, upsert=True)
    got = coll.find_one({})
    if "_id" not in want:
        got.pop("_id")
    assert got == want


# ---- distinct and count ---------------------------------------------------------------------

def test_distinct_unwinds_one_level(coll):
    coll.insert_many([{"_id": 1, "a": [1, [2, 3]], "b": {"c": [4, 5]}},
                      {"_id": 2, "a": 1.0, "b": [{"c": 6}, {"c": [7]}]},
                      {"_id": 3, "a": None}, {"_id": 4}, {"_id": 5, "a": []},
                      {"_id": 6, "a": [None, Int64(1), "x", {"k": 1}]}])
    assert coll.distinct("a") == [None, 1, "x", {"k": 1}, [2, 3]]
    assert coll.distinct("b.c") == [4, 5, 6, 7]
    assert coll.distinct("a.k") == [1]
    assert coll.count_documents({"a": {"$type": "array"}}) == 3
    assert coll.database.command("count", "c", limit=-2)["n"] == 2


def test_group_with_two_ids_is_15948(coll):
    from bson import encode
    from bson.raw_bson import RawBSONDocument
    from bson.son import SON

    raw = encode(SON([("_id", None), ("_iX", {"$sum": 1})])).replace(b"_iX\x00", b"_id\x00")
    coll.insert_one({"_id": 1})
    with pytest.raises(OperationFailure) as ei:
        list(coll.aggregate([{"$group": RawBSONDocument(raw)}]))
    assert ei.value.code == 15948
