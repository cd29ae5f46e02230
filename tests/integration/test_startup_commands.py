"""The commands applications and tools call at start-up, as mongod 7.0 shapes them: against one
cairnd, listDatabases (with admin/config/local), dbStats, collStats and $collStats, fsync,
renameCollection, collMod (index hidden / expireAfterSeconds) and create refusing options not
built yet (nothing is created in their place); on a 3-member set, renameCollection and collMod
replicate (every member sees the result, and validate finds it consistent)."""

import datetime
import random
import threading

import pytest
from pymongo.errors import OperationFailure

import bson
from pymongo import ReadPreference, WriteConcern

from cairn_rs import make_replica_set, wait_for  # noqa: F401


def command_code(db, cmd, *args, **kw):
    with pytest.raises(OperationFailure) as exc:
        db.command(cmd, *args, **kw)
    return exc.value.code


# ---- listDatabases ----------------------------------------------------------------------------


def test_list_databases_lists_admin_config_local_in_name_order(client, db):
    db.c.insert_one({"x": 1})
    r = client.admin.command("listDatabases")
    names = [d["name"] for d in r["databases"]]
    assert {"admin", "config", "local", db.name} <= set(names)
    assert names == sorted(names)
    for d in r["databases"]:
        assert isinstance(d["sizeOnDisk"], float)
        assert isinstance(d["empty"], bool)
    mine = next(d for d in r["databases"] if d["name"] == db.name)
    assert mine["empty"] is False
    assert isinstance(r["totalSize"], float)
    assert r["totalSize"] == sum(d["sizeOnDisk"] for d in r["databases"])
    assert isinstance(r["totalSizeMb"], int)


def test_list_databases_name_only_filter_and_authorized(client, db):
    db.c.insert_one({"x": 1})
    r = client.admin.command("listDatabases", nameOnly=True, authorizedDatabases=True)
    assert all(set(d) == {"name"} for d in r["databases"])
    assert "totalSize" not in r
    r = client.admin.command("listDatabases", filter={"name": {"$in": ["local", db.name]}})
    assert sorted(d["name"] for d in r["databases"]) == sorted(["local", db.name])
    assert client.list_database_names().count("admin") == 1


def test_list_databases_size_on_disk_is_the_engine_estimate_after_fsync(client, db):
    rng = random.Random(8)
    db.c.insert_many([{"_id": i, "pad": "%030d" % rng.randrange(10**30)} for i in range(2000)])
    client.admin.command("fsync")
    r = client.admin.command("listDatabases", filter={"name": db.name})
    (entry,) = r["databases"]
    assert entry["sizeOnDisk"] > 0
    # Compressed, but not below a few bytes a document and not above the raw size with
    # keys and versions many times over.
    raw = sum(len(bson.encode(d)) for d in db.c.find())
    assert raw / 50 < entry["sizeOnDisk"] < raw * 10


def test_fsync_lock_is_refused(client):
    assert command_code(client.admin, "fsync", lock=True) == 238


# ---- dbStats / collStats ----------------------------------------------------------------------


def test_coll_stats_counts_and_sizes_the_visible_documents(db):
    docs = [{"_id": i, "a": i % 7, "s": "x" * (i % 50)} for i in range(500)]
    db.c.insert_many(docs)
    db.c.delete_many({"a": 0})
    db.c.create_index("a")
    db.c.create_index([("s", 1), ("a", -1)])
    db.client.admin.command("fsync")
    live = [d for d in docs if d["a"] != 0]
    size = sum(len(bson.encode(d)) for d in live)
    r = db.command("collStats", "c")
    assert r["ns"] == db.name + ".c"
    assert r["count"] == len(live)
    assert r["size"] == size
    assert r["avgObjSize"] == size // len(live)
    assert r["nindexes"] == 3
    assert set(r["indexSizes"]) == {"_id_", "a_1", "s_1_a_-1"}
    assert r["indexSizes"]["a_1"] > 0 and r["indexSizes"]["s_1_a_-1"] > 0
    assert r["totalIndexSize"] == sum(r["indexSizes"].values())
    assert r["storageSize"] > 0
    assert r["totalSize"] == r["storageSize"] + r["totalIndexSize"]
    assert r["capped"] is False
    assert r["scaleFactor"] == 1


