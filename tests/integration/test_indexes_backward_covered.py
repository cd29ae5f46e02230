"""Backward index scans and covered projections. A sort that is the exact reverse of an
index's key-pattern prefix streams from the index scanned backward (explain: IXSCAN direction
"backward", no SORT), ranges on descending fields narrow the scan; a find whose filter,
projection and sort use only an index's fields (and _id) on an index without arrays returns
documents built from the index entries (explain: PROJECTION_COVERED, totalDocsExamined 0),
identical to the fetched ones, with every BSON type restored exactly (int vs long vs double,
-0.0, string vs missing vs null); seeded random queries agree with a collection scan."""

import datetime
import random

import pytest
from bson import Decimal128, Int64, ObjectId

from index_helpers import access, find_explain

SEED = 20261205


def typed(v):
    """A value with its exact BSON type, for comparisons (1 == 1.0 == Int64(1) in Python)."""
    if isinstance(v, dict):
        return {k: typed(x) for k, x in v.items()}
    if isinstance(v, list):
        return [typed(x) for x in v]
    if isinstance(v, float) and v == 0:
        return (type(v).__name__, repr(v))
    return (type(v).__name__, v)


@pytest.fixture
def sc(db):
    rng = random.Random(SEED)
    c, plain = db.s, db.s_plain
    docs = [{"_id": i, "a": rng.randrange(30), "b": rng.randrange(10), "n": "x%d" % i}
            for i in range(600)]
    c.insert_many(docs)
    plain.insert_many(docs)
    c.create_index([("a", 1), ("b", -1)])
    return c, plain


@pytest.mark.parametrize("flt,sort", [
    ({}, [("a", -1)]),
    ({}, [("a", -1), ("b", 1)]),
    ({"a": {"$gte": 10}}, [("a", -1)]),
    ({"a": {"$in": [3, 1, 7]}}, [("a", -1), ("b", 1)]),
    ({"a": {"$lt": 12}, "b": {"$gt": 3}}, [("a", -1)]),
    ({"b": 4}, [("a", -1)]),
])
def test_reverse_sort_scans_the_index_backward(sc, flt, sort):
    c, plain = sc
    plan, _ = find_explain(c, flt, sort=sort)
    assert plan["stage"] != "SORT", plan
    ix = access(plan)
    assert ix["stage"] == "IXSCAN" and ix["direction"] == "backward", plan
    key = [f for f, _ in sort]
    for skip, limit in ((0, 0), (3, 50)):
        got = [tuple(d[f] for f in key) for d in c.find(flt, sort=sort, skip=skip, limit=limit)]
        want = [tuple(d[f] for f in key) for d in plain.find(flt, sort=sort, skip=skip,
                                                              limit=limit)]
        assert got == want, (flt, sort)
    # Forward still forward.
    plan, _ = find_explain(c, flt, sort=[(f, -d) for f, d in sort])
    assert access(plan)["direction"] == "forward"


def test_equal_keys_come_in_reverse_id_order_backward(db):
    c = db.eq
    c.insert_many([{"_id": i, "a": i % 3} for i in range(30)])
    c.create_index("a")
    got = [d["_id"] for d in c.find({}, sort=[("a", -1)])]
    assert [i % 3 for i in got] == sorted([i % 3 for i in got], reverse=True)
    assert got[:10] == list(range(29, 0, -3))


def test_ranges_on_a_descending_field_narrow_the_scan(db):
    c, plain = db.d, db.d_plain
    docs = [{"_id": i, "v": i, "w": i % 5} for i in range(500)]
    c.insert_many(docs)
    plain.insert_many(docs)
    c.create_index([("v", -1)])
    c.create_index([("w", 1), ("v", -1)])
    for flt in ({"v": {"$gte": 100, "$lt": 110}}, {"v": {"$gt": 490}}, {"v": {"$lte": 4}},
                {"w": 2, "v": {"$gt": 400}}, {"w": {"$in": [1, 3]}, "v": {"$lt": 30}}):
        want = sorted(d["_id"] for d in plain.find(flt))
        assert sorted(d["_id"] for d in c.find(flt)) == want, flt
        plan, st = find_explain(c, flt)
        assert access(plan)["stage"] == "IXSCAN", (flt, plan)
        assert st["totalKeysExamined"] <= len(want) + 2, (flt, st)


@pytest.fixture
def cov(db):
    c = db.cov
    c.create_index([("a", 1), ("b", -1)])
    c.insert_many([{"_id": i, "a": i % 20, "b": "s%03d" % i, "other": i} for i in range(200)])
    return c


