"""createIndexes / listIndexes / dropIndexes / validate against one cairnd: what is created,
what listIndexes shows, mongod's error codes for refused specs and conflicts, kinds not built
yet refused without creating anything, and index maintenance checked through validate."""

import pytest
from pymongo import ASCENDING, DESCENDING
from pymongo.errors import OperationFailure


def names(coll):
    return [ix["name"] for ix in coll.list_indexes()]


def command_code(db, cmd):
    with pytest.raises(OperationFailure) as exc:
        db.command(cmd)
    return exc.value.code


def test_create_list_drop_roundtrip(coll):
    coll.insert_many([{"_id": i, "a": i % 3, "b": str(i)} for i in range(30)])
    assert coll.create_index("a") == "a_1"
    assert coll.create_index([("a", ASCENDING), ("b", DESCENDING)]) == "a_1_b_-1"
    specs = {ix["name"]: ix for ix in coll.list_indexes()}
    assert list(specs) == ["_id_", "a_1", "a_1_b_-1"]
    assert specs["a_1_b_-1"]["key"] == {"a": 1, "b": -1}
    assert specs["a_1"]["v"] == 2
    coll.drop_index("a_1")
    assert names(coll) == ["_id_", "a_1_b_-1"]
    coll.drop_index([("a", 1), ("b", -1)])  # by key pattern
    assert names(coll) == ["_id_"]


def test_reply_counts_and_identical_request_is_a_noop(db):
    r = db.command("createIndexes", "c", indexes=[{"key": {"a": 1}, "name": "a_1"}])
    assert r["numIndexesBefore"] == 1 and r["numIndexesAfter"] == 2
    assert r["createdCollectionAutomatically"] is True
    r = db.command("createIndexes", "c", indexes=[{"key": {"a": 1}, "name": "a_1"}])
    assert r["numIndexesBefore"] == 2 and r["numIndexesAfter"] == 2
    assert r["note"] == "all indexes already exist"
    assert "c" in db.list_collection_names()


def test_options_are_listed(coll):
    coll.create_index("u", unique=True)
    coll.create_index("s", sparse=True)
    coll.create_index("p", partialFilterExpression={"p": {"$gt": 3}})
    coll.create_index("h", hidden=True)
    specs = {ix["name"]: ix for ix in coll.list_indexes()}
    assert specs["u_1"]["unique"] is True
    assert specs["s_1"]["sparse"] is True
    assert specs["p_1"]["partialFilterExpression"] == {"p": {"$gt": 3}}
    assert specs["h_1"]["hidden"] is True


@pytest.mark.parametrize("spec,code", [
    ({"key": {}, "name": "x"}, 67),
    ({"key": {"a": 0}, "name": "x"}, 67),
    ({"key": {"a": "bogus"}, "name": "x"}, 67),
    ({"key": {"a": 1}, "name": ""}, 67),
    ({"key": {"a": 1}}, 9),
    ({"key": {"a": 1}, "name": "x", "sparse": True, "partialFilterExpression": {"a": 1}}, 67),
    ({"key": {"a": 1}, "name": "x", "notAnOption": 1}, 197),
    ({"key": {"a": "text"}, "name": "x"}, 238),
    ({"key": {"a": "2dsphere"}, "name": "x"}, 238),
    ({"key": {"a": "hashed"}, "name": "x"}, 238),
    ({"key": {"a": "2d"}, "name": "x"}, 238),
    ({"key": {"$**": 1}, "name": "x"}, 238),
    ({"key": {"a": 1}, "name": "x", "collation": {"locale": "fr"}}, 238),
    ({"key": {"a": 1}, "name": "x", "expireAfterSeconds": "60"}, 67),
    ({"key": {"a": 1, "b": 1}, "name": "x", "expireAfterSeconds": 60}, 67),
])
def test_refused_specs_create_nothing(db, spec, code):
    assert command_code(db, {"createIndexes": "c", "indexes": [spec]}) == code
    assert "c" not in db.list_collection_names()


def test_conflicts_use_mongod_codes(coll):
    coll.create_index("a", name="a_1")
    # Same keys, another name: 85.
    with pytest.raises(OperationFailure) as exc:
        coll.create_index("a", name="other")
    assert exc.value.code == 85
    # Same keys, other options, another name: 85.
    with pytest.raises(OperationFailure) as exc:
        coll.create_index("a", name="u", unique=True)
    assert exc.value.code == 85
    # Same name, other keys: 86.
    with pytest.raises(OperationFailure) as exc:
        coll.create_index("b", name="a_1")
    assert exc.value.code == 86
    # Same name and keys, other options: 85.
    with pytest.raises(OperationFailure) as exc:
        coll.create_index("a", name="a_1", unique=True)
    assert exc.value.code == 85
    assert names(coll) == ["_id_", "a_1"]


def test_one_bad_spec_fails_the_whole_command(db):
    code = command_code(db, {"createIndexes": "c", "indexes": [
        {"key": {"a": 1}, "name": "a_1"}, {"key": {"b": "text"}, "name": "b_text"}]})
    assert code == 238
    assert "c" not in db.list_collection_names()


def test_drop_errors(coll):
    coll.create_index("a")
    assert command_code(coll.database, {"dropIndexes": coll.name, "index": "nope"}) == 27
    assert command_code(coll.database, {"dropIndexes": coll.name, "index": {"zz": 1}}) == 27
    assert command_code(coll.database, {"dropIndexes": coll.name, "index": "_id_"}) == 72
    assert command_code(coll.database, {"dropIndexes": coll.name, "index": ["a_1", "nope"]}) == 27
    assert names(coll) == ["_id_", "a_1"]  # nothing dropped by the failed list
    assert command_code(coll.database, {"dropIndexes": "missing", "index": "*"}) == 26
    r = coll.database.command("dropIndexes", coll.name, index="*")
    assert r["nIndexesWas"] == 2
    assert names(coll) == ["_id_"]


