"""Regression tests from the network/command-layer review (reviewer R1).

Each test pins a bug that a MongoDB driver user would hit; see the docstrings.
"""

import bson
import pymongo
import pytest

import rawwire


def test_iterating_many_small_documents_past_16mib(db):
    """getMore without batchSize fills a batch up to 16 MiB of documents; the
    array keys and type bytes (2-7 bytes a document) must count too, else the
    reply outgrows 16 MiB + 16 KiB and the cursor dies with BSONObjectTooLarge
    (10334) on a plain `for doc in coll.find()` over ~20 MB of 1 KB documents."""
    coll = db["many"]
    pad = "x" * 1000
    n = 20000
    for start in range(0, n, 5000):
        coll.insert_many([{"_id": i, "p": pad} for i in range(start, start + 5000)])
    seen = 0
    for doc in coll.find({}):
        assert doc["_id"] == seen
        seen += 1
    assert seen == n
    # Materialised (sorted) cursors and aggregate share the batch builder.
    assert sum(1 for _ in coll.find({}, sort=[("_id", -1)])) == n
    assert sum(1 for _ in coll.aggregate([{"$match": {}}])) == n


def test_getmore_reply_stays_under_16mib_plus_headroom(db, server):
    """The raw reply to a getMore without batchSize must stay within the
    16 MiB + 16 KiB a command reply may have, and the batch may not be empty."""
    coll = db["raw"]
    pad = "y" * 1000
    coll.insert_many([{"_id": i, "p": pad} for i in range(18000)])
    # Raw find and getMores alike: pymongo's find would carry its implicit session, and
    # getMore of a session's cursor without that lsid is refused (50737), as by mongod.
    first = rawwire.raw_command(server, {"find": "raw", "batchSize": 1, "$db": db.name})
    cid = first["cursor"]["id"]
    assert cid != 0
    total = 1
    while cid != 0:
        reply = rawwire.raw_command(server, {"getMore": bson.Int64(cid), "collection": "raw",
                                             "$db": db.name})
        assert reply["ok"] == 1.0, reply.get("errmsg")
        batch = reply["cursor"]["nextBatch"]
        assert len(bson.encode(reply)) <= 16 * 1024 * 1024 + 16 * 1024
        assert batch
        total += len(batch)
        cid = reply["cursor"]["id"]
    assert total == 18000


@pytest.mark.parametrize("sort", [None, {"_id": 1}])
def test_getmore_after_drop_kills_the_cursor(db, sort):
    """mongod kills cursors of a dropped collection: the next getMore fails
    with QueryPlanKilled (175) and the cursor is gone. Cairn used to keep
    serving documents of the dropped collection from the cursor's snapshot."""
    coll = db["dropme"]
    coll.insert_many([{"_id": i} for i in range(10)])
    kwargs = {"batchSize": 2}
    if sort is not None:
        kwargs["sort"] = sort
    cid = db.command("find", "dropme", **kwargs)["cursor"]["id"]
    assert cid != 0
    coll.drop()
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.command("getMore", cid, collection="dropme")
    assert exc.value.code == 175
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.command("getMore", cid, collection="dropme")
    assert exc.value.code == 43


def test_getmore_after_drop_and_recreate_kills_the_cursor(db):
    coll = db["recreate"]
    coll.insert_many([{"_id": i} for i in range(10)])
    cid = db.command("aggregate", "recreate", pipeline=[], cursor={"batchSize": 2})["cursor"]["id"]
    assert cid != 0
    coll.drop()
    coll.insert_one({"_id": "new"})
    with pytest.raises(pymongo.errors.OperationFailure) as exc:
        db.command("getMore", cid, collection="recreate")
    assert exc.value.code == 175


def test_getmore_on_live_collection_still_works(db):
    coll = db["live"]
    coll.insert_many([{"_id": i} for i in range(10)])
    coll2 = db["other"]
    coll2.insert_one({})
    cid = db.command("find", "live", batchSize=3)["cursor"]["id"]
    coll2.drop()  # another collection's drop does not matter
    reply = db.command("getMore", cid, collection="live")
    assert [d["_id"] for d in reply["cursor"]["nextBatch"]] == list(range(3, 10))
    assert reply["cursor"]["id"] == 0
