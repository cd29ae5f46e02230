"""Handshake and topology: what a driver sees when it connects to a one-member set."""

import datetime
import uuid

import pymongo
import pytest
from bson import ObjectId, Timestamp
from bson.binary import UUID_SUBTYPE, Binary
from pymongo.errors import OperationFailure
from pymongo.server_type import SERVER_TYPE


def test_client_discovers_primary(server, client):
    client.admin.command("ping")
    td = client.topology_description
    assert td.topology_type_name == "ReplicaSetWithPrimary"
    assert td.replica_set_name == "rs0"
    assert client.primary == ("127.0.0.1", server.port)
    sd = td.server_descriptions()[("127.0.0.1", server.port)]
    assert sd.server_type == SERVER_TYPE.RSPrimary
    assert client.is_primary
    assert client.secondaries == set()


def test_hello_fields_and_types(server, client):
    h = client.admin.command("hello")
    assert h["ok"] == 1.0
    assert h["isWritablePrimary"] is True
    assert h["secondary"] is False
    assert h["setName"] == "rs0"
    assert h["hosts"] == [server.host]
    assert h["primary"] == server.host
    assert h["me"] == server.host
    assert type(h["setVersion"]) is int and h["setVersion"] >= 1
    assert isinstance(h["electionId"], ObjectId)
    assert h["logicalSessionTimeoutMinutes"] == 30
    assert type(h["logicalSessionTimeoutMinutes"]) is int
    assert type(h["minWireVersion"]) is int and type(h["maxWireVersion"]) is int
    assert 0 <= h["minWireVersion"] <= 9 <= h["maxWireVersion"]
    assert h["maxBsonObjectSize"] == 16777216 and type(h["maxBsonObjectSize"]) is int
    assert h["maxMessageSizeBytes"] == 48000000 and type(h["maxMessageSizeBytes"]) is int
    assert h["maxWriteBatchSize"] == 100000 and type(h["maxWriteBatchSize"]) is int
    assert isinstance(h["localTime"], datetime.datetime)
    assert "compression" not in h


def test_legacy_ismaster(server, client):
    for name in ("isMaster", "ismaster"):
        h = client.admin.command(name)
        assert h["ismaster"] is True
        assert h["setName"] == "rs0"
        assert h["primary"] == server.host


def test_reply_carries_cluster_time(client):
    r = client.admin.command("ping")
    assert r["ok"] == 1.0
    assert isinstance(r["operationTime"], Timestamp)
    ct = r["$clusterTime"]
    assert isinstance(ct["clusterTime"], Timestamp)
    assert ct["signature"]["keyId"] == 0
    assert bytes(ct["signature"]["hash"]) == b"\x00" * 20


def test_cluster_time_advances_with_writes(client):
    db = client["t_cluster_time"]
    t1 = db.command("insert", "c", documents=[{"_id": 1}])["operationTime"]
    t2 = db.command("insert", "c", documents=[{"_id": 2}])["operationTime"]
    assert t2 > t1


def test_ping_any_database(client):
    assert client["whatever"].command("ping")["ok"] == 1.0


def test_build_info(client):
    b = client.admin.command("buildInfo")
    assert b["ok"] == 1.0
    assert isinstance(b["version"], str) and b["version"]
    assert isinstance(b["versionArray"], list) and len(b["versionArray"]) >= 3
    assert all(type(x) is int for x in b["versionArray"])
    assert client.server_info()["version"] == b["version"]


def test_server_status(client):
    s = client.admin.command("serverStatus")
    assert s["ok"] == 1.0
    assert isinstance(s["host"], str)
    assert isinstance(s["version"], str)
    assert isinstance(s["uptime"], (int, float))
    assert isinstance(s["localTime"], datetime.datetime)


def test_get_parameter(client):
    r = client.admin.command({"getParameter": "*"})
    assert r["ok"] == 1.0


def test_unknown_command_is_59(client):
    with pytest.raises(OperationFailure) as e:
        client.admin.command("noSuchCommandAtAll")
    assert e.value.code == 59
    assert e.value.details["codeName"] == "CommandNotFound"
    assert isinstance(e.value.details["errmsg"], str)
    assert e.value.details["ok"] == 0


def test_end_sessions_accepted(client):
    lsid = {"id": Binary(uuid.uuid4().bytes, UUID_SUBTYPE)}
    r = client.admin.command("endSessions", [lsid])
    assert r["ok"] == 1.0


def test_repl_set_get_status(server, client):
    s = client.admin.command("replSetGetStatus")
    assert s["ok"] == 1.0
    assert s["set"] == "rs0"
    assert s["myState"] == 1
    assert isinstance(s["date"], datetime.datetime)
    assert len(s["members"]) == 1
    m = s["members"][0]
    assert m["_id"] == 0
    assert m["name"] == server.host
    assert m["health"] == 1
    assert m["state"] == 1
    assert m["stateStr"] == "PRIMARY"
    assert m["self"] is True
    assert isinstance(m["optime"]["ts"], Timestamp)
    assert isinstance(m["optimeDate"], datetime.datetime)


def test_repl_set_get_config(server, client):
    c = client.admin.command("replSetGetConfig")["config"]
    assert c["_id"] == "rs0"
    assert type(c["version"]) is int and c["version"] >= 1
    assert len(c["members"]) == 1
    assert c["members"][0]["_id"] == 0
    assert c["members"][0]["host"] == server.host


def test_repl_set_initiate_twice_is_already_initialized(server, client):
    with pytest.raises(OperationFailure) as e:
        client.admin.command("replSetInitiate",
                             {"_id": "rs0", "members": [{"_id": 0, "host": server.host}]})
    assert e.value.code == 23  # AlreadyInitialized


def test_repl_set_initiate_at_runtime(server_factory):
    srv = server_factory(initiate=False, start=False)
    srv.start(wait=False)
    h = srv.wait_ready(writable=False)
    assert h.get("isWritablePrimary") is not True
    direct = pymongo.MongoClient("127.0.0.1", srv.port, directConnection=True,
                                 serverSelectionTimeoutMS=10000)
    try:
        r = direct.admin.command("replSetInitiate",
                                 {"_id": "rs0", "members": [{"_id": 0, "host": srv.host}]})
        assert r["ok"] == 1.0
        srv.wait_ready(writable=True, timeout=30)
    finally:
        direct.close()
    c = srv.client()
    try:
        c.t.c.insert_one({"_id": 1, "x": 1})
        assert c.t.c.find_one({"_id": 1}) == {"_id": 1, "x": 1}
        assert c.admin.command("replSetGetConfig")["config"]["members"][0]["host"] == srv.host
    finally:
        c.close()
