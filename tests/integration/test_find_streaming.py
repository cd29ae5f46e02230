"""find without a sort streams from the collection scan: skip, limit, batchSize and getMore
are applied by the cursor as it reads, not by a sort over materialised results. Every case
asserts the exact _id sequence (and, for raw commands, the exact shape of each batch), so
an off-by-one in the streaming skip or limit, a lost or repeated document at a batch
boundary, or skip applied again on getMore fails here.

Documents are inserted in a seeded shuffled order (CAIRN_TEST_SEED overrides the default);
an unsorted find returns them in _id order."""

import os
import random

import pytest
from bson import Int64

N = 25          # documents in the small collection
BIG = 250       # documents in the one that needs more than the default first batch (101)
SEED = int(os.environ.get("CAIRN_TEST_SEED", "20261122"))


def _shuffled(n):
    ids = list(range(n))
    random.Random(SEED + n).shuffle(ids)
    return ids


@pytest.fixture(scope="module")
def docs(client):
    c = client["t_find_streaming"]["docs"]
    c.drop()
    c.insert_many([{"_id": i, "g": i % 3, "v": "v%d" % i} for i in _shuffled(N)])
    assert c.count_documents({}) == N
    return c


@pytest.fixture(scope="module")
def big(client):
    c = client["t_find_streaming"]["big"]
    c.drop()
    c.insert_many([{"_id": i} for i in _shuffled(BIG)])
    assert c.count_documents({}) == BIG
    return c


def ids(cursor):
    return [d["_id"] for d in cursor]


def run_find(coll, batch_size, get_more_batch=None, **opts):
    """Runs the raw find command, then getMore until the cursor is closed. Returns the list
    of batches (lists of _id); fails if a cursor id changes or a getMore is refused."""
    db = coll.database
    r = db.command("find", coll.name, batchSize=batch_size, **opts)
    batches = [[d["_id"] for d in r["cursor"]["firstBatch"]]]
    cid = r["cursor"]["id"]
    assert r["cursor"]["ns"] == "%s.%s" % (db.name, coll.name)
    rounds = 0
    while cid != 0:
        rounds += 1
        assert rounds <= 4 * N + 10, "getMore never closed the cursor"
        kw = {"collection": coll.name}
        if get_more_batch is not None:
            kw["batchSize"] = get_more_batch
        r = db.command("getMore", Int64(cid), **kw)
        assert r["cursor"]["id"] in (0, cid), r
        batches.append([d["_id"] for d in r["cursor"]["nextBatch"]])
        cid = r["cursor"]["id"]
    return batches


def expected_batches(results, first, rest):
    """Batches the server must return for `results`: `first` documents, then `rest` each."""
    out = [results[:first]]
    i = first
    while i < len(results):
        out.append(results[i:i + rest])
        i += rest
    return out


def check_batches(got, results, first, rest):
    """Exact batches; the server may (as mongod does when it cannot tell the scan ended)
    leave the cursor open after the last document and close it with one empty batch."""
    want = expected_batches(results, first, rest)
    if len(got) == len(want) + 1 and got[-1] == [] and len(want[-1]) > 0:
        got = got[:-1]
    assert got == want, (got, want)


# ---- pymongo cursors: whole result sequences ------------------------------------------------

@pytest.mark.parametrize("skip", [0, 1, 2, N - 1, N, N + 1, 1000])
def test_skip_alone(docs, skip):
    assert ids(docs.find().skip(skip)) == list(range(N))[skip:]


@pytest.mark.parametrize("skip,limit", [
    (0, 1), (0, N - 1), (0, N), (0, N + 1),
    (1, 1), (1, 2), (1, N - 1), (1, N),
    (3, 5), (N - 1, 1), (N - 1, 5), (N, 1), (N + 1, 1), (N - 2, 2),
])
def test_skip_with_limit(docs, skip, limit):
    assert ids(docs.find().skip(skip).limit(limit)) == list(range(N))[skip:skip + limit]


@pytest.mark.parametrize("limit", [1, 2, N - 1, N, N + 1])
def test_limit_alone(docs, limit):
    assert ids(docs.find().limit(limit)) == list(range(N))[:limit]


@pytest.mark.parametrize("skip,limit,batch", [
    (0, 0, 1), (1, 0, 1), (1, 0, 2), (1, 0, 7), (2, 0, N - 2), (2, 0, N - 3),
    (2, 0, N - 1), (1, 0, N), (1, 0, 1000), (4, 9, 2), (4, 9, 3), (4, 9, 9), (4, 9, 10),
    (0, N, N), (N - 1, 0, 1), (N - 1, 3, 1),
])
def test_skip_limit_batch_size_through_pymongo(docs, skip, limit, batch):
    want = list(range(N))[skip:skip + limit if limit else None]
    got = ids(docs.find().skip(skip).limit(limit).batch_size(batch))
    assert got == want


@pytest.mark.parametrize("skip", [0, 1, 100, 101, 102, BIG - 1, BIG, BIG + 1])
def test_skip_past_default_first_batch(big, skip):
    # the default first batch holds 101 documents; the rest comes by getMore
    assert ids(big.find().skip(skip)) == list(range(BIG))[skip:]


@pytest.mark.parametrize("skip,limit", [(0, 101), (0, 102), (1, 101), (100, 2), (101, 101),
                                        (5, 200), (200, 100)])
def test_skip_limit_past_default_first_batch(big, skip, limit):
    assert ids(big.find().skip(skip).limit(limit)) == list(range(BIG))[skip:skip + limit]


