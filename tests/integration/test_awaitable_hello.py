"""Awaitable hello and topologyVersion, as mongod 4.4+ (server-monitoring.md "Awaitable hello
Server Specification", mongod 7.0's CmdHello): every hello carries topologyVersion; one with
the current topologyVersion and maxAwaitTimeMS waits, without a worker thread, until the
topology changes or maxAwaitTimeMS passes; errors as mongod's; parked requests end cleanly
when their client leaves and answer 91 ShutdownInProgress at shutdown; pymongo's streaming
monitor works against it (Cairn never streams with moreToCome: drivers fall back to one
awaitable hello after another).

Timing assertions are loose lower bounds on waits (>= 0.8 * maxAwaitTimeMS) and generous
upper bounds on answers that must not wait."""

import socket
import threading
import time

import pymongo
import pytest
from bson import Int64, ObjectId
from pymongo import monitoring

import rawwire
from cairn_server import CairnServer
from proc_probe import thread_count
from rawwire import OP_MSG, OP_QUERY

HELLOS = ("hello", "isMaster", "ismaster")
# An answer that must not wait for maxAwaitTimeMS arrives well within this (seconds); the
# waits these tests ask for are much longer.
AT_ONCE = 5.0


# ---- helpers ---------------------------------------------------------------------------------

def send_cmd(s, doc, opcode=OP_MSG, flags=0):
    """Sends one command (OP_MSG, on admin unless doc has $db; or OP_QUERY on admin.$cmd);
    returns its id."""
    if opcode == OP_MSG:
        body = dict(doc)
        body.setdefault("$db", "admin")
        msg, rid = rawwire.frame(OP_MSG, rawwire.op_msg(body, flags=flags))
    else:
        import struct

        import bson
        q = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + bson.encode(doc)
        msg, rid = rawwire.frame(OP_QUERY, q)
    s.sendall(msg)
    return rid


def command(s, doc, opcode=OP_MSG, flags=0):
    rid = send_cmd(s, doc, opcode=opcode, flags=flags)
    return rawwire.expect_reply(s, rid)[2]


def timed(s, doc, **kw):
    t = time.monotonic()
    r = command(s, doc, **kw)
    return r, time.monotonic() - t


def awaitable(tv, ms, name="hello"):
    return {name: 1, "topologyVersion": tv, "maxAwaitTimeMS": ms}


def server_status(server):
    s = rawwire.connect(server)
    try:
        return command(s, {"serverStatus": 1})
    finally:
        s.close()


def wait_awaiting(server, n, timeout=20.0):
    """Waits until serverStatus reports `n` parked hellos; returns the last status."""
    deadline = time.monotonic() + timeout
    while True:
        st = server_status(server)
        if st["connections"]["awaitingTopologyChanges"] == n:
            return st
        if time.monotonic() > deadline:
            raise AssertionError("awaitingTopologyChanges is %r, not %d"
                                 % (st["connections"]["awaitingTopologyChanges"], n))
        time.sleep(0.05)


@pytest.fixture
def conn(server):
    s = rawwire.connect(server)
    yield s
    s.close()


def current_tv(s):
    return command(s, {"hello": 1})["topologyVersion"]


# ---- topologyVersion in every reply ----------------------------------------------------------

@pytest.mark.parametrize("name", HELLOS)
def test_topology_version_present_and_stable(conn, name):
    r1 = command(conn, {name: 1})
    r2 = command(conn, {name: 1})
    for r in (r1, r2):
        assert r["ok"] == 1.0
        tv = r["topologyVersion"]
        assert set(tv) == {"processId", "counter"}
        assert isinstance(tv["processId"], ObjectId)
        assert type(tv["counter"]) is Int64 and tv["counter"] >= 0
    assert r1["topologyVersion"] == r2["topologyVersion"]


def test_topology_version_over_op_query(conn):
    r = command(conn, {"isMaster": 1, "helloOk": True}, opcode=OP_QUERY)
    assert r["topologyVersion"] == current_tv(conn)
    assert r["helloOk"] is True


def test_same_process_id_on_every_connection(server, conn):
    other = rawwire.connect(server)
    try:
        assert current_tv(other) == current_tv(conn)
    finally:
        other.close()


