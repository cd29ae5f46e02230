"""Blocking sorts hold bounded memory. A sort with a limit keeps only its first k documents
(a heap), so it succeeds however much the sort would otherwise hold, as mongod's does (find
with sort + limit, and aggregate's $sort followed by $limit). Without a limit the cap
(internalQueryMaxBlockingSortMemoryUsageBytes, here lowered to 1 MB) answers 292
QueryExceededMemoryLimitNoDiskUseAllowed; with allowDiskUse: true the sort spills sorted runs to
anonymous files under <dbpath>/_tmp and merges them, so it succeeds while holding no more than the
cap (docs/decisions.md §35)."""

import os
import random

import pytest
from pymongo.errors import ExecutionTimeout, OperationFailure

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


def held(client):
    return client.admin.command("serverStatus")["metrics"]["query"]["heldResultBytes"]


@pytest.mark.parametrize("key", [1, -1])
def test_find_allow_disk_use_spills_and_merges(client, server, big, key):
    coll, docs = big
    cur = coll.find({}, {"pad": 0}).sort("k", key).allow_disk_use(True).batch_size(5)
    first = [next(cur)["_id"] for _ in range(5)]
    # The cursor merges from disk: it holds no result in memory, and the runs are anonymous
    # files (unlinked at creation), so nothing is left in _tmp.
    assert held(client) < CAP
    assert os.listdir(os.path.join(server.dbpath, "_tmp")) == []
    got = first + [d["_id"] for d in cur]
    assert got == expected(docs, key, 0, N)


def test_find_allow_disk_use_with_skip_and_limit(big):
    coll, docs = big
    # A limit larger than the cap can hold turns the heap into spilled runs.
    got = [d["_id"] for d in coll.find({}, {"pad": 0}).sort("k", 1).skip(17).limit(2500)
           .allow_disk_use(True)]
    assert got == expected(docs, 1, 17, 2500)


def test_aggregate_allow_disk_use_spills_and_merges(big):
    coll, docs = big
    got = [d["_id"] for d in coll.aggregate([{"$sort": {"k": -1}}, {"$project": {"pad": 0}}],
                                            allowDiskUse=True)]
    assert got == expected(docs, -1, 0, N)
    grouped = list(coll.aggregate([{"$sort": {"k": 1}},
                                   {"$group": {"_id": None, "first": {"$first": "$_id"},
                                               "n": {"$sum": 1}}}], allowDiskUse=True))
    assert grouped == [{"_id": None, "first": expected(docs, 1, 0, 1)[0], "n": N}]


def test_closing_a_spilled_cursor_frees_its_runs(server, big):
    coll, _ = big
    def spill_files():  # the server's open files in <dbpath>/_tmp (unlinked: "... (deleted)")
        tmp = os.path.join(os.path.abspath(server.dbpath), "_tmp") + "/"
        fd_dir = "/proc/%d/fd" % server.proc.pid
        n = 0
        for fd in os.listdir(fd_dir):
            try:
                n += os.readlink(os.path.join(fd_dir, fd)).startswith(tmp)
            except OSError:
                pass  # closed meanwhile
        return n

    assert spill_files() == 0
    cur = coll.find({}).sort("k", 1).allow_disk_use(True).batch_size(1)
    next(cur)
    # About 3.7 MB held in runs of at most 1 MB, all in one file (one descriptor).
    assert spill_files() == 1
    cur.close()
    assert spill_files() == 0


def test_max_time_interrupts_a_spilled_sort(big):
    coll, _ = big
    with pytest.raises(ExecutionTimeout):
        list(coll.aggregate([{"$sort": {"k": 1}}] + [{"$addFields": {"x": i}} for i in range(900)],
                            allowDiskUse=True, maxTimeMS=50))


def test_sort_under_the_cap_still_sorts_everything(big):
    coll, docs = big
    got = [d["_id"] for d in coll.find({"_id": {"$lt": 500}}, {"pad": 0}).sort("k", -1)]
    assert got == expected([d for d in docs if d["_id"] < 500], -1, 0, 500)
