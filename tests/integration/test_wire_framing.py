"""Framing across reads: the server reads as many bytes as the socket holds, so several
messages can arrive in one read (moreToCome writes need no reply, so a client may send the
next message at once) and one message can arrive over many reads. Every message must be
executed exactly once, in order, and every reply must answer its own request."""

import struct
import time

import pytest

from rawwire import OP_MSG, connect, frame, op_msg, read_reply

MORE_TO_COME = 0x2


def _insert(coll, doc, more_to_come):
    body = op_msg({"insert": coll, "$db": "framing", "writeConcern": {"w": 1}},
                  flags=MORE_TO_COME if more_to_come else 0,
                  sequences=[("documents", [doc])])
    return frame(OP_MSG, body)


def _find(coll):
    return frame(OP_MSG, op_msg({"find": coll, "$db": "framing", "sort": {"_id": 1}}))


def test_more_to_come_messages_in_one_send_are_all_executed(client, server):
    coll = "burst"
    msgs = [_insert(coll, {"_id": i}, True)[0] for i in range(50)]
    find, rid = _find(coll)
    s = connect(server)
    try:
        s.sendall(b"".join(msgs) + find)  # 51 messages in one write
        r = read_reply(s)
        assert r is not None and r[1] == rid
        assert [d["_id"] for d in r[2]["cursor"]["firstBatch"]] == list(range(50))
        # the connection keeps working afterwards
        ping, rid2 = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"}))
        s.sendall(ping)
        r2 = read_reply(s)
        assert r2[1] == rid2 and r2[2]["ok"] == 1.0
    finally:
        s.close()
    assert client.framing[coll].count_documents({}) == 50


def test_requests_with_replies_back_to_back_get_replies_in_order(server):
    pings = [frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"})) for _ in range(20)]
    s = connect(server)
    try:
        s.sendall(b"".join(m for m, _ in pings))
        for _, rid in pings:
            r = read_reply(s)
            assert r is not None and r[1] == rid and r[2]["ok"] == 1.0
    finally:
        s.close()


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_message_split_over_many_sends(server, chunk):
    big = {"_id": "big-%d" % chunk, "pad": "x" * 40000}  # larger than the receive buffer
    msg, rid = _insert("split", big, False)
    s = connect(server)
    try:
        for i in range(0, len(msg), chunk):
            s.sendall(msg[i:i + chunk])
            if chunk == 1 and i < 64:
                time.sleep(0.001)  # make the header itself arrive in pieces
        r = read_reply(s)
        assert r is not None and r[1] == rid
        assert r[2]["ok"] == 1.0 and r[2]["n"] == 1
    finally:
        s.close()


def test_large_message_followed_by_small_one_in_one_send(server):
    big, rid1 = _insert("mixed", {"_id": 1, "pad": "y" * 100000}, False)
    small, rid2 = _find("mixed")
    s = connect(server)
    try:
        s.sendall(big + small)
        r1 = read_reply(s)
        assert r1[1] == rid1 and r1[2]["n"] == 1
        r2 = read_reply(s)
        assert r2[1] == rid2
        docs = r2[2]["cursor"]["firstBatch"]
        assert len(docs) == 1 and len(docs[0]["pad"]) == 100000
    finally:
        s.close()


def test_bad_length_after_good_message_in_same_send_closes_after_reply(server):
    ping, rid = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"}))
    bad = struct.pack("<iiii", 5, 1, 0, OP_MSG)  # messageLength 5 < 16
    s = connect(server)
    try:
        s.sendall(ping + bad)
        r = read_reply(s)
        assert r is not None and r[1] == rid
        assert read_reply(s) is None  # then the connection is closed
    finally:
        s.close()
