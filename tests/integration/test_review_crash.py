"""Crash consistency under load (reviewer R3): kill -9 / SIGTERM at random moments while
concurrent writers run with w:"majority" and j:true; after each restart every acknowledged
write must be there exactly, counters never go below their last acknowledged value, deleted
documents stay deleted, timestamps keep increasing, and the server becomes writable again."""

import os
import random
import threading
import time

from pymongo import ReturnDocument, WriteConcern
from pymongo.errors import PyMongoError

from workers import Workers, wait_until


class _Ledger:
    """What the writers saw acknowledged (and what they merely attempted)."""

    def __init__(self):
        self.mu = threading.Lock()
        self.inserted = set()        # acknowledged inserts (still expected present)
        self.deleted = set()         # acknowledged deletes (expected absent)
        self.counters = {}           # counter _id -> last acknowledged value
        self.attempted_incs = {}     # counter _id -> number of $inc sent (acked or not)
        self.acks = 0                # operations acknowledged so far, all rounds


def _writer(coll_maj, coll_j, ledger, wid, stop, rnd):
    ctr = "ctr-%d" % wid
    seq = 0
    while not stop.is_set():
        seq += 1
        kind = rnd.random()
        try:
            if kind < 0.4:
                with ledger.mu:
                    ledger.attempted_incs[ctr] = ledger.attempted_incs.get(ctr, 0) + 1
                doc = coll_maj.find_one_and_update({"_id": ctr}, {"$inc": {"n": 1}}, upsert=True,
                                                   return_document=ReturnDocument.AFTER)
                with ledger.mu:
                    prev = ledger.counters.get(ctr, 0)
                    assert doc["n"] > prev, (ctr, doc, prev)
                    ledger.counters[ctr] = doc["n"]
                    ledger.acks += 1
            elif kind < 0.7:
                _id = "i-%d-%d-%d" % (wid, ledger_round(ledger), seq)
                target = coll_j if kind < 0.55 else coll_maj
                target.insert_one({"_id": _id, "w": wid, "pad": "x" * rnd.randint(0, 300)})
                with ledger.mu:
                    ledger.inserted.add(_id)
                    ledger.acks += 1
            else:
                _id = "d-%d-%d-%d" % (wid, ledger_round(ledger), seq)
                coll_maj.insert_one({"_id": _id})
                with ledger.mu:
                    ledger.inserted.add(_id)
                with ledger.mu:  # from here on it may or may not be deleted
                    ledger.inserted.discard(_id)
                coll_maj.delete_one({"_id": _id})
                with ledger.mu:
                    ledger.deleted.add(_id)
                    ledger.acks += 1
        except PyMongoError:
            if stop.is_set():
                return
            time.sleep(0.01)
        except AssertionError as exc:  # reported by the checker
            with ledger.mu:
                ledger.errors.append(str(exc))
            return


def ledger_round(ledger):
    return ledger.round


def _check(srv, ledger):
    c = srv.client()
    coll = c["crash"]["c"]
    docs = {d["_id"]: d for d in coll.find({})}
    missing = sorted(i for i in ledger.inserted if i not in docs)
    resurrected = sorted(i for i in ledger.deleted if i in docs)
    assert not missing, "acknowledged inserts lost: %r" % missing[:10]
    assert not resurrected, "acknowledged deletes undone: %r" % resurrected[:10]
    for ctr, acked in ledger.counters.items():
        got = docs.get(ctr, {}).get("n", 0)
        attempted = ledger.attempted_incs.get(ctr, 0)
        assert acked <= got <= attempted, (ctr, acked, got, attempted)
        # Resynchronise with what survived (an unacknowledged $inc may have landed).
        ledger.counters[ctr] = got
        ledger.attempted_incs[ctr] = got
    # Unacknowledged inserts that survived are fine; forget attempts.
    t = c.admin.command("hello")
    assert t["isWritablePrimary"] is True
    op = c["crash"].command("ping")
    c.close()
    return op


def _acks(ledger):
    with ledger.mu:
        return ledger.acks


def _run_round(srv, ledger, rnd, seconds, n_writers=4):
    """Starts the writers; returns once this round has acknowledged operations (so that the
    kill that follows has something to lose) and then `seconds` more have passed."""
    clients = []
    stop = threading.Event()
    workers = Workers()
    start = _acks(ledger)
    for wid in range(n_writers):
        cl = srv.client(retryWrites=False, socketTimeoutMS=5000, serverSelectionTimeoutMS=500)
        clients.append(cl)
        db = cl["crash"]
        coll_maj = db.get_collection("c", write_concern=WriteConcern(w="majority"))
        coll_j = db.get_collection("c", write_concern=WriteConcern(w=1, j=True))
        workers.start(_writer, coll_maj, coll_j, ledger, wid, stop,
                      random.Random(rnd.random()), name="writer-%d" % wid)
    wait_until(lambda: _acks(ledger) >= start + 10 or workers.errors, 30,
               lambda: "the writers had 10 acknowledged operations this round (%d)"
               % (_acks(ledger) - start))
    time.sleep(seconds)  # the seeded moment of the kill within the round
    return stop, workers, clients


def _finish(stop, workers, clients):
    stop.set()
    workers.join(timeout=20)  # fails if a writer hung
    for cl in clients:
        cl.close()
    workers.check()           # fails if a writer raised anything but PyMongoError


def _max_ts_seen(srv):
    c = srv.client()
    r = c["crash"].command("insert", "ts", documents=[{"t": time.time()}])
    c.close()
    return r["operationTime"]


