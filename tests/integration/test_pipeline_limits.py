"""Bounded aggregation work: a pipeline of more than 1,000 stages is refused before it runs
(mongod's 7749501), and maxTimeMS interrupts expression evaluation between stages, not only
between input documents, so one huge document pushed through many stages stops in time."""

import pytest
from pymongo.errors import ExecutionTimeout, OperationFailure


def test_1001_stages_refused_with_7749501(coll):
    coll.insert_one({"_id": 1})
    with pytest.raises(OperationFailure) as e:
        list(coll.aggregate([{"$addFields": {"a": i}} for i in range(1001)]))
    assert e.value.code == 7749501
    assert "Pipeline length must be no longer than 1000 stages." in str(e.value)


def test_1000_stages_accepted(coll):
    coll.insert_many([{"_id": i} for i in range(3)])
    got = list(coll.aggregate([{"$addFields": {"a": i}} for i in range(1000)]))
    assert got == [{"_id": i, "a": 999} for i in range(3)]


def test_max_time_interrupts_stages_of_one_large_document(coll):
    # One 4 MB document through 1,000 stages: 4 GB of copying within a single
    # input document, where no scan-side deadline check happens.
    coll.insert_one({"_id": 1, "big": "x" * (4 << 20)})
    stages = [{"$addFields": {"a": {"$add": [i, 1]}}} for i in range(999)]
    with pytest.raises(ExecutionTimeout) as e:
        list(coll.aggregate(stages + [{"$project": {"a": 1}}], maxTimeMS=50))
    assert e.value.code == 50


def test_max_time_interrupts_many_stages_over_many_documents(coll):
    coll.insert_many([{"_id": i, "x": i} for i in range(2000)])
    stages = [{"$addFields": {"y": {"$multiply": ["$x", i]}}} for i in range(1000)]
    with pytest.raises(ExecutionTimeout) as e:
        list(coll.aggregate(stages, maxTimeMS=50))
    assert e.value.code == 50


def test_group_expression_interrupted_by_max_time(coll):
    coll.insert_one({"_id": 1, "big": "x" * (4 << 20)})
    stages = [{"$addFields": {"a": i}} for i in range(999)]
    with pytest.raises(ExecutionTimeout):
        list(coll.aggregate(stages + [{"$group": {"_id": "$a", "n": {"$sum": 1}}}],
                            maxTimeMS=50))
