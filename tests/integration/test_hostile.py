"""Hostile and malformed input over raw sockets. After each case the server must still serve
a fresh pymongo client; a frame it cannot read ends with a closed connection, a readable
message with bad content gets a MongoDB-style error reply. A server that does neither (keeps
the connection open without answering) fails every case that expects a close or a reply:
rawwire raises ServerHung on a timeout, and nothing here treats silence as a close."""

import os
import random
import socket
import struct

import bson
import pytest

from rawwire import (OP_COMPRESSED, OP_MSG, OP_QUERY, OP_REPLY, ServerHung, connect,
                     expect_reply, frame, op_msg, read_reply, wait_closed)


def send(s, data):
    """sendall that tolerates the server closing first (it may, on bad input)."""
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


def shutdown_write(s):
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def closed_or_error(s, request_id):
    """The server either closes the connection ("closed") or answers with ok:0 ("error").
    Silence is neither: read_reply raises ServerHung after the socket timeout."""
    r = read_reply(s)
    if r is None:
        return "closed"
    _op, response_to, doc = r
    assert response_to == request_id
    assert doc.get("ok") == 0, doc
    assert isinstance(doc.get("errmsg"), str)
    assert isinstance(doc.get("code"), int)
    return "error"


def assert_closed(s, timeout=10):
    """The server closes the connection (EOF or reset) within `timeout`; an error reply is
    acceptable only if the close follows it."""
    try:
        wait_closed(s, timeout)
    except ServerHung:
        pytest.fail("server kept the connection open after an unreadable frame")


@pytest.fixture(autouse=True)
def still_serves(server):
    yield
    assert server.alive(), "cairnd died\n" + server.log_tail()
    c = server.client(serverSelectionTimeoutMS=10000)
    try:
        assert c.admin.command("ping")["ok"] == 1.0
        c.hostile.after.insert_one({})
        assert c.hostile.after.count_documents({}) >= 1
    finally:
        c.close()


def test_valid_raw_op_msg(server):
    s = connect(server)
    msg, rid = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"}))
    send(s, msg)
    op, response_to, doc = expect_reply(s, rid)
    assert op == OP_MSG and response_to == rid and doc["ok"] == 1.0
    s.close()


def test_op_query_handshake_gets_op_reply(server):
    s = connect(server)
    body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + \
        bson.encode({"isMaster": 1, "helloOk": True})
    msg, rid = frame(OP_QUERY, body)
    send(s, msg)
    op, response_to, doc = expect_reply(s, rid)
    assert op == OP_REPLY and response_to == rid
    assert doc["ok"] == 1.0 and doc["ismaster"] is True and doc["setName"] == "rs0"
    assert doc["helloOk"] is True
    s.close()


def test_kind1_document_sequence_insert(server):
    s = connect(server)
    msg, rid = frame(OP_MSG, op_msg({"insert": "seq", "$db": "hostile"},
                                    sequences=[("documents", [{"_id": 1}, {"_id": 2}])]))
    send(s, msg)
    _op, response_to, doc = expect_reply(s, rid)
    assert response_to == rid and doc["ok"] == 1.0 and doc["n"] == 2
    s.close()


@pytest.mark.parametrize("seed", range(6))
def test_garbage_frame_with_unknown_opcode(server, seed):
    # A whole frame of seeded garbage whose header declares its true length and an opcode
    # that does not exist: the server reads it all, cannot parse it, and closes.
    rng = random.Random(seed)
    body = bytes(rng.getrandbits(8) for _ in range(4096 - 16))
    header = struct.pack("<iiii", 4096, rng.getrandbits(31), 0, 0x5EED0000 + seed)
    s = connect(server)
    send(s, header + body)
    assert_closed(s)
    s.close()


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_then_eof(server, seed):
    # Raw random bytes may declare any length, including one longer than what follows, in
    # which case the server (as mongod) waits for the rest; at end of input it must close.
    rng = random.Random(1000 + seed)
    s = connect(server)
    send(s, bytes(rng.getrandbits(8) for _ in range(4096)))
    shutdown_write(s)
    assert_closed(s)
    s.close()


def test_garbage_then_valid_on_new_connection(server):
    for seed in range(5):
        s = connect(server)
        send(s, bytes((i * 37 + seed) & 0xFF for i in range(300)))
        s.close()
    s = connect(server)
    msg, rid = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"}))
    send(s, msg)
    assert expect_reply(s, rid)[2]["ok"] == 1.0
    s.close()


