"""Blocking sorts hold bounded memory. A sort with a limit keeps only its first k documents
(a heap), so it succeeds however much the sort would otherwise hold, as mongod's does (find
with sort + limit, and aggregate's $sort followed by $limit). Without a limit the cap
(internalQueryMaxBlockingSortMemoryUsageBytes, here lowered to 1 MB) answers 292
QueryExceededMemoryLimitNoDiskUseAllowed, and allowDiskUse: true does not lift it: Cairn does not
spill to disk (docs/decisions.md §31e), so the message says so instead of growing without bound."""

import random

import pytest
from pymongo.errors import OperationFailure

CAP = 1 << 20
N = 3000  # about 3.3 MB of documents: three times the cap


@pytest.fixture(scope="module")
def big(client):
    old = client.admin.command({"getParameter": 1,
                                "internalQueryMaxBlockingSortMemoryUsageBytes": 1})
    client.admin.command({"setParameter": 1, "internalQueryMaxBlockingSortMemoryUsageBytes": CAP})
    rng = random.Random(9)
    coll = client.sort_memory.big
    coll.drop()
    docs = [{"_id": i, "k": rng.randrange(500), "pad": "p" * 1024} for i in range(N)]
    coll.insert_many(docs)
    yield coll, docs
    client.admin.command({"setParameter": 1, "internalQueryMaxBlockingSortMemoryUsageBytes":
                          old["internalQueryMaxBlockingSortMemoryUsageBytes"]})


def expected(docs, key, skip, limit):
    # Stable in both directions: equal keys keep the scan's (_id) order.
    order = sorted(docs, key=lambda d: (key * d["k"], d["_id"]))
    return [d["_id"] for d in order[skip:skip + limit]]


def test_parameter_round_trip(client, big):
    r = client.admin.command({"getParameter": 1,
                              "internalQueryMaxBlockingSortMemoryUsageBytes": 1})
    assert r["internalQueryMaxBlockingSortMemoryUsageBytes"] == CAP


@pytest.mark.parametrize("key,skip,limit", [(1, 0, 10), (-1, 0, 10), (1, 25, 10), (1, 0, 200)])
def test_find_sort_with_limit_keeps_top_k(big, key, skip, limit):
    coll, docs = big
    got = [d["_id"] for d in coll.find({}, {"pad": 0}).sort("k", key).skip(skip).limit(limit)]
    assert got == expected(docs, key, skip, limit)


@pytest.mark.parametrize("key,skip,limit", [(1, 0, 10), (-1, 0, 7), (1, 30, 5)])
def test_aggregate_sort_then_limit_keeps_top_k(big, key, skip, limit):
    coll, docs = big
    stages = [{"$sort": {"k": key}}] + ([{"$skip": skip}] if skip else [])
    got = [d["_id"] for d in coll.aggregate(stages + [{"$limit": limit},
                                                      {"$project": {"pad": 0}}])]
    assert got == expected(docs, key, skip, limit)


def test_find_sort_without_limit_is_292(big):
    coll, _ = big
    with pytest.raises(OperationFailure) as e:
        list(coll.find({}).sort("k", 1))
    assert e.value.code == 292


def test_aggregate_sort_without_limit_is_292(big):
    coll, _ = big
    with pytest.raises(OperationFailure) as e:
        list(coll.aggregate([{"$sort": {"k": 1}}]))
    assert e.value.code == 292


def test_find_allow_disk_use_keeps_the_cap(big):
    coll, _ = big
    with pytest.raises(OperationFailure) as e:
        list(coll.find({}).sort("k", 1).allow_disk_use(True))
    assert e.value.code == 292
    assert "allowDiskUse" in str(e.value) and "spill" in str(e.value)


def test_aggregate_allow_disk_use_keeps_the_cap(big):
    coll, _ = big
    with pytest.raises(OperationFailure) as e:
        list(coll.aggregate([{"$sort": {"k": 1}}], allowDiskUse=True))
    assert e.value.code == 292
    assert "allowDiskUse" in str(e.value) and "spill" in str(e.value)


def test_sort_under_the_cap_still_sorts_everything(big):
    coll, docs = big
    got = [d["_id"] for d in coll.find({"_id": {"$lt": 500}}, {"pad": 0}).sort("k", -1)]
    assert got == expected([d for d in docs if d["_id"] < 500], -1, 0, 500)
