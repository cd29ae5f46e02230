"""The history checker (tools/cairn_history) finds what it must, and the runner's histories of
a real cairnd are clean.

Hand-made histories, one per finding the checker owes: a lost majority write (insert and
transaction append), a value applied twice (insert and list), a failed write present, w:1
writes lost / rolled back (matched against a real rollback BSON file) / lost with a killed
member, G0, G1a, G1b, G1c, G-single (read skew and lost update), an incompatible order; a clean
history with write skew (G2, allowed under snapshot isolation) passes. The outcome rules
(ok / fail / info) are checked on driver attempt logs, the SCC search on a long chain, and the
command line's exit status. End to end: seeded runs of both workloads against a one-member
cairnd whose histories check clean: a plain run, one paused by SIGSTOP/SIGCONT from a Python
schedule and from a shell command (operations time out), one killed with -9 and restarted,
and one through the command line (run --ops N --check)."""

import json
import os
import signal
import subprocess
import sys

import bson
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tools.cairn_history import graph, outcomes  # noqa: E402
from tools.cairn_history.checker import check, check_file, format_report  # noqa: E402
from tools.cairn_history.history import (final_record, fault_record, meta_record,  # noqa: E402
                                         op_record, read_history, write_history)
from tools.cairn_history.runner import RunConfig, run  # noqa: E402
from tools.cairn_history.schedule import ScheduleError, parse  # noqa: E402

SERVER = "127.0.0.1:27017"


# -- builders for hand-made histories -------------------------------------------------------

class H:
    """A hand-made history: ops get increasing ids and times; finals as given."""

    def __init__(self):
        self.records = [meta_record(seed=0, collections=["ins_w1", "ins_majority", "la"],
                                    insert_collections=["ins_w1", "ins_majority"],
                                    append_collections=["la"])]
        self.t = 100.0
        self.n = 0

    def _times(self):
        self.t += 1.0
        return self.t, self.t + 0.5

    def txn(self, mops, outcome="ok"):
        self.n += 1
        t0, t1 = self._times()
        self.records.append(op_record(self.n, 0, "txn", outcome, t0, t1, coll="la",
                                      mode="explicit", mops=mops))
        return self.n

    def insert(self, value, w="majority", outcome="ok", retry=False, j=False,
               server=SERVER, error=None):
        self.n += 1
        t0, t1 = self._times()
        coll = "ins_majority" if w == "majority" else "ins_w1"
        wc = {"w": w} if w == "majority" else {"w": 1, "j": j}
        self.records.append(op_record(self.n, 0, "insert", outcome, t0, t1, error=error,
                                      coll=coll, doc_id="%s-%d" % (
                                          "wm" if w == "majority" else "w1", value),
                                      value=value, wc=wc, retry=retry, server=server))
        return self.n

    def fault(self, name, **fields):
        t0, t1 = self._times()
        self.records.append(fault_record(len(self.records), name, t0, t1, **fields))

    def final(self, w1=(), majority=(), la=None):
        t0, t1 = self._times()
        self.records.append(final_record("ins_w1", [{"_id": "w1-%d" % v, "v": v} for v in w1],
                                         t0, t1))
        self.records.append(final_record("ins_majority",
                                         [{"_id": "wm-%d" % v, "v": v} for v in majority],
                                         t0, t1))
        self.records.append(final_record("la", [{"_id": k, "vals": vals}
                                                for k, vals in (la or {}).items()], t0, t1))
        return self

    def check(self, rollback_dirs=()):
        return check(self.records, rollback_dirs)


def types(report):
    return {f["type"] for f in report.anomalies()}


def finding(report, ftype):
    found = [f for f in report.findings if f["type"] == ftype]
    assert found, "no %s finding in:\n%s" % (ftype, format_report(report))
    return found[0]


# -- clean histories ------------------------------------------------------------------------

def clean_history():
    h = H()
    h.insert(1, "majority")
    h.insert(2, 1)
    h.insert(3, "majority", outcome="info")       # unknown: may be absent
    h.insert(4, 1, outcome="info")                # unknown: may be present
    h.insert(5, "majority", outcome="fail")       # definitely not applied: absent
    t1 = h.txn([["append", "x", 10], ["r", "y", None]])
    h.txn([["r", "x", [10]], ["append", "y", 11]])
    h.txn([["r", "x", [10]], ["r", "y", [11]]])
    h.txn([["append", "x", 12]], outcome="info")  # unknown, not applied
    h.txn([["append", "y", 13]], outcome="fail")
    # write skew: each reads what the other appends to, neither sees the other (G2, allowed)
    h.txn([["r", "a", None], ["append", "b", 20]])
    h.txn([["r", "b", None], ["append", "a", 21]])
    assert t1 == 6
    return h.final(w1=[2, 4], majority=[1], la={"x": [10], "y": [11], "a": [21], "b": [20]})


