"""The commands applications and tools call at start-up, against one cairnd: listDatabases
(with admin/config/local), dbStats, collStats and fsync, as mongod 7.0 shapes them."""

import random

import pytest
from pymongo.errors import OperationFailure

import bson


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
