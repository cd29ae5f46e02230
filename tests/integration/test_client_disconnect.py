"""A client that disconnects stops its running command (issue 9): a read that has run a
moment has its connection watched, and the peer closing interrupts it (279
ClientDisconnect, as mongod's killOnClientDisconnect) the way maxTimeMS does, so four
abandoned scans do not keep the cores busy. killOp ends a named operation with 11601 (also
test_current_op.py's long count)."""

import threading

import pytest
from pymongo.errors import OperationFailure

from cairn_server import CairnServer
from proc_probe import running_threads
from rawwire import OP_MSG, connect, expect_reply, frame, op_msg
from workers import wait_until

# A regex that backtracks over 1,000-character strings: a scan of 20,000 of them runs for
# minutes.
SLOW = {"s": {"$regex": "b.*a.*c$"}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = CairnServer(str(tmp_path_factory.mktemp("disc") / "db"))
    s.start()
    c = s.client()
    c.disc.slow.insert_many([{"_id": i, "s": "ab" * 500} for i in range(20000)])
    c.close()
    yield s
    assert s.stop() == 0
    assert s.check_clean() is None, s.check_clean()


@pytest.fixture(scope="module")
def client(srv):
    c = srv.client()
    yield c
    c.close()


def ops_with_comment(client, comment):
    return client.admin.command({"currentOp": 1, "command.comment": comment})["inprog"]


def ended_by_disconnect(client):
    return client.admin.command("serverStatus")["network"]["opsEndedByDisconnect"]


COMMANDS = {
    "aggregate": lambda tag: {"aggregate": "slow", "pipeline": [{"$match": SLOW},
                                                                {"$count": "n"}],
                              "cursor": {}, "comment": tag},
    "distinct": lambda tag: {"distinct": "slow", "key": "s", "query": SLOW, "comment": tag},
    "count": lambda tag: {"count": "slow", "query": SLOW, "comment": tag},
    "find": lambda tag: {"find": "slow", "filter": SLOW, "comment": tag},
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_disconnect_ends_the_running_command(srv, client, name):
    tag = "abandoned-" + name
    before = ended_by_disconnect(client)
    socks = []
    for _ in range(4):  # four abandoned scans kept both cores busy for a minute
        s = connect(srv)
        msg, _rid = frame(OP_MSG, op_msg({**COMMANDS[name](tag), "$db": "disc"}))
        s.sendall(msg)
        socks.append(s)
    wait_until(lambda: len(ops_with_comment(client, tag)) == 4, 60, "the four scans running")
    assert running_threads(srv.proc.pid) >= 2  # the probe sees them busy
    for s in socks:
        s.close()
    wait_until(lambda: not ops_with_comment(client, tag), 60, "the scans to stop")
    assert ended_by_disconnect(client) - before == 4
    # The CPU comes back: no thread left scanning (at most one caught answering a hello).
    wait_until(lambda: running_threads(srv.proc.pid) <= 1, 60,
               "the server's threads to go idle")
    # The server goes on.
    assert client.disc.slow.find_one({"_id": 7})["_id"] == 7


def test_bytes_sent_while_a_command_runs_are_kept(srv, client):
    """A client may send its next request before the reply: the watch reads it, and it is
    answered after the first."""
    s = connect(srv, timeout=60)
    try:
        first, rid1 = frame(OP_MSG, op_msg({"count": "slow", "query": SLOW, "maxTimeMS": 1000,
                                            "comment": "kept", "$db": "disc"}))
        s.sendall(first)
        wait_until(lambda: ops_with_comment(client, "kept"), 60, "the count running")
        second, rid2 = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"}))
        s.sendall(second)
        r1 = expect_reply(s, rid1)[2]
        assert r1["ok"] == 0.0 and r1["code"] == 50, r1
        assert expect_reply(s, rid2)[2]["ok"] == 1.0
    finally:
        s.close()


def test_kill_op_ends_a_running_aggregate(srv, client):
    out = {}

    def run():
        c = srv.client(socketTimeoutMS=300000)
        try:
            c.disc.command("aggregate", "slow", pipeline=[{"$match": SLOW}], cursor={},
                           comment="to-kill")
        except OperationFailure as exc:
            out["code"] = exc.code
        finally:
            c.close()

    t = threading.Thread(target=run)
    t.start()
    wait_until(lambda: ops_with_comment(client, "to-kill"), 60, "the aggregate running")
    op = ops_with_comment(client, "to-kill")[0]
    assert client.admin.command("killOp", op=op["opid"])["info"] == "attempting to kill op"
    t.join(120)
    assert not t.is_alive()
    assert out.get("code") == 11601, out
    assert not ops_with_comment(client, "to-kill")


def watch_stats(client):
    return client.admin.command("serverStatus")["network"]["disconnectWatch"]


def test_quick_reads_take_no_lock_the_watches_hold(srv, client):
    """Under a flood of abandoned slow reads, every read (even ping) used to take the one
    guard-list lock the sweeper held while arming watches: 40 workers queued on it. Now a
    guard lives in its registered operation and the sweeper finds long-running ones through
    the operation registry and arms them outside any lock; a read that ends before being
    claimed touches only its own guard. Probe: guard ends that had to wait for the sweeper
    (the only shared lock left), and watches armed."""
    tag = "flood"
    before = watch_stats(client)
    gone_before = ended_by_disconnect(client)
    socks = []
    for _ in range(8):
        s = connect(srv)
        msg, _rid = frame(OP_MSG, op_msg({**COMMANDS["count"](tag), "$db": "disc"}))
        s.sendall(msg)
        socks.append(s)
    wait_until(lambda: len(ops_with_comment(client, tag)) == 8, 10, "the slow reads running")
    wait_until(lambda: watch_stats(client)["armed"] - before["armed"] >= 8, 10,
               "the sweeper to watch the slow reads")
    mid = watch_stats(client)
    for i in range(300):
        assert client.admin.command("ping")["ok"] == 1.0
        assert client.disc.slow.find_one({"_id": i})["_id"] == i
    after = watch_stats(client)
    assert after["endWaits"] == mid["endWaits"]  # no quick read waited for the sweeper
    for s in socks:
        s.close()
    wait_until(lambda: not ops_with_comment(client, tag), 10, "the slow reads to stop")
    assert ended_by_disconnect(client) - gone_before == 8
