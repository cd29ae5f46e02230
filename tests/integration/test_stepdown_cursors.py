"""Cursors on a primary that steps down: a cursor whose read showed writes not yet committed
(w:1 writes held in the primary's overlay) is killed at its next getMore with 11602
InterruptedDueToReplStateChange, because those writes may roll back; a cursor that read only
committed data goes on after the step-down, as in mongod."""

import uuid

import pymongo
import pytest
from pymongo.errors import NotPrimaryError

from cairn_rs import make_replica_set, wait_for


@pytest.fixture
def rs3(tmp_path_factory, request):
    yield from make_replica_set(tmp_path_factory, request, 3)


def _writable(member):
    try:
        return bool(member.hello().get("isWritablePrimary"))
    except Exception:
        return False


def test_cursor_over_uncommitted_writes_dies_at_step_down_and_committed_one_lives(rs3):
    tag = uuid.uuid4().hex[:6]
    p = rs3.wait_primary()
    others = [m for m in rs3.members if m is not p]
    with p.client(directConnection=True) as c:
        coll = c.db["cur" + tag]
        coll.with_options(write_concern=pymongo.WriteConcern(w="majority")).insert_many(
            [{"_id": i, "committed": True} for i in range(10)])
        committed = coll.find({"committed": True}, batch_size=2)
        assert len([next(committed), next(committed)]) == 2
        for m in others:
            m.pause()
        try:
            w1 = coll.with_options(write_concern=pymongo.WriteConcern(w=1))
            w1.insert_many([{"_id": 100 + i} for i in range(10)])
            pending = coll.find({"_id": {"$gte": 100}}, batch_size=2)
            first = [next(pending)["_id"], next(pending)["_id"]]
            assert first == [100, 101]
            # Cut off from both secondaries, the primary steps down by itself.
            wait_for(lambda: not _writable(p), 30, "the isolated primary to step down")
            # 11602 is a state-change error: pymongo raises NotPrimaryError.
            with pytest.raises(NotPrimaryError) as ei:
                list(pending)
            assert ei.value.details["code"] == 11602, ei.value.details
            assert "may roll back" in str(ei.value)
            # Majority-committed data cannot roll back: that cursor goes on.
            rest = [d["_id"] for d in committed]
            assert rest == list(range(2, 10))
        finally:
            for m in others:
                m.resume()
    rs3.wait_healthy()
