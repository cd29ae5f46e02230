"""aggregate: $match, $group with each accumulator, $count, $project, $sort, $skip, $limit,
$unwind; batches through getMore; errors for unknown stages."""

import pytest
from pymongo.errors import OperationFailure

SALES = [
    {"_id": 1, "item": "a", "qty": 2, "price": 10.0, "tags": ["x", "y"], "s": {"r": "n"}},
    {"_id": 2, "item": "b", "qty": 1, "price": 20.0, "tags": ["y"], "s": {"r": "s"}},
    {"_id": 3, "item": "a", "qty": 5, "price": 10.0, "tags": [], "s": {"r": "n"}},
    {"_id": 4, "item": "c", "qty": 3, "price": 5.0, "s": {"r": "s"}},
    {"_id": 5, "item": "b", "qty": 4, "price": 20.0, "tags": ["z", "x", "y"], "s": {"r": "n"}},
]


@pytest.fixture(scope="module")
def sales(client):
    c = client["t_aggregate"]["sales"]
    c.drop()
    c.insert_many(SALES)
    return c


def agg(c, pipeline, **kw):
    return list(c.aggregate(pipeline, **kw))


def test_match(sales):
    assert [d["_id"] for d in agg(sales, [{"$match": {"item": "a"}}, {"$sort": {"_id": 1}}])] \
        == [1, 3]
    assert agg(sales, [{"$match": {"qty": {"$gt": 100}}}]) == []


def test_empty_pipeline_returns_everything(sales):
    assert sorted(d["_id"] for d in agg(sales, [])) == [1, 2, 3, 4, 5]


def test_group_sum_count_and_field(sales):
    got = agg(sales, [{"$group": {"_id": "$item", "n": {"$sum": 1}, "q": {"$sum": "$qty"}}},
                      {"$sort": {"_id": 1}}])
    assert got == [{"_id": "a", "n": 2, "q": 7}, {"_id": "b", "n": 2, "q": 5},
                   {"_id": "c", "n": 1, "q": 3}]


def test_group_avg(sales):
    got = agg(sales, [{"$group": {"_id": "$item", "avg": {"$avg": "$qty"}}},
                      {"$sort": {"_id": 1}}])
    assert got == [{"_id": "a", "avg": 3.5}, {"_id": "b", "avg": 2.5}, {"_id": "c", "avg": 3.0}]


def test_group_min_max(sales):
    got = agg(sales, [{"$group": {"_id": "$item", "lo": {"$min": "$qty"},
                                  "hi": {"$max": "$qty"}}}, {"$sort": {"_id": 1}}])
    assert got == [{"_id": "a", "lo": 2, "hi": 5}, {"_id": "b", "lo": 1, "hi": 4},
                   {"_id": "c", "lo": 3, "hi": 3}]


def test_group_push(sales):
    got = agg(sales, [{"$sort": {"_id": 1}},
                      {"$group": {"_id": "$item", "ids": {"$push": "$_id"}}},
                      {"$sort": {"_id": 1}}])
    assert got == [{"_id": "a", "ids": [1, 3]}, {"_id": "b", "ids": [2, 5]},
                   {"_id": "c", "ids": [4]}]


def test_group_first_last(sales):
    got = agg(sales, [{"$sort": {"qty": 1}},
                      {"$group": {"_id": "$item", "f": {"$first": "$qty"},
                                  "l": {"$last": "$qty"}}},
                      {"$sort": {"_id": 1}}])
    assert got == [{"_id": "a", "f": 2, "l": 5}, {"_id": "b", "f": 1, "l": 4},
                   {"_id": "c", "f": 3, "l": 3}]


def test_group_null_id_and_dotted_key(sales):
    got = agg(sales, [{"$group": {"_id": None, "total": {"$sum": "$qty"},
                                  "n": {"$sum": 1}}}])
    assert got == [{"_id": None, "total": 15, "n": 5}]
    got = agg(sales, [{"$group": {"_id": "$s.r", "n": {"$sum": 1}}}, {"$sort": {"_id": 1}}])
    assert got == [{"_id": "n", "n": 3}, {"_id": "s", "n": 2}]


def test_group_sum_of_doubles_and_missing(sales):
    got = agg(sales, [{"$group": {"_id": None, "p": {"$sum": "$price"},
                                  "m": {"$sum": "$nothing"}, "a": {"$avg": "$nothing"}}}])
    assert got == [{"_id": None, "p": 65.0, "m": 0, "a": None}]


def test_count(sales):
    assert agg(sales, [{"$match": {"price": 20.0}}, {"$count": "n"}]) == [{"n": 2}]
    assert agg(sales, [{"$match": {"price": 99.0}}, {"$count": "n"}]) == []


