"""Failover of a 3-member set under pymongo: kill -9 of the primary during a workload of
retryable writes and transactions (checked with tools/cairn_history: no acknowledged majority
write lost, none applied twice, no isolation anomaly), a primary paused (SIGSTOP) for longer
than the election timeout and then resumed, and transactions open on a primary that is killed.

Times from a kill to the first acknowledged majority write on the new primary are printed
(run pytest with -s to see them) and recorded as junit properties; nothing asserts a duration.
Every wait is for a condition (a new primary, a member caught up, the workload's progress).
"""

import os
import sys
import time

import pytest
from pymongo import ReadPreference, WriteConcern
from pymongo.errors import OperationFailure
from pymongo.read_concern import ReadConcern

from cairn_rs import rs_factory, wait_for  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tools.cairn_history.checker import check_file, failover_times, format_report  # noqa: E402
from tools.cairn_history.history import read_history  # noqa: E402
from tools.cairn_history.runner import RunConfig, Runner  # noqa: E402

SEED = 7207
KILLS = 3
NO_SUCH_TRANSACTION = 251


def _ok_ops(runner):
    """Operations of the running workload that completed ok so far."""
    for _ in range(10):
        try:
            return sum(n for (_, outcome), n in list(runner.counts.items()) if outcome == "ok")
        except RuntimeError:  # the dict changed while copied: read again
            continue
    return 0


def _wait_progress(runner, ctx, n, timeout=60.0):
    """Waits until the workload completed n more ok operations (False if the run stopped)."""
    start = _ok_ops(runner)
    deadline = time.monotonic() + timeout
    while _ok_ops(runner) < start + n:
        if not ctx.sleep(0.05):
            return False
        if time.monotonic() > deadline:
            raise AssertionError("the workload completed fewer than %d operations in %.0fs "
                                 "(ok so far: %d)" % (n, timeout, _ok_ops(runner) - start))
    return True


def test_kill_primary_repeatedly_under_retryable_writes_and_transactions(
        rs_factory, tmp_path, record_property):
    rs = rs_factory(3)
    out = str(tmp_path / "history.jsonl")
    cfg = RunConfig(uri=rs.uri, out=out, seed=SEED, workers=4, duration=120.0,
                    op_timeout=15.0, final_timeout=60.0)
    kills = []          # (victim, new primary, fault start (monotonic))

    def kill_primary_repeatedly(ctx):
        try:
            for _ in range(KILLS):
                if not _wait_progress(runner, ctx, 150):
                    return
                victim = rs.wait_primary()
                ev = ctx.fault("kill -9 primary %s" % victim.name, victim.kill9,
                               action="kill", members=[victim.host])
                new = rs.wait_primary(exclude=[victim], timeout=60)
                kills.append((victim, new, ev["t_invoke"]))
                ctx.fault("restart %s" % victim.name, lambda: victim.start() and None,
                          action="restart", members=[victim.host])
                rs.wait_healthy(timeout=60)
            _wait_progress(runner, ctx, 40)
        finally:
            runner.stop.set()      # ends the workload: the run is as long as the kills take

    runner = Runner(cfg, faults=[kill_primary_repeatedly])
    t0 = time.monotonic()
    result = runner.run()
    elapsed = time.monotonic() - t0
    assert len(kills) == KILLS, "only %d of %d kills happened (run %r)" % (len(kills), KILLS,
                                                                         result)
    report = check_file(out, rollback_dirs=[m.dbpath for m in rs])
    text = format_report(report)

    records = read_history(out)
    ops = [r for r in records if r["kind"] == "op"]
    faults = sorted((r for r in records if r["kind"] == "fault"), key=lambda f: f["t_invoke"])
    kill_faults = [f for f in faults if f.get("action") == "kill"]
    times = dict(zip((f["id"] for f in faults), failover_times(ops, faults)))
    lines = ["kill -9 of the primary -> first acknowledged majority write (seed %d, %d ops "
             "in %.1fs):" % (SEED, len(ops), elapsed)]
    for (victim, new, _), f in zip(kills, kill_faults):
        t = times.get(f["id"])
        lines.append("  killed %s, new primary %s: %s" % (
            victim.name, new.name, "none" if t is None else "%.3fs" % t))
        record_property("failover_%s_s" % f["id"], "none" if t is None else round(t, 3))
    print("\n".join(lines))
    print(text)

    assert report.clean, "%s\n%s" % ("\n".join(lines), text)
    for (victim, new, _), f in zip(kills, kill_faults):
        # The driver continued on the new primary: a majority write completed after the kill,
        # acknowledged by a member other than the one killed.
        assert times.get(f["id"]) is not None, "no majority write completed after %s" % f["name"]
        first = min((op for op in ops if op["outcome"] == "ok" and op["t_complete"] >
                     f["t_complete"] and ((op.get("wc") or {}).get("w") == "majority" or (
                         op["type"] == "txn" and any(m[0] == "append" for m in op["mops"])))),
                    key=lambda op: op["t_complete"])
        assert first.get("server") != victim.host, (
            "the first majority write after killing %s was acknowledged by it: %r"
            % (victim.name, first))
    by = report.summary["ops"]
    ok_txn = sum(c["ok"] for k, c in by.items() if k.startswith("txn ") and k != "txn single")
    ok_ins = by.get("insert", {}).get("ok", 0)
    assert ok_txn > 0 and ok_ins > 0, "the workload did too little: %r" % by
    _assert_members_converge(rs, cfg.db)