def test_clean_history_passes(tmp_path):
    h = clean_history()
    report = h.check()
    assert report.clean, format_report(report)
    assert {f["type"] for f in report.findings} == {"G2"}
    path = str(tmp_path / "clean.jsonl")
    write_history(path, h.records)
    assert read_history(path) == json.loads(json.dumps(h.records))
    assert check_file(path).clean


def test_torn_last_line_is_tolerated(tmp_path):
    path = tmp_path / "torn.jsonl"
    write_history(str(path), clean_history().records)
    with open(path, "a") as f:
        f.write('{"kind": "op", "id": 99, "wor')
    assert check_file(str(path)).clean


# -- lost, duplicated, failed-but-present writes --------------------------------------------

def test_lost_majority_insert():
    h = H()
    lost = h.insert(1, "majority", retry=True)
    h.insert(2, "majority")
    report = h.final(majority=[2]).check()
    assert types(report) == {"lost-write"}
    assert finding(report, "lost-write")["ops"] == [lost]


def test_lost_transaction_append():
    h = H()
    t = h.txn([["append", "x", 1], ["append", "y", 2]])
    report = h.final(la={"x": [1]}).check()
    assert types(report) == {"lost-write"}
    assert finding(report, "lost-write")["ops"] == [t]


def test_duplicate_insert_and_duplicate_append():
    h = H()
    h.insert(1, "majority")
    h.txn([["append", "x", 5]])
    h.txn([["append", "x", 6]])
    report = h.final(majority=[1, 1], la={"x": [5, 6, 5]}).check()
    dups = [f for f in report.findings if f["type"] == "duplicate"]
    assert {f.get("value") for f in dups} == {1, 5}, format_report(report)


def test_duplicate_key_error_means_executed_twice():
    h = H()
    h.insert(1, "majority", outcome="info", retry=True,
             error={"class": "DuplicateKeyError", "code": 11000})
    assert "duplicate-key-error" in types(h.final(majority=[1]).check())


def test_failed_write_present():
    h = H()
    h.insert(1, 1, outcome="fail")
    h.txn([["append", "x", 7]], outcome="fail")
    report = h.final(w1=[1], la={"x": [7]}).check()
    assert [f["type"] for f in report.anomalies()] == ["failed-write-present"] * 2


def test_no_final_read_is_an_anomaly():
    h = H()
    h.insert(1, "majority")
    assert "no-final-read" in types(h.check())


# -- w:1 writes: rolled back, lost, lost with a killed member -------------------------------

def test_w1_missing_writes_rolled_back_lost_or_killed(tmp_path):
    h = H()
    rolled = h.insert(1, 1)
    lost = h.insert(2, 1)
    journaled = h.insert(3, 1, j=True)
    killed = h.insert(4, 1, server="10.0.0.2:27017")
    h.fault("kill n2", action="kill", members=["10.0.0.2:27017"])
    dbpath = tmp_path / "n1"
    rb = dbpath / "rollback" / "0b1d-uuid"
    rb.mkdir(parents=True)
    with open(rb / "removed.2026-01-01T00-00-00.0.bson", "wb") as f:
        f.write(bson.encode({"_id": "w1-1", "v": 1, "retry": False}))
    h.final(w1=[])
    report = h.check([str(dbpath)])
    by = report.by_type()
    assert [f["ops"] for f in by["rolled-back-w1"]] == [[rolled]]
    assert [f["ops"] for f in by["lost-w1-killed"]] == [[killed]]
    assert sorted(f["ops"][0] for f in by["lost-w1"]) == [lost, journaled]
    assert types(report) == {"lost-w1"}
    (rb_file,) = report.summary["rollback_files"]
    assert rb_file["docs"] == 1
    assert rb_file["held"] == {"insert ok, not in the final state": 1}
    assert "1 insert ok" in format_report(report)
    # without the rollback directory, the rolled-back write counts as lost too
    assert len(h.check().by_type()["lost-w1"]) == 3


# -- list-append anomalies ------------------------------------------------------------------

