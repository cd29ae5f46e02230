"""renameCollection within one database is a catalog rename (docs/decisions.md §38): the
collection and its indexes keep their ids and data, so a collection past the 24 MiB commit limit
renames, the commit is a few hundred bytes whatever the collection's size, reads at a cluster
time below the rename still see the old name, dropTarget replaces the target in the same commit,
indexes stay maintained under the new name, a cursor on the old name is killed, restart and
kill -9 recover it, and on a 3-member set every member holds the same renamed collection, also
after a failover."""

import hashlib
import random

import pytest
from bson import Timestamp
from pymongo import WriteConcern
from pymongo.errors import OperationFailure

from cairn_rs import make_replica_set, wait_for  # noqa: F401


def rename(client, src, dst, **kw):
    return client.admin.command("renameCollection", src, to=dst, **kw)


def queued_bytes(client):
    return client.admin.command("serverStatus")["repl"]["commitBytesQueued"]


def digest(coll):
    h = hashlib.sha256()
    for d in coll.find().sort("_id", 1):
        h.update(repr(sorted(d.items())).encode())
    return h.hexdigest()


def fill(coll, n, pad, seed):
    rng = random.Random(seed)
    for start in range(0, n, 1000):
        coll.insert_many([{"_id": i, "k": rng.randrange(1000), "u": i * 7,
                           "p": "%0*d" % (pad, rng.randrange(10**9))}
                          for i in range(start, min(n, start + 1000))])


def snapshot_find(db, coll, at, flt=None):
    r = db.command({"find": coll, "filter": flt or {}, "sort": {"_id": 1}, "batchSize": 100000,
                    "readConcern": {"level": "snapshot", "atClusterTime": at}})
    return r["cursor"]["firstBatch"]


def test_rename_of_a_40_mib_collection_is_one_small_commit(client, db):
    fill(db.big, 10000, 4000, 1)  # about 40 MiB, past the 24 MiB commit limit
    db.big.create_index("k")
    db.big.create_index("u", unique=True)
    before = digest(db.big)
    q0 = queued_bytes(client)
    assert q0 > 40 * 10**6, q0  # the inserts went through the counter
    rename(client, db.name + ".big", db.name + ".moved")
    q1 = queued_bytes(client)
    # The copy it replaces wrote the whole collection (more than 40 MB) into the log.
    assert q1 - q0 < 4096, "the rename queued %d bytes of oplog" % (q1 - q0)
    assert db.list_collection_names() == ["moved"]
    assert db.moved.count_documents({}) == 10000
    assert digest(db.moved) == before
    v = db.command("validate", "moved")
    assert v["valid"] is True, v
    assert v["keysPerIndex"] == {"_id_": 10000, "k_1": 10000, "u_1": 10000}, v
    # The indexes serve and are maintained under the new name.
    assert "IXSCAN" in str(db.moved.find({"k": 5}).explain()["queryPlanner"]["winningPlan"])
    db.moved.insert_one({"_id": 10000, "k": 5, "u": -1})
    with pytest.raises(OperationFailure) as exc:
        db.moved.insert_one({"_id": 10001, "u": -1})
    assert exc.value.code == 11000
    assert db.moved.count_documents({"k": 5}, hint="k_1") == sum(
        1 for d in db.moved.find({}, {"k": 1}) if d["k"] == 5)
    v = db.command("validate", "moved")
    assert v["valid"] is True and v["keysPerIndex"]["k_1"] == 10001, v


def test_snapshot_read_below_the_rename_sees_the_old_name(client, db):
    w = db.with_options(write_concern=WriteConcern("majority"))
    w.src.insert_many([{"_id": i, "v": "old"} for i in range(50)])
    w.src.create_index("v")
    t1 = db.command("ping")["operationTime"]
    assert isinstance(t1, Timestamp)
    rename(client, db.name + ".src", db.name + ".dst", writeConcern={"w": "majority"})
    w.dst.update_many({}, {"$set": {"v": "new"}})
    w.dst.insert_one({"_id": 50, "v": "new"})
    old = snapshot_find(db, "src", t1)
    assert old == [{"_id": i, "v": "old"} for i in range(50)]
    assert snapshot_find(db, "dst", t1) == []
    # Through the index, which is named after the collection's new name now.
    assert snapshot_find(db, "src", t1, {"v": "old"}) == old
    assert snapshot_find(db, "src", t1, {"v": "new"}) == []
    now = db.command("ping")["operationTime"]
    assert snapshot_find(db, "src", now) == []
    assert snapshot_find(db, "dst", now) == [{"_id": i, "v": "new"} for i in range(51)]
    assert db.src.find_one() is None and db.dst.count_documents({"v": "new"}) == 51