def test_index_namespaces_stay_hidden(db):
    db.c.create_index("a")
    assert db.list_collection_names() == ["c"]
    # pymongo refuses such names itself: send the commands raw.
    assert command_code(db, {"insert": "c.$a_1", "documents": [{"x": 1}]}) == 73
    assert command_code(db, {"find": "c.$a_1"}) == 73


def test_drop_collection_drops_its_indexes(db):
    db.c.create_index("a")
    db.c.drop()
    db.c.insert_one({"a": 1})
    assert names(db.c) == ["_id_"]
    assert db.command("validate", "c")["valid"] is True


def test_maintenance_through_every_write_path(coll):
    coll.create_index("a")
    coll.create_index([("t", 1), ("a", -1)])
    coll.insert_many([{"_id": i, "a": i, "t": [i, i + 1]} for i in range(20)])
    coll.update_one({"_id": 1}, {"$set": {"a": 100}})
    coll.update_many({"a": {"$lt": 5}}, {"$inc": {"a": 1}})
    coll.replace_one({"_id": 2}, {"a": "two", "t": []})
    coll.find_one_and_update({"_id": 3}, {"$push": {"t": 99}})
    coll.find_one_and_delete({"_id": 4})
    coll.delete_many({"a": {"$gt": 15}})
    coll.update_one({"_id": 50}, {"$set": {"a": 5, "t": [1]}}, upsert=True)
    v = coll.database.command("validate", coll.name)
    assert v["valid"] is True, v
    n = coll.count_documents({})
    assert v["nrecords"] == n
    assert v["keysPerIndex"]["a_1"] == n
    multikey = sum(max(1, len(set(d["t"]))) for d in coll.find())
    assert v["keysPerIndex"]["t_1_a_-1"] == multikey


def test_validate_missing_collection(db):
    assert command_code(db, {"validate": "nope"}) == 26


def test_build_while_writes_go_on_equals_a_rebuild(server, coll):
    """A build over enough data to commit in several chunks, while other clients insert,
    update and delete: the finished index equals the index rebuilt from the documents."""
    import random
    import threading

    from workers import Workers

    rng = random.Random(20261205)
    pad = "p" * 200
    coll.insert_many([{"_id": i, "a": rng.randrange(1000), "pad": pad} for i in range(20000)])
    stop = threading.Event()

    def writer(seed):
        r = random.Random(seed)
        c = server.client()
        try:
            w = c[coll.database.name][coll.name]
            while not stop.is_set():
                i = r.randrange(25000)
                op = r.random()
                if op < 0.4:
                    w.update_one({"_id": i}, {"$set": {"a": r.randrange(1000)}})
                elif op < 0.7:
                    w.replace_one({"_id": i}, {"a": [r.randrange(5), 7], "pad": pad},
                                  upsert=True)
                else:
                    w.delete_one({"_id": i})
        finally:
            c.close()

    ws = Workers()
    for s in range(3):
        ws.start(writer, s)
    try:
        coll.create_index("a")
        coll.create_index([("a", -1), ("_id", 1)], name="a_id")
    finally:
        stop.set()
        ws.finish()
    v = coll.database.command("validate", coll.name)
    assert v["valid"] is True, v
    assert v["keysPerIndex"]["a_id"] == v["keysPerIndex"]["a_1"]


def test_create_index_inside_a_transaction_on_a_new_collection(client, db):
    with client.start_session() as s:
        s.start_transaction()
        db.command("createIndexes", "t", indexes=[
            {"key": {"u": 1}, "name": "u_1", "unique": True}], session=s)
        db.t.insert_one({"_id": 1, "u": 5}, session=s)
        with pytest.raises(OperationFailure) as exc:
            db.t.insert_one({"_id": 2, "u": 5}, session=s)
        assert exc.value.code == 11000
        s.abort_transaction()
    assert "t" not in db.list_collection_names()  # nothing of it remains
    with client.start_session() as s:
        s.start_transaction()
        db.command("createIndexes", "t", indexes=[
            {"key": {"u": 1}, "name": "u_1", "unique": True}], session=s)
        db.t.insert_one({"_id": 1, "u": 5}, session=s)
        # As mongod: a collection the transaction already wrote is no longer empty.
        with pytest.raises(OperationFailure) as exc:
            db.command("createIndexes", "t", indexes=[{"key": {"v": 1}, "name": "v_1"}],
                       session=s)
        assert exc.value.code == 263
        s.abort_transaction()
    assert "t" not in db.list_collection_names()
    with client.start_session() as s:
        with s.start_transaction():
            db.command("createIndexes", "t", indexes=[
                {"key": {"u": 1}, "name": "u_1", "unique": True}], session=s)
            db.t.insert_one({"_id": 1, "u": 5}, session=s)
    assert names(db.t) == ["_id_", "u_1"]
    assert db.command("validate", "t")["keysPerIndex"]["u_1"] == 1


def test_drop_database_drops_indexes(client, db):
    db.c.create_index("a")
    db.c.insert_one({"a": 1})
    client.drop_database(db.name)
    db.c.insert_one({"a": 2})
    assert names(db.c) == ["_id_"]
