"""Positional update operators against a real cairnd, as mongod 7.0: `$` (the element the
query matched), `$[]` (every element) and `$[<id>]` with the arrayFilters option, through
update_one / update_many / upserts and find_one_and_update, including mongod's error codes."""

import pytest
from pymongo import ReturnDocument
from pymongo.errors import OperationFailure, WriteError

# (document before, query, update, array_filters or None, document after)
CASES = [
    # $ : the first element the query matched
    ({"a": [1, 2, 3]}, {"a": 2}, {"$set": {"a.$": 9}}, None, {"a": [1, 9, 3]}),
    ({"g": [85, 80, 80]}, {"g": 80}, {"$set": {"g.$": 82}}, None, {"g": [85, 82, 80]}),
    ({"it": [{"n": "x", "q": 1}, {"n": "y", "q": 2}]}, {"it.n": "y"},
     {"$inc": {"it.$.q": 5}}, None, {"it": [{"n": "x", "q": 1}, {"n": "y", "q": 7}]}),
    ({"a": [{"b": 1, "c": 1}, {"b": 2, "c": 2}]}, {"a": {"$elemMatch": {"b": 2, "c": 2}}},
     {"$set": {"a.$.c": 9}}, None, {"a": [{"b": 1, "c": 1}, {"b": 2, "c": 9}]}),
    ({"a": [1, 2, 3]}, {"a": {"$gt": 1}}, {"$unset": {"a.$": ""}}, None, {"a": [1, None, 3]}),
    ({"a": [5, 6]}, {"a": 6}, {"$mul": {"a.$": 2}}, None, {"a": [5, 12]}),
    ({"a": [5, 6]}, {"a": 6}, {"$min": {"a.$": 1}}, None, {"a": [5, 1]}),
    ({"a": [5, 6]}, {"a": 5}, {"$max": {"a.$": 7}}, None, {"a": [7, 6]}),
    ({"a": [{"t": [1]}, {"t": [2]}]}, {"a.t": 2}, {"$push": {"a.$.t": 3}}, None,
     {"a": [{"t": [1]}, {"t": [2, 3]}]}),
    ({"a": [{"t": [1, 2]}, {"t": [2, 3]}]}, {"a.t": 3}, {"$pull": {"a.$.t": 2}}, None,
     {"a": [{"t": [1, 2]}, {"t": [3]}]}),
    ({"a": [{"t": [1]}, {"t": [2]}]}, {"a.t": 1}, {"$addToSet": {"a.$.t": 1}}, None,
     {"a": [{"t": [1]}, {"t": [2]}]}),
    # `$` stands for the matched position even in another array
    ({"x": [90, 91, 92], "y": ["a", "b", "c"]}, {"x": 92}, {"$set": {"y.$": "z"}}, None,
     {"x": [90, 91, 92], "y": ["a", "b", "z"]}),
    ({"x": {"y": [8, 7, 6]}}, {"x.y": 7}, {"$inc": {"x.y.$": 1}}, None, {"x": {"y": [8, 8, 6]}}),
    # the outermost array gives the position
    ({"a": [{"b": [1, 2]}, {"b": [3, 4]}]}, {"a.b": 4}, {"$set": {"a.$.c": 1}}, None,
     {"a": [{"b": [1, 2]}, {"b": [3, 4], "c": 1}]}),
    # "$" merges with a sibling path below the matched element
    ({"a": [{"b": 1}, {"b": 2}]}, {"a.b": 2}, {"$set": {"a.$.c": 1, "a.1.d": 2}}, None,
     {"a": [{"b": 1}, {"b": 2, "c": 1, "d": 2}]}),
    # $[] : every element
    ({"a": [1, 2, 3]}, {}, {"$inc": {"a.$[]": 10}}, None, {"a": [11, 12, 13]}),
    ({"a": [{"b": 1}, {"b": 2}]}, {}, {"$set": {"a.$[].b": 0}}, None, {"a": [{"b": 0}, {"b": 0}]}),
    ({"a": [[1, 2], [3]]}, {}, {"$inc": {"a.$[].$[]": 1}}, None, {"a": [[2, 3], [4]]}),
    ({"a": [[0], [1]]}, {}, {"$addToSet": {"a.$[]": 2}}, None, {"a": [[0, 2], [1, 2]]}),
    ({"a": [[0, 1], [1, 2]]}, {}, {"$pull": {"a.$[]": 1}}, None, {"a": [[0], [2]]}),
    ({"a": [[0]]}, {}, {"$pop": {"a.$[]": 1}}, None, {"a": [[]]}),
    ({"a": [0, 1]}, {}, {"$unset": {"a.$[]": 1}}, None, {"a": [None, None]}),
    ({"a": []}, {}, {"$set": {"a.$[]": 1}}, None, {"a": []}),
    ({"a": [{"b": 0, "c": 1}, {"b": 0, "c": -1}, {"b": 1, "c": 1}]}, {},
     {"$min": {"a.$[].c": 0}}, None,
     {"a": [{"b": 0, "c": 0}, {"b": 0, "c": -1}, {"b": 1, "c": 0}]}),
    # $[<id>] with arrayFilters
    ({"g": [95, 92, 90]}, {}, {"$set": {"g.$[e]": 100}}, [{"e": {"$gte": 92}}],
     {"g": [100, 100, 90]}),
    ({"g": [{"grade": 80, "mean": 75}, {"grade": 85, "mean": 90}]}, {},
     {"$set": {"g.$[e].mean": 100}}, [{"e.grade": {"$gte": 85}}],
     {"g": [{"grade": 80, "mean": 75}, {"grade": 85, "mean": 100}]}),
    ({"a": [0, 1, 3]}, {}, {"$set": {"a.$[i]": 2}}, [{"$or": [{"i": 0}, {"i": 3}]}],
     {"a": [2, 1, 2]}),
    ({"a": [{"x": 1, "y": 5}, {"x": 1, "y": 1}]}, {}, {"$inc": {"a.$[i].y": 1}},
     [{"$and": [{"i.x": 1}, {"i.y": {"$gt": 2}}]}], {"a": [{"x": 1, "y": 6}, {"x": 1, "y": 1}]}),
    ({"a": [{"b": 0, "c": [{"d": 0}, {"d": 1}]}, {"b": 1, "c": [{"d": 0}, {"d": 1}]}]}, {},
     {"$set": {"a.$[i].c.$[j].d": 2}}, [{"i.b": 0}, {"j.d": 0}],
     {"a": [{"b": 0, "c": [{"d": 2}, {"d": 1}]}, {"b": 1, "c": [{"d": 0}, {"d": 1}]}]}),
    ({"a": [[0, 1], [0, 1]]}, {}, {"$set": {"a.$[].$[j]": 2}}, [{"j": 0}], {"a": [[2, 1], [2, 1]]}),
    ({"a": [0, 1, 0, 1]}, {}, {"$set": {"a.$[i]": 5, "a.$[j]": 6}}, [{"i": 0}, {"j": 1}],
     {"a": [5, 6, 5, 6]}),
    ({"a": [{"x": 0, "b": [{"y": 0, "c": 0, "d": 0}]}]}, {},
     {"$set": {"a.$[i].b.$[k].c": 1, "a.$[j].b.$[k].d": 1}},
     [{"i.x": 0}, {"j.x": 0}, {"k.y": 0}], {"a": [{"x": 0, "b": [{"y": 0, "c": 1, "d": 1}]}]}),
    ({"a": [1, 2]}, {}, {"$set": {"a.$[i]": 0}}, [{"i": 7}], {"a": [1, 2]}),
    ({"a": [[1, 2], [3]]}, {}, {"$push": {"a.$[i]": 9}}, [{"i": 3}], {"a": [[1, 2], [3, 9]]}),
    ({"a": [{"n": "x"}, {"n": "y"}]}, {}, {"$set": {"a.$[i].n": "z"}},
     [{"i.n": {"$in": ["y"]}}], {"a": [{"n": "x"}, {"n": "z"}]}),
    ({"a": ["foo", "bar", "baz"]}, {}, {"$set": {"a.$[i]": "q"}}, [{"i": {"$regex": "^ba"}}],
     {"a": ["foo", "q", "q"]}),
    # replacement updates ignore arrayFilters
]