def test_rename_with_drop_target_replaces_its_indexes_of_the_same_name(client, db):
    db.a.insert_many([{"_id": i, "x": i, "y": -i} for i in range(300)])
    db.a.create_index("x", name="shared")
    db.b.insert_many([{"_id": i, "x": "b%d" % i, "z": 1} for i in range(100)])
    db.b.create_index("x", name="shared")
    db.b.create_index("z")
    rename(client, db.name + ".a", db.name + ".b", dropTarget=True)
    assert db.list_collection_names() == ["b"]
    assert sorted(ix["name"] for ix in db.b.list_indexes()) == ["_id_", "shared"]
    assert db.b.count_documents({}) == 300 and db.b.count_documents({"z": 1}) == 0
    assert db.b.find_one({"x": 7}, hint="shared") == {"_id": 7, "x": 7, "y": -7}
    v = db.command("validate", "b")
    assert v["valid"] is True and v["keysPerIndex"] == {"_id_": 300, "shared": 300}, v


def test_renaming_back_and_forth_keeps_every_index_maintained(client, db):
    db.a.insert_many([{"_id": i, "x": i % 9} for i in range(100)])
    db.a.create_index("x")
    for step in range(6):
        src, dst = ("a", "b") if step % 2 == 0 else ("b", "a")
        db[src].insert_one({"_id": 1000 + step, "x": step})  # cached index set under src
        rename(client, "%s.%s" % (db.name, src), "%s.%s" % (db.name, dst))
        db[dst].insert_one({"_id": 2000 + step, "x": step})
        db[dst].update_many({"x": step}, {"$inc": {"x": 100}})
        v = db.command("validate", dst)
        assert v["valid"] is True and v["keysPerIndex"]["x_1"] == 100 + 2 * (step + 1), v
        assert db[dst].count_documents({"x": {"$gte": 100}}) >= 2
    assert db.list_collection_names() == ["a"]


def test_a_cursor_on_the_old_name_is_killed(client, db):
    db.c.insert_many([{"_id": i} for i in range(50)])
    r = db.command({"find": "c", "batchSize": 5})
    cid = r["cursor"]["id"]
    assert cid != 0
    rename(client, db.name + ".c", db.name + ".d")
    with pytest.raises(OperationFailure) as exc:
        db.command({"getMore": cid, "collection": "c"})
    assert exc.value.code == 175  # QueryPlanKilled, as mongod
    assert db.d.count_documents({}) == 50


@pytest.mark.parametrize("crash", [False, True])
def test_rename_survives_restart(server_factory, crash):
    srv = server_factory()
    c = srv.client()
    d = c["renrestart"]
    fill(d.src, 3000, 100, 2)
    d.src.create_index("k")
    d.other.insert_one({"_id": 1})
    t0 = d.command("ping")["operationTime"]
    rename(c, "renrestart.src", "renrestart.dst", dropTarget=True)
    rename(c, "renrestart.other", "renrestart.src")
    d.dst.insert_one({"_id": -1, "k": -1, "u": -1})
    want = digest(d.dst)
    c.close()
    if crash:
        srv.crash_restart()
    else:
        srv.restart()
    c = srv.client()
    d = c["renrestart"]
    assert sorted(d.list_collection_names()) == ["dst", "src"]
    assert digest(d.dst) == want and list(d.src.find()) == [{"_id": 1}]
    # The renames are remembered across the restart: a read below them sees the old names.
    old = snapshot_find(d, "src", t0)
    assert old == [x for x in d.dst.find().sort("_id", 1) if x["_id"] != -1]
    assert len(old) == 3000 and snapshot_find(d, "dst", t0) == []
    assert snapshot_find(d, "other", t0) == [{"_id": 1}]
    v = d.command("validate", "dst")
    assert v["valid"] is True and v["keysPerIndex"] == {"_id_": 3001, "k_1": 3001}, v
    # Ids go on above the renamed collections' (never reused).
    d.fresh.insert_one({"_id": 1})
    d.fresh.create_index("z")
    assert d.command("validate", "fresh")["valid"] is True
    c.close()


# ---- On a 3-member set ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rs(tmp_path_factory, request):
    yield from make_replica_set(tmp_path_factory, request, 3)


def member_state(m, dbname):
    c = m.client(readPreference="secondaryPreferred")
    try:
        d = c[dbname]
        names = sorted(d.list_collection_names())
        out = {}
        for n in names:
            v = d.command("validate", n)
            out[n] = (digest(d[n]), v["valid"], v["keysPerIndex"])
        return out
    finally:
        c.close()