def test_g0_write_cycle():
    h = H()
    t1 = h.txn([["append", "x", 1], ["append", "y", 4]])
    t2 = h.txn([["append", "x", 2], ["append", "y", 3]])
    report = h.final(la={"x": [1, 2], "y": [3, 4]}).check()
    f = finding(report, "G0")
    assert sorted(f["ops"]) == [t1, t2]
    assert {step[2] for step in f["cycle"]} == {"ww"}


def test_g1a_aborted_read():
    h = H()
    w = h.txn([["append", "x", 1]], outcome="fail")
    r = h.txn([["r", "x", [1]]])
    report = h.final(la={"x": []}).check()
    assert sorted(finding(report, "G1a")["ops"]) == [w, r]


def test_g1b_intermediate_read():
    h = H()
    w = h.txn([["append", "x", 1], ["append", "x", 2]])
    r = h.txn([["r", "x", [1]]])
    report = h.final(la={"x": [1, 2]}).check()
    assert sorted(finding(report, "G1b")["ops"]) == [w, r]
    assert "G1a" not in types(report)


def test_g1c_circular_information_flow():
    h = H()
    t1 = h.txn([["append", "x", 1], ["r", "y", [2]]])
    t2 = h.txn([["append", "y", 2], ["r", "x", [1]]])
    report = h.final(la={"x": [1], "y": [2]}).check()
    f = finding(report, "G1c")
    assert sorted(f["ops"]) == [t1, t2]
    assert {step[2] for step in f["cycle"]} == {"wr"}
    assert "G-single" not in types(report)


def test_g_single_read_skew():
    h = H()
    w = h.txn([["append", "x", 1], ["append", "y", 2]])
    r = h.txn([["r", "x", None], ["r", "y", [2]]])     # saw w's y but not w's x
    report = h.final(la={"x": [1], "y": [2]}).check()
    f = finding(report, "G-single")
    assert sorted(f["ops"]) == [w, r]
    assert sorted(step[2] for step in f["cycle"]) == ["rw", "wr"]
    assert types(report) == {"G-single"}


def test_g_single_lost_update():
    h = H()
    t1 = h.txn([["r", "x", None], ["append", "x", 1]])
    t2 = h.txn([["r", "x", None], ["append", "x", 2]])  # both read x empty, both appended
    report = h.final(la={"x": [1, 2]}).check()
    f = finding(report, "G-single")
    assert sorted(f["ops"]) == [t1, t2]
    assert sorted(step[2] for step in f["cycle"]) == ["rw", "ww"]


def test_incompatible_order():
    h = H()
    h.txn([["append", "x", 1]])
    h.txn([["append", "x", 2]])
    r1 = h.txn([["r", "x", [1]]])
    r2 = h.txn([["r", "x", [2]]])
    report = h.final(la={"x": [1, 2]}).check()
    f = finding(report, "incompatible-order")
    assert r2 in f["ops"] and r1 not in f["ops"]
    # without a final read, the two reads are compared with each other
    h2 = H()
    h2.txn([["append", "x", 1]])
    h2.txn([["append", "x", 2]])
    h2.txn([["r", "x", [1]]])
    h2.txn([["r", "x", [2, 1]]])
    assert "incompatible-order" in types(h2.check())


def test_internal_inconsistency():
    h = H()
    h.txn([["append", "x", 1]])
    h.txn([["r", "x", [1]], ["r", "x", []]])
    assert "internal" in types(h.final(la={"x": [1]}).check())


def test_non_atomic_unknown_transaction():
    h = H()
    h.txn([["append", "x", 1], ["append", "y", 2]], outcome="info")
    assert types(h.final(la={"x": [1]}).check()) == {"non-atomic"}


# -- the pieces: outcome rules, SCCs, failover times, command line --------------------------

