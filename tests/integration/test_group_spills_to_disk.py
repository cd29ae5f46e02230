"""$group past its memory limit (internalDocumentSourceGroupMaxMemoryBytes, mongod's parameter,
here lowered to 256 KB) answers 292 QueryExceededMemoryLimitNoDiskUseAllowed; with
allowDiskUse: true it spills partial groups, sorted by key, to anonymous files under
<dbpath>/_tmp and merges them, combining each accumulator's partial states, so it gives the
same groups as in memory (docs/decisions.md §39)."""

import os
import random

import pytest
from pymongo.errors import OperationFailure

CAP = 256 * 1024
N = 6000
KEYS = 1500  # with ten accumulators, several MB of groups: many runs of at most CAP


@pytest.fixture(scope="module")
def data(client):
    param = "internalDocumentSourceGroupMaxMemoryBytes"
    old = client.admin.command({"getParameter": 1, param: 1})[param]
    client.admin.command({"setParameter": 1, param: CAP})
    rng = random.Random(31)
    coll = client.group_spill.docs
    coll.drop()
    docs = []
    for i in range(N):
        k = rng.randrange(KEYS)
        d = {"_id": i, "k": float(k) if i % 7 == 0 else k, "v": rng.randrange(-1000, 1000),
             "h": rng.randrange(8) / 2.0, "s": "s%05d" % rng.randrange(100000),
             "t": rng.randrange(4)}
        if i % 11 == 0:
            del d["v"]  # missing: skipped by $sum/$avg/$min/$max, null for $first/$last
        docs.append(d)
    coll.insert_many(docs)
    yield coll, docs
    client.admin.command({"setParameter": 1, param: old})


PIPELINE = [{"$group": {"_id": "$k", "n": {"$sum": 1}, "sv": {"$sum": "$v"},
                        "sh": {"$sum": "$h"}, "avg": {"$avg": "$v"}, "lo": {"$min": "$s"},
                        "hi": {"$max": "$v"}, "f": {"$first": "$v"}, "l": {"$last": "$v"},
                        "ids": {"$push": "$_id"}, "ts": {"$addToSet": "$t"},
                        "c": {"$count": {}}}}]


def expected(docs):
    groups = {}
    for d in docs:  # scan order: _id
        g = groups.get(d["k"])
        if g is None:
            g = groups[d["k"]] = {"_id": d["k"], "n": 0, "sv": 0, "sh": 0.0, "vals": [],
                                  "s": [], "f": d.get("v"), "ids": [], "ts": [], "c": 0}
        g["n"] += 1
        g["c"] += 1
        g["sh"] += d["h"]
        g["s"].append(d["s"])
        g["ids"].append(d["_id"])
        g["l"] = d.get("v")
        if "v" in d:
            g["sv"] += d["v"]
            g["vals"].append(d["v"])
        if d["t"] not in g["ts"]:
            g["ts"].append(d["t"])
    out = []
    for g in groups.values():
        vals = g.pop("vals")
        g["avg"] = sum(vals) / len(vals) if vals else None
        g["hi"] = max(vals) if vals else None
        g["lo"] = min(g.pop("s"))
        out.append(g)
    return sorted(out, key=lambda g: g["_id"])


def tmp_files(server):
    return os.listdir(os.path.join(server.dbpath, "_tmp"))


def test_parameter_round_trip(client, data):
    r = client.admin.command({"getParameter": 1, "internalDocumentSourceGroupMaxMemoryBytes": 1})
    assert r["internalDocumentSourceGroupMaxMemoryBytes"] == CAP


def test_group_past_the_limit_without_disk_use_is_292(data):
    coll, _ = data
    with pytest.raises(OperationFailure) as e:
        list(coll.aggregate(PIPELINE))
    assert e.value.code == 292
    assert "allowDiskUse" in str(e.value)


def test_group_with_disk_use_spills_and_merges(server, data):
    coll, docs = data
    got = sorted(coll.aggregate(PIPELINE, allowDiskUse=True), key=lambda g: g["_id"])
    want = expected(docs)
    assert len(got) == len(want) == len({d["k"] for d in docs})
    for g, w in zip(got, want):
        assert g == w, (g, w)
    assert tmp_files(server) == []  # runs are unlinked at creation


def test_spilled_group_feeds_later_stages(data):
    coll, docs = data
    got = list(coll.aggregate(PIPELINE[:1] + [{"$sort": {"n": -1, "_id": 1}}, {"$limit": 3},
                                              {"$project": {"n": 1}}], allowDiskUse=True))
    want = sorted(expected(docs), key=lambda g: (-g["n"], g["_id"]))[:3]
    assert got == [{"_id": w["_id"], "n": w["n"]} for w in want]


def test_group_under_the_limit_keeps_first_appearance_order(data):
    coll, docs = data
    got = [g["_id"] for g in coll.aggregate([{"$match": {"_id": {"$lt": 50}}},
                                             {"$group": {"_id": "$k"}}], allowDiskUse=True)]
    seen = []
    for d in docs[:50]:
        if d["k"] not in seen:
            seen.append(d["k"])
    assert got == seen


def test_spilled_int32_sum_keeps_its_type(client, data):
    """A group's int32 sum whose partial sums leave the int32 range but whose total fits is an
    int32, as in memory (mongod: createIntOrLong): merging the partial states must not turn it
    into a NumberLong because a partial sum, written as a value, was one."""
    coll = client.group_spill.int_sum
    coll.drop()
    big = 2_000_000_000  # an int32; two of them are not
    docs = [{"_id": 0, "k": -1, "v": big}, {"_id": 1, "k": -1, "v": big}]
    # Enough other groups between them to spill (CAP 256 KB) before the negatives arrive.
    docs += [{"_id": 2 + i, "k": i, "v": 1} for i in range(6000)]
    docs += [{"_id": 10_000, "k": -1, "v": -big}, {"_id": 10_001, "k": -1, "v": -big}]
    coll.insert_many(docs)
    pipe = [{"$group": {"_id": "$k", "s": {"$sum": "$v"}}}, {"$match": {"_id": -1}}]
    in_memory = list(coll.aggregate([{"$match": {"k": -1}}] + pipe))
    assert in_memory == [{"_id": -1, "s": 0}] and type(in_memory[0]["s"]) is int
    spilled = list(coll.aggregate(pipe, allowDiskUse=True))
    assert spilled == in_memory
    assert type(spilled[0]["s"]) is int, type(spilled[0]["s"])  # not bson.int64.Int64