def _strip(d):
    d = dict(d)
    d.pop("_id", None)
    return d


@pytest.mark.parametrize("doc,q,upd,af,want", CASES, ids=[repr(c[2]) for c in CASES])
def test_update_one(coll, doc, q, upd, af, want):
    coll.insert_one(dict({"_id": 1}, **doc))
    r = coll.update_one(dict({"_id": 1}, **q), upd, array_filters=af)
    assert r.matched_count == 1
    assert r.modified_count == (0 if want == doc else 1)
    assert _strip(coll.find_one({"_id": 1})) == want


@pytest.mark.parametrize("doc,q,upd,af,want", CASES, ids=[repr(c[2]) for c in CASES])
def test_find_one_and_update(coll, doc, q, upd, af, want):
    coll.insert_one(dict({"_id": 1}, **doc))
    got = coll.find_one_and_update(dict({"_id": 1}, **q), upd, array_filters=af,
                                   return_document=ReturnDocument.AFTER)
    assert _strip(got) == want


def test_update_many_positional_per_document(coll):
    coll.insert_many([{"_id": 1, "a": [1, 2, 3]}, {"_id": 2, "a": [3, 2, 1]},
                      {"_id": 3, "a": [4]}])
    r = coll.update_many({"a": {"$lte": 2}}, {"$set": {"a.$": 0}})
    assert (r.matched_count, r.modified_count) == (2, 2)
    assert [d["a"] for d in coll.find({}, sort=[("_id", 1)])] == [[0, 2, 3], [3, 0, 1], [4]]