def _assert_members_converge(rs, dbname):
    """Once caught up, every member holds exactly the primary's data (local reads): no
    member kept a write the others rolled back or lost one they have."""
    p = rs.wait_caught_up(timeout=60)
    with p.client() as pc:
        names = sorted(pc[dbname].list_collection_names())
        want = {n: list(pc[dbname][n].find().sort("_id", 1)) for n in names}
    assert any(want.values()), "nothing to compare: %r" % names
    for m in rs:
        if m is p:
            continue
        with m.client(readPreference="secondaryPreferred") as dc:
            db = dc.get_database(dbname, read_concern=ReadConcern("local"))
            got_names = sorted(db.list_collection_names())
            assert got_names == names, (m.name, got_names, names)
            for n in names:
                got = list(db[n].find().sort("_id", 1))
                if got != want[n]:
                    gi = {d["_id"]: d for d in got}
                    wi = {d["_id"]: d for d in want[n]}
                    raise AssertionError(
                        "%s diverges from the primary %s in %s.%s: only on %s: %r; only on "
                        "the primary: %r; different: %r" % (
                            m.name, p.name, dbname, n, m.name, sorted(set(gi) - set(wi))[:10],
                            sorted(set(wi) - set(gi))[:10],
                            [k for k in gi if k in wi and gi[k] != wi[k]][:10]))


def test_first_failover_of_a_fresh_set_takes_few_elections(rs_factory):
    rs = rs_factory(3)
    p = rs.wait_healthy()
    term0 = _term(p)
    t0 = time.monotonic()
    p.kill9()
    new = rs.wait_primary(exclude=[p], timeout=60)
    rounds = _term(new) - term0
    survivors = [m for m in rs if m is not p]
    stamps = [{ln.split(" I ")[0][:23] for ln in m.log_grep("standing for election")}
              for m in survivors]
    print("fresh set, first kill: new primary after %.3fs, %d election round(s), %d "
          "simultaneous candidacies" % (time.monotonic() - t0, rounds,
                                        len(stamps[0] & stamps[1])))
    assert rounds <= 2, ("the first election after the kill took %d terms; candidacies at "
                         "the same millisecond on both survivors: %s"
                         % (rounds, sorted(stamps[0] & stamps[1])))


