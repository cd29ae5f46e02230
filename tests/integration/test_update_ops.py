"""Every update operator of the milestone, table-driven: (document before, update, document
after), each run as update_one on the server; plus errors that must leave documents intact."""

import datetime

import pytest
from bson import Int64, Timestamp
from pymongo.errors import OperationFailure, WriteError

CASES = [
    # $set
    ({"a": 1}, {"$set": {"a": 5}}, {"a": 5}),
    ({"a": 1}, {"$set": {"b": "x"}}, {"a": 1, "b": "x"}),
    ({}, {"$set": {"n.x": 3}}, {"n": {"x": 3}}),
    ({"n": {"x": 1, "y": 2}}, {"$set": {"n.x": 9}}, {"n": {"x": 9, "y": 2}}),
    ({"arr": [1, 2, 3]}, {"$set": {"arr.1": 9}}, {"arr": [1, 9, 3]}),
    ({"arr": [{"k": 1}, {"k": 2}]}, {"$set": {"arr.0.k": 7}}, {"arr": [{"k": 7}, {"k": 2}]}),
    ({"a": 1}, {"$set": {"a": {"b": [1, {"c": None}]}}}, {"a": {"b": [1, {"c": None}]}}),
    ({"a": 1, "b": 2}, {"$set": {"a": 3, "c": 4}}, {"a": 3, "b": 2, "c": 4}),
    # $unset
    ({"a": 1, "b": 2}, {"$unset": {"a": ""}}, {"b": 2}),
    ({"a": 1}, {"$unset": {"zz": 1}}, {"a": 1}),
    ({"n": {"x": 1, "y": 2}}, {"$unset": {"n.x": True}}, {"n": {"y": 2}}),
    ({"arr": [1, 2, 3]}, {"$unset": {"arr.1": ""}}, {"arr": [1, None, 3]}),
    # $inc (type promotion as mongod: int32 overflow to int64, int + double = double)
    ({"a": 1}, {"$inc": {"a": 2}}, {"a": 3}),
    ({"a": 1}, {"$inc": {"a": -5}}, {"a": -4}),
    ({}, {"$inc": {"a": 2}}, {"a": 2}),
    ({"a": 1}, {"$inc": {"a": 1.5}}, {"a": 2.5}),
    ({"a": Int64(5)}, {"$inc": {"a": 1}}, {"a": Int64(6)}),
    ({"a": 2147483647}, {"$inc": {"a": 1}}, {"a": Int64(2147483648)}),
    ({"n": {"c": 1}}, {"$inc": {"n.c": 1, "n.d": 1}}, {"n": {"c": 2, "d": 1}}),
    # $mul
    ({"a": 2}, {"$mul": {"a": 3}}, {"a": 6}),
    ({"a": 2}, {"$mul": {"a": 0.5}}, {"a": 1.0}),
    ({}, {"$mul": {"a": 3}}, {"a": 0}),
    # $bit (int32 op int32 stays int32; int64 on either side gives int64; a missing field
    # starts from int32 0; the operations apply in the argument's order)
    ({"a": 13}, {"$bit": {"a": {"and": 10}}}, {"a": 8}),
    ({"a": 3}, {"$bit": {"a": {"or": 5}}}, {"a": 7}),
    ({"a": 5}, {"$bit": {"a": {"xor": 1}}}, {"a": 4}),
    ({"a": 5}, {"$bit": {"a": {"and": 4, "or": 2, "xor": 1}}}, {"a": 7}),
    ({"a": -1}, {"$bit": {"a": {"and": 255}}}, {"a": 255}),
    ({"a": 5}, {"$bit": {"a": {"or": Int64(1 << 40)}}}, {"a": Int64((1 << 40) | 5)}),
    ({"a": Int64(6)}, {"$bit": {"a": {"and": 3}}}, {"a": Int64(2)}),
    ({}, {"$bit": {"n.a": {"or": 6}}}, {"n": {"a": 6}}),
    ({"a": 6}, {"$bit": {"a": {"and": 7}}}, {"a": 6}),
    ({"t": [1, 2]}, {"$bit": {"t.1": {"or": 1}}}, {"t": [1, 3]}),
    # $min / $max
    ({"a": 5}, {"$min": {"a": 3}}, {"a": 3}),
    ({"a": 5}, {"$min": {"a": 8}}, {"a": 5}),
    ({"a": 5}, {"$max": {"a": 8}}, {"a": 8}),
    ({"a": 5}, {"$max": {"a": 2}}, {"a": 5}),
    ({}, {"$min": {"a": 1}}, {"a": 1}),
    ({"a": 5}, {"$min": {"a": None}}, {"a": None}),
    ({"a": 5}, {"$max": {"a": "str"}}, {"a": "str"}),
    # $rename
    ({"a": 1, "b": 2}, {"$rename": {"a": "c"}}, {"b": 2, "c": 1}),
    ({"a": 1, "b": 2}, {"$rename": {"a": "b"}}, {"b": 1}),
    ({"a": 1}, {"$rename": {"zz": "yy"}}, {"a": 1}),
    ({"n": {"x": 1}}, {"$rename": {"n.x": "m.y"}}, {"n": {}, "m": {"y": 1}}),
    # $push (with $each)
    ({"t": [1]}, {"$push": {"t": 2}}, {"t": [1, 2]}),
    ({}, {"$push": {"t": 2}}, {"t": [2]}),
    ({"t": [1]}, {"$push": {"t": {"$each": [2, 3]}}}, {"t": [1, 2, 3]}),
    ({"t": [1]}, {"$push": {"t": [2, 3]}}, {"t": [1, [2, 3]]}),
    ({"t": [1]}, {"$push": {"t": {"$each": []}}}, {"t": [1]}),
    # $pull
    ({"t": ["a", "b", "a", "c"]}, {"$pull": {"t": "a"}}, {"t": ["b", "c"]}),
    ({"t": [1, 5, 2, 8]}, {"$pull": {"t": {"$gt": 2}}}, {"t": [1, 2]}),
    ({"t": [{"k": 1}, {"k": 2}]}, {"$pull": {"t": {"k": 1}}}, {"t": [{"k": 2}]}),
    ({"t": [1, 2]}, {"$pull": {"t": 9}}, {"t": [1, 2]}),
    ({"t": [1, 2]}, {"$pull": {"zz": 1}}, {"t": [1, 2]}),
    # $addToSet
    ({"t": [1, 2]}, {"$addToSet": {"t": 2}}, {"t": [1, 2]}),
    ({"t": [1, 2]}, {"$addToSet": {"t": 3}}, {"t": [1, 2, 3]}),
    ({"t": [1, 2]}, {"$addToSet": {"t": {"$each": [2, 3, 3, 4]}}}, {"t": [1, 2, 3, 4]}),
    ({}, {"$addToSet": {"t": "x"}}, {"t": ["x"]}),
    ({"t": [{"a": 1}]}, {"$addToSet": {"t": {"a": 1}}}, {"t": [{"a": 1}]}),
    # $pop
    ({"t": [1, 2, 3]}, {"$pop": {"t": 1}}, {"t": [1, 2]}),
    ({"t": [1, 2, 3]}, {"$pop": {"t": -1}}, {"t": [2, 3]}),
    ({"t": []}, {"$pop": {"t": 1}}, {"t": []}),
    # several operators at once
    ({"a": 1, "t": [1]}, {"$inc": {"a": 1}, "$push": {"t": 2}, "$set": {"s": "x"}},
     {"a": 2, "t": [1, 2], "s": "x"}),
    # $setOnInsert on an existing document does nothing
    ({"a": 1}, {"$setOnInsert": {"b": 1}, "$set": {"a": 2}}, {"a": 2}),
]


