"""`hint` on update, delete, findAndModify and aggregate (and pymongo's count_documents, an
aggregate), as mongod 7.0: by index name or key pattern, the hinted index is scanned even where
the planner would choose another (explain shows it, IDHACK included); an unknown, hidden or
partial index is 2 BadValue, a write error of that statement for update and delete, a command
error for findAndModify and aggregate; a hint of the wrong type fails the command (9). For
seeded random writes, hinted writes leave the same documents as unhinted ones."""

import random

import pytest
from bson.son import SON
from pymongo import ReturnDocument
from pymongo.errors import OperationFailure, WriteError

from index_helpers import (access, as_cmd, create_abc_indexes,
                           people,  # noqa: F401 (fixture)
                           rand_abc_docs)

SEED = 20261205
UNKNOWN = "hint provided does not correspond to an existing index"


def explain(coll, cmd):
    e = coll.database.command("explain", cmd, verbosity="executionStats")
    if "stages" in e:
        e = e["stages"][0]["$cursor"]
    return access(e["queryPlanner"]["winningPlan"]), e["executionStats"]


def write_cmds(coll, flt, hint):
    """One command of each kind for filter `flt` with `hint` (None: no hint)."""
    h = {} if hint is None else {"hint": as_cmd(hint)}
    return {
        "update": SON([("update", coll.name),
                       ("updates", [dict(q=flt, u={"$set": {"x": 1}}, multi=True, **h)])]),
        "delete": SON([("delete", coll.name), ("deletes", [dict(q=flt, limit=0, **h)])]),
        "findAndModify": SON([("findAndModify", coll.name), ("query", flt),
                              ("update", {"$set": {"x": 1}})] + list(h.items())),
        "aggregate": SON([("aggregate", coll.name), ("pipeline", [{"$match": flt}]),
                          ("cursor", {})] + list(h.items())),
    }


@pytest.mark.parametrize("hint,index", [
    ("age_1", "age_1"),
    ([("age", 1)], "age_1"),
    ("city_1_age_1", "city_1_age_1"),
    ([("city", 1), ("age", 1.0)], "city_1_age_1"),
    ("by_name", "by_name"),
])
@pytest.mark.parametrize("kind", ["update", "delete", "findAndModify", "aggregate"])
def test_explain_shows_the_hinted_index(people, kind, hint, index):
    plan, stats = explain(people, write_cmds(people, {"age": 7}, hint)[kind])
    assert plan["stage"] == "IXSCAN" and plan["indexName"] == index, plan
    if index == "by_name" and kind != "findAndModify":  # scanned whole (findAndModify stops
        assert stats["totalKeysExamined"] == 700       # at its first match)


@pytest.mark.parametrize("kind", ["update", "delete", "findAndModify", "aggregate"])
def test_hint_overrides_the_planners_choice(people, kind):
    # findAndModify stops at its first match: its key counts are smaller.
    plan, stats = explain(people, write_cmds(people, {"age": 7}, None)[kind])
    assert plan["indexName"] == "age_1"
    assert stats["totalKeysExamined"] == (1 if kind == "findAndModify" else 14)
    plan, stats = explain(people, write_cmds(people, {"age": 7}, "by_name")[kind])
    assert plan["indexName"] == "by_name"
    assert stats["totalKeysExamined"] == (8 if kind == "findAndModify" else 700)
    plan, _ = explain(people, write_cmds(people, {"age": 7}, {"$natural": 1})[kind])
    assert plan["stage"] == "COLLSCAN"
    # A hint other than the _id index bypasses the _id point lookup (mongod: no IDHACK).
    plan, _ = explain(people, write_cmds(people, {"_id": 3}, "by_name")[kind])
    assert plan["stage"] == "IXSCAN" and plan["indexName"] == "by_name"
    plan, _ = explain(people, write_cmds(people, {"_id": 3}, None)[kind])
    assert plan["stage"] == "IDHACK"