def test_coll_stats_scale_divides_sizes(db):
    db.c.insert_many([{"_id": i, "s": "y" * 200} for i in range(300)])
    db.client.admin.command("fsync")
    r1 = db.command("collStats", "c")
    rk = db.command("collStats", "c", scale=1024)
    assert rk["scaleFactor"] == 1024
    assert rk["size"] == r1["size"] // 1024
    assert rk["count"] == r1["count"]
    assert rk["avgObjSize"] == r1["avgObjSize"]  # never scaled, as mongod
    assert command_code(db, "collStats", "c", scale=0) == 2
    assert command_code(db, "collStats", "c", scale="big") == 14


def test_coll_stats_of_a_missing_collection_answers_zeros(db):
    r = db.command("collStats", "nothere")
    assert r["ok"] == 1
    assert r["count"] == 0 and r["size"] == 0 and r["nindexes"] == 0
    assert r["indexSizes"] == {} and "avgObjSize" not in r
    assert "nothere" not in db.list_collection_names()


def test_coll_stats_stage_reports_storage_stats_and_count(db):
    db.c.insert_many([{"_id": i, "a": i % 3} for i in range(60)])
    db.c.create_index("a")
    db.client.admin.command("fsync")
    direct = db.command("collStats", "c")
    (doc,) = list(db.c.aggregate([{"$collStats": {"storageStats": {}, "count": {}}}]))
    assert doc["ns"] == db.name + ".c" and doc["count"] == 60
    ss = doc["storageStats"]
    for field in ("size", "count", "avgObjSize", "nindexes", "indexSizes", "totalIndexSize"):
        assert ss[field] == direct[field], field
    (scaled,) = list(db.c.aggregate([{"$collStats": {"storageStats": {"scale": 1024}}},
                                     {"$project": {"s": "$storageStats.scaleFactor", "_id": 0}}]))
    assert scaled == {"s": 1024}
    assert "count" not in scaled
    with pytest.raises(OperationFailure) as exc:
        list(db.c.aggregate([{"$collStats": {"latencyStats": {}}}]))
    assert exc.value.code == 238
    with pytest.raises(OperationFailure) as exc:
        list(db.nothere.aggregate([{"$collStats": {"count": {}}}]))
    assert exc.value.code == 26
    with pytest.raises(OperationFailure) as exc:
        list(db.c.aggregate([{"$match": {}}, {"$collStats": {"count": {}}}]))
    assert exc.value.code == 238  # only as the first stage


def test_db_stats_sums_its_collections(db):
    db.a.insert_many([{"_id": i, "v": "a" * i} for i in range(100)])
    db.b.insert_many([{"_id": i} for i in range(40)])
    db.b.create_index("x")
    db.client.admin.command("fsync")
    size = sum(len(bson.encode(d)) for d in db.a.find()) + sum(len(bson.encode(d)) for d in db.b.find())
    r = db.command("dbStats")
    assert r["db"] == db.name
    assert r["collections"] == 2 and r["views"] == 0
    assert r["objects"] == 140
    assert r["dataSize"] == size
    assert r["avgObjSize"] == pytest.approx(size / 140)
    assert r["indexes"] == 3
    assert r["storageSize"] > 0
    assert r["totalSize"] == r["storageSize"] + r["indexSize"]
    rk = db.command("dbStats", scale=1024)
    assert rk["dataSize"] == pytest.approx(size / 1024)
    assert rk["scaleFactor"] == 1024


def test_db_stats_of_a_missing_database_answers_zeros(client):
    r = client["t_no_such_db_startup"].command("dbStats")
    assert r["collections"] == 0 and r["objects"] == 0 and r["dataSize"] == 0
    assert r["indexes"] == 0


