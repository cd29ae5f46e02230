"""maxTimeMS: a command that runs past it fails with 50 MaxTimeMSExpired (pymongo raises
ExecutionTimeout) instead of running on after the driver gave up; bad values are 2 BadValue.
The slow commands scan 40,000 documents matching nothing, far more than 1 ms of work."""

import pytest
from pymongo.errors import ExecutionTimeout, OperationFailure


@pytest.fixture(scope="module")
def big(client):
    coll = client.maxtime.big
    coll.drop()
    coll.insert_many([{"_id": i, "x": i % 1000, "pad": "p" * 100} for i in range(40000)])
    return coll


NOTHING = {"x": {"$gt": 5000}}


def test_find_past_max_time_is_50(big):
    with pytest.raises(ExecutionTimeout) as e:
        list(big.find(NOTHING).max_time_ms(1))
    assert e.value.code == 50


def test_find_with_sort_past_max_time_is_50(big):
    with pytest.raises(ExecutionTimeout):
        list(big.find({}).sort("x", -1).max_time_ms(1))


@pytest.mark.parametrize("cmd", [
    {"count": "big", "query": NOTHING},
    {"distinct": "big", "key": "x", "query": NOTHING},
    {"aggregate": "big", "pipeline": [{"$match": NOTHING}], "cursor": {}},
    {"aggregate": "big", "pipeline": [{"$group": {"_id": "$x", "n": {"$sum": 1}}}],
     "cursor": {}},
])
def test_read_commands_past_max_time_are_50(big, cmd):
    with pytest.raises(OperationFailure) as e:
        big.database.command(dict(cmd, maxTimeMS=1))
    assert e.value.code == 50


def test_update_many_past_max_time_is_50(big):
    # mongod reports it as the statement's write error (or as the command's error).
    try:
        r = big.database.command("update", "big",
                                 updates=[{"q": NOTHING, "u": {"$set": {"y": 1}}, "multi": True}],
                                 maxTimeMS=1)
    except OperationFailure as e:
        assert e.code == 50
    else:
        assert r["writeErrors"][0]["code"] == 50, r
        assert r["nModified"] == 0


def test_generous_max_time_succeeds(big):
    assert list(big.find(NOTHING).max_time_ms(600000)) == []
    assert big.count_documents({"x": 1}, maxTimeMS=600000) == 40
    assert big.database.command("ping", maxTimeMS=0)["ok"] == 1.0


@pytest.mark.parametrize("value", ["10", -1, 1.5, 2 ** 31, None, [1]])
def test_bad_max_time_values_are_2(big, value):
    with pytest.raises(OperationFailure) as e:
        big.database.command({"find": "big", "filter": {"_id": 1}, "maxTimeMS": value})
    assert e.value.code == 2


def test_int64_and_integral_double_accepted(big):
    from bson import Int64
    for v in (Int64(600000), 600000.0):
        r = big.database.command({"find": "big", "filter": {"_id": 1}, "maxTimeMS": v})
        assert r["cursor"]["firstBatch"][0]["_id"] == 1


def scanned_objects(client):
    return client.admin.command("serverStatus")["metrics"]["queryExecutor"]["scannedObjects"]


def test_slow_documents_do_not_delay_the_deadline(client):
    """Interruption is checked before every document, not every 16th: with a few documents
    that each take milliseconds to match (a backtracking $regex over 3,000 characters), the
    scan stops at the first document after the deadline instead of running on for up to 15
    more heavy ones. Probe: documents examined, counted by serverStatus."""
    coll = client.maxtime.heavy
    coll.drop()
    heavy = [{"_id": i, "s": "ab" * 1500} for i in range(24)]
    coll.insert_many(heavy + [{"_id": 100 + i, "s": "x"} for i in range(40)])
    slow = {"s": {"$regex": "b.*a.*c$"}}
    for _ in range(6):  # on whichever worker: a per-thread tick would land anywhere
        before = scanned_objects(client)
        with pytest.raises(ExecutionTimeout):
            list(coll.find(slow).max_time_ms(5))
        examined = scanned_objects(client) - before
        # One heavy document alone outlasts 5 ms; with a coarse clock a tick late, at most a
        # couple more are examined. A check every 16 documents examined up to 16.
        assert examined <= 4, examined  # 0 when the deadline passed before the scan began


@pytest.fixture(scope="module")
def indexed(client):
    coll = client.maxtime.indexed
    coll.drop()
    coll.create_index("x")
    coll.insert_many([{"_id": i, "x": i % 1000, "pad": "p" * 100} for i in range(40000)])
    return coll


@pytest.mark.parametrize("cmd", [
    {"validate": "indexed"},
    {"validate": "indexed", "full": True},
    {"collStats": "indexed"},
    {"dbStats": 1},
])
def test_storage_commands_past_max_time_are_50(indexed, cmd):
    """validate, collStats and dbStats read every document (and validate every index entry):
    they stop at maxTimeMS as the query commands do, as mongod's do."""
    with pytest.raises(OperationFailure) as e:
        indexed.database.command(dict(cmd, maxTimeMS=1))
    assert e.value.code == 50
    assert indexed.database.command(cmd)["ok"] == 1.0
