"""TTL indexes: the monitor (ttlMonitorSleepSecs, set to 1 s here) deletes documents whose
indexed date (or a date in an indexed array) is older than expireAfterSeconds, through the
normal replicated write path (every index stays consistent), and leaves alone documents with
later dates, no date, or a non-date value; on a 3-member set the deletes reach every member."""

import datetime

import pytest
from pymongo import WriteConcern

from cairn_rs import make_replica_set, wait_for  # noqa: F401


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


@pytest.fixture
def fast_ttl(client):
    old = client.admin.command("getParameter", 1, ttlMonitorSleepSecs=1)["ttlMonitorSleepSecs"]
    client.admin.command("setParameter", 1, ttlMonitorSleepSecs=1)
    yield
    client.admin.command("setParameter", 1, ttlMonitorSleepSecs=old)


def test_default_period_and_spec(client, coll):
    assert client.admin.command("getParameter", 1, ttlMonitorSleepSecs=1)[
        "ttlMonitorSleepSecs"] == 60
    coll.create_index("at", expireAfterSeconds=3600)
    spec = [ix for ix in coll.list_indexes() if ix["name"] == "at_1"][0]
    assert spec["expireAfterSeconds"] == 3600


def test_expired_documents_are_deleted(fast_ttl, coll):
    now = utcnow()
    old = now - datetime.timedelta(hours=2)
    coll.create_index("at", expireAfterSeconds=3600)
    coll.create_index("kind")
    coll.insert_many([
        {"_id": "old", "at": old, "kind": 1},
        {"_id": "old-array", "at": [now + datetime.timedelta(days=1), old], "kind": 2},
        {"_id": "fresh", "at": now, "kind": 3},
        {"_id": "future", "at": now + datetime.timedelta(days=3)},
        {"_id": "no-date", "at": "yesterday"},
        {"_id": "missing"},
    ])
    wait_for(lambda: coll.count_documents({}) == 4, 30,
             lambda: "expired documents deleted: %s" % [d["_id"] for d in coll.find()])
    assert sorted(d["_id"] for d in coll.find()) == ["fresh", "future", "missing", "no-date"]
    v = coll.database.command("validate", coll.name)
    assert v["valid"] is True, v


@pytest.fixture(scope="module")
def rs(tmp_path_factory, request):
    yield from make_replica_set(tmp_path_factory, request, 3)


def test_ttl_deletes_replicate(rs):
    rs.wait_healthy()
    client = rs.client()
    client.admin.command("setParameter", 1, ttlMonitorSleepSecs=1)
    coll = client.ttlrep.c.with_options(write_concern=WriteConcern("majority"))
    past = utcnow() - datetime.timedelta(seconds=120)
    coll.create_index("at", expireAfterSeconds=60)
    coll.insert_many([{"_id": i, "at": past} for i in range(50)] + [{"_id": "keep", "at": None}])
    wait_for(lambda: coll.count_documents({}) == 1, 30, "TTL deletes on the primary")
    coll.insert_one({"_id": "marker"})  # majority: every member applied the deletes before
    rs.wait_caught_up()
    for m in rs.members:
        c = m.client(readPreference="secondaryPreferred")
        try:
            assert sorted(map(str, (d["_id"] for d in c.ttlrep.c.find()))) == ["keep", "marker"]
            assert c.ttlrep.command("validate", "c")["valid"] is True
        finally:
            c.close()
    client.close()
