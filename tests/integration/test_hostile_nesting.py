"""Hostile nesting: documents and filters nested thousands of levels deep must get an answer
(a result or a clear error), never a stack overflow. Separate module, separate server, so a
crash here does not take the other hostile-input tests down with it."""

import struct

import bson
import pytest

from rawwire import OP_MSG, connect, frame, op_msg, read_reply


@pytest.fixture(autouse=True)
def still_serves(server):
    yield
    assert server.alive(), "cairnd died\n" + server.log_tail()
    c = server.client(serverSelectionTimeoutMS=10000)
    try:
        assert c.admin.command("ping")["ok"] == 1.0
    finally:
        c.close()


def _nested(depth, key=b"a"):
    """Raw BSON of {a: {a: ... {} ...}} nested `depth` levels, built without recursion."""
    doc = b"\x05\x00\x00\x00\x00"
    for _ in range(depth):
        body = b"\x03" + key + b"\x00" + doc + b"\x00"
        doc = struct.pack("<i", 4 + len(body)) + body
    return doc


def _nested_and(depth):
    """Raw BSON of the filter {$and: [{$and: [ ... {x: 1} ... ]}]}."""
    doc = bson.encode({"x": 1})
    for _ in range(depth):
        arr_body = b"\x03" + b"0\x00" + doc + b"\x00"
        arr = struct.pack("<i", 4 + len(arr_body)) + arr_body
        body = b"\x04" + b"$and\x00" + arr + b"\x00"
        doc = struct.pack("<i", 4 + len(body)) + body
    return doc


@pytest.mark.parametrize("depth", [150, 5000])
def test_deeply_nested_document_insert(server, depth):
    # the document sequence is built by hand so that no encoder recurses over the document
    doc = _nested(depth)
    doc = struct.pack("<i", len(doc) + 9) + b"\x10_id\x00" + struct.pack("<i", depth) + doc[4:]
    payload = b"documents\x00" + doc
    body = op_msg({"insert": "deep", "$db": "hostile"}) + b"\x01" + \
        struct.pack("<i", 4 + len(payload)) + payload
    msg, rid = frame(OP_MSG, body)
    s = connect(server)
    s.sendall(msg)
    r = read_reply(s)
    s.close()
    assert r is not None, "server closed the connection on a readable message"
    assert r[1] == rid
    assert r[2].get("ok") in (0, 1)


@pytest.mark.parametrize("depth", [50, 5000])
def test_deeply_nested_filter(server, depth):
    from bson.raw_bson import RawBSONDocument

    flt = RawBSONDocument(_nested_and(depth))
    msg, rid = frame(OP_MSG, op_msg({"find": "deep", "$db": "hostile", "filter": flt}))
    s = connect(server)
    s.sendall(msg)
    r = read_reply(s)
    s.close()
    assert r is not None, "server closed the connection on a readable message"
    if depth <= 50:
        assert r[2]["ok"] == 1.0, r[2]
    else:
        assert r[2]["ok"] in (0, 1)

