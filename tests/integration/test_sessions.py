"""Logical sessions on the server (wire-protocol.md §4.1, §4.5): the session commands with
mongod's shapes and errors, session ids of a wrong shape, what survives a restart, the
transactionLifetimeLimitSeconds reaper, serverStatus().transactions and currentOp.

mongod references: initializeOperationSessionInfo + the IDL parser of OperationSessionInfo
(lsid errors: TypeMismatch 14 for a wrong type, 40414 for a missing id, InvalidUUID 207 for a
UUID that is not 16 bytes), jstests/core/txns/kill_sessions_kills_transaction.js,
abort_expired_transaction.js (reaper + currentOp "inactive transaction"),
TransactionParticipant::_refreshSelfFromStorageIfNeeded (a committed transaction's record is
durable; an in-progress one is not).

One deliberate expectation that goes beyond mongod: endSessions aborts an open transaction of
the ended session at once. mongod only marks the session ended and its transaction is reaped
at the next logical-session-cache refresh (logicalSessionRefreshMillis, 5 minutes), so a commit
sent right after endSessions could still succeed there; drivers abort before they end a
session, so no driver depends on either behaviour.
"""

import pytest
from bson import Binary, Int64

from txn_helpers import (
    CODES, TRANSIENT, RawConn, Txn, assert_code_in, assert_error, assert_ok, find_docs, new_lsid,
    retryable, wait_until)


@pytest.fixture
def conn(server):
    c = RawConn(server)
    yield c
    c.close()


def ins(*ids):
    return {"insert": "c", "documents": [{"_id": i} for i in ids]}


# -- startSession / hello ------------------------------------------------------------------

def test_start_session_returns_id_and_timeout(conn):
    r = assert_ok(conn.run({"startSession": 1}, "admin"))
    sid = r["id"]["id"]
    assert isinstance(sid, Binary) and sid.subtype == 4 and len(sid) == 16, r
    assert r["timeoutMinutes"] == 30 and isinstance(r["timeoutMinutes"], int), r
    r2 = assert_ok(conn.run({"startSession": 1}, "admin"))
    assert r2["id"]["id"] != sid, "each startSession makes a new id"


def test_started_session_is_usable(conn, db):
    lsid = assert_ok(conn.run({"startSession": 1}, "admin"))["id"]
    assert_ok(conn.run(retryable(ins(1), lsid, 1), db.name))
    t = Txn(conn, db.name, lsid=lsid, number=2)
    assert_ok(t.start(ins(2)))
    assert_ok(t.commit())
    assert [d["_id"] for d in find_docs(conn, db.name, "c")] == [1, 2]


def test_hello_advertises_thirty_minute_sessions(conn, client):
    r = assert_ok(conn.run({"hello": 1}, "admin"))
    assert r["logicalSessionTimeoutMinutes"] == 30, r
    r = assert_ok(conn.run({"isMaster": 1}, "admin"))
    assert r["logicalSessionTimeoutMinutes"] == 30, r
    with client.start_session() as s:
        client.admin.command("ping", session=s)
        assert s.session_id["id"].subtype == 4


# -- endSessions / killSessions / killAllSessions / refreshSessions ------------------------

@pytest.mark.parametrize("name", ["endSessions", "killSessions", "refreshSessions"])
def test_session_list_commands_accept_ids(conn, name):
    assert_ok(conn.run({name: [new_lsid(), new_lsid()]}, "admin"), "%s of unknown ids" % name)
    used = new_lsid()
    assert_ok(conn.run({"find": "c", "filter": {}, "lsid": used}, "test"))
    assert_ok(conn.run({name: [used]}, "admin"), "%s of a used id" % name)
    if name != "killSessions":  # killSessions: [] means every session
        assert_ok(conn.run({name: []}, "admin"), "%s of no id" % name)


@pytest.mark.parametrize("name", ["endSessions", "killSessions", "refreshSessions"])
@pytest.mark.parametrize("arg,codes", [
    (1, (CODES["TypeMismatch"],)),
    ("x", (CODES["TypeMismatch"],)),
    ([1], (CODES["TypeMismatch"],)),
    ([{"id": "not a uuid"}], (CODES["TypeMismatch"],)),
    ([{}], (CODES["IDLFailedToParse"],)),
], ids=["int", "string", "array of int", "id string", "missing id"])
def test_session_list_commands_refuse_bad_shapes(conn, name, arg, codes):
    assert_code_in(conn.run({name: arg}, "admin"), codes, "%s: %r" % (name, arg))