def test_update_many_array_filters(coll):
    coll.insert_many([{"_id": 1, "a": [0, 1, 0, 1]}, {"_id": 2, "a": [0, 2, 0, 2]},
                      {"_id": 3, "b": 1}])
    r = coll.update_many({"a": {"$exists": True}}, {"$set": {"a.$[i]": 3}},
                         array_filters=[{"i": 0}])
    assert (r.matched_count, r.modified_count) == (2, 2)
    assert [d.get("a") for d in coll.find({}, sort=[("_id", 1)])] == [
        [3, 1, 3, 1], [3, 2, 3, 2], None]


def test_upsert_all_positional_uses_query_equality(coll):
    r = coll.update_one({"a": [1, 2]}, {"$inc": {"a.$[]": 1}}, upsert=True)
    assert r.upserted_id is not None
    assert _strip(coll.find_one({"_id": r.upserted_id})) == {"a": [2, 3]}


def test_upsert_array_filter_on_query_array(coll):
    r = coll.update_one({"a": [1, 5]}, {"$set": {"a.$[i]": 0}}, upsert=True,
                        array_filters=[{"i": {"$gt": 2}}])
    assert _strip(coll.find_one({"_id": r.upserted_id})) == {"a": [1, 0]}


def test_upsert_updates_existing_with_positional(coll):
    coll.insert_one({"_id": 1, "a": [1, 2]})
    r = coll.update_one({"a": 2}, {"$set": {"a.$": 7}}, upsert=True)
    assert r.upserted_id is None and r.modified_count == 1
    assert coll.find_one({"_id": 1})["a"] == [1, 7]


def test_replacement_ignores_array_filters(db):
    db.c.insert_one({"_id": 1, "a": [1]})
    res = db.command("update", "c", updates=[
        {"q": {"_id": 1}, "u": {"b": 2}, "arrayFilters": [{"i": 0}]}])
    assert res["n"] == 1 and res["nModified"] == 1
    assert db.c.find_one({"_id": 1}) == {"_id": 1, "b": 2}