def test_hinted_writes_do_what_unhinted_ones_do(people):
    r = people.update_many({"age": 7}, {"$inc": {"v": 1}}, hint="by_name")
    assert r.matched_count == 14 and r.modified_count == 14
    r = people.update_one({"_id": 5}, {"$inc": {"v": 1}}, hint=[("city", 1), ("age", 1)])
    assert r.matched_count == 1
    assert people.find_one({"_id": 5})["v"] == 1
    assert people.count_documents({"v": 1, "age": 7}, hint="age_1") == 14
    assert people.count_documents({"v": {"$exists": True}}) == 15
    doc = people.find_one_and_update({"age": 9}, {"$set": {"w": 1}}, sort=[("name", -1)],
                                     hint="age_1", return_document=ReturnDocument.AFTER)
    assert doc["_id"] == 659 and doc["w"] == 1  # the greatest name among age 9
    doc = people.find_one_and_update({"age": 9}, {"$set": {"w": 2}}, sort=[("name", -1)],
                                     hint="by_name")  # the hint gives the order
    assert doc["_id"] == 659 and doc["w"] == 1
    doc = people.find_one_and_delete({"age": {"$lt": 2}}, sort=[("_id", 1)], hint="by_name")
    assert doc["_id"] == 0
    r = people.delete_many({"city": "c3"}, hint="by_name")
    assert r.deleted_count == 100
    r = people.delete_one({"age": 11}, hint="city_1_age_1")
    assert r.deleted_count == 1
    got = list(people.aggregate([{"$match": {"age": {"$lt": 5}}}, {"$sort": {"_id": -1}}],
                                hint="by_name"))
    want = list(people.aggregate([{"$match": {"age": {"$lt": 5}}}, {"$sort": {"_id": -1}}]))
    assert got == want and len(want) > 50


def test_aggregate_hint_gives_the_sort_order(people):
    cmd = SON([("aggregate", people.name),
               ("pipeline", [{"$match": {"age": {"$gt": 40}}}, {"$sort": {"name": 1}},
                             {"$limit": 3}]),
               ("cursor", {}), ("hint", "by_name")])
    e = people.database.command("explain", cmd, verbosity="executionStats")
    cur = e["stages"][0]["$cursor"]
    assert access(cur["queryPlanner"]["winningPlan"])["indexName"] == "by_name"
    got = [d["name"] for d in people.database.command(cmd)["cursor"]["firstBatch"]]
    assert got == ["n0041", "n0042", "n0043"]
    # aggregate's own explain option shows the hinted plan too.
    e = people.database.command(SON([("aggregate", people.name),
                                     ("pipeline", [{"$match": {"age": 7}}]),
                                     ("explain", True), ("hint", "by_name")]))
    assert access(e["queryPlanner"]["winningPlan"])["indexName"] == "by_name"


@pytest.mark.parametrize("hint", ["nope", [("age", -1)], [("age", 1), ("x", 1)]])
def test_unknown_index_is_a_write_error_of_that_statement(people, hint):
    db = people.database
    r = db.command(SON([("update", people.name), ("ordered", False),
                        ("updates", [{"q": {"age": 7}, "u": {"$set": {"x": 1}},
                                      "hint": as_cmd(hint)},
                                     {"q": {"_id": 1}, "u": {"$set": {"x": 1}}}])]))
    assert r["ok"] == 1 and r["n"] == 1 and r["nModified"] == 1
    (we,) = r["writeErrors"]
    assert we["index"] == 0 and we["code"] == 2 and UNKNOWN in we["errmsg"], we
    r = db.command(SON([("delete", people.name),
                        ("deletes", [{"q": {"age": 8}, "limit": 0},
                                     {"q": {"_id": 2}, "limit": 1, "hint": as_cmd(hint)},
                                     {"q": {"_id": 3}, "limit": 1}])]))
    assert r["ok"] == 1 and r["n"] == 14  # ordered: the third did not run
    (we,) = r["writeErrors"]
    assert we["index"] == 1 and we["code"] == 2 and UNKNOWN in we["errmsg"], we
    assert people.find_one({"_id": 3}) is not None and people.find_one({"_id": 2}) is not None
    with pytest.raises(WriteError) as e:
        people.update_one({"_id": 4}, {"$set": {"x": 1}}, hint=hint)  # even an _id query
    assert e.value.code == 2
    with pytest.raises(WriteError) as e:
        people.delete_many({}, hint=hint)
    assert e.value.code == 2
    assert people.count_documents({}) == 686
    for call in (lambda: people.find_one_and_update({"age": 7}, {"$set": {"x": 2}}, hint=hint),
                 lambda: people.find_one_and_delete({"_id": 5}, hint=hint),
                 # pymongo's aggregate sends the hint as given (count_documents converts).
                 lambda: list(people.aggregate([{"$match": {"age": 7}}], hint=as_cmd(hint))),
                 lambda: list(people.aggregate([], hint=as_cmd(hint))),
                 lambda: people.count_documents({"age": 7}, hint=hint)):
        with pytest.raises(OperationFailure) as e:
            call()
        assert e.value.code == 2 and UNKNOWN in str(e.value)
    assert people.count_documents({"x": 2}) == 0
    for cmd in write_cmds(people, {"age": 7}, hint).values():
        with pytest.raises(OperationFailure) as e:
            explain(people, cmd)
        assert e.value.code == 2