@pytest.mark.parametrize("length", [0x7FFFFFFF, -1, 0, 15, 48000001])
def test_bad_message_length(server, length):
    s = connect(server)
    msg, _ = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"}), length=length)
    send(s, msg)
    assert_closed(s)
    s.close()


def test_truncated_frame_then_close(server):
    s = connect(server)
    msg, _ = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin", "pad": "x" * 100}))
    send(s, msg[: len(msg) // 2])
    # A round trip on another connection while the half frame waits on this one: the
    # server keeps serving, and has had its chance to read the half frame before the close.
    s2 = connect(server)
    ping, rid = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"}))
    send(s2, ping)
    assert expect_reply(s2, rid)[2]["ok"] == 1.0
    s2.close()
    s.close()


def test_truncated_header(server):
    s = connect(server)
    send(s, b"\x20\x00\x00")
    shutdown_write(s)
    assert_closed(s)
    s.close()


def test_frame_shorter_than_its_content(server):
    # messageLength says 30 bytes: the BSON document inside claims more than the frame holds
    body = op_msg({"ping": 1, "$db": "admin"})
    msg, rid = frame(OP_MSG, body, length=30)
    s = connect(server)
    send(s, msg[:30])
    closed_or_error(s, rid)
    s.close()


@pytest.mark.parametrize("raw", [
    b"\x05\x00\x00\x00",                                    # too short
    b"\xff\xff\xff\x7f\x00",                                # huge length
    struct.pack("<i", 20) + b"\x10ping\x00\x01\x00\x00\x00\x00",  # runs past the frame
    struct.pack("<i", 15) + b"\x10ping\x00\x01\x00\x00\x00\x01",  # missing terminator
    struct.pack("<i", 15) + b"\x77ping\x00\x01\x00\x00\x00\x00",  # unknown element type
    struct.pack("<i", 17) + b"\x02ping\x00\xff\x00\x00\x00a\x00\x00",  # bad string length
], ids=["short", "huge", "overrun", "noterm", "badtype", "badstring"])
def test_op_msg_invalid_bson(server, raw):
    s = connect(server)
    msg, rid = frame(OP_MSG, op_msg(None, raw_body=raw))
    send(s, msg)
    closed_or_error(s, rid)
    s.close()


def test_bad_section_kind(server):
    body = struct.pack("<I", 0) + b"\x07" + bson.encode({"ping": 1, "$db": "admin"})
    msg, rid = frame(OP_MSG, body)
    s = connect(server)
    send(s, msg)
    closed_or_error(s, rid)
    s.close()


def test_two_body_sections(server):
    doc = bson.encode({"ping": 1, "$db": "admin"})
    body = struct.pack("<I", 0) + b"\x00" + doc + b"\x00" + doc
    msg, rid = frame(OP_MSG, body)
    s = connect(server)
    send(s, msg)
    closed_or_error(s, rid)
    s.close()


def test_required_unknown_flag_bit(server):
    msg, rid = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"}, flags=0x4))
    s = connect(server)
    send(s, msg)
    closed_or_error(s, rid)
    s.close()


def test_missing_db_field(server):
    msg, rid = frame(OP_MSG, op_msg({"ping": 1}))
    s = connect(server)
    send(s, msg)
    closed_or_error(s, rid)
    s.close()


def test_empty_command_document(server):
    msg, rid = frame(OP_MSG, op_msg({}))
    s = connect(server)
    send(s, msg)
    closed_or_error(s, rid)
    s.close()


def test_op_compressed_refused(server):
    inner = op_msg({"ping": 1, "$db": "admin"})
    body = struct.pack("<iiB", OP_MSG, len(inner), 0) + inner  # compressor 0 = noop
    msg, rid = frame(OP_COMPRESSED, body)
    s = connect(server)
    send(s, msg)
    closed_or_error(s, rid)
    s.close()


@pytest.mark.parametrize("opcode", [2001, 2002, 2005, 2006, 2007, 9999])
def test_unsupported_opcodes(server, opcode):
    msg, rid = frame(opcode, b"\x00" * 32)
    s = connect(server)
    send(s, msg)
    closed_or_error(s, rid)
    s.close()


def test_oversize_document_insert_is_10334(server):
    big = {"_id": "big", "x": "a" * (16 * 1024 * 1024)}
    msg, rid = frame(OP_MSG, op_msg({"insert": "big", "$db": "hostile"},
                                    sequences=[("documents", [big])]))
    s = connect(server)
    send(s, msg)
    r = read_reply(s)
    s.close()
    assert r is not None, "server closed the connection instead of answering"
    doc = r[2]
    if doc.get("ok") == 0:
        code = doc.get("code")
    else:
        code = doc.get("writeErrors", [{}])[0].get("code")
    assert code == 10334, doc  # BSONObjectTooLarge
    c = server.client()
    try:
        assert c.hostile.big.find_one({"_id": "big"}) is None, "oversize document was stored"
    finally:
        c.close()


def test_many_connections_dropped_mid_request(server):
    socks = []
    for _ in range(50):
        s = connect(server)
        msg, _ = frame(OP_MSG, op_msg({"find": "x", "$db": "hostile", "filter": {}}))
        send(s, msg[:20])
        socks.append(s)
    for s in socks:
        s.close()


def test_pipelined_requests_answered_in_order(server):
    s = connect(server)
    rids = []
    data = b""
    for i in range(20):
        m, rid = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin", "i": i}))
        data += m
        rids.append(rid)
    send(s, data)
    got = []
    for _ in rids:
        r = read_reply(s)
        assert r is not None, "server closed the connection after %d replies" % len(got)
        assert r[2]["ok"] == 1.0, r[2]
        got.append(r[1])
    assert got == rids, "replies must come in the order the requests were sent"
    s.close()


def test_mutated_messages_fuzz(server):
    rng = random.Random(int(os.environ.get("CAIRN_TEST_SEED", "20261122")))
    seeds = [
        frame(OP_MSG, op_msg({"insert": "fz", "$db": "hostile"},
                             sequences=[("documents", [{"_id": 1, "a": [1, {"b": "x"}]}])]))[0],
        frame(OP_MSG, op_msg({"find": "fz", "$db": "hostile",
                              "filter": {"a": {"$elemMatch": {"b": {"$in": ["x", 2]}}}},
                              "sort": {"a": 1}, "projection": {"a": 1}}))[0],
        frame(OP_MSG, op_msg({"update": "fz", "$db": "hostile"},
                             sequences=[("updates", [{"q": {"_id": 1},
                                                      "u": {"$push": {"a": 3}}}])]))[0],
        frame(OP_MSG, op_msg({"aggregate": "fz", "$db": "hostile", "cursor": {},
                              "pipeline": [{"$group": {"_id": "$a", "n": {"$sum": 1}}}]}))[0],
    ]
    for i in range(300):
        m = bytearray(rng.choice(seeds))
        lo = 0 if rng.random() < 0.2 else 16  # mostly keep the header, break the body
        for _ in range(rng.randint(1, 4)):
            m[rng.randrange(lo, len(m))] = rng.randrange(256)
        if rng.random() < 0.1:
            m = m[: rng.randrange(1, len(m))]
        s = connect(server)
        try:
            send(s, bytes(m))
            shutdown_write(s)
            wait_closed(s, 5)  # whatever it answers, it must close after our EOF
        except ServerHung:
            pytest.fail("iteration %d: server neither answered nor closed within 5s" % i)
        except OSError:
            pass  # the server closed first (reset, broken pipe, not connected)
        finally:
            s.close()


@pytest.mark.parametrize("where", ["value", "nested", "array", "key", "db", "sequence", "regex"])
def test_invalid_utf8_string_is_refused_and_not_stored(server, where):
    # A placeholder encoded by pymongo, then swapped for an invalid UTF-8 byte sequence of the
    # same length: the server must answer 22 InvalidBSON and store nothing, or every later read
    # of the document would fail to decode in the driver.
    mark = "Zq9Z"
    doc = {"_id": where, "s": mark if where != "db" else "fine"}
    if where == "nested":
        doc = {"_id": where, "d": {"s": mark}}
    elif where == "array":
        doc = {"_id": where, "a": ["ok", mark]}
    elif where == "key":
        doc = {"_id": where, mark: 1}
    elif where == "regex":
        doc = {"_id": where, "r": bson.Regex(mark)}
    cmd = {"insert": "utf8", "$db": "fuzz" + mark if where == "db" else "hostile"}
    seqs = ()
    if where == "sequence":
        seqs = [("documents", [doc])]
    else:
        cmd["documents"] = [doc]
    body = op_msg(cmd, sequences=seqs)
    assert body.count(mark.encode()) == 1
    msg, rid = frame(OP_MSG, body.replace(mark.encode(), b"f\x99z\xff"))
    s = connect(server)
    send(s, msg)
    assert closed_or_error(s, rid) == "error"
    s.close()
    c = server.client()
    try:
        assert c.hostile.utf8.find_one({"_id": where}) is None
        assert all(not n.startswith("fuzz") for n in c.list_database_names())
    finally:
        c.close()