# ---- renameCollection -------------------------------------------------------------------------


def rename(client, src, dst, **kw):
    return client.admin.command("renameCollection", src, to=dst, **kw)


def test_rename_moves_documents_and_indexes(client, db):
    docs = [{"_id": i, "a": i % 5, "tags": [i, i + 1]} for i in range(200)]
    db.src.insert_many(docs)
    db.src.create_index("a")
    db.src.create_index("tags", unique=False, name="tags_ix")
    db.src.create_index("u", unique=True, sparse=True)
    specs = {ix["name"]: ix for ix in db.src.list_indexes()}
    rename(client, db.name + ".src", db.name + ".dst")
    assert "src" not in db.list_collection_names()
    assert sorted(db.dst.find(), key=lambda d: d["_id"]) == docs
    moved = {ix["name"]: ix for ix in db.dst.list_indexes()}
    assert {n: s["key"] for n, s in moved.items()} == {n: s["key"] for n, s in specs.items()}
    assert moved["u_1"]["unique"] is True
    assert db.command("validate", "dst")["valid"] is True
    # The moved indexes serve queries and keep enforcing uniqueness.
    plan = db.dst.find({"a": 3}).explain()["queryPlanner"]["winningPlan"]
    assert "IXSCAN" in str(plan)
    assert db.dst.count_documents({"a": 3}) == 40
    db.dst.insert_one({"_id": 1000, "u": 1})
    with pytest.raises(OperationFailure) as exc:
        db.dst.insert_one({"_id": 1001, "u": 1})
    assert exc.value.code == 11000
    assert db.src.find_one() is None


def test_rename_across_databases(client, db):
    other = client[db.name + "_2"]
    db.src.insert_many([{"_id": i, "b": -i} for i in range(50)])
    db.src.create_index("b")
    rename(client, db.name + ".src", other.name + ".moved")
    assert other.moved.count_documents({}) == 50
    assert [ix["name"] for ix in other.moved.list_indexes()] == ["_id_", "b_1"]
    assert "src" not in db.list_collection_names()
    client.drop_database(other.name)


def test_rename_error_codes(client, db):
    db.a.insert_one({"_id": 1})
    db.b.insert_one({"_id": 2})
    n = db.name
    codes = {}
    for label, src, dst, kw in [
        ("missing", n + ".nothere", n + ".x", {}),
        ("exists", n + ".a", n + ".b", {}),
        ("itself", n + ".a", n + ".a", {}),
        ("system", n + ".a", n + ".system.x", {}),
        ("badns", n + ".a", "nodot", {}),
    ]:
        with pytest.raises(OperationFailure) as exc:
            rename(client, src, dst, **kw)
        codes[label] = exc.value.code
    assert codes == {"missing": 26, "exists": 48, "itself": 20, "system": 20, "badns": 73}
    assert db.a.find_one() == {"_id": 1} and db.b.find_one() == {"_id": 2}
    with pytest.raises(OperationFailure) as exc:
        db.command("renameCollection", n + ".a", to=n + ".c")
    assert exc.value.code == 13  # admin only


def test_rename_drop_target_replaces_it(client, db):
    db.a.insert_many([{"_id": i} for i in range(10)])
    db.b.insert_many([{"_id": i, "old": True} for i in range(3)])
    db.b.create_index("old")
    rename(client, db.name + ".a", db.name + ".b", dropTarget=True)
    assert sorted(db.list_collection_names()) == ["b"]
    assert db.b.count_documents({}) == 10 and db.b.count_documents({"old": True}) == 0
    assert [ix["name"] for ix in db.b.list_indexes()] == ["_id_"]


