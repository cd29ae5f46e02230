"""The query planner: explain shows IXSCAN for equality, $in, ranges and compound prefixes,
and COLLSCAN when no index serves the filter; and for a large seeded set of random queries
over mixed types, arrays and missing fields, finds and counts through indexes return exactly
what a collection scan of an unindexed copy returns (also inside a transaction that has
written, which scans the collection to see its own writes)."""

import random

import pytest

from index_helpers import access, find_explain

SEED = 20261205


@pytest.fixture
def indexed(db):
    c = db.people
    c.insert_many([{"_id": i, "age": i % 50, "city": "c%d" % (i % 7), "tags": ["t%d" % (i % 3)],
                    "name": "n%04d" % i} for i in range(1000)])
    c.create_index("age")
    c.create_index([("city", 1), ("age", 1)])
    c.create_index("tags")
    return c


@pytest.mark.parametrize("flt,index", [
    ({"age": 7}, "age_1"),
    ({"age": {"$in": [1, 2, 3]}}, "age_1"),
    ({"age": {"$gte": 45}}, "age_1"),
    ({"age": {"$lt": 3}}, "age_1"),
    ({"city": "c3"}, "city_1_age_1"),
    ({"city": "c3", "age": {"$gt": 40}}, "city_1_age_1"),
    ({"city": {"$in": ["c1", "c2"]}, "age": 10}, "city_1_age_1"),
    ({"tags": "t1"}, "tags_1"),
    ({"$and": [{"age": 5}, {"name": {"$gt": "n"}}]}, "age_1"),
])
def test_explain_shows_the_index_used(indexed, flt, index):
    plan, stats = find_explain(indexed, flt)
    leaf = access(plan)
    assert leaf["stage"] == "IXSCAN", plan
    assert leaf["indexName"] == index
    n = indexed.count_documents(flt)
    assert stats["nReturned"] == n
    assert stats["totalDocsExamined"] < 1000  # the index narrowed the scan
    assert stats["totalKeysExamined"] >= n


@pytest.mark.parametrize("flt", [
    {"name": "n0001"},            # no index on name
    {"age": {"$ne": 3}},          # not a usable predicate
    {"age": {"$exists": True}},
    {"city": {"$regex": "^c"}},
    {},
])
def test_explain_shows_collscan_without_a_usable_index(indexed, flt):
    plan, stats = find_explain(indexed, flt)
    assert access(plan)["stage"] == "COLLSCAN", plan
    assert stats["totalDocsExamined"] == 1000
    assert stats["totalKeysExamined"] == 0


def test_explain_id_lookup_and_hidden_index(indexed):
    plan, _ = find_explain(indexed, {"_id": 5})
    assert plan["stage"] == "IDHACK"
    indexed.database.command("dropIndexes", indexed.name, index="age_1")
    indexed.create_index("age", hidden=True)
    plan, _ = find_explain(indexed, {"age": 7})
    assert access(plan)["stage"] == "COLLSCAN"


def test_explain_count_and_sort(indexed):
    e = indexed.database.command("explain", {"count": indexed.name, "query": {"age": 3}})
    assert e["queryPlanner"]["winningPlan"]["stage"] == "COUNT"
    assert access(e["queryPlanner"]["winningPlan"])["stage"] == "IXSCAN"
    plan, stats = find_explain(indexed, {"age": 3}, sort=[("name", -1)])
    assert plan["stage"] == "SORT" and access(plan)["indexName"] == "age_1"
    assert stats["nReturned"] == 20


def rand_val(rng):
    r = rng.random()
    if r < 0.45:
        return rng.randrange(-3, 12)
    if r < 0.55:
        return rng.randrange(-3, 12) + 0.5
    if r < 0.7:
        return rng.choice(["a", "b", "c", ""])
    if r < 0.78:
        return None
    if r < 0.92:
        return [rng.randrange(-3, 12) for _ in range(rng.randrange(0, 3))]
    return {"x": rng.randrange(3)}


def rand_query(rng):
    f = rng.choice(["a", "b"])
    v = rng.randrange(-4, 13)
    kind = rng.randrange(9)
    if kind == 0:
        return {f: v}
    if kind == 1:
        return {f: {"$in": [v, v + 1, rng.choice(["a", "c"])]}}
    if kind == 2:
        return {f: {"$gt": v}}
    if kind == 3:
        return {f: {"$gte": v, "$lte": v + rng.randrange(4)}}
    if kind == 4:
        return {"a": v, "b": {"$lt": rng.randrange(-3, 12)}}
    if kind == 5:
        return {"a": {"$in": [v, "b"]}, "b": rng.randrange(-3, 12)}
    if kind == 6:
        return {f: {"$lt": rng.choice(["b", "c"])}}
    if kind == 7:
        return {"$and": [{f: {"$gte": v}}, {f: {"$lt": v + 2}}]}
    return {f: {"$eq": rng.choice([v, 0.5 + v, "a"])}}


