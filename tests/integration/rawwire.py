"""Raw wire-protocol helpers for tests that must send what no driver sends: frames, OP_MSG
bodies with document sequences, and reply parsing with the checks drivers apply."""

import socket
import struct

import bson

OP_REPLY, OP_QUERY, OP_COMPRESSED, OP_MSG = 1, 2004, 2012, 2013

_req_id = [1000]


def connect(server):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    s.settimeout(10)
    return s


def frame(opcode, body, request_id=None, length=None):
    if request_id is None:
        _req_id[0] += 1
        request_id = _req_id[0]
    n = 16 + len(body) if length is None else length
    return struct.pack("<iiii", n, request_id, 0, opcode) + body, request_id


def op_msg(doc, flags=0, sequences=(), raw_body=None):
    body = struct.pack("<I", flags) + b"\x00" + (raw_body if raw_body is not None
                                                  else bson.encode(doc))
    for ident, docs in sequences:
        payload = ident.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
        body += b"\x01" + struct.pack("<i", 4 + len(payload)) + payload
    return body


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_reply(s):
    """(opcode, responseTo, document) or None when the server closed the connection."""
    try:
        head = recv_exact(s, 16)
    except (ConnectionResetError, socket.timeout, OSError):
        return None
    if head is None:
        return None
    length, _rid, response_to, opcode = struct.unpack("<iiii", head)
    assert 16 < length <= 48000000
    rest = recv_exact(s, length - 16)
    assert rest is not None, "reply truncated"
    if opcode == OP_MSG:
        flags = struct.unpack("<I", rest[:4])[0]
        assert flags == 0
        assert rest[4] == 0, "reply must be one kind-0 section"
        doc_len = struct.unpack("<i", rest[5:9])[0]
        assert 5 + doc_len == len(rest), "reply must hold exactly one section"
        return opcode, response_to, bson.decode(rest[5:])
    if opcode == OP_REPLY:
        _flags, _cursor, _start, nret = struct.unpack("<iqii", rest[:20])
        assert nret == 1
        return opcode, response_to, bson.decode(rest[20:])
    raise AssertionError("unexpected reply opcode %d" % opcode)


def raw_command(server, doc, sequences=()):
    """Sends one OP_MSG command on a fresh connection; returns the reply document."""
    s = connect(server)
    try:
        msg, rid = frame(OP_MSG, op_msg(doc, sequences=sequences))
        s.sendall(msg)
        r = read_reply(s)
        assert r is not None, "server closed the connection"
        assert r[1] == rid
        return r[2]
    finally:
        s.close()