def test_rename_under_concurrent_inserts_loses_no_acknowledged_write(server, client, db):
    db.src.insert_many([{"_id": i} for i in range(100)])
    acked = []
    stop = threading.Event()

    def writer():
        c = server.client()
        try:
            i = 100
            while not stop.is_set():
                c[db.name].src.insert_one({"_id": i})
                acked.append(i)
                i += 1
        finally:
            c.close()

    t = threading.Thread(target=writer)
    t.start()
    wait_for(lambda: len(acked) > 20, 30, lambda: "writer made no progress")
    rename(client, db.name + ".src", db.name + ".dst")
    n_at_rename = len(acked)
    wait_for(lambda: len(acked) > n_at_rename + 20, 30, lambda: "writer stalled after rename")
    stop.set()
    t.join()
    moved = {d["_id"] for d in db.dst.find()}
    recreated = {d["_id"] for d in db.src.find()}
    assert not moved & recreated
    assert moved | recreated == set(range(100)) | set(acked)
    assert moved >= set(range(100))


def test_rename_across_databases_of_a_collection_past_one_commit_fails_whole(client, db):
    # About 28 MB of documents: more than the largest replicated entry (24 MiB). A rename
    # across databases copies (within one: test_rename_in_database.py).
    for k in range(7):
        db.big.insert_many([{"_id": k * 1000 + i, "p": "x" * 4000} for i in range(1000)])
    with pytest.raises(OperationFailure) as exc:
        rename(client, db.name + ".big", db.name + "_other.moved")
    assert exc.value.code == 10334
    assert db.list_collection_names() == ["big"]
    assert db.big.count_documents({}) == 7000
    assert "moved" not in client[db.name + "_other"].list_collection_names()


# ---- collMod ----------------------------------------------------------------------------------


def index_spec(coll, name):
    return next(ix for ix in coll.list_indexes() if ix["name"] == name)


def winning(coll, flt):
    return str(coll.find(flt).explain()["queryPlanner"]["winningPlan"])


def test_coll_mod_hides_and_unhides_an_index_by_name_and_key_pattern(db):
    db.c.insert_many([{"_id": i, "a": i % 10, "t": [i, -i]} for i in range(100)])
    db.c.create_index("a")
    db.c.create_index("t")
    assert "IXSCAN" in winning(db.c, {"a": 3})
    r = db.command("collMod", "c", index={"name": "a_1", "hidden": True})
    assert (r["hidden_old"], r["hidden_new"]) == (False, True)
    assert index_spec(db.c, "a_1")["hidden"] is True
    assert "IXSCAN" not in winning(db.c, {"a": 3})  # a hidden index is not planned
    assert db.c.count_documents({"a": 3}) == 10
    db.c.insert_one({"_id": 500, "a": 3})  # still maintained while hidden
    r = db.command("collMod", "c", index={"keyPattern": {"a": 1}, "hidden": False})
    assert (r["hidden_old"], r["hidden_new"]) == (True, False)
    assert "hidden" not in index_spec(db.c, "a_1")
    assert "IXSCAN" in winning(db.c, {"a": 3})
    assert db.c.count_documents({"a": 3}) == 11
    r = db.command("collMod", "c", index={"name": "a_1", "hidden": False})
    assert "hidden_old" not in r  # no change, as mongod
    # The multikey index keeps its entries and marker through a change.
    db.command("collMod", "c", index={"name": "t_1", "hidden": True})
    db.command("collMod", "c", index={"name": "t_1", "hidden": False})
    assert db.c.count_documents({"t": {"$gt": 95}}) == 4
    v = db.command("validate", "c")
    assert v["valid"] is True and v["keysPerIndex"]["t_1"] == 200


def test_coll_mod_under_concurrent_inserts_keeps_the_index_complete(server, db):
    db.c.create_index("a")
    stop = threading.Event()
    done = []

    def writer():
        c = server.client()
        try:
            i = 0
            while not stop.is_set():
                c[db.name].c.insert_one({"_id": i, "a": i % 13})
                done.append(i)
                i += 1
        finally:
            c.close()

    t = threading.Thread(target=writer)
    t.start()
    try:
        for k in range(6):
            n = len(done)
            wait_for(lambda: len(done) > n + 5, 30, lambda: "writer made no progress")
            db.command("collMod", "c", index={"name": "a_1", "hidden": k % 2 == 0})
    finally:
        stop.set()
        t.join()
    v = db.command("validate", "c")
    assert v["valid"] is True, v
    assert v["keysPerIndex"]["a_1"] == len(done) == db.c.count_documents({})