# (document, query, update, array_filters, upsert, code, message substring)
ERRORS = [
    ({"a": [1, 2]}, {}, {"$set": {"a.$": 5}}, None, False, 2,
     "The positional operator did not find the match needed from the query."),
    ({"a": [1, 2], "b": 1}, {"b": 1}, {"$set": {"a.$": 5}}, None, False, 2,
     "did not find the match"),
    ({"a": [1, 2]}, {"a": [1, 2]}, {"$set": {"a.$": 5}}, None, False, 2,
     "did not find the match"),
    ({"a": [1, 2]}, {"a": {"$size": 2}}, {"$set": {"a.$": 5}}, None, False, 2,
     "did not find the match"),
    ({"a": [1, 2]}, {"a": 1}, {"$set": {"a.$.$": 5}}, None, False, 2,
     "Too many positional (i.e. '$') elements found in path 'a.$.$'"),
    ({"a": [1, 2]}, {"a": 1}, {"$set": {"$": 5}}, None, False, 2,
     "Cannot have positional (i.e. '$') element in the first position in path '$'"),
    ({"a": [1, 2]}, {"a": 1}, {"$set": {"$.a": 5}}, None, False, 2,
     "Cannot have positional (i.e. '$') element in the first position"),
    (None, {"a": 1}, {"$set": {"b.$": 1}}, None, True, 2, "did not find the match"),
    (None, {"a": [5]}, {"$set": {"a.$": 6}}, None, True, 2, "did not find the match"),
    ({"a": 1}, {}, {"$inc": {"a.$[]": 1}}, None, False, 2,
     "Cannot apply array updates to non-array element a: 1"),
    ({"a": {"b": 1}}, {}, {"$set": {"a.$[]": 1}}, None, False, 2,
     "Cannot apply array updates to non-array element a: { b: 1 }"),
    ({"b": 1}, {}, {"$set": {"z.$[]": 1}}, None, False, 2,
     "The path 'z' must exist in the document in order to apply array updates."),
    ({"a": [{"b": [1]}, {}]}, {}, {"$set": {"a.$[].b.$[]": 1}}, None, False, 2,
     "The path 'a.1.b' must exist"),
    ({"a": [{"b": [1]}, {"b": 1}]}, {}, {"$set": {"a.$[].b.$[]": 1}}, None, False, 2,
     "Cannot apply array updates to non-array element b: 1"),
    (None, {"x": 1}, {"$set": {"a.$[]": 1}}, None, True, 2,
     "The path 'a' must exist in the document in order to apply array updates."),
    ({"a": [1, "s"]}, {}, {"$inc": {"a.$[]": 1}}, None, False, 14, "non-numeric"),
    ({"a": [1, 5]}, {}, {"$set": {"a.$[].b": 1}}, None, False, 28,
     "Cannot create field 'b' in element {0: 1}"),
    # identifiers
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 0}}, None, False, 2,
     "No array filter found for identifier 'i' in path 'a.$[i]'"),
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 0}}, [{"j": 0}], False, 2,
     "No array filter found for identifier 'i' in path 'a.$[i]'"),
    ({"a": [1]}, {}, {"$set": {"$[i]": 0}}, [{"i": 0}], False, 2,
     "Cannot have array filter identifier (i.e. '$[<id>]') element in the first position in "
     "path '$[i]'"),
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 5}}, [{"i": 0}, {"j": 0}], False, 9,
     "The array filter for identifier 'j' was not used in the update { $set: { a.$[i]: 5 } }"),
    ({"a": [1]}, {}, {"$set": {"b": 5}}, [{"i": 0}], False, 9,
     "The array filter for identifier 'i' was not used in the update"),
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 5, "a.$[j]": 6}}, [{"i": 0}, {"j": 0}, {"i": 1}],
     False, 9, "Found multiple array filters with the same top-level field name i"),
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 5}}, [{"i": 0, "j": 0}], False, 9,
     "Error parsing array filter :: caused by :: Expected a single top-level field name, "
     "found 'i' and 'j'"),
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 5}}, [{"$or": [{"i": 0}, {"k": 1}]}], False, 9,
     "Expected a single top-level field name, found 'i' and 'k'"),
    ({"a": [1]}, {}, {"$set": {"a.$[I]": 1}}, [{"I": 0}], False, 2,
     "Error parsing array filter :: caused by :: The top-level field name must be an "
     "alphanumeric string beginning with a lowercase letter, found 'I'"),
    ({"a": [1]}, {}, {"$set": {"a.$[1x]": 1}}, [{"1x": 0}], False, 2,
     "must be an alphanumeric string beginning with a lowercase letter, found '1x'"),
    ({"a": [1]}, {}, {"$set": {"a.$[$i]": 1}}, [{"$i": 0}], False, 2,
     "Error parsing array filter :: caused by :: unknown top level operator: $i"),
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 1}}, [{}], False, 9,
     "Cannot use an expression without a top-level field name in arrayFilters"),
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 1}}, [{"i": {"$bogus": 1}}], False, 2,
     "Error parsing array filter :: caused by :: unknown operator: $bogus"),
    # conflicts in mongod's update tree (parse time) and between expanded paths (apply time)
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 0, "a.$": 0}}, [{"i": 0}], False, 40,
     "Updating the path 'a.$' would create a conflict at 'a'"),
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 0, "a.0": 0}}, [{"i": 0}], False, 40,
     "Updating the path 'a.0' would create a conflict at 'a'"),
    ({"a": [1]}, {}, {"$set": {"a.$[i]": 0, "a.b": 0}}, [{"i": 0}], False, 40,
     "Updating the path 'a.b' would create a conflict at 'a'"),
    ({"a": [1]}, {}, {"$set": {"a.$[]": 0}, "$inc": {"a.$[]": 1}}, None, False, 40,
     "Updating the path 'a.$[]' would create a conflict at 'a.$[]'"),
    ({"a": [1]}, {}, {"$set": {"a": 0, "a.$[]": 1}}, None, False, 40,
     "Updating the path 'a.$[]' would create a conflict at 'a'"),
    ({"a": [1, 2]}, {"a": 1}, {"$set": {"a.$": 0, "a.0": 1}}, None, False, 40,
     "Update created a conflict at 'a.0'"),
    ({"a": [0, 1]}, {}, {"$set": {"a.$[i]": 5, "a.$[j]": 6}}, [{"i": 0}, {"j": {"$lt": 1}}],
     False, 40, "Update created a conflict at 'a.0'"),
    ({"a": [{"x": 0, "b": [{"y": 0, "c": 0}]}, {"x": 1, "b": [{"y": 0, "c": 0}]}]}, {},
     {"$set": {"a.$[i].b.$[k].c": 1, "a.$[j].b.$[k].c": 2}},
     [{"i.x": 0}, {"j.x": 0}, {"k.y": 0}], False, 40,
     "Update created a conflict at 'a.0.b.$[k].c'"),
    ({"a": [{"x": 0, "b": [{"y": 0, "c": 0}]}, {"x": 1, "b": [{"y": 0, "c": 0}, {"y": 1}]}]},
     {}, {"$set": {"a.$[i].b.$[k].c": 1, "a.$[j].b.$[m].c": 2}},
     [{"i.x": 0}, {"j.x": 0}, {"k.y": 0}, {"m.y": 0}], False, 40,
     "Update created a conflict at 'a.0.b.0.c'"),
    # $rename cannot be positional
    ({"a": [1]}, {}, {"$rename": {"a.$[i]": "b"}}, [{"i": 0}], False, 2,
     "The source field for $rename may not be dynamic: a.$[i]"),
    ({"a": [0], "b": [1]}, {}, {"$rename": {"a.$[]": "b"}}, None, False, 2,
     "The source field for $rename may not be dynamic: a.$[]"),
    ({"a": [0], "b": [1]}, {}, {"$rename": {"a": "b.$[]"}}, None, False, 2,
     "The destination field for $rename may not be dynamic: b.$[]"),
    ({"a": [1]}, {}, {"$rename": {"a": "b"}}, [{"i": 0}], False, 9,
     "The array filter for identifier 'i' was not used in the update { $rename: { a: \"b\" } }"),
    # other $-prefixed components stay invalid for storage
    ({"a": [1]}, {}, {"$set": {"a.$x": 1}}, None, False, 52, "not valid for storage"),
]