def test_hidden_and_partial_indexes_cannot_be_hinted(people):
    db = people.database
    db.command("collMod", people.name, index={"name": "age_1", "hidden": True})
    people.create_index("city", partialFilterExpression={"age": {"$gt": 5}})
    for hint, what in (("age_1", UNKNOWN), ("city_1", "partial")):
        with pytest.raises(WriteError) as e:
            people.update_many({"age": 7}, {"$set": {"x": 1}}, hint=hint)
        assert e.value.code == 2 and what in str(e.value)
        with pytest.raises(WriteError) as e:
            people.delete_many({"age": 7}, hint=hint)
        assert e.value.code == 2 and what in str(e.value)
        with pytest.raises(OperationFailure) as e:
            people.find_one_and_delete({"age": 7}, hint=hint)
        assert e.value.code == 2 and what in str(e.value)
        with pytest.raises(OperationFailure) as e:
            people.count_documents({"age": 7}, hint=hint)
        assert e.value.code == 2 and what in str(e.value)
    assert people.count_documents({"age": 7}) == 14


def test_hint_of_wrong_type_fails_the_command(people):
    db = people.database
    for bad in (1, True):
        for cmd in (SON([("update", people.name),
                         ("updates", [{"q": {}, "u": {"$set": {"x": 1}}, "hint": bad}])]),
                    SON([("delete", people.name),
                         ("deletes", [{"q": {}, "limit": 0, "hint": bad}])]),
                    SON([("findAndModify", people.name), ("query", {}), ("remove", True),
                         ("hint", bad)]),
                    SON([("aggregate", people.name), ("pipeline", []), ("cursor", {}),
                         ("hint", bad)])):
            with pytest.raises(OperationFailure) as e:
                db.command(cmd)
            assert e.value.code == 9, cmd
    assert people.count_documents({}) == 700


def test_missing_collection(db):
    c = db.nothing
    assert c.update_many({"a": 1}, {"$set": {"b": 1}}, hint="a_1").matched_count == 0
    assert c.delete_many({"a": 1}, hint="a_1").deleted_count == 0
    assert c.find_one_and_delete({"a": 1}, hint="a_1") is None
    assert list(c.aggregate([{"$match": {"a": 1}}], hint="a_1")) == []
    # An upsert creating the collection: only its _id index can be hinted (mongod plans the
    # update in the new collection).
    with pytest.raises(WriteError) as e:
        c.update_one({"a": 1}, {"$set": {"b": 1}}, upsert=True, hint="a_1")
    assert e.value.code == 2
    with pytest.raises(OperationFailure) as e:
        c.find_one_and_update({"a": 1}, {"$set": {"b": 1}}, upsert=True, hint="a_1")
    assert e.value.code == 2
    r = c.update_one({"a": 1}, {"$set": {"b": 1}}, upsert=True, hint="_id_")
    assert r.upserted_id is not None


def test_sparse_hint_writes_what_the_index_holds(db):
    c = db.sp
    c.insert_many([{"_id": i, "x": 1, "s": 0} if i % 2 else {"_id": i, "x": 1} for i in range(20)])
    c.create_index("s", sparse=True)
    c.create_index("x")
    # mongod: a write through a hinted sparse index sees only the documents it holds.
    assert c.update_many({"x": 1}, {"$set": {"y": 1}}, hint="s_1").matched_count == 10
    assert c.count_documents({"y": 1}) == 10
    r = c.update_one({"x": 1, "s": {"$exists": False}}, {"$set": {"y": 2}}, hint="s_1",
                     upsert=True)
    assert r.matched_count == 0 and r.upserted_id is not None
    assert c.delete_many({}, hint=[("s", 1)]).deleted_count == 10
    assert c.count_documents({}) == 11


