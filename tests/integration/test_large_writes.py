"""Writes larger than one raft entry can hold: a 40 MB insert_many (one insert command of
48 MB at most, as pymongo batches), an update_many and a delete_many over all of it. The
server splits them into several commits; results must be exact, and duplicate _ids must be
caught even when the first copy was in an earlier part of the same command."""

import pytest
from pymongo.errors import BulkWriteError

N = 80000
PAD = "x" * 500  # 80,000 x ~530 bytes: about 42 MB, more than one commit may carry


@pytest.fixture(scope="module")
def big(client):
    coll = client.large.big
    coll.drop()
    r = coll.insert_many([{"_id": i, "pad": PAD} for i in range(N)])
    assert len(r.inserted_ids) == N
    return coll


def test_large_insert_many_lands_whole(big):
    assert big.count_documents({}) == N
    assert big.find_one({"_id": N - 1}) == {"_id": N - 1, "pad": PAD}


def test_large_update_many_modifies_every_document_once(big):
    r = big.update_many({}, {"$inc": {"n": 1}})
    assert r.matched_count == N and r.modified_count == N
    assert big.count_documents({"n": 1}) == N  # nobody incremented twice


def test_duplicate_after_a_flushed_part_is_caught(client):
    coll = client.large.dups
    coll.drop()
    docs = [{"_id": i, "pad": PAD} for i in range(30000)]  # ~16 MB: flushed at least once
    docs.append({"_id": 3})  # duplicate of a document in the first part
    docs.append({"_id": "last"})
    with pytest.raises(BulkWriteError) as e:
        coll.insert_many(docs, ordered=False)
    d = e.value.details
    assert d["nInserted"] == 30001
    assert [(w["index"], w["code"]) for w in d["writeErrors"]] == [(30000, 11000)]
    assert coll.count_documents({}) == 30001
    assert "pad" in coll.find_one({"_id": 3})  # the first copy stayed


def test_large_delete_many_removes_everything(big):
    r = big.delete_many({})
    assert r.deleted_count == N
    assert big.count_documents({}) == 0


def test_update_growing_past_16mib_is_17419_and_changes_nothing(client):
    from pymongo.errors import OperationFailure, WriteError

    coll = client.large.grow
    coll.drop()
    coll.insert_one({"_id": 1, "a": "x" * (9 << 20)})
    with pytest.raises(WriteError) as e:
        coll.update_one({"_id": 1}, {"$set": {"b": "y" * (9 << 20)}})
    assert e.value.code == 17419
    with pytest.raises(OperationFailure) as e2:
        coll.find_one_and_update({"_id": 1}, {"$set": {"b": "y" * (9 << 20)}})
    assert e2.value.code == 17419
    assert "b" not in coll.find_one({"_id": 1}, {"a": 0})