# ---- waiting -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", HELLOS)
def test_current_counter_waits_max_await(conn, name):
    tv = current_tv(conn)
    r, took = timed(conn, awaitable(tv, 1500, name))
    assert r["ok"] == 1.0
    assert took >= 0.8 * 1.5, "answered after %.3fs, before maxAwaitTimeMS" % took
    assert took < 1.5 + 20
    assert r["topologyVersion"] == tv
    assert r["isWritablePrimary" if name == "hello" else "ismaster"] is True


def test_current_counter_waits_over_op_query(conn):
    tv = current_tv(conn)
    r, took = timed(conn, awaitable(tv, 1000, "isMaster"), opcode=OP_QUERY)
    assert took >= 0.8
    assert r["topologyVersion"] == tv


def test_exhaust_allowed_gets_one_plain_reply(conn):
    """exhaustAllowed (bit 16) is accepted; the reply never sets moreToCome (read_reply
    checks flags == 0), so the driver asks again itself."""
    tv = current_tv(conn)
    r, took = timed(conn, awaitable(tv, 500), flags=0x10000)
    assert r["ok"] == 1.0 and r["topologyVersion"] == tv
    assert took >= 0.4
    # The connection goes on normally.
    assert command(conn, {"ping": 1})["ok"] == 1.0


def test_max_await_zero_answers_at_once(conn):
    tv = current_tv(conn)
    r, took = timed(conn, awaitable(tv, 0))
    assert r["ok"] == 1.0 and r["topologyVersion"] == tv
    assert took < AT_ONCE


def test_stale_counter_answers_at_once(conn):
    tv = current_tv(conn)
    assert tv["counter"] >= 1  # initiating the set changed the topology
    stale = {"processId": tv["processId"], "counter": Int64(tv["counter"] - 1)}
    r, took = timed(conn, awaitable(stale, 30000))
    assert took < AT_ONCE
    assert r["topologyVersion"] == tv


def test_other_process_id_answers_at_once(conn):
    tv = current_tv(conn)
    for counter in (tv["counter"], tv["counter"] + 5, 0):
        other = {"processId": ObjectId(), "counter": Int64(counter)}
        r, took = timed(conn, awaitable(other, 30000))
        assert took < AT_ONCE
        assert r["ok"] == 1.0 and r["topologyVersion"] == tv


def test_non_integral_max_await_is_truncated(conn):
    tv = current_tv(conn)
    r, took = timed(conn, awaitable(tv, 0.9))
    assert r["ok"] == 1.0 and took < AT_ONCE


# ---- bad arguments: mongod 7.0's codes -------------------------------------------------------

def bad_cases(tv):
    pid, n = tv["processId"], tv["counter"]
    return [
        # (request fields, code)
        ({"topologyVersion": tv}, 31368),
        ({"maxAwaitTimeMS": 0}, 31368),
        ({"topologyVersion": tv, "maxAwaitTimeMS": -1}, 51024),
        ({"topologyVersion": tv, "maxAwaitTimeMS": -0.5 - 1}, 51024),
        ({"topologyVersion": tv, "maxAwaitTimeMS": "x"}, 14),
        ({"topologyVersion": {"processId": pid, "counter": Int64(n + 1)}, "maxAwaitTimeMS": 0},
         31382),
        ({"topologyVersion": "topology_version_string", "maxAwaitTimeMS": 0}, 10065),
        ({"topologyVersion": {"processId": "pid1", "counter": Int64(n)}, "maxAwaitTimeMS": 0}, 14),
        ({"topologyVersion": {"processId": pid, "counter": 0}, "maxAwaitTimeMS": 0}, 14),
        ({"topologyVersion": {"processId": pid}, "maxAwaitTimeMS": 0}, 40414),
        ({"topologyVersion": {"counter": Int64(n)}, "maxAwaitTimeMS": 0}, 40414),
        ({"topologyVersion": {"processId": pid, "counter": Int64(-1)}, "maxAwaitTimeMS": 0},
         31372),
        ({"topologyVersion": {"processId": pid, "counter": Int64(n), "randomField": 1},
          "maxAwaitTimeMS": 0}, 40415),
    ]