def test_outcome_rules_are_conservative():
    ok = {"cmd": "insert", "addr": SERVER, "result": "ok"}
    net = {"cmd": "insert", "addr": SERVER, "result": "network"}
    nwp = {"cmd": "insert", "addr": SERVER, "result": "error", "code": 10107}
    bad = {"cmd": "insert", "addr": SERVER, "result": "error", "code": 2}
    wce = dict(ok, wce=64)
    assert outcomes.classify_write_error([]) == "fail"                 # nothing sent
    assert outcomes.classify_write_error([bad]) == "fail"              # rejected as invalid
    assert outcomes.classify_write_error([net]) == "info"
    assert outcomes.classify_write_error([nwp]) == "info"              # NotWritablePrimary
    assert outcomes.classify_write_error([net, bad]) == "info"         # first try unknown
    assert outcomes.classify_write_error([wce]) == "info"
    assert outcomes.classify_write_error([dict(ok, write_error=11000)]) == "info"
    commit = {"cmd": "commitTransaction", "addr": SERVER}
    aborted = dict(commit, result="error", code=251, labels=["TransientTransactionError"])
    conflict = dict(commit, result="error", code=112)
    unknown = dict(commit, result="network")
    stepdown = dict(commit, result="error", code=11602)
    assert outcomes.classify_txn_error([{"cmd": "update", "result": "network"}]) == "fail"
    assert outcomes.classify_txn_error([aborted, conflict]) == "fail"
    assert outcomes.classify_txn_error([unknown, aborted]) == "info"
    assert outcomes.classify_txn_error([stepdown]) == "info"
    assert outcomes.classify_txn_error([dict(commit, result="ok", wce=64)]) == "info"


def test_tarjan_on_a_long_chain_and_a_cycle():
    g = graph.Graph()
    n = 5000                                # deeper than Python's recursion limit
    for i in range(n):
        g.add_edge(i, i + 1, "ww")
    assert graph.tarjan_scc(g) == []
    g.add_edge(n, 0, "rw")
    comps = graph.tarjan_scc(g)
    assert len(comps) == 1 and len(comps[0]) == n + 1
    assert graph.tarjan_scc(g, {"ww"}) == []
    cyc = graph.cycle_through(g, n, 0, "rw", {"ww"}, comps[0])
    assert len(cyc) == n + 1 and cyc[0] == (n, 0, "rw")


def test_failover_times():
    h = H()
    h.insert(1, "majority")
    h.fault("kill primary", action="kill", members=[SERVER])   # at t=102..102.5
    h.insert(2, "majority", outcome="info")
    h.insert(3, 1)                                                # w:1 does not count
    h.insert(4, "majority")                                       # completes at 105.5
    report = h.final(w1=[3], majority=[1, 4]).check()
    assert report.clean, format_report(report)
    (fault,) = report.summary["faults"]
    assert fault["failover"] == pytest.approx(105.5 - 102.0)


def test_failover_stats_count_faults_that_hit_the_primary():
    h = H()
    h.insert(1, "majority")
    h.fault("kill n1", action="kill", members=[SERVER], targets=["n1"],
            roles={"n1": "primary"}, rc=0)                      # 102.0; next write done 105.5
    h.fault("stop n2", action="stop", members=["n2"], targets=["n2"],
            roles={"n2": "secondary"}, rc=0)                    # a secondary: not counted
    h.fault("kill n3", action="kill", targets=["n3"], roles={"n3": "primary"},
            rc=1, error="no primary")                           # failed: not counted
    h.insert(2, "majority")                                     # 105..105.5
    h.fault("partition n2|n1,n3", action="partition", targets=["n2"],
            roles={"n1": "secondary", "n2": "primary", "n3": "secondary"}, rc=0)
    h.fault("restart n1", action="restart", targets=["n1"], rc=0)  # a recovery: not counted
    h.insert(3, "majority")                                     # 108..108.5
    report = h.final(majority=[1, 2, 3]).check()
    fp = report.summary["failover_primary"]
    assert fp["n"] == 2 and fp["none"] == 0, fp
    # kill n1: 102.0 -> 105.5; partition: 106.0 -> 108.5; p50 is the lower median
    assert fp["p50"] == pytest.approx(2.5) and fp["max"] == pytest.approx(3.5)
    assert "failover after faults that hit the primary (2): p50 2.500s, max 3.500s" \
        in format_report(report)
    # a fault applied later than its command started (cairn-fault's at_wall) counts from then
    kill = next(r for r in h.records if r.get("name") == "kill n1")
    kill.update(wall_invoke=1000.0, wall_complete=1000.5, at_wall=1000.25)
    assert h.check().summary["faults"][0]["failover"] == pytest.approx(105.5 - 102.25)


def test_rollback_files_older_than_the_run_are_not_matched(tmp_path):
    h = H()
    lost = h.insert(1, 1)
    h.final(w1=[])
    rb = tmp_path / "n1" / "rollback" / "cairn_history.ins_w1"
    rb.mkdir(parents=True)
    path = rb / "removed.old.bson"
    path.write_bytes(bson.encode({"_id": "w1-1", "v": 1}))
    wall = h.records[0]["wall"]
    os.utime(path, (wall - 3600, wall - 3600))          # from an earlier run
    report = h.check([str(tmp_path / "n1")])
    assert [f["ops"] for f in report.by_type()["lost-w1"]] == [[lost]]
    assert report.summary["rollback_stale"] == [str(path)]
    assert "1 older rollback files" in format_report(report)


