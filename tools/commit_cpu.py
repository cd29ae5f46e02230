#!/usr/bin/env python3
"""tools/commit_cpu.py: server CPU per commit under tools/cairn-bench load.

On a shared machine wall-clock throughput is noisy; CPU time per commit is not (much). This
runs build/tools/cairn-bench against a set and, over a steady window of the run (after the
first --skip seconds, before the last half second), reads every member's utime+stime from
/proc/<pid>/stat and the primary's serverStatus opcounters.insert. It prints:

  commits/s in the window, server CPU µs per commit summed over the members, the primary's and
  each secondary's share, the bench client's CPU µs per commit, and the bench's own summary
  line (latency percentiles over its whole timed part).

The set is either started here (tests/integration/cairn_rs.py: --members N members on free
ports under a temporary directory, stopped at the end) or an existing one: --data DIR of
scripts/run-local.sh (pids from DIR/n*/cairnd.pid, client ports from their command lines).

Usage: .venv/bin/python tools/commit_cpu.py [--cairnd PATH] [--members 3] [--data DIR]
           [--bench PATH] [--clients 64] [--seconds 10] [--skip 2] [--w 1|majority] [--j]
           [--runs 1] [--perf-leader FILE] [--perf-follower FILE] [--call-graph fp|dwarf] [--syscalls]
       .venv/bin/python tools/commit_cpu.py --callgrind m0|m2 [--ops 2000] [--clients 1] ...
--perf-*: also record a cpu-clock call-graph profile (perf record -g) of that member over the
window into FILE.

--callgrind M (with --ops N): a deterministic count instead of CPU time, for comparing two
builds on a loaded machine: member M (m0 is initiated on and normally becomes the primary, m2
a secondary) runs under valgrind --tool=callgrind, the others natively; cairn-bench makes N
inserts (no warm-up), and once every member caught up the set is stopped and the member's
user-space instructions are printed, in total and per commit (start-up included: compare runs
of the same N). Kernel time (syscalls, wakeups) is not counted. --syscalls: system calls per commit on the primary and a secondary (perf stat
on the raw_syscalls:sys_enter tracepoint over the window).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from cairn_rs import ReplicaSet, raw_command  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_us(pid):
    """utime+stime of pid (all its threads) in µs."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) * 1e6 / TICKS


def ctx_switches(pid):
    """Context switches (voluntary + involuntary) summed over pid's threads: how often its
    threads slept or were preempted (wakeups between threads show up here)."""
    n = 0
    tdir = "/proc/%d/task" % pid
    for t in os.listdir(tdir):
        try:
            with open(os.path.join(tdir, t, "status")) as f:
                for ln in f:
                    if ln.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        n += int(ln.split()[1])
        except OSError:
            pass  # a thread that ended meanwhile
    return n


