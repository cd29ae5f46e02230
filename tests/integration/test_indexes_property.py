"""Property: after seeded random writes (inserts, every update operator, replacements,
upserts, findAndModify, deletes; scalars, arrays, nested arrays of documents, missing
fields), every index equals the index rebuilt from the documents. `validate` rebuilds each
index from the documents and compares it entry by entry (extra and missing entries); the test
also counts the keys it expects for the single-field indexes itself, as an independent oracle.
Half of the indexes are built before the writes, half over the written data."""

import random

import pytest
from pymongo.errors import OperationFailure

SEED = 20261205

FIELDS = ["a", "b", "c.d", "arr", "arr.x"]


def rand_value(rng, depth=0):
    r = rng.random()
    if r < 0.30:
        return rng.randrange(-5, 6)
    if r < 0.40:
        return rng.choice([1.5, -0.0, 2.0, float(rng.randrange(3))])
    if r < 0.55:
        return rng.choice(["x", "y", "", "zz"])
    if r < 0.62:
        return None
    if r < 0.68:
        return rng.choice([True, False])
    if r < 0.85 and depth < 2:
        return [rand_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if depth < 2:
        return {"x": rand_value(rng, depth + 1), "d": rand_value(rng, depth + 1)}
    return rng.randrange(3)


def rand_doc(rng, _id):
    doc = {"_id": _id}
    for f in ["a", "b", "arr"]:
        if rng.random() < 0.8:
            doc[f] = rand_value(rng)
    if rng.random() < 0.7:
        doc["c"] = rng.choice([{"d": rand_value(rng)}, [{"d": rand_value(rng)}, {"d": 1}], 5])
    if rng.random() < 0.5:
        doc["arr"] = [{"x": rand_value(rng, 1)} for _ in range(rng.randrange(0, 3))]
    return doc


def rand_update(rng):
    f = rng.choice(["a", "b", "arr", "c.d", "n"])
    ops = [
        {"$set": {f: rand_value(rng)}},
        {"$unset": {f: ""}},
        {"$inc": {"n": rng.randrange(1, 4)}},
        {"$mul": {"n": 2}},
        {"$min": {"a": rng.randrange(-3, 3)}},
        {"$max": {"a": rng.randrange(-3, 3)}},
        {"$rename": {"a": "b"}} if rng.random() < 0.5 else {"$rename": {"b": "a"}},
        {"$push": {"arr": rand_value(rng, 1)}},
        {"$addToSet": {"arr": rand_value(rng, 1)}},
        {"$pop": {"arr": rng.choice([1, -1])}},
        {"$pull": {"arr": rand_value(rng, 2)}},
        {"$pullAll": {"arr": [1, 2, "x"]}},
        {"$set": {"arr.0": rand_value(rng, 1)}},
        {"$currentDate": {"b": True}},
        {"$setOnInsert": {"a": 1}},
    ]
    return rng.choice(ops)


def expected_keys(docs, field):
    """Distinct keys a single-field index holds for `docs` (mongod's multikey rules for the
    shapes this test writes: arrays along the path, whose elements without the rest of the
    path key as null; a leaf array's elements, undefined for an empty one)."""
    total = 0
    for d in docs:
        vals = collect(d, field.split("."))
        keys = set()
        for v in vals or [None]:
            keys.add(repr_key(v))
        total += len(keys)
    return total


def collect(value, parts):
    if not parts:
        if isinstance(value, list):
            return list(value) if value else ["__undefined__"]
        return [value]
    if isinstance(value, dict):
        if parts[0] not in value:
            return []
        return collect(value[parts[0]], parts[1:])
    if isinstance(value, list):
        # mongod: an element that does not lead to a value (a document without the rest of
        # the path, a scalar, a nested array) keys as null.
        out = []
        for e in value:
            got = collect(e, parts) if isinstance(e, dict) else []
            out.extend(got or [None])
        return out
    return []


def repr_key(v):
    # Values equal under BSON comparison share a key: 1 == 1.0, -0.0 == 0. An empty leaf
    # array is keyed as undefined, as with mongod: not the null of a missing field.
    if v == "__undefined__":
        return ("undefined",)
    if v is None:
        return ("null",)
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, (int, float)):
        return ("num", float(v))
    if isinstance(v, list):
        return ("arr", tuple(repr_key(e) for e in v))
    if isinstance(v, dict):
        return ("doc", tuple((k, repr_key(e)) for k, e in v.items()))
    return (type(v).__name__, v)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_indexes_equal_rebuilt_after_random_writes(coll, seed):
    rng = random.Random("%d:%d" % (SEED, seed))
    coll.create_index("a")
    coll.create_index("arr")
    coll.create_index([("b", -1), ("a", 1)], name="b_a")
    ids = list(range(60))
    for i in ids[:40]:
        try:
            coll.insert_one(rand_doc(rng, i))
        except OperationFailure as e:
            assert e.code == 171, e.details  # arrays in both a and b (index b_a)
    for step in range(400):
        _id = rng.choice(ids)
        kind = rng.random()
        try:
            if kind < 0.45:
                coll.update_one({"_id": _id}, rand_update(rng), upsert=rng.random() < 0.3)
            elif kind < 0.60:
                coll.replace_one({"_id": _id}, rand_doc(rng, _id), upsert=True)
            elif kind < 0.70:
                coll.find_one_and_update({"_id": _id}, rand_update(rng))
            elif kind < 0.78:
                coll.delete_one({"_id": _id})
            elif kind < 0.85:
                coll.update_many({"a": {"$gte": rng.randrange(-5, 5)}}, rand_update(rng))
            else:
                coll.insert_one(rand_doc(rng, 1000 + step))
        except OperationFailure as e:
            # Operators that do not apply to the value they meet, duplicate _ids, and documents
            # a compound index cannot take (parallel arrays) fail as with mongod: no change.
            assert e.code in (2, 14, 11000, 171, 40, 28, 16837, 16836, 17262, 10141), e.details
    # Indexes built over the written data, beside those maintained all along.
    coll.create_index("c.d")
    coll.create_index("arr.x")
    coll.create_index([("arr.x", 1), ("arr", -1)], name="arrx_arr")
    v = coll.database.command("validate", coll.name)
    assert v["valid"] is True, v
    docs = list(coll.find())
    assert v["nrecords"] == len(docs)
    for field, name in [("a", "a_1"), ("arr", "arr_1"), ("c.d", "c.d_1"), ("arr.x", "arr.x_1")]:
        assert v["keysPerIndex"][name] == expected_keys(docs, field), name