def test_schedule_text():
    s = parse("kill primary every 10s for 2m")
    (rule,) = s.rules
    assert rule.every == 10 and s.duration == 120 and s.after is None
    assert rule.steps == [("fault", "kill primary"), ("sleep", 5.0), ("fault", "restart @")]
    s = parse("# mixed\nafter 5s\nfor 1m\nevery 8s: kill primary; sleep 3s; restart @\n"
              "every 500ms: stop random; sleep 2s; cont @  # pause\n"
              "partition n1,n2|n3 every 20s recover 4s\nstepdown every 30s\n",
              fault_opts="--data /tmp/x")
    assert [r.every for r in s.rules] == [8, 0.5, 20, 30]
    assert s.rules[2].steps == [("fault", "partition n1,n2|n3"), ("sleep", 4.0),
                                ("fault", "heal")]
    assert s.rules[3].steps == [("fault", "stepdown")]
    assert s.span() == 65 and "--data /tmp/x stop random" in s.command("stop random")
    assert s.command("partition n1,n2|n3").endswith("partition 'n1,n2|n3'")
    for bad in ("kill primary", "every 10s: sleep 1s", "every 10s: reboot n1",
                "kill primary every ten seconds", "every 5s kill primary; restart @"):
        with pytest.raises(ScheduleError):
            parse(bad)


