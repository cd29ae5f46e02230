"""`hint` on find, count and distinct, as mongod: by index name or key pattern, an unknown,
building or hidden index is 2 BadValue, {$natural: 1} forces a collection scan, a hinted index
that cannot serve the filter is scanned whole (filter applied after), a hinted sparse index
returns what it holds, a partial one is refused; explain shows the hinted plan. For seeded
random queries, every hint returns what a collection scan returns."""

import random

import pytest
from bson.int64 import Int64
from pymongo.errors import OperationFailure

from index_helpers import (access, as_cmd, create_abc_indexes, find_explain,
                           people,  # noqa: F401 (fixture)
                           rand_abc_docs)

SEED = 20261205


def count(coll, flt, hint=None):
    """The count command (pymongo's count_documents is an aggregate)."""
    cmd = {"count": coll.name, "query": flt}
    if hint is not None:
        cmd["hint"] = as_cmd(hint)
    return coll.database.command(cmd)["n"]


@pytest.mark.parametrize("hint,index", [
    ("age_1", "age_1"),
    ([("age", 1)], "age_1"),
    ("city_1_age_1", "city_1_age_1"),
    ([("city", Int64(1)), ("age", 1)], "city_1_age_1"),  # directions compared by value
    ("by_name", "by_name"),
])
def test_hint_by_name_or_pattern_picks_that_index(people, hint, index):
    flt = {"age": 7}
    plan, stats = find_explain(people, flt, hint=hint)
    assert access(plan)["stage"] == "IXSCAN" and access(plan)["indexName"] == index, plan
    want = sorted(d["_id"] for d in people.find(flt, hint={"$natural": 1}))
    assert len(want) == 14
    assert sorted(d["_id"] for d in people.find(flt, hint=hint)) == want
    assert stats["nReturned"] == 14
    assert count(people, flt, hint=hint) == 14


def test_hinted_index_that_cannot_serve_the_filter_is_scanned_whole(people):
    plan, stats = find_explain(people, {"age": 7}, hint="by_name")
    assert access(plan)["indexName"] == "by_name"
    assert stats["totalKeysExamined"] == 700 and stats["totalDocsExamined"] == 700
    assert stats["nReturned"] == 14
    # Without the hint the planner would use age_1 and examine 14.
    plan, stats = find_explain(people, {"age": 7})
    assert access(plan)["indexName"] == "age_1" and stats["totalDocsExamined"] == 14
    # A range on the hinted index's field narrows it.
    _, stats = find_explain(people, {"name": {"$gte": "n0690"}}, hint="by_name")
    assert stats["nReturned"] == 10 and stats["totalDocsExamined"] == 10


def test_natural_hint_forces_a_collection_scan(people):
    for nat in (1, -1):
        plan, stats = find_explain(people, {"age": 7}, hint={"$natural": nat})
        assert access(plan)["stage"] == "COLLSCAN", plan
        assert stats["totalDocsExamined"] == 700 and stats["nReturned"] == 14
    assert count(people, {"age": 7}, hint={"$natural": 1}) == 14
    # The _id index: our collection is in _id order, so a collection scan serves it.
    assert count(people, {"age": 7}, hint="_id_") == 14
    assert len(list(people.find({"_id": 3}, hint=[("_id", 1)]))) == 1
    plan, _ = find_explain(people, {"_id": 3}, hint="_id_")
    assert plan["stage"] == "IDHACK"
    plan, _ = find_explain(people, {"_id": 3}, hint="age_1")
    assert access(plan)["indexName"] == "age_1"
    assert [d["_id"] for d in people.find({"_id": 3}, hint="age_1")] == [3]


@pytest.mark.parametrize("hint", ["nope", [("age", -1)], [("zzz", 1)], [("age", 1), ("x", 1)]])
def test_unknown_index_is_bad_value(people, hint):
    with pytest.raises(OperationFailure) as e:
        list(people.find({"age": 7}, hint=hint))
    assert e.value.code == 2
    assert "hint provided does not correspond to an existing index" in str(e.value)
    with pytest.raises(OperationFailure) as e:
        count(people, {"age": 7}, hint=hint)
    assert e.value.code == 2
    with pytest.raises(OperationFailure) as e:
        people.database.command("distinct", people.name, key="city", query={},
                                hint=as_cmd(hint))
    assert e.value.code == 2
    with pytest.raises(OperationFailure) as e:
        people.find({"age": 7}, hint=hint).explain()
    assert e.value.code == 2
    # Also an _id point query and an empty filter check the hint.
    with pytest.raises(OperationFailure) as e:
        list(people.find({"_id": 1}, hint=hint))
    assert e.value.code == 2
    with pytest.raises(OperationFailure):
        list(people.find({}, hint=hint))


def test_hint_of_wrong_type_fails_to_parse(people):
    with pytest.raises(OperationFailure) as e:
        people.database.command("find", people.name, filter={}, hint=5)
    assert e.value.code == 9