@pytest.mark.parametrize("name", HELLOS)
def test_bad_arguments_answer_mongod_codes(conn, name):
    tv = current_tv(conn)
    for fields, code in bad_cases(tv):
        doc = {name: 1}
        doc.update(fields)
        r, took = timed(conn, doc)
        assert r["ok"] == 0.0, fields
        assert r["code"] == code, (fields, r)
        assert r["codeName"] == ("TypeMismatch" if code == 14 else "Location%d" % code)
        assert isinstance(r["errmsg"], str) and r["errmsg"]
        assert took < AT_ONCE
    # The messages mongod gives for the two pairing errors and a counter ahead.
    r = command(conn, {name: 1, "topologyVersion": tv})
    assert r["errmsg"] == "A request with a 'topologyVersion' must include 'maxAwaitTimeMS'"
    r = command(conn, {name: 1, "maxAwaitTimeMS": 1})
    assert r["errmsg"] == "A request with 'maxAwaitTimeMS' must include a 'topologyVersion'"
    ahead = {"processId": tv["processId"], "counter": Int64(tv["counter"] + 1)}
    r = command(conn, {name: 1, "topologyVersion": ahead, "maxAwaitTimeMS": 0})
    assert r["errmsg"] == ("Received a topology version with counter: %d which is greater "
                           "than the server topology version counter: %d"
                           % (tv["counter"] + 1, tv["counter"]))


# ---- topology changes wake parked requests ---------------------------------------------------

def test_initiate_wakes_parked_hello(server_factory):
    srv = server_factory(initiate=False, start=False)
    srv.start(wait=False)
    srv.wait_ready(writable=False)
    s = rawwire.connect(srv, timeout=60)
    other = rawwire.connect(srv, timeout=60)
    try:
        h = command(s, {"hello": 1})
        assert h["isWritablePrimary"] is False and h["isreplicaset"] is True
        tv = h["topologyVersion"]
        rid = send_cmd(s, awaitable(tv, 60000))
        wait_awaiting(srv, 1)
        t = time.monotonic()
        r = command(other, {"replSetInitiate": {"_id": "rs0",
                                                "members": [{"_id": 0, "host": srv.host}]}})
        assert r["ok"] == 1.0, r
        woke = rawwire.expect_reply(s, rid)[2]
        took = time.monotonic() - t
        assert woke["ok"] == 1.0
        assert took < 30, "the parked hello was answered %.1fs after the change" % took
        assert woke["topologyVersion"]["processId"] == tv["processId"]
        assert woke["topologyVersion"]["counter"] > tv["counter"]
        assert woke["setName"] == "rs0"
        # Following the changes one awaitable hello after another reaches the primary, each
        # answered at once while the counter moves.
        deadline = time.monotonic() + 30
        while not woke.get("isWritablePrimary"):
            assert time.monotonic() < deadline, woke
            prev = woke["topologyVersion"]
            woke = command(s, awaitable(prev, 30000))
            assert woke["topologyVersion"]["counter"] > prev["counter"]
        assert woke["primary"] == srv.host
    finally:
        s.close()
        other.close()


def test_pymongo_learns_of_initiate_without_polling(server_factory):
    """heartbeatFrequencyMS stays at its 10 s default: pymongo only learns of the new
    primary quickly through its awaitable (streaming) hello."""
    srv = server_factory(initiate=False, start=False)
    srv.start(wait=False)
    srv.wait_ready(writable=False)
    client = pymongo.MongoClient("127.0.0.1", srv.port, directConnection=True,
                                 serverSelectionTimeoutMS=30000)
    try:
        address = ("127.0.0.1", srv.port)
        deadline = time.monotonic() + 10
        while client.topology_description.server_descriptions()[address].topology_version \
                is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # the monitor is now parked in an awaitable hello
        s = rawwire.connect(srv)
        try:
            r = command(s, {"replSetInitiate": {"_id": "rs0",
                                                "members": [{"_id": 0, "host": srv.host}]}})
            assert r["ok"] == 1.0, r
        finally:
            s.close()
        t = time.monotonic()
        while True:
            sd = client.topology_description.server_descriptions()[address]
            if sd.server_type_name == "RSPrimary":
                break
            assert time.monotonic() - t < 8, "still %s" % sd.server_type_name
            time.sleep(0.02)
    finally:
        client.close()


