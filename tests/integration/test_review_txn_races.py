"""Review findings: memory-safety races around sessions and transaction cursors.

Both are use-after-free bugs that an ASan build reports within seconds (build with
-Db_sanitize=address,undefined and point CAIRND at it); a plain build may survive them
silently or crash later. Each test fails (the server dies or leaves a sanitizer report,
which server_factory turns into a failure) until the bug is fixed.
"""

import threading
import time

from bson import Int64

from txn_helpers import (
    TEST_COMMANDS_ARGS, RawConn, Txn, assert_ok, fail_command, new_lsid, retryable, seed)


def test_kill_sessions_while_fail_point_closes_the_connection(server_factory):
    """dispatch.c: with failCommand closeConnection, apply_fail_point frees the request (and the
    struct cairn_op embedded in it) BEFORE net_session_leave checks the session in; meanwhile
    the session's `op` still points at the freed operation, and killSessions / the reaper /
    step-down (abort_or_mark -> cairn_op_interrupt(s->op)) or currentOp (txn_foreach_open reads
    s->op->id) write/read freed memory. ASan: heap-use-after-free in cairn_op_interrupt
    (op.c:75) from txn_sessions_kill_all, freed by apply_fail_point (dispatch.c:603)."""
    srv = server_factory(extra_args=TEST_COMMANDS_ARGS)
    admin = RawConn(srv, timeout=30)
    fail_command(admin, "alwaysOn", failCommands=["insert"], closeConnection=True)
    stop = threading.Event()

    def killer():
        k = RawConn(srv, timeout=30)
        try:
            while not stop.is_set():
                k.run({"killSessions": []}, "admin")
        except (ConnectionError, OSError):
            pass
        finally:
            k.close()

    killers = [threading.Thread(target=killer, daemon=True) for _ in range(2)]
    for t in killers:
        t.start()
    lsids = [new_lsid() for _ in range(4)]
    deadline = time.monotonic() + 15
    n = 0
    while time.monotonic() < deadline and srv.alive():
        c = RawConn(srv, timeout=30)
        try:
            c.run(retryable({"insert": "c", "documents": [{"x": 1}]}, lsids[n % 4], n + 1), "r")
        except (ConnectionError, OSError):
            pass  # the fail point closes it: expected
        c.close()
        n += 1
    stop.set()
    for t in killers:
        t.join(10)
    admin.close()
    assert srv.alive(), "cairnd died after %d iterations:\n%s" % (n, srv.log_tail())


def test_getmore_outside_the_transaction_races_its_statements(server_factory):
    """cmd_read.c getMore checks neither session nor transaction of a cursor (mongod: 50737-50741),
    and check_cursor_collection -> txn_read_coll -> txn_write_staged_coll walks the
    transaction's w->ops while the transaction's own insert reallocs it (write.c ops_reserve).
    ASan: heap-use-after-free READ in txn_write_staged_coll (write.c:202), freed by
    ops_reserve's realloc (write.c:133)."""
    srv = server_factory()
    a = RawConn(srv, timeout=120)
    seed(a, "r", "c", [{"_id": -i} for i in range(1, 50001)])
    for rnd in range(12):
        if not srv.alive():
            break
        txn = Txn(a, "r", number=rnd + 1)
        cids = []
        for j in range(3):
            cmd = {"find": "c", "filter": {}, "batchSize": 1}
            r = assert_ok(txn.run(cmd) if j else txn.start(cmd))
            cids.append(r["cursor"]["id"])
        stop = threading.Event()

        def drive(cid):
            b = RawConn(srv, timeout=120)
            try:
                while not stop.is_set():
                    x = b.run({"getMore": Int64(cid), "collection": "c", "batchSize": 1}, "r")
                    if x.get("ok") != 1.0 or x["cursor"]["id"] == 0:
                        break
            except (ConnectionError, OSError):
                pass
            finally:
                b.close()

        threads = [threading.Thread(target=drive, args=(c,), daemon=True) for c in cids]
        for t in threads:
            t.start()
        base = 0
        try:
            for k in range(15):
                docs = [{"_id": base + i} for i in range(1 << k)]
                base += 1 << k
                if txn.run({"insert": "c", "documents": docs}).get("ok") != 1.0:
                    break
        except (ConnectionError, OSError):
            pass
        stop.set()
        for t in threads:
            t.join(30)
        try:
            txn.abort()
        except (ConnectionError, OSError):
            pass
    a.close()
    assert srv.alive(), "cairnd died:\n%s" % srv.log_tail()