@pytest.mark.parametrize("flt,proj,sort", [
    ({"a": 3}, {"a": 1, "b": 1, "_id": 0}, None),
    ({"a": {"$gte": 15}}, {"b": 1}, None),
    ({"a": {"$in": [1, 2]}, "b": {"$gt": "s100"}}, {"a": 1, "_id": 0}, None),
    ({"a": {"$lt": 5}}, {"a": 1, "b": 1, "_id": 0}, [("a", -1), ("b", 1)]),
    ({"a": 7}, {"b": True, "_id": False}, [("b", -1)]),
    ({"$or": [{"a": 1}, {"a": 2, "b": {"$ne": "s002"}}], "a": {"$lte": 2}}, {"a": 1}, None),
])
def test_covered_projection_reads_no_document(cov, flt, proj, sort):
    plan, st = find_explain(cov, flt, projection=proj, sort=sort)
    stage = plan if plan["stage"] != "SORT" else plan["inputStage"]
    assert stage["stage"] == "PROJECTION_COVERED", plan
    assert st["totalDocsExamined"] == 0 and st["nReturned"] > 0, st
    got = [typed(d) for d in cov.find(flt, projection=proj, sort=sort)]
    # The same query that must fetch (the projection names a field the index lacks).
    want = [typed({k: v for k, v in d.items() if k != "other"})
            for d in cov.find(flt, projection=dict(proj, other=1), sort=sort)]
    if sort is None:
        got.sort(key=repr)
        want.sort(key=repr)
    assert got == want


@pytest.mark.parametrize("flt,proj", [
    ({"a": 3}, {"a": 1, "other": 1}),        # a field the index lacks
    ({"a": 3, "other": 5}, {"a": 1}),        # the filter needs one
    ({"a": 3}, {"other": 0}),                # exclusion: every other field
    ({"a": 3}, None),
    ({"a": 3}, {"a": {"$add": [1, 1]}}),     # an expression
])
def test_not_covered_fetches(cov, flt, proj):
    plan, st = find_explain(cov, flt, projection=proj)
    assert access(plan)["stage"] == "IXSCAN"
    assert "PROJECTION_COVERED" not in str(plan)
    assert st["totalDocsExamined"] > 0


def test_arrays_make_the_index_not_cover(db):
    c = db.arr
    c.create_index("a")
    c.insert_many([{"_id": 1, "a": 5}, {"_id": 2, "a": [6]}])  # one element: one key
    plan, _ = find_explain(c, {"a": {"$gte": 5}}, projection={"a": 1, "_id": 0})
    assert "PROJECTION_COVERED" not in str(plan)
    got = sorted(c.find({"a": {"$gte": 5}}, projection={"a": 1, "_id": 0}), key=repr)
    assert got == [{"a": 5}, {"a": [6]}]


def test_covered_values_keep_their_exact_types(db):
    c = db.types
    c.create_index([("v", 1)])
    oid = ObjectId()
    when = datetime.datetime(2026, 12, 5, 12, 0, 0, 123000)
    vals = [1, Int64(1), 1.0, -0.0, 0, Int64(0), 0.0, 2.5, -7, Int64(-2**63), 2**31 - 1,
            float("inf"), -float("inf"), 1e-310, "s", "", "a\x00b", None, True, False, oid,
            when, b"bin", {"x": 1, "y": [1.5, "z", None]}, [], ]
    docs = [{"_id": i, "v": v} for i, v in enumerate(vals)]
    docs.append({"_id": "missing"})
    docs = [d for d in docs if d.get("v") != []]  # arrays would make it multikey
    c.insert_many(docs)
    plan, st = find_explain(c, {}, projection={"v": 1}, hint="v_1")
    assert plan["stage"] == "PROJECTION_COVERED" and st["totalDocsExamined"] == 0, (plan, st)
    got = {d["_id"]: typed(d) for d in c.find({}, projection={"v": 1}, hint="v_1")}
    want = {d["_id"]: typed(d) for d in docs}
    assert got == want
    # Values the encoding cannot restore (decimal128) are fetched, still exact.
    c.insert_one({"_id": "dec", "v": Decimal128("1.10")})
    got = {d["_id"]: d for d in c.find({"v": {"$gte": 1}}, projection={"v": 1, "_id": 1})}
    assert got["dec"]["v"] == Decimal128("1.10")
    _, st = find_explain(c, {"v": {"$gte": 1}}, projection={"v": 1}, hint="v_1")
    assert st["totalDocsExamined"] == 1


