"""explain for aggregate, distinct, update, delete and findAndModify: queryPlanner.winningPlan
shows the index the command uses (UPDATE / DELETE over FETCH over IXSCAN, or COLLSCAN),
executionStats counts keys and documents examined and what the write would do, and explaining
a write never changes the data. aggregate's explain option and the explain command wrapping
aggregate answer the same plan (top-level queryPlanner when the scan absorbs the whole
pipeline, else `stages` with the $cursor stage first)."""

import pytest
from pymongo.errors import OperationFailure


def access(plan):
    while plan.get("stage") in ("UPDATE", "DELETE", "SORT", "LIMIT", "SKIP", "FETCH") \
            and "inputStage" in plan:
        plan = plan["inputStage"]
    return plan


@pytest.fixture
def people(db):
    c = db.people
    c.insert_many([{"_id": i, "age": i % 50, "city": "c%d" % (i % 7), "n": i}
                   for i in range(500)])
    c.create_index("age")
    c.create_index([("city", 1), ("age", 1)])
    return c


def explain(db, cmd, verbosity="executionStats"):
    return db.command("explain", cmd, verbosity=verbosity)


def snapshot(coll):
    return list(coll.find({}, sort=[("_id", 1)]))


def test_update_explain_uses_the_index_and_writes_nothing(db, people):
    before = snapshot(people)
    e = explain(db, {"update": "people",
                     "updates": [{"q": {"age": 7}, "u": {"$inc": {"n": 1}}, "multi": True}]})
    plan = e["queryPlanner"]["winningPlan"]
    assert plan["stage"] == "UPDATE"
    assert plan["inputStage"]["stage"] == "FETCH"
    assert plan["inputStage"]["inputStage"]["stage"] == "IXSCAN"
    assert plan["inputStage"]["inputStage"]["indexName"] == "age_1"
    es = e["executionStats"]
    assert es["totalKeysExamined"] == 10
    assert es["totalDocsExamined"] == 10
    top = es["executionStages"]
    assert top["stage"] == "UPDATE"
    assert top["nMatched"] == 10 and top["nWouldModify"] == 10 and top["nWouldUpsert"] == 0
    assert snapshot(people) == before


def test_update_explain_counts_no_op_updates_and_upserts(db, people):
    e = explain(db, {"update": "people",
                     "updates": [{"q": {"age": 7, "n": 7}, "u": {"$set": {"age": 7}}}]})
    top = e["executionStats"]["executionStages"]
    assert (top["nMatched"], top["nWouldModify"]) == (1, 0)
    e = explain(db, {"update": "people",
                     "updates": [{"q": {"age": 99}, "u": {"$set": {"x": 1}}, "upsert": True}]})
    top = e["executionStats"]["executionStages"]
    assert (top["nMatched"], top["nWouldModify"], top["nWouldUpsert"]) == (0, 0, 1)
    assert people.count_documents({"age": 99}) == 0


def test_write_explain_by_id(db, people):
    e = explain(db, {"update": "people",
                     "updates": [{"q": {"_id": 5}, "u": {"$set": {"x": 1}}}]})
    plan = e["queryPlanner"]["winningPlan"]
    assert plan["stage"] == "UPDATE" and plan["inputStage"]["stage"] == "IDHACK"
    top = e["executionStats"]["executionStages"]
    assert (top["nMatched"], top["nWouldModify"]) == (1, 1)
    e = explain(db, {"delete": "people", "deletes": [{"q": {"_id": 5}, "limit": 1}]})
    assert e["executionStats"]["executionStages"]["nWouldDelete"] == 1
    assert people.find_one({"_id": 5}) == {"_id": 5, "age": 5, "city": "c5", "n": 5}


def test_update_one_explain_stops_at_the_first_match(db, people):
    e = explain(db, {"update": "people",
                     "updates": [{"q": {"age": {"$gte": 10}}, "u": {"$set": {"x": 1}}}]})
    es = e["executionStats"]
    assert es["executionStages"]["nMatched"] == 1
    assert es["totalDocsExamined"] == 1
    assert access(e["queryPlanner"]["winningPlan"])["stage"] == "IXSCAN"


def test_delete_explain_uses_the_index_and_deletes_nothing(db, people):
    before = snapshot(people)
    e = explain(db, {"delete": "people", "deletes": [{"q": {"city": "c3", "age": {"$lt": 20}},
                                                       "limit": 0}]})
    plan = e["queryPlanner"]["winningPlan"]
    assert plan["stage"] == "DELETE"
    assert access(plan)["indexName"] == "city_1_age_1"
    want = people.count_documents({"city": "c3", "age": {"$lt": 20}})
    assert want > 0
    assert e["executionStats"]["executionStages"]["nWouldDelete"] == want
    assert want <= e["executionStats"]["totalDocsExamined"] < 100  # the index narrowed it
    assert snapshot(people) == before