def port_of(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        args = f.read().split(b"\0")
    return int(args[args.index(b"--port") + 1])


class Members:
    """(name, pid, port) of each member of a running set."""

    def __init__(self, members):
        self.members = members

    @staticmethod
    def from_data(data):
        out = []
        for d in sorted(os.listdir(data)):
            pidfile = os.path.join(data, d, "cairnd.pid")
            if d.startswith("n") and os.path.exists(pidfile):
                pid = int(open(pidfile).read().strip())
                out.append((d, pid, port_of(pid)))
        if not out:
            sys.exit("commit_cpu: no member pid files under %s" % data)
        return Members(out)

    def roles(self):
        """{pid: 'primary'|'secondary'|...} from hello."""
        out = {}
        for _, pid, port in self.members:
            h = raw_command(port, {"hello": 1})
            out[pid] = ("primary" if h.get("isWritablePrimary") else
                        "secondary" if h.get("secondary") else "other")
        return out

    def primary_port(self):
        for _, pid, port in self.members:
            if raw_command(port, {"hello": 1}).get("isWritablePrimary"):
                return port
        sys.exit("commit_cpu: no writable primary")

    def uri(self):
        hosts = ",".join("127.0.0.1:%d" % p for _, _, p in self.members)
        if len(self.members) == 1:
            return "mongodb://%s/?directConnection=true" % hosts
        return "mongodb://%s/?replicaSet=rs0" % hosts


def inserts(port):
    return raw_command(port, {"serverStatus": 1}, timeout=10.0)["opcounters"]["insert"]


def one_run(args, ms, bench):
    roles = ms.roles()
    pport = ms.primary_port()
    cmd = [bench, "--uri", ms.uri(), "--clients", str(args.clients), "--seconds",
           str(args.seconds), "--w", args.w]
    if args.j:
        cmd.append("--j")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Wait for the timed part to be under way: inserts flowing, then --skip seconds.
    n0 = inserts(pport)
    while inserts(pport) < n0 + args.clients * 100 and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(args.skip)
    window = max(1.0, args.seconds - args.skip - 0.5)
    perfs = []
    for role, out in (("primary", args.perf_leader), ("secondary", args.perf_follower)):
        if out:
            pid = next(p for p, r in roles.items() if r == role)
            perfs.append(subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "--call-graph", args.call_graph, "-o", out, "-p", str(pid), "--",
                 "sleep", "%.1f" % window], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    stats = {}
    if args.syscalls:
        for _, pid, _ in ms.members:
            stats[pid] = subprocess.Popen(
                ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter,syscalls:sys_enter_futex",
                 "-p", str(pid), "--",
                 "sleep", "%.1f" % window], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True)
    t0 = time.monotonic()
    c0 = {pid: cpu_us(pid) for _, pid, _ in ms.members}
    x0 = {pid: ctx_switches(pid) for _, pid, _ in ms.members}
    b0 = cpu_us(proc.pid)
    i0 = inserts(pport)
    time.sleep(window)
    t1 = time.monotonic()
    c1 = {pid: cpu_us(pid) for _, pid, _ in ms.members}
    x1 = {pid: ctx_switches(pid) for _, pid, _ in ms.members}
    b1 = cpu_us(proc.pid)
    i1 = inserts(pport)
    out, _ = proc.communicate()
    for p in perfs:
        p.wait()
    sys_per = {}
    for pid, p in stats.items():
        err = p.communicate()[1]
        for ln in err.splitlines():
            f = ln.split(",")
            if len(f) > 2 and f[0].isdigit():
                key = "futex" if "futex" in f[2] else "all"
                sys_per.setdefault(roles[pid], {})[key] = int(f[0])
    n = i1 - i0
    if n <= 0:
        sys.exit("commit_cpu: no commits in the window; bench said:\n" + out)
    per = {pid: (c1[pid] - c0[pid]) / n for pid in c0}
    line = [ln for ln in out.splitlines() if ln.startswith("w:")]
    res = {
        "rate": n / (t1 - t0),
        "total": sum(per.values()),
        "primary": sum(v for p, v in per.items() if roles[p] == "primary"),
        "secondaries": [v for p, v in per.items() if roles[p] == "secondary"],
        "client": (b1 - b0) / n,
        "ctx": {roles[p]: (x1[p] - x0[p]) / n for p in x0},
        "sys": {r: {k: v / n for k, v in d.items()} for r, d in sys_per.items()},
        "util": (sum(c1.values()) - sum(c0.values()) + b1 - b0) / 1e6 / (t1 - t0),
        "bench": line[0] if line else out.strip().splitlines()[-1:],
    }
    return res