@pytest.mark.parametrize("g,skip", [(0, 0), (0, 1), (1, 1), (1, 3), (2, 7), (2, 8), (2, 9)])
def test_skip_counts_matching_documents_only(docs, g, skip):
    matching = [i for i in range(N) if i % 3 == g]
    assert ids(docs.find({"g": g}).skip(skip)) == matching[skip:]
    assert ids(docs.find({"g": g}).skip(skip).limit(2).batch_size(1)) == matching[skip:skip + 2]


def test_skip_with_projection(docs):
    got = list(docs.find({}, {"v": 1, "_id": 0}).skip(N - 3).batch_size(1))
    assert got == [{"v": "v%d" % i} for i in range(N - 3, N)]
    got = list(docs.find({"g": 1}, {"g": 0}).skip(2).limit(2))
    assert got == [{"_id": 7, "v": "v7"}, {"_id": 10, "v": "v10"}]


@pytest.mark.parametrize("skip,want", [(0, [5]), (1, []), (2, [])])
def test_skip_on_id_point_lookup(docs, skip, want):
    assert ids(docs.find({"_id": 5}).skip(skip)) == want
    assert ids(docs.find({"_id": 5}).skip(skip).limit(1)) == want


# ---- raw commands: exact batches and cursor ids ---------------------------------------------

@pytest.mark.parametrize("skip", [0, 1, 2, N - 1, N, N + 1])
@pytest.mark.parametrize("batch", [1, 4, N - 1, N, N + 1])
def test_batches_with_skip(docs, skip, batch):
    results = list(range(N))[skip:]
    check_batches(run_find(docs, batch, skip=skip), results, batch, 101)


@pytest.mark.parametrize("skip,limit,batch,more", [
    (3, 17, 5, 5),        # getMore batches, last one short
    (3, 17, 5, 4),        # getMore batches of another size
    (3, 15, 5, 5),        # the limit ends exactly at a batch boundary
    (0, 10, 3, 100),      # getMore asks for more than the limit leaves
    (1, 24, 24, 1),       # the first batch holds everything
    (1, 24, 23, 1),       # one document left for getMore
    (N - 1, 5, 1, 1),     # the limit reaches past the end
    (2, 1, 10, 10),       # limit smaller than the batch
    (0, N, N - 1, 1),
])
def test_get_more_continues_with_skip_and_limit(docs, skip, limit, batch, more):
    results = list(range(N))[skip:skip + limit]
    check_batches(run_find(docs, batch, more, skip=skip, limit=limit), results,
                  min(batch, limit), more)


def test_limit_equal_to_batch_closes_the_cursor(docs):
    # mongod knows a limited cursor is done once the limit is reached
    r = docs.database.command("find", docs.name, skip=2, limit=4, batchSize=4)
    assert [d["_id"] for d in r["cursor"]["firstBatch"]] == [2, 3, 4, 5]
    assert r["cursor"]["id"] == 0


def test_batch_size_zero_opens_a_cursor_without_documents(docs):
    r = docs.database.command("find", docs.name, skip=3, batchSize=0)
    assert r["cursor"]["firstBatch"] == []
    cid = r["cursor"]["id"]
    assert cid != 0
    r = docs.database.command("getMore", Int64(cid), collection=docs.name, batchSize=2)
    assert [d["_id"] for d in r["cursor"]["nextBatch"]] == [3, 4]
    r = docs.database.command("getMore", Int64(cid), collection=docs.name)
    assert [d["_id"] for d in r["cursor"]["nextBatch"]] == list(range(5, N))
    assert r["cursor"]["id"] == 0


# ---- single batch (a negative limit in the drivers) ----------------------------------------

@pytest.mark.parametrize("skip,limit", [(0, 1), (0, 5), (1, 5), (N - 2, 5), (N, 3), (2, N)])
def test_negative_limit_is_one_batch(docs, skip, limit):
    want = list(range(N))[skip:skip + limit]
    cur = docs.find().skip(skip).limit(-limit)
    assert ids(cur) == want
    assert cur.cursor_id in (None, 0), "a single-batch cursor must be closed by the server"
    r = docs.database.command("find", docs.name, skip=skip, limit=limit, singleBatch=True)
    assert [d["_id"] for d in r["cursor"]["firstBatch"]] == want
    assert r["cursor"]["id"] == 0


def test_single_batch_stops_at_batch_size(docs):
    r = docs.database.command("find", docs.name, skip=1, limit=10, batchSize=3,
                              singleBatch=True)
    assert [d["_id"] for d in r["cursor"]["firstBatch"]] == [1, 2, 3]
    assert r["cursor"]["id"] == 0
    r = docs.database.command("find", docs.name, skip=4, batchSize=2, singleBatch=True)
    assert [d["_id"] for d in r["cursor"]["firstBatch"]] == [4, 5]
    assert r["cursor"]["id"] == 0


def test_negative_limit_past_default_first_batch(big):
    # A single batch still ends at the default first-batch size (101) unless batchSize
    # says more, as in mongod: singleBatch closes the cursor after the first batch.
    cur = big.find().skip(3).limit(-101)
    assert ids(cur) == list(range(3, 104))
    assert cur.cursor_id in (None, 0)
    cur = big.find().skip(3).limit(-150)
    assert ids(cur) == list(range(3, 104))
    assert cur.cursor_id in (None, 0)
    r = big.database.command("find", big.name, skip=3, limit=150, batchSize=150,
                             singleBatch=True)
    assert [d["_id"] for d in r["cursor"]["firstBatch"]] == list(range(3, 153))
    assert r["cursor"]["id"] == 0