def test_kill_all_sessions_shapes(server_factory):
    srv = server_factory()
    with RawConn(srv) as c:
        assert_ok(c.run({"killAllSessions": []}, "admin"))
        assert_ok(c.run({"killAllSessions": [{"user": "nobody", "db": "admin"}]}, "admin"))
        assert_code_in(c.run({"killAllSessions": 1}, "admin"), (CODES["TypeMismatch"],),
                       "killAllSessions: 1")


def test_kill_sessions_aborts_open_transaction(conn, db):
    t = Txn(conn, db.name, number=4)
    assert_ok(t.start(ins(1)))
    assert_ok(conn.run({"killSessions": [t.lsid]}, "admin"))
    assert_error(t.commit(), CODES["NoSuchTransaction"], "NoSuchTransaction", labels=[TRANSIENT],
                 what="commit after killSessions")
    assert find_docs(conn, db.name, "c") == []
    t2 = t.next()
    assert_ok(t2.start(ins(2)), "the session can be used again with a higher number")
    assert_ok(t2.commit())
    assert [d["_id"] for d in find_docs(conn, db.name, "c")] == [2]


def test_kill_sessions_leaves_other_sessions_alone(conn, db):
    # The collection exists first: two transactions that both create it implicitly conflict
    # (the second gets WriteConflict), as in mongod.
    assert_ok(conn.run({"create": "c"}, db.name))
    a = Txn(conn, db.name)
    b = Txn(conn, db.name)
    assert_ok(a.start(ins(1)))
    assert_ok(b.start(ins(2)))
    assert_ok(conn.run({"killSessions": [a.lsid]}, "admin"))
    assert_error(a.commit(), CODES["NoSuchTransaction"])
    assert_ok(b.commit())
    assert [d["_id"] for d in find_docs(conn, db.name, "c")] == [2]


def test_end_sessions_aborts_open_transaction(conn, db):
    t = Txn(conn, db.name)
    assert_ok(t.start(ins(1)))
    assert_ok(conn.run({"endSessions": [t.lsid]}, "admin"))
    assert_error(t.commit(), CODES["NoSuchTransaction"], what="commit after endSessions")
    assert find_docs(conn, db.name, "c") == []


def test_kill_all_sessions_aborts_every_open_transaction(server_factory):
    srv = server_factory()
    with RawConn(srv) as c:
        assert_ok(c.run({"create": "c"}, "s"))  # see test_kill_sessions_leaves_other_sessions_alone
        a, b = Txn(c, "s"), Txn(c, "s")
        assert_ok(a.start(ins(1)))
        assert_ok(b.start(ins(2)))
        assert_ok(c.run({"killAllSessions": []}, "admin"))
        assert_error(a.commit(), CODES["NoSuchTransaction"], what="first session")
        assert_error(b.commit(), CODES["NoSuchTransaction"], what="second session")
        assert find_docs(c, "s", "c") == []


# -- session ids of a wrong shape ----------------------------------------------------------

BAD_LSIDS = [
    ("string", "abc", (CODES["TypeMismatch"],)),
    ("number", 5, (CODES["TypeMismatch"],)),
    ("no id", {}, (CODES["IDLFailedToParse"],)),
    ("id string", {"id": "abc"}, (CODES["TypeMismatch"],)),
    ("id generic binary", {"id": Binary(b"0123456789abcdef", 0)}, (CODES["TypeMismatch"],)),
    ("id 8 bytes", {"id": Binary(b"01234567", 4)}, (207, CODES["TypeMismatch"])),
]


@pytest.mark.parametrize("case", BAD_LSIDS, ids=[c[0] for c in BAD_LSIDS])
def test_malformed_lsid_is_refused(conn, db, case):
    _name, lsid, codes = case
    assert_code_in(conn.run({"find": "c", "filter": {}, "lsid": lsid}, db.name), codes,
                   "find with lsid %r" % (lsid,))
    assert_code_in(conn.run(dict(ins(1), lsid=lsid, txnNumber=Int64(1)), db.name), codes,
                   "retryable insert with lsid %r" % (lsid,))
    assert find_docs(conn, db.name, "c") == []