def test_empty_hint_is_no_hint(people):
    r = people.database.command("find", people.name, filter={"age": 7}, hint={})
    assert len(r["cursor"]["firstBatch"]) == 14


def test_hidden_index_cannot_be_hinted(people):
    people.database.command("collMod", people.name, index={"name": "age_1", "hidden": True})
    for hint in ("age_1", [("age", 1)]):
        with pytest.raises(OperationFailure) as e:
            list(people.find({"age": 7}, hint=hint))
        assert e.value.code == 2
    people.database.command("collMod", people.name, index={"name": "age_1", "hidden": False})
    assert len(list(people.find({"age": 7}, hint="age_1"))) == 14


def test_missing_collection_with_hint_is_empty(db):
    assert list(db.nothing.find({"a": 1}, hint="a_1")) == []
    assert count(db.nothing, {}, hint="a_1") == 0


def test_sparse_hint_returns_what_the_index_holds(db):
    c = db.sp
    c.insert_many([{"_id": i, "s": i} if i % 2 else {"_id": i} for i in range(20)])
    c.create_index("s", sparse=True)
    # mongod: a hinted sparse index answers from its entries only.
    assert count(c, {}, hint="s_1") == 10
    assert sorted(d["_id"] for d in c.find({}, hint="s_1")) == list(range(1, 20, 2))
    assert c.count_documents({}) == 20
    plan, _ = find_explain(c, {"s": {"$gt": 5}}, hint="s_1")
    assert access(plan)["indexName"] == "s_1"
    assert sorted(d["s"] for d in c.find({"s": {"$gt": 5}}, hint="s_1")) == [7, 9, 11, 13, 15, 17,
                                                                            19]


def test_partial_index_hint_is_refused(db):
    c = db.pa
    c.insert_many([{"_id": i, "p": i} for i in range(10)])
    c.create_index("p", partialFilterExpression={"p": {"$gt": 5}})
    with pytest.raises(OperationFailure) as e:
        list(c.find({"p": {"$gt": 7}}, hint="p_1"))
    assert e.value.code == 2 and "partial" in str(e.value)


def test_hint_with_sort(people):
    # The hinted index gives the sort's order: no SORT stage.
    plan, _ = find_explain(people, {}, hint="age_1", sort=[("age", 1)])
    assert plan["stage"] != "SORT" and access(plan)["indexName"] == "age_1"
    # It does not: the scan is the hinted index, sorted in memory.
    plan, _ = find_explain(people, {}, hint="age_1", sort=[("name", 1)])
    assert plan["stage"] == "SORT" and access(plan)["indexName"] == "age_1"
    got = [d["name"] for d in people.find({"age": {"$lt": 3}}, hint="age_1", sort=[("name", -1)])]
    assert got == sorted(got, reverse=True) and len(got) == 42


def test_distinct_with_hint(people):
    r = people.database.command("distinct", people.name, key="city", query={"age": 3},
                                hint="age_1")
    want = people.database.command("distinct", people.name, key="city", query={"age": 3})
    assert r["values"] == want["values"] and len(r["values"]) > 1


def rand_query(rng):
    f = rng.choice(["a", "b", "c"])
    v = rng.randrange(-2, 12)
    kind = rng.randrange(6)
    if kind == 0:
        return {f: v}
    if kind == 1:
        return {f: {"$in": [v, v + 2, "x"]}}
    if kind == 2:
        return {f: {"$gt": v}}
    if kind == 3:
        return {f: {"$gte": v, "$lt": v + 3}}
    if kind == 4:
        return {"a": v, "c": {"$lte": rng.randrange(12)}}
    return {}


def test_every_hint_returns_the_collection_scan_result(db):
    rng = random.Random(SEED)
    c = db.rh
    c.insert_many(rand_abc_docs(rng, 800, 12, (0.7, 0.8, 0.9)))
    create_abc_indexes(c)
    hints = ["a_1", "b_-1", "a_1_c_-1", "c_-1_b_1", {"$natural": 1}]
    for _ in range(120):
        q = rng.choice([rand_query(rng), {"$and": [rand_query(rng), rand_query(rng)]}])
        want = sorted(d["_id"] for d in c.find(q, hint={"$natural": 1}))
        for h in hints:
            got = [d["_id"] for d in c.find(q, hint=h)]
            assert sorted(got) == want, (q, h)
            assert len(got) == len(set(got)), (q, h)
            assert count(c, q, hint=h) == len(want), (q, h)


def test_hint_in_a_transaction_that_has_written(client, people):
    with client.start_session() as s:
        s.start_transaction()
        people.insert_one({"_id": "new", "age": 7}, session=s)
        got = [d["_id"] for d in people.find({"age": 7}, hint="age_1", session=s)]
        assert "new" in got and len(got) == 15  # its own write, through a collection scan
        with pytest.raises(OperationFailure) as e:  # the hint is still checked
            list(people.find({"age": 7}, hint="nope", session=s))
        assert e.value.code == 2
        s.abort_transaction()