def _id(case):
    return repr(case[1]).replace(" ", "")[:60]


@pytest.mark.parametrize("before,update,after", CASES, ids=[_id(c) for c in CASES])
def test_update_operator(coll, before, update, after):
    coll.insert_one(dict({"_id": 1}, **before))
    r = coll.update_one({"_id": 1}, update)
    assert r.matched_count == 1
    got = coll.find_one({"_id": 1})
    assert got == dict({"_id": 1}, **after)
    # types matter (Int64 stays Int64, int32 overflows to Int64, int * double = double)
    for k, v in after.items():
        assert type(got[k]) is type(v), (k, got[k], v)
    assert r.modified_count == (0 if dict({"_id": 1}, **before) == got else 1)


def test_current_date(coll):
    coll.insert_one({"_id": 1})
    before = datetime.datetime.utcnow() - datetime.timedelta(seconds=5)
    coll.update_one({"_id": 1}, {"$currentDate": {"d": True, "ts": {"$type": "timestamp"},
                                                  "d2": {"$type": "date"}}})
    got = coll.find_one({"_id": 1})
    after = datetime.datetime.utcnow() + datetime.timedelta(seconds=5)
    assert isinstance(got["d"], datetime.datetime) and before <= got["d"] <= after
    assert isinstance(got["d2"], datetime.datetime) and before <= got["d2"] <= after
    assert isinstance(got["ts"], Timestamp)
    assert got["ts"].time > 1_500_000_000