# -- restart -------------------------------------------------------------------------------

def test_session_state_across_clean_restart(server_factory):
    srv = server_factory()
    with RawConn(srv) as c:
        done = Txn(c, "s", number=3)
        assert_ok(done.start(ins(1)))
        assert_ok(done.commit(writeConcern={"w": "majority"}))
        open_ = Txn(c, "s", number=5)
        assert_ok(open_.start(ins(2)))
    srv.restart()
    with RawConn(srv) as c:
        done.conn = c
        open_.conn = c
        assert_ok(done.commit(), "a retried commit of a committed transaction after restart")
        assert_ok(done.commit(writeConcern={"w": "majority", "wtimeout": 10000}))
        assert_error(done.run(ins(3)), CODES["TransactionCommitted"],
                     what="statement of a committed transaction after restart")
        assert_error(open_.run(ins(4)), CODES["NoSuchTransaction"], labels=[TRANSIENT],
                     what="an in-progress transaction does not survive a restart")
        assert_error(open_.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT])
        assert [d["_id"] for d in find_docs(c, "s", "c")] == [1]
        older = Txn(c, "s", lsid=done.lsid, number=2)
        assert_error(older.start(ins(9)), CODES["TransactionTooOld"],
                     what="the session's number survived the restart")


def test_committed_transaction_survives_kill9(server_factory):
    srv = server_factory()
    with RawConn(srv) as c:
        t = Txn(c, "s", number=1)
        assert_ok(t.start(ins(1, 2)))
        assert_ok(t.commit(writeConcern={"w": "majority"}))
    srv.crash_restart()
    with RawConn(srv) as c:
        t.conn = c
        assert_ok(t.commit(), "retried commit after kill -9")
        assert [d["_id"] for d in find_docs(c, "s", "c")] == [1, 2]


# -- reaper, counters, currentOp -----------------------------------------------------------

def txn_status(conn):
    r = assert_ok(conn.run({"serverStatus": 1}, "admin"))
    assert "transactions" in r, "serverStatus has no transactions section: %r" % sorted(r)
    return r["transactions"]


def test_reaper_aborts_transaction_past_lifetime_limit(server_factory):
    srv = server_factory()
    with RawConn(srv) as c:
        r = assert_ok(c.run({"setParameter": 1, "transactionLifetimeLimitSeconds": 1}, "admin"))
        assert r.get("was") == 60, r
        got = assert_ok(c.run({"getParameter": 1, "transactionLifetimeLimitSeconds": 1}, "admin"))
        assert got["transactionLifetimeLimitSeconds"] == 1, got
        t = Txn(c, "s")
        assert_ok(t.start(ins(1)))

        def aborted():
            r = t.run({"find": "c", "filter": {}})
            return r if r.get("ok") == 0.0 else None

        r = wait_until(aborted, 20, "the transaction was not aborted by the reaper", interval=0.2)
        assert_error(r, CODES["NoSuchTransaction"], "NoSuchTransaction", labels=[TRANSIENT],
                     what="statement after the reaper")
        assert_error(t.commit(), CODES["NoSuchTransaction"], labels=[TRANSIENT])
        assert find_docs(c, "s", "c") == []
        st = txn_status(c)
        assert st["totalAborted"] >= 1 and st["currentOpen"] == 0, st


def test_set_parameter_lifetime_limit_validation(server_factory):
    srv = server_factory()
    with RawConn(srv) as c:
        r = c.run({"setParameter": 1, "transactionLifetimeLimitSeconds": 0}, "admin")
        assert_error(r, CODES["BadValue"], what="transactionLifetimeLimitSeconds 0")
        r = c.run({"setParameter": 1, "transactionLifetimeLimitSeconds": 5}, "test")
        assert_error(r, CODES["Unauthorized"], what="setParameter outside admin")
        got = assert_ok(c.run({"getParameter": 1, "transactionLifetimeLimitSeconds": 1}, "admin"))
        assert got["transactionLifetimeLimitSeconds"] == 60, got


