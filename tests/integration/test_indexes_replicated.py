"""Indexes on a 3-member set: createIndexes / dropIndexes replicate (every member lists the same
indexes, and validate finds every member's indexes equal to its documents'), builds over
existing data reach the secondaries, and unique indexes are still enforced by a new primary
after the old one is killed. A unique build over existing duplicates fails with 11000 and
leaves no index on any member; concurrent inserts of one key from many clients and from many
transactions through the set have exactly one winner, on every member."""

import random
import threading

import pytest
from pymongo import ReadPreference, WriteConcern
from pymongo.errors import DuplicateKeyError, OperationFailure

from cairn_rs import make_replica_set, wait_for  # noqa: F401
from workers import Workers

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


def test_unique_build_over_duplicates_fails_on_every_member(rs):
    rs.wait_healthy()
    client = rs.client()
    coll = client.idxdup.c.with_options(write_concern=WriteConcern("majority"))
    coll.insert_many([{"_id": i, "k": i % 50} for i in range(2000)])
    coll.create_index("other")
    with pytest.raises(OperationFailure) as exc:
        coll.create_index("k", unique=True)
    assert exc.value.code == 11000
    coll.insert_one({"_id": "last", "k": -1})  # majority: the members applied what came before
    want = [("_id_", {"_id": 1}, False), ("other_1", {"other": 1}, False)]
    wait_same_everywhere(rs, "idxdup", "c", want)
    rs.wait_caught_up()
    for m in rs.members:
        v = member_validate(m, "idxdup", "c")
        assert v["valid"] is True and v["nIndexes"] == 2, (m, v)
        assert v["keysPerIndex"]["other_1"] == 2001, (m, v)
    # Once the duplicates are gone the same build succeeds and reaches every member.
    coll.delete_many({"_id": {"$gte": 50}})
    coll.create_index("k", unique=True)
    wait_same_everywhere(rs, "idxdup", "c", want + [("k_1", {"k": 1}, True)])
    client.close()


def test_concurrent_inserts_of_one_key_one_winner_on_every_member(rs):
    """Statements from many clients, then transactions from many clients, race for the same
    unique keys through the set's primary: exactly one document per key, on every member."""
    rs.wait_healthy()
    setup = rs.client()
    coll = setup.idxrace.c.with_options(write_concern=WriteConcern("majority"))
    coll.create_index("k", unique=True)
    rng = random.Random(SEED)
    n = 12
    lock = threading.Lock()
    won = {"stmt": [], "txn": []}
    barrier = threading.Barrier(n)

    def statement(i, key):
        c = rs.client()
        try:
            co = c.idxrace.c.with_options(write_concern=WriteConcern("majority"))
            barrier.wait()
            try:
                co.insert_one({"_id": "s%d" % i, "k": key})
                with lock:
                    won["stmt"].append(key)
            except DuplicateKeyError:
                pass
        finally:
            c.close()

    def transaction(i):
        c = rs.client()
        try:
            co = c.idxrace.c
            with c.start_session() as s:
                barrier.wait()
                try:
                    with s.start_transaction(write_concern=WriteConcern("majority")):
                        co.insert_one({"_id": "t%d" % i, "k": "txn-key"}, session=s)
                    with lock:
                        won["txn"].append(i)
                except OperationFailure as e:
                    assert e.code in (112, 11000, 251), e.details
        finally:
            c.close()

    keys = [rng.randrange(4) for _ in range(n)]
    w = Workers()
    for i, key in enumerate(keys):
        w.start(statement, i, key)
    w.join()
    w.check()
    assert sorted(won["stmt"]) == sorted(set(keys))
    barrier = threading.Barrier(n)
    w = Workers()
    for i in range(n):
        w.start(transaction, i)
    w.join()
    w.check()
    assert len(won["txn"]) == 1, won
    coll.insert_one({"_id": "last"})
    rs.wait_caught_up()
    want = sorted(["txn-key"] + list(set(keys)) + [None], key=repr)
    for m in rs.members:
        c = m.client(readPreference="secondaryPreferred")
        try:
            got = sorted((d.get("k") for d in c.idxrace.c.find()), key=repr)
            assert got == want, m
            assert c.idxrace.command("validate", "c")["valid"] is True, m
        finally:
            c.close()
    setup.close()