@pytest.mark.parametrize("doc,q,upd,af,upsert,code,msg", ERRORS,
                         ids=[repr(c[2]) + repr(c[3]) for c in ERRORS])
def test_errors(coll, doc, q, upd, af, upsert, code, msg):
    if doc is not None:
        coll.insert_one(dict({"_id": 1}, **doc))
    with pytest.raises(WriteError) as ei:
        coll.update_one(q, upd, array_filters=af, upsert=upsert)
    assert ei.value.code == code, ei.value.details
    assert msg in ei.value.details["errmsg"]
    if doc is not None:
        assert _strip(coll.find_one({"_id": 1})) == doc
    else:
        assert coll.count_documents({}) == 0


@pytest.mark.parametrize("doc,q,upd,af,upsert,code,msg", ERRORS[:12],
                         ids=[repr(c[2]) for c in ERRORS[:12]])
def test_errors_find_one_and_update(coll, doc, q, upd, af, upsert, code, msg):
    if doc is not None:
        coll.insert_one(dict({"_id": 1}, **doc))
    with pytest.raises(OperationFailure) as ei:
        coll.find_one_and_update(q, upd, array_filters=af, upsert=upsert)
    assert ei.value.code == code
    assert msg in ei.value.details["errmsg"]


@pytest.mark.parametrize("af,code,msg", [
    ({"i": 0}, 14, "BSON field 'update.updates.arrayFilters' is the wrong type 'object', "
                   "expected type 'array'"),
    (["bad"], 14, "BSON field 'update.updates.arrayFilters.0' is the wrong type 'string', "
                  "expected type 'object'"),
    ([{"i": 0}, 5], 14, "BSON field 'update.updates.arrayFilters.1' is the wrong type 'int'"),
])
def test_update_command_array_filters_type(db, af, code, msg):
    with pytest.raises(OperationFailure) as ei:
        res = db.command("update", "c", updates=[
            {"q": {}, "u": {"$set": {"a.$[i]": 5}}, "arrayFilters": af}])
        # a statement error comes back as a writeError
        we = res.get("writeErrors")
        raise OperationFailure(we[0]["errmsg"], we[0]["code"], we[0]) if we else AssertionError
    assert ei.value.code == code
    assert msg in str(ei.value)