def test_max_sessions_refuses_one_more_session(server_factory):
    """maxSessions (startup only, as mongod): a command in one session more than the cache
    holds is refused with 261 TooManyLogicalSessions; sessions already known keep working, and
    ending one makes room."""
    srv = server_factory(extra_args=("--setParameter", "maxSessions=3"))

    def write(lsid, n):
        return retryable({"insert": "c", "documents": [{"_id": {"s": lsid["id"], "n": n}}],
                          "writeConcern": {"w": "majority"}}, lsid, n)

    with RawConn(srv) as c:
        got = assert_ok(c.run({"getParameter": 1, "maxSessions": 1}, "admin"))
        assert got["maxSessions"] == 3, got
        assert_error(c.run({"setParameter": 1, "maxSessions": 5}, "admin"),
                     CODES["IllegalOperation"], what="maxSessions at runtime")
        lsids = [new_lsid() for _ in range(4)]
        for lsid in lsids[:3]:
            assert "writeErrors" not in assert_ok(c.run(write(lsid, 1), "s"))
        assert_error(c.run(write(lsids[3], 1), "s"),
                     CODES["TooManyLogicalSessions"], "TooManyLogicalSessions")
        assert_ok(c.run(write(lsids[0], 2), "s"))
        assert_ok(c.run({"endSessions": [lsids[1]]}, "admin"))
        # The ended session goes once its last commit is applied here (at once, or at the
        # reaper's next pass a second later).
        wait_until(lambda: c.run(write(lsids[3], 1), "s").get("ok") == 1.0, 10,
                   "ending a session did not make room")
        assert len(find_docs(c, "s", "c")) == 5


def test_server_status_transaction_counters(server_factory):
    srv = server_factory()
    with RawConn(srv) as c:
        base = txn_status(c)
        for key in ("currentActive", "currentInactive", "currentOpen", "totalStarted",
                    "totalCommitted", "totalAborted"):
            assert key in base, "serverStatus.transactions lacks %s: %r" % (key, base)
        assert (base["currentOpen"], base["currentActive"], base["currentInactive"]) == (0, 0, 0)

        a = Txn(c, "s")
        assert_ok(a.start(ins(1)))
        st = txn_status(c)
        assert st["totalStarted"] == base["totalStarted"] + 1, st
        assert st["currentOpen"] == 1 and st["currentInactive"] == 1, st
        assert st["currentActive"] == 0, "no statement of it is running: %r" % st
        assert_ok(a.commit())
        st = txn_status(c)
        assert st["totalCommitted"] == base["totalCommitted"] + 1, st
        assert st["currentOpen"] == 0 and st["currentInactive"] == 0, st

        b = Txn(c, "s")
        assert_ok(b.start(ins(2)))
        assert_ok(b.abort())
        d = Txn(c, "s")
        assert_ok(d.start(ins(3)))
        assert_ok(d.run(ins(3)))  # DuplicateKey: aborts
        st = txn_status(c)
        assert st["totalStarted"] == base["totalStarted"] + 3, st
        assert st["totalAborted"] == base["totalAborted"] + 2, st
        assert st["totalCommitted"] == base["totalCommitted"] + 1, st
        assert st["currentOpen"] == 0, st

        assert_ok(c.run(retryable(ins(10), new_lsid(), 1), "s"))
        st2 = txn_status(c)
        assert st2["totalStarted"] == st["totalStarted"], "a retryable write is no transaction"


def test_current_op_lists_idle_transaction(conn, db):
    t = Txn(conn, db.name, number=3)
    assert_ok(t.start(ins(1)))

    def entries():
        r = assert_ok(conn.run({"currentOp": 1, "$all": True}, "admin"))
        return [op for op in r["inprog"]
                if op.get("lsid", {}).get("id") == t.lsid["id"] and "transaction" in op]

    found = entries()
    assert len(found) == 1, "currentOp must list the idle transaction once: %r" % found
    op = found[0]
    assert op["active"] is False, op
    assert op.get("desc") == "inactive transaction" and op.get("type") == "idleSession", op
    params = op["transaction"]["parameters"]
    assert params["txnNumber"] == 3 and params["autocommit"] is False, op
    assert_ok(t.commit())
    assert entries() == [], "a committed transaction is no longer listed"