def test_crash_cycles_keep_acknowledged_writes(server_factory):
    # The kill moments still vary with timing; the seed fixes the workload and round lengths.
    # CAIRN_CRASH_SEED explores others (the seed is shown by pytest when the test fails).
    seed = int(os.environ.get("CAIRN_CRASH_SEED", "20261122"))
    print("crash-cycle seed", seed)
    rnd = random.Random(seed)
    srv = server_factory()
    ledger = _Ledger()
    ledger.errors = []
    ledger.round = 0
    last_op = _max_ts_seen(srv)
    t0 = time.monotonic()
    for rnd_no in range(15):
        ledger.round = rnd_no
        stop, workers, clients = _run_round(srv, ledger, rnd, rnd.uniform(0.0, 1.2))
        if rnd_no % 5 == 4:
            srv.stop(timeout=20)  # clean shutdown while writers and waiters are pending
        else:
            srv.kill9()
        _finish(stop, workers, clients)
        assert not ledger.errors, ledger.errors
        srv.start(timeout=30)
        _check(srv, ledger)
        op = _max_ts_seen(srv)
        assert op > last_op, ("operationTime went backwards across restart", last_op, op)
        last_op = op
        if time.monotonic() - t0 > 90:
            break
    assert srv.problems == [], srv.problems


def test_crash_across_raft_snapshots(server_factory):
    """Enough raft entries to take several descriptor snapshots (threshold 4096), with kills
    right after bursts; the data must survive restarts that load a snapshot."""
    srv = server_factory()
    expected = {}
    c = srv.client()
    coll = c["snap"].get_collection("c", write_concern=WriteConcern(w=1, j=True))
    n = 0
    for burst in range(3):
        # One raft entry per insert: sequential j:true writes are not grouped.
        for _ in range(2100):
            coll.insert_one({"_id": n, "v": burst})
            expected[n] = burst
            n += 1
        coll.update_one({"_id": 0}, {"$set": {"v": 100 + burst}})
        expected[0] = 100 + burst
        c.close()
        srv.crash_restart(timeout=30)
        c = srv.client()
        coll = c["snap"].get_collection("c", write_concern=WriteConcern(w=1, j=True))
        got = {d["_id"]: d["v"] for d in coll.find({})}
        assert got == expected
    c.close()
    srv.restart(timeout=30)
    c = srv.client()
    got = {d["_id"]: d["v"] for d in c["snap"]["c"].find({})}
    assert got == expected
    c.close()
    assert srv.problems == [], srv.problems


def test_oversize_commit_does_not_hide_concurrent_commits(server_factory):
    """A batch whose documents together pass the 24 MiB entry limit commits in parts (each
    document joins the next commit once the staging would pass the flush threshold); it was
    once refused whole, and the refusal discarded the whole overlay, hiding other clients'
    proposed-but-unapplied commits, so the next writer resolved its update against stale data
    (a lost $inc that had been acknowledged with w:"majority")."""
    from pymongo.errors import OperationFailure

    srv = server_factory()
    c = srv.client()
    c.ovl.ctr.insert_one({"_id": "ctr", "n": 0})
    acked = [0] * 6
    stop = threading.Event()
    errors = []
    workers = Workers()

    def incs(i):
        cl = srv.client()
        coll = cl.ovl.get_collection("ctr", write_concern=WriteConcern(w="majority"))
        try:
            while not stop.is_set():
                coll.update_one({"_id": "ctr"}, {"$inc": {"n": 1}})
                acked[i] += 1
        except PyMongoError as exc:
            errors.append(repr(exc))
        finally:
            cl.close()

    for i in range(6):
        workers.start(incs, i)
    big = {"_id": "big", "p": "x" * (16777216 - 26)}
    # Just below the flush threshold, so that the big document joins the same commit.
    pre = {"_id": "a", "p": "y" * 8388490}
    failed = []
    for _ in range(6):
        try:
            c.ovl.big.insert_many([pre, big])
        except OperationFailure as exc:
            failed.append(str(exc)[:200])
        c.ovl.big.delete_many({})
    stop.set()
    workers.finish(timeout=30)
    assert not errors, errors
    assert not failed, failed
    got = c.ovl.ctr.find_one({"_id": "ctr"})["n"]
    assert got == sum(acked), ("acknowledged $inc lost", got, sum(acked))
    c.close()


def test_entry_near_replication_limit_survives_crash(server_factory):
    """A commit just below the 24 MiB limit is one raft entry; after kill -9 and restart it
    must load back from the raft log (replayed above the engine watermark or not)."""
    from pymongo.errors import OperationFailure

    srv = server_factory()
    c = srv.client()
    coll = c.near.get_collection("big", write_concern=WriteConcern(w=1, j=True))
    big = {"_id": "big", "p": "x" * (16777216 - 26)}
    # Find a first document size whose commit lands just below the limit.
    size = 8388490
    while True:
        try:
            coll.insert_many([{"_id": "a", "p": "y" * size}, big])
            break
        except OperationFailure as exc:
            assert "exceeds the replication limit" in str(exc), exc
            size -= 16
    coll.insert_one({"_id": "after"})
    c.close()
    srv.crash_restart(timeout=60)
    c = srv.client()
    got = {d["_id"]: len(d.get("p", "")) for d in c.near.big.find({})}
    assert got == {"a": size, "big": len(big["p"]), "after": 0}
    c.close()