def test_type_change_with_the_same_key_rewrites_the_entry(db):
    c = db.tc
    c.create_index("v")
    c.insert_one({"_id": 1, "v": 1})
    c.update_one({"_id": 1}, {"$set": {"v": 1.0}})  # same key bytes, another type
    got = list(c.find({"v": 1}, projection={"v": 1, "_id": 0}))
    assert typed(got) == typed([{"v": 1.0}])
    c.update_one({"_id": 1}, {"$set": {"v": Int64(1)}})
    assert typed(list(c.find({"v": 1}, projection={"v": 1, "_id": 0}))) == typed([{"v": Int64(1)}])
    assert c.database.command("validate", c.name)["valid"]


def rand_val(rng):
    r = rng.random()
    if r < 0.4:
        return rng.randrange(-3, 12)
    if r < 0.5:
        return rng.randrange(-3, 12) + 0.5
    if r < 0.6:
        return Int64(rng.randrange(-3, 12))
    if r < 0.8:
        return rng.choice(["a", "b", "c", ""])
    if r < 0.9:
        return None
    return {"x": rng.randrange(3)}


def test_random_covered_and_backward_queries_equal_a_collection_scan(db):
    rng = random.Random(SEED)
    c, plain = db.rc, db.rc_plain
    docs = []
    for i in range(700):
        d = {"_id": i, "pad": "p" * rng.randrange(5)}
        for f in ("a", "b"):
            if rng.random() < 0.9:
                d[f] = rand_val(rng)
        docs.append(d)
    c.insert_many(docs)
    plain.insert_many(docs)
    c.create_index([("a", 1), ("b", -1)])
    c.create_index([("b", 1)])
    covered = 0
    for _ in range(150):
        f = rng.choice(["a", "b"])
        v = rng.randrange(-3, 12)
        flt = rng.choice([{f: v}, {f: {"$gte": v}}, {f: {"$lt": rng.choice([v, "b"])}},
                          {f: {"$in": [v, "a", None]}}, {"a": {"$gt": v}, "b": {"$ne": None}},
                          {}])
        proj = rng.choice([{"a": 1, "b": 1, "_id": 0}, {"a": 1}, {"b": 1, "_id": 0}, None])
        sort = rng.choice([None, [("a", -1)], [("a", -1), ("b", 1)], [("b", -1)], [("a", 1)]])
        hint = rng.choice([None, None, "a_1_b_-1", "b_1"])
        kw = {"projection": proj, "sort": sort}
        if hint:
            kw["hint"] = hint
        raw_got = list(c.find(flt, **kw))
        raw_want = list(plain.find(flt, projection=proj, sort=sort))
        if sort is not None:
            # Ties in the sort key may come in any order (missing and null are equal, so are
            # 1, 1.0 and Int64(1)): the sort keys agree in order, the documents as sets.
            key = [k for k, _ in sort]
            assert [[x.get(k) for k in key] for x in raw_got] == \
                [[x.get(k) for k in key] for x in raw_want], (flt, kw)
        got = sorted((typed(d) for d in raw_got), key=repr)
        want = sorted((typed(d) for d in raw_want), key=repr)
        assert got == want, (flt, kw)
        plan, st = find_explain(c, flt, **kw)
        if "PROJECTION_COVERED" in str(plan):
            covered += 1
            assert st["totalDocsExamined"] == 0, (flt, kw, st)
    assert covered > 20


def test_count_and_distinct_read_the_index_alone(cov):
    db = cov.database
    for q in ({"a": 3}, {"a": {"$gte": 15}, "b": {"$lt": "s150"}},
              {"a": {"$in": [1, 2]}, "b": {"$in": ["s001", "s022", "x"]}}):
        n = sum(1 for _ in cov.find(q, hint={"$natural": 1}))
        assert db.command("count", cov.name, query=q)["n"] == n
        e = db.command("explain", {"count": cov.name, "query": q}, verbosity="executionStats")
        plan = e["queryPlanner"]["winningPlan"]
        assert plan["stage"] == "COUNT" and plan["inputStage"]["stage"] == "IXSCAN", plan
        assert e["executionStats"]["totalDocsExamined"] == 0
    # A filter field the index lacks: fetched.
    e = db.command("explain", {"count": cov.name, "query": {"a": 3, "other": 3}},
                   verbosity="executionStats")
    assert e["executionStats"]["totalDocsExamined"] > 0
    for key, q in (("b", {"a": 4}), ("a", {"a": {"$lt": 3}}), ("b", {"a": {"$in": [1, 2]}})):
        got = db.command("distinct", cov.name, key=key, query=q)["values"]
        want = sorted({d[key] for d in cov.find(q, hint={"$natural": 1})})
        assert got == want and len(got) > 1
