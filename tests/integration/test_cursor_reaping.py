"""Idle cursors (issue 9): reaped on a timer after cursorTimeoutMillis (a start-up option and a
runtime parameter) without any other cursor command arriving; noCursorTimeout cursors are
kept; finding a cursor by id costs the same with 30,000 idle cursors open (a hash table,
checked by counting the cursors each lookup compares: serverStatus metrics.cursor.lookup).

getMore from another session than the cursor's (50738) is covered by test_txn_cursors.py;
killCursors may kill any cursor, as mongod without authentication."""

import threading

import pytest
from bson import Int64
from pymongo.errors import OperationFailure

from cairn_server import CairnServer
from rawwire import OP_MSG, connect, frame, op_msg, read_reply
from workers import wait_until


def cursor_metrics(c):
    return c.admin.command("serverStatus")["metrics"]["cursor"]


@pytest.fixture
def srv(tmp_path):
    s = CairnServer(str(tmp_path / "db"), extra_args=["--setParameter",
                                                      "cursorTimeoutMillis=600"])
    s.start()
    yield s
    assert s.stop() == 0
    assert s.check_clean() is None, s.check_clean()


def test_idle_cursors_are_reaped_on_a_timer(srv):
    c = srv.client()
    try:
        assert c.admin.command("getParameter", 1, cursorTimeoutMillis=1)[
            "cursorTimeoutMillis"] == 600
        coll = c.reap.docs
        coll.insert_many([{"_id": i} for i in range(5)])
        ids = [c.reap.command("find", "docs", batchSize=1)["cursor"]["id"] for _ in range(20)]
        assert all(ids)
        # serverStatus is no cursor command: before, expiry waited for one.
        wait_until(lambda: cursor_metrics(c)["open"]["total"] == 0, 30, "the cursors reaped")
        assert cursor_metrics(c)["timedOut"] == 20
        with pytest.raises(OperationFailure) as e:
            c.reap.command("getMore", ids[0], collection="docs")
        assert e.value.code == 43
    finally:
        c.close()


def test_no_cursor_timeout_cursors_are_kept(srv):
    c = srv.client()
    try:
        c.keep.docs.insert_many([{"_id": i} for i in range(5)])
        kept = c.keep.command("find", "docs", batchSize=1, noCursorTimeout=True)["cursor"]["id"]
        c.keep.command("find", "docs", batchSize=1)
        wait_until(lambda: cursor_metrics(c)["timedOut"] >= 1, 30, "the ordinary cursor reaped")
        m = cursor_metrics(c)
        assert m["open"] == {"noTimeout": 1, "total": 1}, m
        more = c.keep.command("getMore", kept, collection="docs", batchSize=10)
        assert more["cursor"]["nextBatch"] == [{"_id": i} for i in range(1, 5)]
        assert cursor_metrics(c)["open"]["total"] == 0
    finally:
        c.close()


def test_runtime_change_applies_to_open_cursors(srv):
    c = srv.client()
    try:
        c.admin.command("setParameter", 1, cursorTimeoutMillis=600000)
        c.rt.docs.insert_many([{"_id": i} for i in range(3)])
        cid = c.rt.command("find", "docs", batchSize=1)["cursor"]["id"]
        before = cursor_metrics(c)["timedOut"]
        c.admin.command("setParameter", 1, cursorTimeoutMillis=200)
        wait_until(lambda: cursor_metrics(c)["timedOut"] == before + 1, 30, "the cursor reaped")
        with pytest.raises(OperationFailure) as e:
            c.rt.command("getMore", cid, collection="docs")
        assert e.value.code == 43
    finally:
        c.close()


N_CURSORS = 30000


def open_cursors_pipelined(server, n):
    """n finds with batchSize 1 on one raw connection, sent without waiting for replies
    (a writer thread) so that 30,000 take seconds, not a round trip each."""
    s = connect(server, timeout=60)
    msgs = []
    rids = []
    for _ in range(n):
        m, rid = frame(OP_MSG, op_msg({"find": "docs", "batchSize": 1, "$db": "many"}))
        msgs.append(m)
        rids.append(rid)
    writer = threading.Thread(target=s.sendall, args=(b"".join(msgs),))
    writer.start()
    ids = []
    for rid in rids:
        _op, response_to, doc = read_reply(s)
        assert response_to == rid and doc["ok"] == 1.0, doc
        ids.append(doc["cursor"]["id"])
    writer.join()
    s.close()
    return ids


def test_thirty_thousand_idle_cursors_do_not_slow_lookups(tmp_path):
    srv = CairnServer(str(tmp_path / "db"))
    srv.start()
    c = srv.client()
    try:
        c.many.docs.insert_many([{"_id": i} for i in range(3)])
        ids = open_cursors_pipelined(srv, N_CURSORS)
        assert len(set(ids)) == N_CURSORS and all(ids)
        m = cursor_metrics(c)
        assert m["open"]["total"] == N_CURSORS
        assert m["lookup"]["buckets"] >= N_CURSORS  # grown with the cursors
        before = m["lookup"]
        # 200 getMores, spread over the table, without a session as the cursors were made.
        s = connect(srv)
        for cid in ids[::150]:
            m, rid = frame(OP_MSG, op_msg({"getMore": Int64(cid), "collection": "docs",
                                           "batchSize": 1, "$db": "many"}))
            s.sendall(m)
            _op, response_to, r = read_reply(s)
            assert response_to == rid and r["cursor"]["nextBatch"] == [{"_id": 1}], r
        s.close()
        after = cursor_metrics(c)["lookup"]
        lookups = after["lookups"] - before["lookups"]
        probes = after["probes"] - before["probes"]
        assert lookups >= 200
        # A list compared up to 30,000 cursors per lookup (15,000 on average).
        assert probes <= 4 * lookups, (probes, lookups)
        c.many.command("killCursors", "docs", cursors=[Int64(i) for i in ids])
        assert cursor_metrics(c)["open"]["total"] == 0
    finally:
        c.close()
        assert srv.stop() == 0


def test_cursor_of_another_session(srv):
    """getMore in another session is refused (50738, mongod's validateLSID); killCursors is
    not checked without authentication, as in mongod (13 Unauthorized needs auth on)."""
    c = srv.client()
    try:
        c.own.docs.insert_many([{"_id": i} for i in range(5)])
        with c.start_session() as mine, c.start_session() as theirs:
            cid = c.own.command("find", "docs", batchSize=1, session=mine)["cursor"]["id"]
            with pytest.raises(OperationFailure) as e:
                c.own.command("getMore", cid, collection="docs", session=theirs)
            assert e.value.code == 50738
            assert "which was created in session" in str(e.value)
            r = c.own.command("killCursors", "docs", cursors=[Int64(cid)], session=theirs)
            assert r["cursorsKilled"] == [cid]
    finally:
        c.close()