def test_five_members_survive_two_primary_kills(rs_factory):
    """5 members: kill -9 the primary, then the next one; the remaining three (a majority)
    elect a third primary, the driver writes on at w:majority, and the two killed members
    rejoin and converge."""
    rs = rs_factory(5)
    killed = []
    with rs.client(w="majority") as c:
        coll = c.rsf.five
        coll.insert_one({"_id": 0})
        for k in (1, 2):
            victim = rs.wait_primary()
            victim.kill9()
            killed.append(victim)
            t0 = time.monotonic()
            new = rs.wait_primary(exclude=killed, timeout=60)
            coll.insert_one({"_id": k})           # retried by the driver until a primary takes it
            print("5 members, kill %d of %s: new primary %s, first majority write after %.3fs"
                  % (k, victim.name, new.name, time.monotonic() - t0))
        assert not any(m.alive() for m in killed)
        for m in killed:
            m.start()
        p = rs.wait_healthy(timeout=60)
        coll.insert_one({"_id": 3})
        assert p not in killed
    _assert_members_converge(rs, "rsf")


def _term(m):
    return m.status()["term"]


def test_paused_primary_is_replaced_and_rejoins_without_deposing(rs_factory):
    rs = rs_factory(3)
    old = rs.wait_healthy()
    settings = old.command({"replSetGetConfig": 1})["config"]["settings"]
    election_s = settings["electionTimeoutMillis"] / 1000.0
    term0 = _term(old)
    # connectTimeoutMS is also the driver's monitoring timeout: a silent (paused) primary is
    # given up after it, and operations move to the new one.
    with rs.client(w="majority", connectTimeoutMS=2000) as c:
        coll = c.rsf.pause
        coll.insert_one({"_id": "before"})
        paused_at = time.monotonic()
        old.pause()
        new = rs.wait_primary(exclude=[old], timeout=60)
        elected = time.monotonic() - paused_at
        term1 = _term(new)
        assert term1 > term0, (term0, term1)
        coll.insert_one({"_id": "during"})      # the driver follows the new primary
        assert c.primary == ("127.0.0.1", new.port), c.primary
        print("SIGSTOP of %s: %s primary after %.3fs, first majority write after %.3fs"
              % (old.name, new.name, elected, time.monotonic() - paused_at))
        # Paused for longer than the election timeout: by construction (an election happened
        # meanwhile), checked so that the test cannot silently stop testing that.
        assert time.monotonic() - paused_at > election_s
        old.resume()
        resumed_at = time.monotonic()
        # The old primary learns of the new term and rejoins as a secondary of the new one.
        wait_for(lambda: (lambda h: h.get("isWritablePrimary") is False and
                          h.get("secondary") is True and h.get("primary") == new.host)(
                              old.hello()), 30,
                 lambda: "the resumed old primary reports SECONDARY under %s:\n%s"
                 % (new.name, rs.describe()))
        assert rs.wait_healthy() is new
        # It catches up with what was written while it was paused.
        rs.wait_caught_up()
        print("SIGCONT of %s: secondary and caught up after %.3fs"
              % (old.name, time.monotonic() - resumed_at))
        with old.client(readPreference="secondaryPreferred") as dc:
            assert dc.rsf.pause.find_one({"_id": "during"}) == {"_id": "during"}
        # ... and it does not depose the new primary: for three election timeouts, every
        # member keeps the same term and names the same primary. (A stability check: it can
        # only be observed over a period.)
        end = time.monotonic() + 3 * election_s
        seen = set()
        while time.monotonic() < end:
            for m in rs:
                st = m.status()
                h = m.hello()
                seen.add((m.name, st["term"], h.get("primary")))
                assert st["term"] == term1 and h.get("primary") == new.host, (
                    "%s after the old primary rejoined: term %s (was %s), primary %s (was %s)"
                    % (m.name, st["term"], term1, h.get("primary"), new.host))
            time.sleep(0.1)
        coll.insert_one({"_id": "after"})
        assert c.primary == ("127.0.0.1", new.port)
        assert _term(new) == term1
    with rs.client() as c2:
        docs = sorted(d["_id"] for d in c2.rsf.get_collection(
            "pause", read_concern=ReadConcern("majority")).find())
    assert docs == ["after", "before", "during"], docs