def test_project_inclusion_exclusion(sales):
    assert agg(sales, [{"$match": {"_id": 4}}, {"$project": {"item": 1}}]) == \
        [{"_id": 4, "item": "c"}]
    assert agg(sales, [{"$match": {"_id": 4}}, {"$project": {"_id": 0, "item": 1, "qty": 1}}]) \
        == [{"item": "c", "qty": 3}]
    assert agg(sales, [{"$match": {"_id": 4}}, {"$project": {"s": 0, "price": 0}}]) == \
        [{"_id": 4, "item": "c", "qty": 3}]
    assert agg(sales, [{"$match": {"_id": 4}}, {"$project": {"s.r": 1, "_id": 0}}]) == \
        [{"s": {"r": "s"}}]


def test_project_field_path(sales):
    got = agg(sales, [{"$match": {"_id": 1}}, {"$project": {"_id": 0, "what": "$item",
                                                            "region": "$s.r"}}])
    assert got == [{"what": "a", "region": "n"}]


def test_sort_skip_limit(sales):
    got = agg(sales, [{"$sort": {"qty": -1}}, {"$skip": 1}, {"$limit": 2},
                      {"$project": {"qty": 1, "_id": 0}}])
    assert got == [{"qty": 4}, {"qty": 3}]
    got = agg(sales, [{"$sort": {"item": 1, "qty": -1}}, {"$project": {"_id": 1}}])
    assert [d["_id"] for d in got] == [3, 1, 5, 2, 4]


def test_unwind(sales):
    got = agg(sales, [{"$unwind": "$tags"}, {"$project": {"tags": 1}},
                      {"$sort": {"_id": 1, "tags": 1}}])
    assert [(d["_id"], d["tags"]) for d in got] == [
        (1, "x"), (1, "y"), (2, "y"), (5, "x"), (5, "y"), (5, "z")]


def test_unwind_preserve_null_and_empty(sales):
    got = agg(sales, [{"$unwind": {"path": "$tags", "preserveNullAndEmptyArrays": True}},
                      {"$project": {"tags": 1}}, {"$sort": {"_id": 1, "tags": 1}}])
    assert [(d["_id"], d.get("tags")) for d in got] == [
        (1, "x"), (1, "y"), (2, "y"), (3, None), (4, None), (5, "x"), (5, "y"), (5, "z")]


def test_unwind_then_group(sales):
    got = agg(sales, [{"$unwind": "$tags"}, {"$group": {"_id": "$tags", "n": {"$sum": 1}}},
                      {"$sort": {"n": -1, "_id": 1}}])
    assert got == [{"_id": "y", "n": 3}, {"_id": "x", "n": 2}, {"_id": "z", "n": 1}]


def test_aggregate_many_results_uses_get_more(coll):
    coll.insert_many([{"_id": i, "g": i % 7} for i in range(3000)])
    got = list(coll.aggregate([{"$match": {"g": {"$ne": 0}}}, {"$sort": {"_id": 1}}],
                              batchSize=100))
    assert [d["_id"] for d in got] == [i for i in range(3000) if i % 7 != 0]
    got = list(coll.aggregate([{"$group": {"_id": "$g", "n": {"$sum": 1}}},
                               {"$sort": {"_id": 1}}]))
    assert [d["n"] for d in got] == [429, 429, 429, 429, 428, 428, 428]


def test_aggregate_on_missing_collection(db):
    assert list(db.none.aggregate([{"$match": {}}])) == []
    assert list(db.none.aggregate([{"$count": "n"}])) == []


@pytest.mark.parametrize("pipeline", [
    [{"$noSuchStage": {}}],
    [{"$match": {"a": {"$bogus": 1}}}],
    [{"$group": {"n": {"$sum": 1}}}],
    [{"$group": {"_id": None, "n": {"$noSuchAcc": 1}}}],
    [{"$limit": -1}],
    [{"$skip": "x"}],
    [{"$count": ""}],
    [{"$unwind": "tags"}],
], ids=lambda p: repr(p).replace(" ", "")[:50])
def test_bad_pipelines_are_errors(sales, pipeline):
    with pytest.raises(OperationFailure) as e:
        agg(sales, pipeline)
    assert isinstance(e.value.code, int) and e.value.code > 0


@pytest.mark.parametrize("explain", [False, True])
@pytest.mark.parametrize("pipeline,code,message", [
    (None, 40414, "BSON field 'aggregate.pipeline' is missing but a required field"),
    ({"$match": {}}, 14, "'pipeline' option must be specified as an array"),
])
def test_pipeline_missing_or_not_an_array(sales, explain, pipeline, code, message):
    cmd = {"aggregate": sales.name, "cursor": {}}
    if pipeline is not None:
        cmd["pipeline"] = pipeline
    with pytest.raises(OperationFailure) as e:
        sales.database.command({"explain": cmd} if explain else cmd)
    assert e.value.code == code and message in str(e.value), e.value.details