def callgrind_run(args):
    """--callgrind: member args.callgrind under callgrind; prints its instruction count."""
    tmp = tempfile.mkdtemp(prefix="commit-cpu-cg-")
    out = os.path.join(tmp, "callgrind.out")
    wrap = os.path.join(tmp, "cairnd-wrap.sh")
    with open(wrap, "w") as f:
        f.write("#!/bin/sh\n"
                "for a in \"$@\"; do case \"$a\" in */%s) exec valgrind --tool=callgrind "
                "--callgrind-out-file=%s %s \"$@\";; esac; done\nexec %s \"$@\"\n"
                % (args.callgrind, out, os.path.abspath(args.cairnd), os.path.abspath(args.cairnd)))
    os.chmod(wrap, 0o755)
    rs = ReplicaSet(args.members, tmp, binary=wrap)
    try:
        rs.start(timeout=120)
        rs.initiate(timeout=120)
        role = "primary" if rs.member(args.callgrind).hello().get("isWritablePrimary") else \
            "secondary"
        cmd = [args.bench, "--uri", rs.uri, "--clients", str(args.clients), "--ops",
               str(args.ops), "--w", args.w, "--warmup", "0", "--keep"]
        if args.j:
            cmd.append("--j")
        bench = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        rs.wait_caught_up(timeout=600)
    finally:
        for m in rs:
            m.stop(timeout=300)
    total = None
    ann = subprocess.run(["callgrind_annotate", out], stdout=subprocess.PIPE, text=True).stdout
    for ln in ann.splitlines():
        if "PROGRAM TOTALS" in ln:
            total = int(ln.split()[0].replace(",", ""))
    if total is None:
        sys.exit("commit_cpu: no callgrind totals in %s" % out)
    commits = args.ops * args.clients
    print("callgrind: %s (%s), %d commits: %d instructions, %.0f per commit (profile: %s)"
          % (args.callgrind, role, commits, total, total / commits, out))
    print("       bench: %s" % [ln for ln in bench.stdout.splitlines() if ln.startswith("w:")])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cairnd", default=os.path.join(REPO, "build", "src", "server", "cairnd"))
    ap.add_argument("--bench", default=os.path.join(REPO, "build", "tools", "cairn-bench"))
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--data", help="attach to scripts/run-local.sh's set in DIR")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--skip", type=float, default=2.0)
    ap.add_argument("--w", default="majority")
    ap.add_argument("--j", action="store_true")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--perf-leader")
    ap.add_argument("--perf-follower")
    ap.add_argument("--syscalls", action="store_true",
                    help="also count system calls per commit (perf stat)")
    ap.add_argument("--call-graph", default="fp", help="perf's --call-graph (fp, dwarf)")
    ap.add_argument("--callgrind", metavar="MEMBER",
                    help="count MEMBER's instructions under callgrind (m0, m1, m2; needs --ops)")
    ap.add_argument("--ops", type=int, default=2000, help="inserts per client for --callgrind")
    args = ap.parse_args()
    if args.callgrind:
        return callgrind_run(args)

    rs = None
    tmp = None
    if args.data:
        ms = Members.from_data(args.data)
    else:
        tmp = tempfile.mkdtemp(prefix="commit-cpu-")
        rs = ReplicaSet(args.members, tmp, binary=os.path.abspath(args.cairnd))
        rs.start()
        rs.initiate()
        ms = Members([(m.name, m.pid, m.port) for m in rs])
    try:
        wc = "w:%s%s" % (args.w, ",j:true" if args.j else "")
        print("commit_cpu: %d member(s), %d clients, %s, %gs runs (window after %gs)"
              % (len(ms.members), args.clients, wc, args.seconds, args.skip))
        for k in range(args.runs):
            r = one_run(args, ms, args.bench)
            sec = " ".join("%.1f" % v for v in r["secondaries"]) or "-"
            print("run %d: %8.0f commits/s  server CPU/commit %6.1f us  (primary %5.1f, "
                  "secondaries %s)  client %5.1f us  cores busy %.2f"
                  % (k + 1, r["rate"], r["total"], r["primary"], sec, r["client"], r["util"]))
            print("       context switches/commit: primary %.1f, a secondary %.1f"
                  % (r["ctx"].get("primary", 0), r["ctx"].get("secondary", 0)))
            if r["sys"]:
                p, q = r["sys"].get("primary", {}), r["sys"].get("secondary", {})
                print("       syscalls/commit: primary %.1f (futex %.1f), a secondary %.1f "
                      "(futex %.1f)" % (p.get("all", 0), p.get("futex", 0), q.get("all", 0),
                                        q.get("futex", 0)))
            print("       bench: %s" % r["bench"])
            sys.stdout.flush()
    finally:
        if rs is not None:
            for m in rs:
                m.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