def test_hinted_write_in_a_transaction(client, people):
    with client.start_session() as s:
        s.start_transaction()
        r = people.update_many({"age": 7}, {"$set": {"t": 1}}, hint="by_name", session=s)
        assert r.matched_count == 14
        # Later statements scan the collection (staged writes) but still check the hint.
        r = people.delete_many({"t": 1}, hint="age_1", session=s)
        assert r.deleted_count == 14
        with pytest.raises(OperationFailure) as e:
            people.update_one({"age": 8}, {"$set": {"t": 2}}, hint="nope", session=s)
        assert e.value.code == 2
        s.abort_transaction()
    assert people.count_documents({}) == 700


def rand_filter(rng):
    f = rng.choice(["a", "b", "c"])
    v = rng.randrange(-1, 11)
    kind = rng.randrange(5)
    if kind == 0:
        return {f: v}
    if kind == 1:
        return {f: {"$in": [v, v + 2, "x"]}}
    if kind == 2:
        return {f: {"$gt": v}}
    if kind == 3:
        return {"a": {"$gte": v, "$lt": v + 3}, "c": {"$ne": rng.randrange(10)}}
    return {"$or": [{"a": v}, {"b": {"$lt": v}}]}


def test_random_hinted_writes_match_unhinted_ones(db):
    """Two copies of one seeded random collection: every write runs with a random hint on the
    first, without one on the second; counts, returned documents and contents stay equal."""
    rng = random.Random(SEED)
    docs = rand_abc_docs(rng, 600, 10, (0.75, 0.85, 0.9))
    hinted, plain = db.hinted, db.plain
    for c in (hinted, plain):
        c.insert_many(docs)
        create_abc_indexes(c)
    hints = ["a_1", [("b", -1)], "a_1_c_-1", [("c", -1), ("b", 1)], {"$natural": 1}, "_id_"]
    for step in range(150):
        h = rng.choice(hints)
        q = rand_filter(rng)
        op = rng.randrange(6)
        if op == 0:
            u = {"$set": {"a": rng.randrange(10), "s": step}}
            got = hinted.update_many(q, u, hint=h)
            want = plain.update_many(q, u)
            assert (got.matched_count, got.modified_count) == (want.matched_count,
                                                                want.modified_count), (q, h)
        elif op == 1 and rng.random() < 0.3:
            got = hinted.delete_many(q, hint=h)
            want = plain.delete_many(q)
            assert got.deleted_count == want.deleted_count, (q, h)
        elif op == 2:
            sort = [("c", rng.choice([1, -1])), ("_id", 1)]  # a total order
            u = {"$set": {"c": rng.randrange(10)}}
            got = hinted.find_one_and_update(q, u, sort=sort, hint=h)
            want = plain.find_one_and_update(q, u, sort=sort)
            assert got == want, (q, h, sort)
        elif op == 3:
            pipe = [{"$match": q}, {"$sort": {"_id": 1}}]
            got = list(hinted.aggregate(pipe, hint=as_cmd(h)))
            assert got == list(plain.aggregate(pipe)), (q, h)
            assert hinted.count_documents(q, hint=h) == plain.count_documents(q), (q, h)
        elif op == 4:
            pipe = [{"$match": q}, {"$sort": {"b": -1, "_id": 1}}, {"$limit": 7}]
            got = list(hinted.aggregate(pipe, hint=as_cmd(h)))
            assert got == list(plain.aggregate(pipe)), (q, h)
        else:
            q = {"_id": rng.randrange(600)}
            u = {"$set": {"p": step}}
            got = hinted.update_one(q, u, hint=h, upsert=True)
            want = plain.update_one(q, u, upsert=True)
            assert (got.matched_count, got.upserted_id) == (want.matched_count,
                                                            want.upserted_id), (q, h)
    assert list(hinted.find().sort("_id", 1)) == list(plain.find().sort("_id", 1))