def test_pipeline_update_with_array_filters_is_9(db):
    res = db.command("update", "c", updates=[
        {"q": {}, "u": [{"$set": {"a": 1}}], "arrayFilters": [{"i": 0}]}])
    we = res["writeErrors"][0]
    assert we["code"] == 9
    assert "arrayFilters may not be specified for pipeline-style updates" in we["errmsg"]


@pytest.mark.parametrize("extra,code,msg", [
    ({"remove": True, "arrayFilters": [{"i": 0}]}, 9,
     "Cannot specify arrayFilters and remove=true"),
    ({"update": [{"$set": {"a": 1}}], "arrayFilters": [{"i": 0}]}, 9,
     "Cannot specify arrayFilters and a pipeline update"),
    ({"update": {"$set": {"a.$[i]": 1}}, "arrayFilters": {"i": 0}}, 14,
     "BSON field 'findAndModify.arrayFilters' is the wrong type 'object', expected type 'array'"),
    ({"update": {"$set": {"a.$[i]": 1}}, "arrayFilters": ["bad"]}, 14,
     "BSON field 'findAndModify.arrayFilters.0' is the wrong type 'string'"),
    ({"update": {"$set": {"a.$[i]": 1}}, "arrayFilters": [{"i": 0}, {"j": 0}]}, 9,
     "The array filter for identifier 'j' was not used"),
])
def test_find_and_modify_array_filters_errors(db, extra, code, msg):
    db.c.insert_one({"_id": 1, "a": [0]})
    with pytest.raises(OperationFailure) as ei:
        db.command(dict({"findAndModify": "c", "query": {"_id": 1}}, **extra))
    assert ei.value.code == code
    assert msg in ei.value.details["errmsg"]
    assert db.c.find_one({"_id": 1}) == {"_id": 1, "a": [0]}


def test_find_and_modify_returns_old_document_with_positional(coll):
    coll.insert_one({"_id": 1, "a": [{"n": 1}, {"n": 2}]})
    got = coll.find_one_and_update({"a.n": 2}, {"$inc": {"a.$.n": 10}})
    assert got == {"_id": 1, "a": [{"n": 1}, {"n": 2}]}
    assert coll.find_one({"_id": 1}) == {"_id": 1, "a": [{"n": 1}, {"n": 12}]}


def test_empty_array_filters_list_is_accepted(coll):
    coll.insert_one({"_id": 1, "a": [1, 2]})
    r = coll.update_one({"_id": 1}, {"$inc": {"a.$[]": 1}}, array_filters=[])
    assert r.modified_count == 1
    assert coll.find_one({"_id": 1})["a"] == [2, 3]


def test_ordered_batch_stops_at_positional_error(db):
    db.c.insert_many([{"_id": 1, "a": [1]}, {"_id": 2, "a": [1]}])
    res = db.command("update", "c", updates=[
        {"q": {"_id": 1, "a": 1}, "u": {"$set": {"a.$": 5}}},
        {"q": {"_id": 2}, "u": {"$set": {"a.$": 5}}},
        {"q": {"_id": 2}, "u": {"$set": {"b": 1}}},
    ])
    assert res["n"] == 1 and res["nModified"] == 1
    assert [(e["index"], e["code"]) for e in res["writeErrors"]] == [(1, 2)]
    assert db.c.find_one({"_id": 2}) == {"_id": 2, "a": [1]}