# ---- parked requests hold no thread; clients that leave ----------------------------------------

def test_many_parked_hellos_hold_no_worker_threads(server):
    base = thread_count(server.proc.pid)
    tv = current_tv_of(server)
    socks = []
    try:
        for _ in range(200):
            s = rawwire.connect(server, timeout=60)
            send_cmd(s, awaitable(tv, 60000))
            socks.append(s)
        st = wait_awaiting(server, 200)
        assert st["connections"]["current"] >= 200
        threads = thread_count(server.proc.pid)
        assert threads <= base + 16, "%d threads with 200 parked hellos (%d before)" % (
            threads, base)
        # Other clients are served at once meanwhile.
        p = rawwire.connect(server)
        try:
            r, took = timed(p, {"ping": 1})
            assert r["ok"] == 1.0 and took < AT_ONCE
        finally:
            p.close()
        # Half the clients leave: their requests are dropped long before maxAwaitTimeMS.
        for s in socks[:100]:
            s.close()
        wait_awaiting(server, 100)
    finally:
        for s in socks:
            s.close()
    wait_awaiting(server, 0)
    deadline = time.monotonic() + 20
    while server_status(server)["connections"]["current"] > 5:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert server.alive()


def current_tv_of(server):
    s = rawwire.connect(server)
    try:
        return current_tv(s)
    finally:
        s.close()


def test_disconnect_while_parked_is_cleaned_up(server):
    tv = current_tv_of(server)
    before = server_status(server)["connections"]["current"]
    s = rawwire.connect(server)
    send_cmd(s, awaitable(tv, 60000))
    wait_awaiting(server, 1)
    # Reset instead of FIN, and a plain close: both end the parked request.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.close()
    s2 = rawwire.connect(server)
    send_cmd(s2, awaitable(tv, 60000))
    wait_awaiting(server, 1)
    s2.close()
    wait_awaiting(server, 0, timeout=AT_ONCE)
    deadline = time.monotonic() + AT_ONCE
    while server_status(server)["connections"]["current"] > before:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The server goes on serving.
    assert current_tv_of(server) == tv


def test_pipelined_request_behind_parked_hello(server):
    """A client that sends its next command while its hello is parked gets both answers,
    in order (the watch keeps the bytes it read for the next turn)."""
    tv = current_tv_of(server)
    s = rawwire.connect(server, timeout=30)
    try:
        rid1 = send_cmd(s, awaitable(tv, 1000))
        time.sleep(0.2)
        rid2 = send_cmd(s, {"ping": 1})
        r1 = rawwire.expect_reply(s, rid1)[2]
        r2 = rawwire.expect_reply(s, rid2)[2]
        assert r1["topologyVersion"] == tv
        assert r2["ok"] == 1.0
    finally:
        s.close()


# ---- shutdown --------------------------------------------------------------------------------

def test_shutdown_answers_parked_hellos(tmp_path):
    # Its own server (not the factory's), since the test stops it itself.
    srv = CairnServer(str(tmp_path / "db"))
    srv.start()
    socks, rids = [], []
    s = rawwire.connect(srv)
    tv = current_tv(s)
    s.close()
    for _ in range(5):
        s = rawwire.connect(srv, timeout=30)
        rids.append(send_cmd(s, awaitable(tv, 60000)))
        socks.append(s)
    wait_awaiting(srv, 5)
    stopper = threading.Thread(target=srv.stop)
    stopper.start()
    try:
        for s, rid in zip(socks, rids):
            r = rawwire.expect_reply(s, rid)[2]
            assert r["ok"] == 0.0
            assert r["code"] == 91 and r["codeName"] == "ShutdownInProgress"
            assert r["errmsg"] == "The server is in quiesce mode and will shut down"
            assert r["topologyVersion"]["processId"] == tv["processId"]
            assert r["topologyVersion"]["counter"] > tv["counter"]
            assert list(r)[:5] == ["ok", "errmsg", "code", "codeName", "topologyVersion"]
    finally:
        stopper.join()
        for s in socks:
            s.close()
        srv.kill9()
    assert srv.proc.returncode == 0
    assert srv.check_clean() is None, srv.check_clean()