def test_schedule_substitutes_the_members_of_the_previous_step():
    class Ctx:
        def __init__(self):
            self.commands, self.sleeps, self.n = [], [], 0

        def sleep(self, secs):
            self.sleeps.append(secs)
            return len(self.sleeps) < 4         # the run stops during the 4th sleep

        def run_shell(self, command, **fields):
            self.commands.append(command.split("cairn-fault", 1)[1].strip())
            self.n += 1
            return {"targets": ["n%d" % self.n]} if "kill" in command else {}

    ctx = Ctx()
    parse("every 1s: kill primary; sleep 2s; restart @; heal")(ctx)
    # two full cycles; the stop comes in the second cycle's sleep: its restart still runs
    assert ctx.commands == ["kill primary", "restart n1", "heal",
                            "kill primary", "restart n4", "heal"]
    assert ctx.sleeps == [1, 2, 1, 2, 1]            # the last one ends the schedule


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tools.cairn_history"] + list(args),
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_command_line_exit_status(tmp_path):
    clean = str(tmp_path / "clean.jsonl")
    write_history(clean, clean_history().records)
    p = _cli("check", clean, "--json", str(tmp_path / "r.json"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "CLEAN" in p.stdout
    assert json.load(open(tmp_path / "r.json"))["clean"] is True
    h = H()
    h.txn([["append", "x", 1], ["append", "y", 4]])
    h.txn([["append", "x", 2], ["append", "y", 3]])
    bad = str(tmp_path / "g0.jsonl")
    write_history(bad, h.final(la={"x": [1, 2], "y": [3, 4]}).records)
    p = _cli("check", bad)
    assert p.returncode == 1 and "ANOMALY G0" in p.stdout, p.stdout + p.stderr
    assert "op 1 [w0 txn explicit ok" in p.stdout        # the operations are printed
    p = _cli("check", str(tmp_path / "missing.jsonl"))
    assert p.returncode == 2


# -- end to end against a real cairnd -------------------------------------------------------

def test_end_to_end_run_is_clean(server_factory, tmp_path):
    srv = server_factory()
    cfg = RunConfig(uri=srv.uri, out=str(tmp_path / "plain.jsonl"), seed=20260101, workers=4,
                    duration=2.5, op_timeout=5.0, final_timeout=20.0)
    run(cfg)
    report = check_file(cfg.out)
    assert report.clean, format_report(report)
    ops = report.summary["ops"]
    assert ops["insert"]["ok"] > 20, ops
    for mode in ("explicit", "with_transaction", "single"):
        assert ops["txn " + mode]["ok"] > 5, ops
    kinds = [r["kind"] for r in read_history(cfg.out)]
    assert kinds[0] == "meta" and kinds[-1] == "end" and kinds.count("final") == 3
    inserts = [r for r in read_history(cfg.out) if r.get("type") == "insert"]
    assert {(r["wc"]["w"], r["retry"]) for r in inserts} == {
        (1, False), (1, True), ("majority", False), ("majority", True)}


def test_end_to_end_with_pause_faults(server_factory, tmp_path):
    """A Python schedule pauses the server (SIGSTOP) for 0.3 s every 0.8 s; a shell command
    pauses it for 1.5 s, longer than the 1 s operation timeout, so operations time out: unknown
    (info), or fail when nothing that could commit was sent, and the server may still apply
    the unknown ones when it resumes. The history records both kinds of fault, every operation
    ends within its timeout, and the history checks clean."""
    srv = server_factory()
    pid = srv.proc.pid

    def pause(ctx):
        while ctx.sleep(0.8):
            def stop_cont():
                os.kill(pid, signal.SIGSTOP)
                ctx.sleep(0.3)
                os.kill(pid, signal.SIGCONT)
            ctx.fault("pause", stop_cont, action="pause", members=[srv.host])

    shell = ("kill -STOP %d; sleep 1.5; kill -CONT %d; echo '{\"action\": \"pause\", "
             "\"members\": [\"%s\"], \"name\": \"long pause\"}'" % (pid, pid, srv.host))
    cfg = RunConfig(uri=srv.uri, out=str(tmp_path / "faults.jsonl"), seed=7, workers=4,
                    duration=4.0, op_timeout=1.0, final_timeout=20.0, fault_every=1.2,
                    fault_cmds=[shell])
    try:
        result = run(cfg, faults=[pause])
    finally:
        os.kill(pid, signal.SIGCONT)
    assert result["faults"] >= 3, result
    report = check_file(cfg.out)
    assert report.clean, format_report(report)
    faults = report.summary["faults"]
    assert {f["name"] for f in faults} == {"pause", "long pause"}, faults
    assert all(f["action"] == "pause" and f["members"] == [srv.host] for f in faults)
    assert any(f["failover"] is not None for f in faults)
    ops = [r for r in read_history(cfg.out) if r["kind"] == "op"]
    timeouts = [op for op in ops if "Timeout" in (op.get("error") or {}).get("class", "")]
    assert timeouts and all(op["outcome"] in ("fail", "info") for op in timeouts)
    assert max(op["t_complete"] - op["t_invoke"] for op in ops) < cfg.op_timeout + 1.5


def test_command_line_run_and_check(server_factory, tmp_path):
    """tools/cairn-history run --ops N --check: exactly N operations, checked clean."""
    srv = server_factory()
    out = str(tmp_path / "cli.jsonl")
    p = subprocess.run([sys.executable, os.path.join(REPO, "tools", "cairn-history"), "run",
                        "--uri", srv.uri, "--out", out, "--seed", "3", "--ops", "150",
                        "--workers", "3", "--workloads", "append", "--txn-api", "explicit",
                        "--check"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "seed 3" in p.stdout and "CLEAN" in p.stdout, p.stdout
    ops = [r for r in read_history(out) if r["kind"] == "op"]
    assert len(ops) == 150 and {op["type"] for op in ops} == {"txn"}
    assert {op["mode"] for op in ops} == {"explicit", "single"}
    assert sorted(op["id"] for op in ops) == list(range(1, 151))


def test_end_to_end_kill_and_restart(server_factory, tmp_path):
    """kill -9 and restart of the only member mid-run: every acknowledged majority write and
    committed transaction survives; a w:1 j:false insert may be lost, excused by the kill."""
    srv = server_factory()

    def kill_once(ctx):
        if ctx.sleep(1.0):
            ctx.fault("kill -9", srv.kill9, action="kill", members=[srv.host])
            ctx.fault("restart", lambda: srv.start(timeout=30) and None, action="restart",
                      members=[srv.host])

    cfg = RunConfig(uri=srv.uri, out=str(tmp_path / "kill.jsonl"), seed=11, workers=4,
                    duration=3.0, op_timeout=3.0, final_timeout=30.0, recover_timeout=60.0)
    run(cfg, faults=[kill_once])
    report = check_file(cfg.out, [srv.dbpath])
    assert report.clean, format_report(report)
    kill, restart = report.summary["faults"]
    assert (kill["action"], restart["action"]) == ("kill", "restart")
    assert kill["failover"] is not None and restart["failover"] is not None
    assert set(report.by_type()) <= {"G2", "lost-w1-killed"}, format_report(report)
