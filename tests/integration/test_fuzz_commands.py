"""Seeded fuzzing of the command layer: every command the server knows, sent with its fields
replaced by values of random types, random extra fields and random operators, and random
byte mutations of valid frames. The server must answer each readable message with a reply
(ok 1, or ok 0 with errmsg, code and codeName) or close the connection, never crash, and
keep serving. Under the ASan build this also catches memory errors in the handlers."""

import os
import random
import socket
import struct

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

from rawwire import MORE_TO_COME, OP_MSG, OP_QUERY, connect, frame, op_msg, read_reply

# CAIRN_FUZZ_SEED explores other seeds; CI runs the fixed one so a failure can be replayed.
SEED = int(os.environ.get("CAIRN_FUZZ_SEED", "20261122"))

COMMANDS = {
    "insert": {"insert": "c", "documents": [{"_id": 1, "a": 1}], "ordered": True},
    "update": {"update": "c", "updates": [{"q": {"a": 1}, "u": {"$set": {"b": 2}},
                                           "upsert": True, "multi": False}]},
    "delete": {"delete": "c", "deletes": [{"q": {"a": 1}, "limit": 1}]},
    "findAndModify": {"findAndModify": "c", "query": {"a": 1}, "update": {"$inc": {"n": 1}},
                      "new": True, "upsert": True, "sort": {"a": 1}, "fields": {"a": 1}},
    "find": {"find": "c", "filter": {"a": {"$gt": 0}}, "projection": {"a": 1},
             "sort": {"a": -1}, "skip": 0, "limit": 5, "batchSize": 2, "singleBatch": False},
    "getMore": {"getMore": Int64(12345), "collection": "c", "batchSize": 2},
    "killCursors": {"killCursors": "c", "cursors": [Int64(1)]},
    "count": {"count": "c", "query": {"a": 1}, "limit": 3, "skip": 1},
    "distinct": {"distinct": "c", "key": "a", "query": {}},
    "aggregate": {"aggregate": "c", "pipeline": [{"$match": {"a": 1}},
                                                 {"$group": {"_id": "$a", "n": {"$sum": 1}}},
                                                 {"$sort": {"n": -1}}, {"$limit": 3}],
                  "cursor": {"batchSize": 1}},
    "create": {"create": "fuzzcoll"},
    "drop": {"drop": "fuzzcoll"},
    "listCollections": {"listCollections": 1, "filter": {"name": "c"}, "nameOnly": True},
    "listIndexes": {"listIndexes": "c"},
    "createIndexes": {"createIndexes": "c", "indexes": [{"key": {"_id": 1}, "name": "_id_"}]},
    "dropIndexes": {"dropIndexes": "c", "index": "*"},
    "hello": {"hello": 1, "helloOk": True},
    "isMaster": {"isMaster": 1},
    "ping": {"ping": 1},
    "buildInfo": {"buildInfo": 1},
    "getParameter": {"getParameter": 1, "featureCompatibilityVersion": 1},
    "serverStatus": {"serverStatus": 1},
    "endSessions": {"endSessions": [{"id": Binary(b"\x00" * 16, 4)}]},
    "replSetGetStatus": {"replSetGetStatus": 1},
    "replSetGetConfig": {"replSetGetConfig": 1},
    "listDatabases": {"listDatabases": 1, "nameOnly": False},
    "dbStats": {"dbStats": 1, "scale": 1024},
    "collStats": {"collStats": "c", "scale": 1},
    "renameCollection": {"renameCollection": "fuzz.c", "to": "fuzz.c2", "dropTarget": True},
    "collMod": {"collMod": "c", "index": {"name": "a_1", "hidden": True}},
    "dropDatabase": {"dropDatabase": 1},
    "connectionStatus": {"connectionStatus": 1},
    "listCommands": {"listCommands": 1},
}

ADMIN_ONLY = {"listDatabases", "renameCollection", "getParameter", "replSetGetStatus", "replSetGetConfig",
              "endSessions", "serverStatus"}


def random_value(rng, depth=0):
    choices = [
        lambda: rng.randint(-5, 5), lambda: Int64(rng.randint(-2**63, 2**63 - 1)),
        lambda: rng.choice([0.0, -0.0, 1.5, float("nan"), float("inf"), -1e308]),
        lambda: rng.choice(["", "c", "$a", "a.b", "$$ROOT", "x" * 300, "\u00e9", "$", "."]),
        lambda: rng.choice([True, False]), lambda: None, lambda: ObjectId(),
        lambda: Binary(bytes(rng.randrange(256) for _ in range(rng.randint(0, 20))),
                       rng.choice([0, 4, 5, 0x80])),
        lambda: Regex(rng.choice(["a", "(", "[", "^x$", ".*"]), rng.choice(["", "i", "mx"])),
        lambda: Timestamp(rng.randint(0, 2**32 - 1), rng.randint(0, 10)),
        lambda: Decimal128(rng.choice(["1.5", "NaN", "-Infinity", "1E+6000"])),
        lambda: MinKey(), lambda: MaxKey(), lambda: Code("function(){}"),
    ]
    if depth < 3:
        choices += [
            lambda: [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))],
            lambda: {rng.choice(["a", "$set", "$gt", "$in", "$and", "$each", "_id", "$foo",
                                 "b.c", "$size", "$elemMatch", "$group", "$match", "q", "u",
                                 "limit", "key", "name"]): random_value(rng, depth + 1)
                     for _ in range(rng.randint(0, 3))},
        ]
    return rng.choice(choices)()