@pytest.mark.parametrize("seed", [1, 2])
def test_indexed_results_equal_collection_scan(db, seed):
    rng = random.Random("%d:%d" % (SEED, seed))
    docs = []
    for i in range(1500):
        d = {"_id": i}
        for f in ("a", "b"):
            if rng.random() < 0.9:
                d[f] = rand_val(rng)
        docs.append(d)
    plain, idx = db.plain, db.idx
    plain.insert_many(docs)
    idx.create_index("a")
    idx.create_index([("b", 1), ("a", -1)])
    idx.create_index([("a", 1), ("b", 1)], name="ab")
    good = []
    for d in docs:
        try:
            idx.insert_one(d)
            good.append(d["_id"])
        except Exception as e:  # arrays in both a and b: not indexable (171), as mongod
            assert getattr(e, "code", None) == 171, e
    plain.delete_many({"_id": {"$nin": good}})
    used = 0
    for _ in range(250):
        q = rand_query(rng)
        want = sorted(d["_id"] for d in plain.find(q))
        got = [d["_id"] for d in idx.find(q)]
        assert sorted(got) == want, q
        assert len(got) == len(set(got)), q  # each document once (multikey)
        assert idx.count_documents(q) == len(want), q
        plan, _ = find_explain(idx, q)
        used += access(plan)["stage"] == "IXSCAN"
    assert used > 150  # the planner served most of them


def test_transaction_sees_its_own_writes_through_indexed_queries(client, indexed):
    with client.start_session() as s:
        with s.start_transaction():
            indexed.insert_one({"_id": "new", "age": 7}, session=s)
            indexed.update_one({"_id": 7}, {"$set": {"age": 99}}, session=s)
            got = sorted(str(d["_id"]) for d in indexed.find({"age": 7}, session=s))
            assert "new" in got and "7" not in got
            assert len(got) == 20
    assert indexed.count_documents({"age": 7}) == 20
    assert indexed.count_documents({"age": 99}) == 1


def test_ranges_use_both_bounds_until_the_index_is_multikey(db):
    c = db.r
    c.insert_many([{"_id": i, "v": i} for i in range(1000)])
    c.create_index("v")
    _, stats = find_explain(c, {"v": {"$gte": 100, "$lt": 110}})
    assert stats["nReturned"] == 10
    assert stats["totalKeysExamined"] <= 11  # both bounds (the upper one inclusive)
    # One array document makes the index multikey: a two-sided range could now miss a
    # document matching through two elements, so the scan goes one-sided and stays right.
    c.insert_one({"_id": "arr", "v": [5, 500]})
    q = {"v": {"$gt": 200, "$lt": 300}}
    got = sorted(str(d["_id"]) for d in c.find(q))
    assert "arr" in got and len(got) == 100
    _, stats = find_explain(c, q)
    assert stats["nReturned"] == 100
    assert stats["totalKeysExamined"] > 700


def test_sort_by_index_order_streams_without_a_sort_stage(db):
    rng = random.Random(SEED)
    c, plain = db.s, db.s_plain
    docs = [{"_id": i, "a": rng.randrange(30), "b": rng.randrange(10)} for i in range(600)]
    c.insert_many(docs)
    plain.insert_many(docs)
    c.create_index([("a", 1), ("b", -1)])
    cases = [({}, [("a", 1)]), ({"a": {"$gte": 10}}, [("a", 1), ("b", -1)]),
             ({"a": {"$in": [3, 1, 7]}}, [("a", 1)]), ({"b": 4}, [("a", 1)])]
    for flt, sort in cases:
        plan, _ = find_explain(c, flt, sort=sort)
        assert plan["stage"] != "SORT" and access(plan)["stage"] == "IXSCAN", (flt, plan)
        key = [f for f, _ in sort]
        got = [tuple(d[f] for f in key) for d in c.find(flt, sort=sort, skip=3, limit=50)]
        want = [tuple(d[f] for f in key) for d in plain.find(flt, sort=sort, skip=3, limit=50)]
        assert got == want, (flt, sort)
    # Directions that are neither the index's nor all reversed, or a field it does not lead
    # with: sorted in memory (the exact reverse scans backward: test_indexes_backward_covered).
    for sort in ([("b", 1)], [("a", -1), ("b", -1)], [("a", 1), ("b", 1)]):
        plan, _ = find_explain(c, {}, sort=sort)
        assert plan["stage"] == "SORT", sort
    # A multikey index does not give a sort order (arrays sort by their extreme element).
    c.insert_one({"_id": "arr", "a": [50, -1], "b": 0})
    plan, _ = find_explain(c, {}, sort=[("a", 1)])
    assert plan["stage"] == "SORT"


def test_in_cross_product_past_the_expansion_limit_stays_exact(db):
    # 70 x 70 point prefixes exceed the planner's expansion limit (4096): it scans the whole
    # index instead of stopping short (which would miss matches).
    c = db.x
    c.insert_many([{"_id": i, "a": i % 80, "b": (i * 7) % 90} for i in range(3000)])
    c.create_index([("a", 1), ("b", 1)])
    q = {"a": {"$in": list(range(70))}, "b": {"$in": list(range(20, 90))}}
    want = sum(1 for i in range(3000) if i % 80 < 70 and 20 <= (i * 7) % 90 < 90)
    assert len(list(c.find(q))) == want
    plan, stats = find_explain(c, q)
    assert access(plan)["stage"] == "IXSCAN" and stats["nReturned"] == want
