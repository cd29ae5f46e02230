"""Raw wire-protocol helpers for tests that must send what no driver sends: frames, OP_MSG
bodies with document sequences, and reply parsing with the checks drivers apply.

Reading tells three outcomes apart, because hostile-input tests depend on the difference:
a reply, the server closing the connection (EOF or ECONNRESET), and the server doing
neither within the socket timeout. The last is never an accepted outcome: read_reply and
wait_closed fail the test with ServerHung instead of treating silence as a close."""

import socket
import struct
import time

import bson

OP_REPLY, OP_QUERY, OP_COMPRESSED, OP_MSG = 1, 2004, 2012, 2013
MORE_TO_COME = 0x2

# Seconds a test waits for a reply or a close before failing with ServerHung.
TIMEOUT = 10.0

_req_id = [1000]


class ServerHung(AssertionError):
    """The server neither answered nor closed the connection within the timeout."""


def connect(server, timeout=TIMEOUT):
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.settimeout(timeout)
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


def _recv(s, n, what):
    """One recv: bytes, or b"" when the server closed (EOF or reset). Raises ServerHung on
    a timeout."""
    try:
        return s.recv(n)
    except socket.timeout:
        raise ServerHung("server neither sent %s nor closed the connection within %.0fs"
                         % (what, s.gettimeout() or 0)) from None
    except ConnectionResetError:
        return b""


def recv_exact(s, n, what="a reply"):
    """Exactly n bytes, or None when the server closed the connection before the first one.
    A close part-way through is a truncated reply (AssertionError); silence is ServerHung."""
    buf = b""
    while len(buf) < n:
        chunk = _recv(s, n - len(buf), what)
        if not chunk:
            if not buf:
                return None
            raise AssertionError("server closed the connection after %d of %d bytes of %s"
                                 % (len(buf), n, what))
        buf += chunk
    return buf


def read_reply(s):
    """(opcode, responseTo, document), or None when the server closed the connection (EOF
    or ECONNRESET) before sending anything. Raises ServerHung when it does neither within
    the socket's timeout, and AssertionError on a malformed or truncated reply."""
    head = recv_exact(s, 16, "a reply header")
    if head is None:
        return None
    length, _rid, response_to, opcode = struct.unpack("<iiii", head)
    assert 16 < length <= 48000000, "reply length %d" % length
    rest = recv_exact(s, length - 16, "the rest of a reply")
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


def expect_reply(s, request_id):
    """The reply to request_id; fails if the server closes or stays silent instead."""
    r = read_reply(s)
    assert r is not None, "server closed the connection instead of answering"
    assert r[1] == request_id, "reply answers request %d, not %d" % (r[1], request_id)
    return r


def wait_closed(s, timeout=TIMEOUT):
    """Reads until the server closes the connection (EOF or ECONNRESET); returns the bytes
    it sent first (an error reply may precede the close). Raises ServerHung when the
    connection is still open `timeout` seconds after the call."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = _recv(s, 65536, "more bytes")
        if not chunk:
            return data
        data += chunk


def raw_command(server, doc, sequences=()):
    """Sends one OP_MSG command on a fresh connection; returns the reply document."""
    s = connect(server)
    try:
        msg, rid = frame(OP_MSG, op_msg(doc, sequences=sequences))
        s.sendall(msg)
        return expect_reply(s, rid)[2]
    finally:
        s.close()