def mutate_command(rng, name, template):
    cmd = dict(template)
    keys = list(cmd.keys())
    for _ in range(rng.randint(1, 3)):
        action = rng.random()
        if action < 0.6:
            k = rng.choice(keys)
            cmd[k] = random_value(rng)
        elif action < 0.8:
            cmd[rng.choice(["writeConcern", "readConcern", "maxTimeMS", "lsid", "txnNumber",
                            "$readPreference", "bypassDocumentValidation", "comment",
                            "collation", "hint", "let", "zzz"])] = random_value(rng)
        else:
            k = rng.choice(keys[1:] or keys)
            cmd.pop(k, None)
    cmd["$db"] = "admin" if name in ADMIN_ONLY else "fuzz"
    # the command name must stay first
    return {name: cmd.pop(name, 1), **cmd}


def check_reply(r, rid):
    op, response_to, doc = r
    assert response_to == rid
    assert doc.get("ok") in (0, 1, 0.0, 1.0, True, False)
    if not doc["ok"]:
        assert isinstance(doc.get("errmsg"), str)
        assert isinstance(doc.get("code"), int)
        assert isinstance(doc.get("codeName"), str)


def test_commands_with_random_field_types(server):
    rng = random.Random(SEED)
    s = connect(server)
    answered = 0
    try:
        for i in range(2500):
            name = rng.choice(list(COMMANDS))
            cmd = mutate_command(rng, name, COMMANDS[name])
            try:
                body = op_msg(cmd)
            except (bson.errors.InvalidDocument, OverflowError, ValueError):
                continue
            msg, rid = frame(OP_MSG, body)
            s.sendall(msg)
            r = read_reply(s)  # a reply or a close; silence fails (ServerHung)
            if r is None:  # the server may close a connection on a protocol error
                s.close()
                s = connect(server)
                continue
            check_reply(r, rid)
            answered += 1
    finally:
        s.close()
    assert answered > 2000
    assert server.alive(), server.log_tail()


def test_random_byte_mutations_of_valid_frames(server):
    rng = random.Random(SEED + 1)
    templates = []
    for name in ("insert", "find", "update", "aggregate", "hello"):
        cmd = dict(COMMANDS[name])
        cmd["$db"] = "fuzz"
        seq = [("documents", [{"_id": 7, "x": [1, {"y": 2}]}])] if name == "insert" else ()
        if name == "insert":
            cmd.pop("documents")
        templates.append(frame(OP_MSG, op_msg(cmd, sequences=seq))[0])
    templates.append(frame(OP_QUERY, struct.pack("<i", 0) + b"admin.$cmd\x00" +
                           struct.pack("<ii", 0, -1) + bson.encode({"isMaster": 1}))[0])
    closed = 0
    for i in range(1500):
        msg = bytearray(rng.choice(templates))
        for _ in range(rng.randint(1, 6)):
            pos = rng.randrange(4, len(msg))  # keep the length field so framing stays sane
            op = rng.random()
            if op < 0.7:
                msg[pos] = rng.randrange(256)
            elif op < 0.85:
                msg[pos:pos + 1] = b""
            else:
                msg[pos:pos] = bytes([rng.randrange(256)])
        msg[0:4] = struct.pack("<i", len(msg))
        opcode, flags = struct.unpack("<iI", bytes(msg[12:20]))
        s = connect(server)
        try:
            s.sendall(bytes(msg))
            if opcode == OP_MSG and flags & MORE_TO_COME:
                # a message the client says needs no reply: after our EOF the server must
                # close (it may answer an error first); it may not stay silent and open
                try:
                    s.shutdown(socket.SHUT_WR)
                except OSError:
                    pass  # already closed by the server
            r = read_reply(s)  # a reply or a close; silence fails (ServerHung)
            if r is None:
                closed += 1
            else:
                assert r[2].get("ok") in (0, 1, 0.0, 1.0)
        finally:
            s.close()
    assert server.alive(), server.log_tail()
    c = server.client(serverSelectionTimeoutMS=10000)
    try:
        assert c.admin.command("ping")["ok"] == 1.0
        c.fuzz.after.insert_one({"_id": 1})
        assert c.fuzz.after.find_one({"_id": 1}) == {"_id": 1}
    finally:
        c.close()


def test_error_messages_stay_utf8_when_truncated(server):
    # a 600-byte command name of 2-byte characters: the server's message buffer cuts it,
    # possibly inside a character; the reply must still decode (pymongo checks UTF-8)
    name = "\u00e9" * 300
    s = connect(server)
    try:
        msg, rid = frame(OP_MSG, op_msg({name: 1, "$db": "admin"}))
        s.sendall(msg)
        r = read_reply(s)
        assert r is not None and r[1] == rid
        assert r[2]["ok"] == 0 and r[2]["code"] == 59
        assert r[2]["errmsg"].startswith("no such command: '\u00e9")
    finally:
        s.close()