def test_set_on_insert_with_upsert(coll):
    r = coll.update_one({"_id": 5}, {"$setOnInsert": {"created": 1}, "$set": {"v": 1}},
                        upsert=True)
    assert r.upserted_id == 5
    assert coll.find_one({"_id": 5}) == {"_id": 5, "created": 1, "v": 1}
    coll.update_one({"_id": 5}, {"$setOnInsert": {"created": 2}, "$set": {"v": 2}}, upsert=True)
    assert coll.find_one({"_id": 5}) == {"_id": 5, "created": 1, "v": 2}


def test_update_many_with_operators(coll):
    coll.insert_many([{"_id": i, "t": [], "n": i} for i in range(10)])
    r = coll.update_many({"n": {"$gte": 5}}, {"$push": {"t": "x"}, "$mul": {"n": 2}})
    assert (r.matched_count, r.modified_count) == (5, 5)
    got = {d["_id"]: (d["n"], d["t"]) for d in coll.find()}
    for i in range(10):
        assert got[i] == ((i * 2, ["x"]) if i >= 5 else (i, []))


ERRORS = [
    # (document, update, mongod code or None when only "an error" is certain)
    ({"s": "x"}, {"$inc": {"s": 1}}, 14),           # TypeMismatch
    ({"s": "x"}, {"$mul": {"s": 2}}, 14),
    ({"a": 1}, {"$inc": {"a": "1"}}, 14),
    ({"a": 1}, {"$set": {"a": 1}, "$inc": {"a": 1}}, 40),  # ConflictingUpdateOperators
    ({"a": 1}, {"$set": {"n": 1}, "$unset": {"n.x": 1}}, 40),
    ({"a": 1}, {"$bogus": {"a": 1}}, 9),            # FailedToParse
    ({"a": 1}, {"$push": {"a": 2}}, None),          # not an array
    ({"a": 1}, {"$pull": {"a": 2}}, None),
    ({"a": 1}, {"$addToSet": {"a": 2}}, None),
    ({"a": 1}, {"$pop": {"a": 1}}, None),
    ({"a": 1}, {"$pop": {"t": 2}}, None),           # $pop takes 1 or -1
    ({"a": 1}, {"$rename": {"a": "a"}}, None),
    ({"a": 1}, {"$set": {"a.b": 1}}, 28),           # PathNotViable
    ({"a": 1}, {"$set": {"_id": 2}}, 66),           # ImmutableField
    ({"a": 1.0}, {"$bit": {"a": {"or": 1}}}, 2),    # $bit needs an integer (BadValue)
    ({"s": "x"}, {"$bit": {"s": {"or": 1}}}, 2),
    ({"a": 1}, {"$bit": {"a": 1}}, 2),              # the argument must be a document
    ({"a": 1}, {"$bit": {"a": {}}}, 2),             # at least one operation
    ({"a": 1}, {"$bit": {"a": {"nand": 1}}}, 2),
    ({"a": 1}, {"$bit": {"a": {"or": 1.0}}}, 2),    # operands are int32 or int64
]


@pytest.mark.parametrize("before,update,code", ERRORS, ids=[_id(c) for c in ERRORS])
def test_update_errors_leave_document_intact(coll, before, update, code):
    doc = dict({"_id": 1}, **before)
    coll.insert_one(doc)
    with pytest.raises((WriteError, OperationFailure)) as e:
        coll.update_one({"_id": 1}, update)
    if code is not None:
        assert e.value.code == code
    assert coll.find_one({"_id": 1}) == doc
