"""Indexes on a 3-member set: createIndexes / dropIndexes replicate (every member lists the same
indexes, and validate finds every member's indexes equal to its documents'), builds over
existing data reach the secondaries, and unique indexes are still enforced by a new primary
after the old one is killed."""

import random

import pytest
from pymongo import ReadPreference, WriteConcern
from pymongo.errors import DuplicateKeyError

from cairn_rs import make_replica_set, wait_for  # noqa: F401

SEED = 20261205


@pytest.fixture(scope="module")
def rs(tmp_path_factory, request):
    yield from make_replica_set(tmp_path_factory, request, 3)


def member_indexes(m, db, coll):
    c = m.client()
    try:
        return [(ix["name"], dict(ix["key"]), ix.get("unique", False))
                for ix in c[db][coll].with_options(
                    read_preference=ReadPreference.SECONDARY_PREFERRED).list_indexes()]
    finally:
        c.close()


def member_validate(m, db, coll):
    c = m.client(readPreference="secondaryPreferred")
    try:
        return c[db].command("validate", coll)
    finally:
        c.close()


def wait_same_everywhere(rs, db, coll, want):
    def same():
        return all(m.alive() and member_indexes(m, db, coll) == want for m in rs.members)
    wait_for(same, 30, lambda: "indexes of %s.%s on every member: %s, want %s" % (
        db, coll, [member_indexes(m, db, coll) for m in rs.members if m.alive()], want))


def test_indexes_replicate_with_their_entries(rs):
    rng = random.Random(SEED)
    rs.wait_healthy()
    client = rs.client()
    coll = client.idxrep.c.with_options(write_concern=WriteConcern("majority"))
    coll.insert_many([{"_id": i, "a": rng.randrange(10), "t": [rng.randrange(5)] * 2}
                      for i in range(300)])
    coll.create_index("a")
    coll.create_index([("t", 1), ("a", -1)], unique=False)
    coll.create_index("u", unique=True, sparse=True)
    coll.update_many({"a": {"$lt": 3}}, {"$push": {"t": 9}})
    coll.delete_many({"a": 9})
    coll.insert_one({"_id": "last", "u": 1})  # majority: every member has applied it
    want = [("_id_", {"_id": 1}, False), ("a_1", {"a": 1}, False),
            ("t_1_a_-1", {"t": 1, "a": -1}, False), ("u_1", {"u": 1}, True)]
    wait_same_everywhere(rs, "idxrep", "c", want)
    rs.wait_caught_up()
    n = coll.count_documents({})
    for m in rs.members:
        v = member_validate(m, "idxrep", "c")
        assert v["valid"] is True, (m, v)
        assert v["nrecords"] == n, m
        assert v["keysPerIndex"]["a_1"] == n, m
    coll.drop_index("a_1")
    wait_same_everywhere(rs, "idxrep", "c", [want[0], want[2], want[3]])
    client.close()


def test_unique_enforced_after_failover(rs):
    rs.wait_healthy()
    client = rs.client(retryWrites=True)
    coll = client.idxfail.c.with_options(write_concern=WriteConcern("majority"))
    coll.create_index("email", unique=True)
    coll.insert_many([{"email": "%d@x" % i} for i in range(20)])
    old = rs.primary()
    rs.kill9(old)
    new = rs.wait_primary(exclude=[old])
    assert new is not old
    with pytest.raises(DuplicateKeyError) as exc:
        coll.insert_one({"email": "7@x"})
    assert exc.value.details["keyValue"] == {"email": "7@x"}
    coll.insert_one({"email": "new@x"})
    rs.restart(old)
    rs.wait_healthy()
    rs.wait_caught_up()
    for m in rs.members:
        v = member_validate(m, "idxfail", "c")
        assert v["valid"] is True and v["keysPerIndex"]["email_1"] == 21, (m, v)
    client.close()