def test_coll_mod_changes_expire_after_seconds(db):
    db.c.create_index("at", expireAfterSeconds=3600)
    db.c.create_index("b")
    r = db.command("collMod", "c", index={"keyPattern": {"at": 1}, "expireAfterSeconds": 60})
    assert (r["expireAfterSeconds_old"], r["expireAfterSeconds_new"]) == (3600, 60)
    assert index_spec(db.c, "at_1")["expireAfterSeconds"] == 60
    codes = {}
    for label, ix in [
        ("not_ttl", {"name": "b_1", "expireAfterSeconds": 5}),
        ("missing", {"name": "nope", "hidden": True}),
        ("both", {"name": "b_1", "keyPattern": {"b": 1}, "hidden": True}),
        ("neither", {"hidden": True}),
        ("nothing", {"name": "b_1"}),
        ("negative", {"name": "at_1", "expireAfterSeconds": -1}),
    ]:
        with pytest.raises(OperationFailure) as exc:
            db.command("collMod", "c", index=ix)
        codes[label] = exc.value.code
    assert codes == {"not_ttl": 72, "missing": 27, "both": 72, "neither": 72, "nothing": 72,
                     "negative": 72}
    assert index_spec(db.c, "at_1")["expireAfterSeconds"] == 60


def test_coll_mod_shortened_ttl_is_what_the_monitor_applies(client, db):
    old = client.admin.command("getParameter", 1, ttlMonitorSleepSecs=1)["ttlMonitorSleepSecs"]
    client.admin.command("setParameter", 1, ttlMonitorSleepSecs=1)
    try:
        past = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - \
            datetime.timedelta(seconds=120)
        db.c.insert_many([{"_id": i, "at": past} for i in range(20)])
        db.c.insert_one({"_id": "fresh", "at": past + datetime.timedelta(days=1)})
        db.c.create_index("at", expireAfterSeconds=3600)
        db.command("collMod", "c", index={"name": "at_1", "expireAfterSeconds": 60})
        wait_for(lambda: db.c.count_documents({}) == 1, 30,
                 lambda: "%d documents left" % db.c.count_documents({}))
        assert db.c.find_one()["_id"] == "fresh"
    finally:
        client.admin.command("setParameter", 1, ttlMonitorSleepSecs=old)


def test_coll_mod_other_options_are_refused_clearly(db):
    db.c.insert_one({"_id": 1})
    for opt in [{"validator": {"a": {"$exists": True}}}, {"validationLevel": "strict"},
                {"validationAction": "warn"}, {"changeStreamPreAndPostImages": {"enabled": True}},
                {"expireAfterSeconds": 10}]:
        with pytest.raises(OperationFailure) as exc:
            db.command("collMod", "c", **opt)
        assert exc.value.code == 238, opt
        assert "not supported" in str(exc.value)
    assert command_code(db, "collMod", "c", bogus=1) == 40415
    assert command_code(db, "collMod", "nothere") == 26
    assert db.command("collMod", "c")["ok"] == 1


# ---- create with options not built yet --------------------------------------------------------


@pytest.mark.parametrize("opts", [
    {"capped": True, "size": 4096},
    {"capped": True, "size": 4096, "max": 10},
    {"timeseries": {"timeField": "t"}},
    {"validator": {"a": {"$type": "int"}}},
    {"validationLevel": "moderate"},
    {"validationAction": "warn"},
    {"clusteredIndex": {"key": {"_id": 1}, "unique": True}},
    {"changeStreamPreAndPostImages": {"enabled": True}},
    {"expireAfterSeconds": 60},
    {"viewOn": "other", "pipeline": []},
    {"encryptedFields": {"fields": []}},
], ids=lambda o: next(iter(o)))
def test_create_with_an_unbuilt_option_is_refused_and_creates_nothing(db, opts):
    with pytest.raises(OperationFailure) as exc:
        db.create_collection("c", **opts)
    assert exc.value.code == 238
    assert "not supported" in str(exc.value)
    assert "c" not in db.list_collection_names()
    # What mongod does for a missing collection: the insert creates a plain one.
    db.c.insert_one({"_id": 1})
    assert db.list_collection_names() == ["c"]
    assert list(db.list_collections())[0]["options"] == {}