def test_every_member_holds_the_renamed_collection_through_a_failover(rs):
    p = rs.wait_healthy()
    client = rs.client()
    d = client.get_database("rsren", write_concern=WriteConcern("majority"))
    fill(d.src, 4000, 200, 3)
    d.src.create_index("k")
    d.tgt.insert_many([{"_id": i} for i in range(10)])
    rename(client, "rsren.src", "rsren.tgt", dropTarget=True, writeConcern={"w": "majority"})
    d.tgt.insert_one({"_id": -1, "k": 0, "u": 0})
    rs.wait_caught_up()
    want = member_state(p, "rsren")
    assert list(want) == ["tgt"] and want["tgt"][1] is True
    assert want["tgt"][2] == {"_id_": 4001, "k_1": 4001}
    for m in rs.members:
        assert member_state(m, "rsren") == want, m
    client.close()

    p.kill9()
    new = rs.wait_primary(exclude=[p], timeout=60)
    c = new.client()
    c["rsren"].get_collection("tgt", write_concern=WriteConcern("majority")).insert_one(
        {"_id": -2, "k": 1, "u": 1})
    c.close()
    p.start()
    rs.wait_healthy()
    rs.wait_caught_up()
    want = member_state(new, "rsren")
    assert want["tgt"][2] == {"_id_": 4002, "k_1": 4002}
    for m in rs.members:
        assert member_state(m, "rsren") == want, m


# ---- Transactions -----------------------------------------------------------------------------


def test_rename_waits_for_a_transaction_that_wrote_the_source(server, db):
    from txn_helpers import CODES, RawConn, Txn, assert_error, assert_ok, find_docs, seed
    conn, other = RawConn(server), RawConn(server)
    try:
        seed(conn, db.name, "src", [{"_id": 0}])
        t = Txn(conn, db.name)
        assert_ok(t.start({"insert": "src", "documents": [{"_id": 1}]}))
        assert_error(other.run({"renameCollection": db.name + ".src", "to": db.name + ".dst",
                                "maxTimeMS": 300}), CODES["MaxTimeMSExpired"])
        assert [d["_id"] for d in find_docs(other, db.name, "src")] == [0]
        assert_ok(t.commit())
        assert_ok(other.run({"renameCollection": db.name + ".src", "to": db.name + ".dst"}))
        assert [d["_id"] for d in find_docs(other, db.name, "dst")] == [0, 1]
    finally:
        conn.close()
        other.close()


def test_a_transaction_begun_before_the_rename_reads_the_old_name(server, db):
    from txn_helpers import RawConn, Txn, assert_ok, seed, txn_find
    conn, other = RawConn(server), RawConn(server)
    try:
        seed(conn, db.name, "src", [{"_id": 0}, {"_id": 1}])
        seed(conn, db.name, "side", [{"_id": 0}])
        t = Txn(conn, db.name)
        assert_ok(t.start({"find": "side", "filter": {}}))  # the snapshot is taken here
        assert_ok(other.run({"renameCollection": db.name + ".src", "to": db.name + ".dst"}))
        assert [d["_id"] for d in txn_find(t, "src")] == [0, 1]
        assert txn_find(t, "dst") == []
        assert_ok(t.commit())
    finally:
        conn.close()
        other.close()


def test_a_transaction_reads_the_old_name_while_the_rename_awaits_its_majority(rs):
    """The rename is in the primary's overlay only (both secondaries paused, w:1): a
    transaction whose snapshot is older still resolves the old name."""
    p = rs.wait_healthy()
    rs.wait_caught_up()
    client = rs.client()
    d = client.get_database("rspend", write_concern=WriteConcern("majority"))
    d.src.insert_many([{"_id": i} for i in range(20)])
    d.side.insert_one({"_id": 0})
    paused = [m for m in rs.members if m is not p]
    with client.start_session() as s:
        s.start_transaction()
        assert d.side.find_one({}, session=s) == {"_id": 0}  # the snapshot
        for m in paused:
            m.pause()
        try:
            client.admin.command("renameCollection", "rspend.src", to="rspend.dst",
                                 writeConcern={"w": 1})
            assert [x["_id"] for x in d.src.find({}, session=s).sort("_id", 1)] == list(range(20))
            assert list(d.dst.find({}, session=s)) == []
            s.abort_transaction()
        finally:
            for m in paused:
                m.resume()
    rs.wait_healthy()
    rs.wait_caught_up()
    assert d.dst.count_documents({}) == 20 and "src" not in d.list_collection_names()
    client.close()