def test_write_explain_without_an_index_is_a_collscan(db, people):
    e = explain(db, {"delete": "people", "deletes": [{"q": {"n": {"$gt": 490}}, "limit": 1}]})
    plan = e["queryPlanner"]["winningPlan"]
    assert plan["stage"] == "DELETE" and plan["inputStage"]["stage"] == "COLLSCAN"
    assert e["executionStats"]["executionStages"]["nWouldDelete"] == 1
    assert people.count_documents({}) == 500


def test_write_explain_refuses_batches(db, people):
    with pytest.raises(OperationFailure) as ei:
        explain(db, {"delete": "people", "deletes": [{"q": {}, "limit": 1}, {"q": {}, "limit": 1}]})
    assert ei.value.code == 16  # InvalidLength


def test_find_and_modify_explain(db, people):
    before = snapshot(people)
    e = explain(db, {"findAndModify": "people", "query": {"age": {"$gt": 40}},
                     "sort": {"age": -1}, "update": {"$set": {"x": 1}}})
    plan = e["queryPlanner"]["winningPlan"]
    assert plan["stage"] == "UPDATE"
    assert access(plan)["stage"] == "IXSCAN"
    top = e["executionStats"]["executionStages"]
    assert (top["nMatched"], top["nWouldModify"]) == (1, 1)
    e = explain(db, {"findAndModify": "people", "query": {"n": {"$lt": 5}}, "remove": True,
                     "sort": {"n": 1}})
    plan = e["queryPlanner"]["winningPlan"]
    assert plan["stage"] == "DELETE" and plan["inputStage"]["stage"] == "SORT"
    assert e["executionStats"]["executionStages"]["nWouldDelete"] == 1
    assert snapshot(people) == before


def test_distinct_explain(db, people):
    e = explain(db, {"distinct": "people", "key": "city", "query": {"age": {"$in": [1, 2]}}})
    leaf = access(e["queryPlanner"]["winningPlan"])
    assert leaf["stage"] == "IXSCAN" and leaf["indexName"] == "age_1"
    assert e["executionStats"]["nReturned"] == 20
    assert e["executionStats"]["totalDocsExamined"] == 20


def test_aggregate_explain_absorbed_pipeline_answers_query_planner(db, people):
    cmd = {"aggregate": "people", "pipeline": [{"$match": {"age": 3}}, {"$sort": {"age": 1}}],
           "cursor": {}}
    e = explain(db, cmd)
    plan = e["queryPlanner"]["winningPlan"]
    assert plan["stage"] == "FETCH" and plan["inputStage"]["indexName"] == "age_1"
    assert e["executionStats"]["nReturned"] == 10
    # aggregate's own explain option (queryPlanner verbosity); no cursor needed
    e = db.command("aggregate", "people", pipeline=[{"$match": {"age": 3}}], explain=True)
    assert access(e["queryPlanner"]["winningPlan"])["indexName"] == "age_1"
    assert "executionStats" not in e


def test_aggregate_explain_with_more_stages_answers_stages(db, people):
    e = explain(db, {"aggregate": "people",
                     "pipeline": [{"$match": {"city": "c1"}}, {"$group": {"_id": "$age"}}],
                     "cursor": {}})
    st = e["stages"]
    assert list(st[0])[0] == "$cursor"
    cur = st[0]["$cursor"]
    assert access(cur["queryPlanner"]["winningPlan"])["indexName"] == "city_1_age_1"
    assert cur["executionStats"]["nReturned"] == people.count_documents({"city": "c1"})
    assert st[1] == {"$group": {"_id": "$age"}}
    # a sort no index gives: the SORT stage is in the plan
    e = db.command("aggregate", "people", pipeline=[{"$sort": {"n": -1}}, {"$limit": 3}],
                   explain=True)
    plan = e["stages"][0]["$cursor"]["queryPlanner"]["winningPlan"]
    assert plan["stage"] == "SORT" and plan["inputStage"]["stage"] == "COLLSCAN"
    assert e["stages"][1] == {"$limit": 3}


def test_aggregate_sorted_by_an_index_has_no_sort_stage(db, people):
    e = db.command("aggregate", "people", pipeline=[{"$sort": {"age": 1}}, {"$limit": 2}],
                   explain=True)
    plan = e["stages"][0]["$cursor"]["queryPlanner"]["winningPlan"]
    assert plan["stage"] == "FETCH" and plan["inputStage"]["stage"] == "IXSCAN"


def test_explain_of_other_commands_is_not_implemented(db, people):
    with pytest.raises(OperationFailure) as ei:
        explain(db, {"mapReduce": "people", "map": "x", "reduce": "y", "out": "z"})
    assert ei.value.code == 238
