"""Databases and collections: create, drop, list, dropDatabase; implicit creation on insert."""

import pytest
from pymongo.errors import CollectionInvalid, OperationFailure


def test_create_and_list(db):
    db.create_collection("one")
    db.create_collection("two")
    assert sorted(db.list_collection_names()) == ["one", "two"]
    infos = {c["name"]: c for c in db.list_collections()}
    assert set(infos) == {"one", "two"}
    assert infos["one"]["type"] == "collection"


def test_create_existing_is_error(db):
    db.create_collection("x")
    with pytest.raises((CollectionInvalid, OperationFailure)):
        db.create_collection("x")
    with pytest.raises(OperationFailure) as e:
        db.command("create", "x")
    assert e.value.code == 48  # NamespaceExists


def test_insert_creates_collection_and_database(client, db):
    assert db.name not in client.list_database_names()
    db.auto.insert_one({"_id": 1})
    assert "auto" in db.list_collection_names()
    assert db.name in client.list_database_names()


def test_drop_collection(db):
    db.a.insert_many([{"_id": i} for i in range(10)])
    db.b.insert_one({"_id": 1})
    db.a.drop()
    assert db.list_collection_names() == ["b"]
    assert db.a.find_one() is None
    assert db.a.count_documents({}) == 0
    db.a.insert_one({"_id": 5})
    assert [d["_id"] for d in db.a.find()] == [5]
    db.drop_collection("never_existed")  # no error, as with pymongo + mongod


def test_drop_command_reply(db):
    db.a.insert_one({"_id": 1})
    r = db.command("drop", "a")
    assert r["ok"] == 1.0
    assert r.get("ns") in (None, db.name + ".a")


def test_list_collections_filter_and_name_only(db):
    for n in ("apple", "banana", "cherry"):
        db.create_collection(n)
    assert db.list_collection_names(filter={"name": "banana"}) == ["banana"]
    r = db.command("listCollections", nameOnly=True)
    names = sorted(c["name"] for c in r["cursor"]["firstBatch"])
    assert names == ["apple", "banana", "cherry"]


def test_list_databases(client, db):
    db.x.insert_one({"_id": 1})
    r = client.admin.command("listDatabases")
    assert r["ok"] == 1.0
    entry = [d for d in r["databases"] if d["name"] == db.name]
    assert len(entry) == 1
    assert isinstance(entry[0]["sizeOnDisk"], (int, float))
    assert isinstance(entry[0]["empty"], bool)
    assert "totalSize" in r
    names = client.admin.command("listDatabases", nameOnly=True)["databases"]
    assert {"name": db.name} in names


def test_drop_database(client, db):
    db.x.insert_one({"_id": 1})
    db.y.insert_one({"_id": 1})
    assert db.name in client.list_database_names()
    client.drop_database(db.name)
    assert db.name not in client.list_database_names()
    assert db.list_collection_names() == []
    assert db.x.find_one() is None
    db.x.insert_one({"_id": 2})
    assert [d["_id"] for d in db.x.find()] == [2]


def test_collections_are_isolated(client, db):
    other = client[db.name + "_b"]
    db.same.insert_one({"_id": 1, "where": "a"})
    other.same.insert_one({"_id": 1, "where": "b"})
    db.samex.insert_one({"_id": 1, "where": "ax"})
    assert db.same.find_one({"_id": 1})["where"] == "a"
    assert other.same.find_one({"_id": 1})["where"] == "b"
    assert db.samex.find_one({"_id": 1})["where"] == "ax"
    assert db.same.count_documents({}) == 1
    db.same.drop()
    assert other.same.count_documents({}) == 1
    assert db.samex.count_documents({}) == 1
    client.drop_database(other.name)


@pytest.mark.parametrize("name", ["", "a$b", "system.bogus"])
def test_invalid_collection_names(db, name):
    with pytest.raises(Exception):
        db.command("create", name)