def _kill_primary_and_follow(rs, client):
    """kill -9 of the primary; waits for a new one and for `client` to know it (so that the
    next operation reaches the new primary, not the dead one). Returns (victim, new)."""
    victim = rs.wait_primary()
    t0 = time.monotonic()
    victim.kill9()
    new = rs.wait_primary(exclude=[victim], timeout=60)
    t1 = time.monotonic()
    # A command on the primary makes the driver select (and so discover) the new one.
    wait_for(lambda: client.admin.command("ping") and
             client.primary == ("127.0.0.1", new.port), 60,
             lambda: "the driver uses %s as primary (it has %s)" % (new.name, client.primary))
    print("killed %s: %s primary after %.3fs, the driver follows after %.3fs"
          % (victim.name, new.name, t1 - t0, time.monotonic() - t0))
    return victim, new


def _restart(rs, victim):
    victim.start()
    rs.wait_healthy(timeout=60)


def test_transaction_open_on_a_killed_primary_fails_with_transient_label(rs_factory):
    rs = rs_factory(3)
    with rs.client(w="majority") as c:
        coll = c.rsf.get_collection("txn", write_concern=WriteConcern(w="majority"))
        coll.insert_one({"_id": "acct", "n": 0})

        # 1. The next statement of the transaction, on the new primary.
        with c.start_session() as s:
            s.start_transaction()
            coll.update_one({"_id": "acct"}, {"$inc": {"n": 1}}, session=s)
            coll.insert_one({"_id": "stmt-1"}, session=s)
            victim, new = _kill_primary_and_follow(rs, c)
            with pytest.raises(OperationFailure) as ei:
                coll.insert_one({"_id": "stmt-2"}, session=s)
            err = ei.value
            assert err.code == NO_SUCH_TRANSACTION, err.details
            assert err.has_error_label("TransientTransactionError"), err.details
            assert "TransientTransactionError" in (err.details or {}).get("errorLabels", []), (
                "the label must come from the server: %r" % err.details)
            s.abort_transaction()
        _restart(rs, victim)

        # 2. commitTransaction, on the new primary.
        with c.start_session() as s:
            s.start_transaction()
            coll.update_one({"_id": "acct"}, {"$inc": {"n": 10}}, session=s)
            coll.insert_one({"_id": "commit-1"}, session=s)
            victim, new = _kill_primary_and_follow(rs, c)
            with pytest.raises(OperationFailure) as ei:
                s.commit_transaction()
            err = ei.value
            assert err.code == NO_SUCH_TRANSACTION, err.details
            assert err.has_error_label("TransientTransactionError"), err.details
            assert not err.has_error_label("UnknownTransactionCommitResult"), err.details
        _restart(rs, victim)

        # 3. with_transaction retries the whole transaction on the new primary.
        attempts = []

        def callback(session):
            attempts.append(len(attempts) + 1)
            coll.update_one({"_id": "acct"}, {"$inc": {"n": 100}}, session=session)
            coll.insert_one({"_id": "wt-%d" % len(attempts)}, session=session)
            if len(attempts) == 1:
                killed.extend(_kill_primary_and_follow(rs, c))
                coll.insert_one({"_id": "wt-after-kill"}, session=session)

        killed = []
        with c.start_session() as s:
            s.with_transaction(callback, write_concern=WriteConcern(w="majority"))
        assert attempts == [1, 2], attempts
        _restart(rs, killed[0])

        final = {d["_id"]: d for d in c.rsf.get_collection(
            "txn", read_concern=ReadConcern("majority"),
            read_preference=ReadPreference.PRIMARY).find()}
    # Only the with_transaction retry committed, once.
    assert final == {"acct": {"_id": "acct", "n": 100}, "wt-2": {"_id": "wt-2"}}, final