def test_create_accepts_the_defaults_of_unbuilt_options(db):
    db.create_collection("c", capped=False, validator={}, validationLevel="strict",
                         validationAction="error")
    assert db.list_collection_names() == ["c"]


# ---- On a 3-member set ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rs(tmp_path_factory, request):
    yield from make_replica_set(tmp_path_factory, request, 3)


def on_member(m, fn):
    c = m.client(readPreference="secondaryPreferred")
    try:
        return fn(c)
    finally:
        c.close()


def member_view(m, dbname, coll):
    def view(c):
        d = c[dbname]
        return (sorted(d.list_collection_names()),
                [(ix["name"], dict(ix["key"])) for ix in d[coll].list_indexes()]
                if coll in d.list_collection_names() else [],
                d[coll].with_options(read_preference=ReadPreference.SECONDARY_PREFERRED)
                .count_documents({}))
    return on_member(m, view)


def wait_every_member(rs, dbname, coll, want):
    def same():
        return all(m.alive() and member_view(m, dbname, coll) == want for m in rs.members)
    wait_for(same, 30, lambda: "members: %s, want %s" % (
        [member_view(m, dbname, coll) for m in rs.members if m.alive()], want))


def test_rename_replicates_to_every_member(rs):
    rs.wait_healthy()
    client = rs.client()
    d = client.get_database("rsrename", write_concern=WriteConcern("majority"))
    d.src.insert_many([{"_id": i, "a": i % 4} for i in range(120)])
    d.src.create_index("a")
    d.keep.insert_one({"_id": 0})
    client.admin.command("renameCollection", "rsrename.src", to="rsrename.dst",
                         writeConcern={"w": "majority"})
    wait_every_member(rs, "rsrename", "dst", (["dst", "keep"], [("_id_", {"_id": 1}),
                                                             ("a_1", {"a": 1})], 120))
    for m in rs.members:
        v = on_member(m, lambda c: c.rsrename.command("validate", "dst"))
        assert v["valid"] is True and v["keysPerIndex"]["a_1"] == 120, (m, v)
    client.close()


def test_coll_mod_replicates_to_every_member(rs):
    rs.wait_healthy()
    client = rs.client()
    d = client.get_database("rscollmod", write_concern=WriteConcern("majority"))
    d.c.insert_many([{"_id": i, "a": i % 4, "at": i} for i in range(80)])
    d.c.create_index("a")
    d.c.create_index("at", expireAfterSeconds=3600)
    d.command("collMod", "c", index={"name": "a_1", "hidden": True},
              writeConcern={"w": "majority"})
    d.command("collMod", "c", index={"name": "at_1", "expireAfterSeconds": 7},
              writeConcern={"w": "majority"})

    def specs(m):
        return on_member(m, lambda c: {ix["name"]: (ix.get("hidden", False),
                                                    ix.get("expireAfterSeconds"))
                                       for ix in c.rscollmod.c.list_indexes()})
    want = {"_id_": (False, None), "a_1": (True, None), "at_1": (False, 7)}
    wait_for(lambda: all(m.alive() and specs(m) == want for m in rs.members), 30,
             lambda: "specs: %s" % [specs(m) for m in rs.members if m.alive()])
    for m in rs.members:
        v = on_member(m, lambda c: c.rscollmod.command("validate", "c"))
        assert v["valid"] is True and v["keysPerIndex"]["a_1"] == 80, (m, v)
    client.close()