# ---- topologyVersion in state change errors ---------------------------------------------------

TEST_COMMANDS = ("--setParameter", "enableTestCommands=1")


def fail_next(s, name, code, times=1):
    r = command(s, {"configureFailPoint": "failCommand", "mode": {"times": times},
                    "data": {"failCommands": [name], "errorCode": code}})
    assert r["ok"] == 1.0, r


def test_state_change_errors_carry_topology_version(server_factory):
    """As mongod: NotPrimaryError codes (and their writeConcernError) carry topologyVersion,
    other errors do not; a ShutdownError carries it only once shutdown began."""
    srv = server_factory(extra_args=TEST_COMMANDS)
    s = rawwire.connect(srv)
    try:
        tv = current_tv(s)
        for code in (10107, 13435, 13436, 11602, 189):
            fail_next(s, "insert", code)
            r = command(s, {"insert": "c", "documents": [{}], "$db": "t"})
            assert r["ok"] == 0.0 and r["code"] == code
            assert r["topologyVersion"] == tv, r
        for code in (91, 11600, 2, 11601):
            fail_next(s, "insert", code)
            r = command(s, {"insert": "c", "documents": [{}], "$db": "t"})
            assert r["ok"] == 0.0 and r["code"] == code
            assert "topologyVersion" not in r, r
        r = command(s, {"find": "c", "filter": {"$bad": 1}, "$db": "t"})
        assert r["ok"] == 0.0 and "topologyVersion" not in r
    finally:
        s.close()


def test_simulated_step_down_does_not_stall_pymongo(server_factory):
    """A failCommand PrimarySteppedDown changes no topology: pymongo sees the known
    topologyVersion in the error, treats it as stale and retries the write at once, instead
    of marking the server unknown and waiting for its parked monitor (heartbeatFrequencyMS
    is left at its 10 s default)."""
    srv = server_factory(extra_args=TEST_COMMANDS)
    client = srv.client()
    try:
        client.t.c.insert_one({"_id": 0})
        time.sleep(0.5)  # the monitor is parked in an awaitable hello
        for i in range(1, 4):
            client.admin.command({"configureFailPoint": "failCommand", "mode": {"times": 1},
                                  "data": {"failCommands": ["insert"], "errorCode": 189}})
            t = time.monotonic()
            client.t.c.insert_one({"_id": i})  # retried once: succeeds
            took = time.monotonic() - t
            assert took < AT_ONCE, "the retried insert took %.1fs" % took
        assert client.t.c.count_documents({}) == 4
    finally:
        client.close()


# ---- pymongo's monitor ----------------------------------------------------------------------

class HeartbeatListener(monitoring.ServerHeartbeatListener):
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = []
        self.bad = []

    def started(self, event):
        pass

    def succeeded(self, event):
        with self.lock:
            self.ok.append(event)

    def failed(self, event):
        with self.lock:
            self.bad.append(event)


def test_pymongo_streaming_monitor_sees_no_errors(server):
    listener = HeartbeatListener()
    client = pymongo.MongoClient(server.uri, heartbeatFrequencyMS=500,
                                 serverSelectionTimeoutMS=10000, event_listeners=[listener])
    try:
        assert client.admin.command("ping")["ok"] == 1.0
        time.sleep(3)  # several awaitable hellos of 500 ms each
        address = ("127.0.0.1", server.port)
        sd = client.topology_description.server_descriptions()[address]
        assert sd.server_type_name == "RSPrimary"
        assert sd.topology_version == current_tv_of(server)
        with listener.lock:
            ok, bad = list(listener.ok), list(listener.bad)
        assert not bad, [str(e.reply) for e in bad]
        awaited = [e for e in ok if e.awaited]
        assert len(awaited) >= 2, "pymongo did not use awaitable hellos (%d heartbeats)" % len(ok)
        assert client.topology_description.topology_type_name == "ReplicaSetWithPrimary"
    finally:
        client.close()
    assert server.alive()
    # The parked monitor requests of the closed client are gone.
    wait_awaiting(server, 0)


def test_awaiting_topology_changes_in_server_status(server):
    st = server_status(server)
    assert type(st["connections"]["awaitingTopologyChanges"]) is Int64

