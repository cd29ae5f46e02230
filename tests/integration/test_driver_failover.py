"""libmongoc and the Go driver through failovers: the primary of a 3-member set is killed
(kill -9) twice under each driver's writes, and the driver continues on the new primary.

Owns the driver side of issue 6's failover tests. The workloads are separate programs:
  - mongoc: tests/c/mongoc_failover.c (built by meson from tests/meson.build), a pooled
    libmongoc client inserting {n: id} into failover.mongoc_ids, retryable, w:"majority";
  - go: tests/go/failover (built here, offline, from Debian's Go driver in GOPATH mode),
    the same inserts into failover.go_ids plus Session.WithTransaction transactions moving
    value between failover.go_accounts a and b, each recorded in failover.go_ledger.
Each prints one JSON line per acknowledged write and a summary when stopped (see the tops of
the programs).

For each program: start a 3-member set, start the program on the set's URI, wait until it has
acknowledged writes, then twice: kill -9 the primary, wait until the program has acknowledged
writes it issued after the killed process was gone (so served by another member), restart the
killed member, wait for a healthy set and more writes. Stop the program (SIGTERM), then with
pymongo at read concern majority on the final primary check: every acknowledged id is present
exactly once; no id is present twice (a retry applied twice); no insert failed with
DuplicateKey (a retry the server did not recognise as one); for Go, a + b is the starting total,
b is the sum of the ledger's amounts and every committed transaction is in the ledger with its
amount. The program's summary must agree with its per-write lines.

The time from each kill to the first acknowledged write issued after it is printed (pytest -s)
and recorded as a junit property; nothing asserts a duration. A missing libmongoc program, Go
toolchain or Go driver package is a failure, not a skip: scripts/setup.sh installs them.

Programs: $CAIRN_MONGOC_FAILOVER, else BUILDDIR/tests/mongoc_failover where BUILDDIR is the
meson build directory holding $CAIRND (BUILDDIR/src/server/cairnd), else build/. The Go build
uses $GOCACHE if set, else BUILDDIR/go-cache.
"""

import collections
import json
import os
import shutil
import signal
import subprocess
import threading
import time

import pytest
from pymongo.read_concern import ReadConcern

from cairn_rs import rs_factory, wait_for  # noqa: F401
from cairn_server import SANITIZER_MARKERS, cairnd_binary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GO_DRIVER_SRC = "/usr/share/gocode/src/go.mongodb.org/mongo-driver"
GO_SEED = 6006
KILLS = 2
ACKS_BEFORE_FIRST_KILL = 50
ACKS_AFTER_KILL = 20        # inserts issued after the kill, acknowledged
TXNS_AFTER_KILL = 3         # Go transactions issued after the kill, committed
ACKS_AFTER_RESTART = 20     # inserts issued after the killed member rejoined, acknowledged
PROGRESS_TIMEOUT = 45.0
DUPLICATE_KEY = 11000
MONGOC_ERROR_SERVER = 18


# -- finding and building the programs --------------------------------------------------------

def _build_dir():
    """The meson build directory whose cairnd is tested, else build/."""
    cairnd = cairnd_binary()
    parts = cairnd.split(os.sep)
    if parts[-3:] == ["src", "server", "cairnd"]:
        return os.sep.join(parts[:-3])
    return os.path.join(REPO, "build")


def _mongoc_program(tmp_path):
    path = os.environ.get("CAIRN_MONGOC_FAILOVER") or os.path.join(
        _build_dir(), "tests", "mongoc_failover")
    if not os.access(path, os.X_OK):
        pytest.fail("the libmongoc failover program %s is not built: scripts/setup.sh installs "
                    "libmongoc-dev and scripts/build.sh builds tests/c/mongoc_failover.c "
                    "(tests/meson.build); or set CAIRN_MONGOC_FAILOVER" % path, pytrace=False)
    return [path, "--seconds", "600"]


def _go_program(tmp_path):
    go = shutil.which("go")
    if go is None:
        pytest.fail("no go command: scripts/setup.sh installs golang-go", pytrace=False)
    if not os.path.isdir(GO_DRIVER_SRC):
        pytest.fail("the Go driver is not installed (%s missing): scripts/setup.sh installs "
                    "golang-mongodb-mongo-driver-dev" % GO_DRIVER_SRC, pytrace=False)
    cache = os.environ.get("GOCACHE") or os.path.join(_build_dir(), "go-cache")
    out = str(tmp_path / "go_failover")
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOPROXY="off", GOCACHE=cache)
    proc = subprocess.run([go, "build", "-o", out, "./tests/go/failover"], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
    if proc.returncode != 0:
        pytest.fail("go build ./tests/go/failover failed (GOPATH mode over %s):\n%s"
                    % ("/usr/share/gocode", proc.stdout.decode("utf-8", "replace")),
                    pytrace=False)
    return [out, "-seconds", "600", "-seed", str(GO_SEED)]


PROGRAMS = {"mongoc": _mongoc_program, "go": _go_program}


# -- a running workload program ---------------------------------------------------------------

class DriverRun:
    """One workload program: its JSON lines collected by a reader thread."""

    def __init__(self, name, argv, stderr_path):
        self.name = name
        self.argv = argv
        self.stderr_path = stderr_path
        self.lock = threading.Lock()
        self.acks = []          # (id, t0, t1) of acknowledged inserts
        self.txns = []          # (id, amt, t0, t1) of committed transactions
        self.errors = []        # the "err" lines
        self.summary = None
        self.start_line = None
        self.other = []         # lines that were not JSON
        with open(stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, start_new_session=True)
        self.reader = threading.Thread(target=self._read, name="%s-reader" % name, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").strip()
            try:
                ev = json.loads(line)
            except ValueError:
                with self.lock:
                    self.other.append(line)
                continue
            kind = ev.get("ev")
            with self.lock:
                if kind == "ack":
                    self.acks.append((ev["id"], ev["t0"], ev["t1"]))
                elif kind == "txn":
                    self.txns.append((ev["id"], ev["amt"], ev["t0"], ev["t1"]))
                elif kind == "err":
                    self.errors.append(ev)
                elif kind == "summary":
                    self.summary = ev
                elif kind == "start":
                    self.start_line = ev
                else:
                    self.other.append(line)

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def describe(self):
        with self.lock:
            last_errors = self.errors[-3:]
            text = "%s: %d inserts and %d transactions acknowledged, %d errors (last: %s)" % (
                self.name, len(self.acks), len(self.txns), len(self.errors), last_errors)
        if self.proc.poll() is not None:
            text += "; exited with status %s, stderr:\n%s" % (self.proc.returncode,
                                                             self.stderr_text()[-3000:])
        return text

    def issued_after(self, t):
        """(inserts, transactions) issued after wall-clock time t and acknowledged."""
        with self.lock:
            return (sum(1 for _, t0, _ in self.acks if t0 > t),
                    sum(1 for _, _, t0, _ in self.txns if t0 > t))

    def in_flight_at(self, t_kill, t_dead):
        """Writes issued before the kill and acknowledged after the process was gone: the
        driver retried them on another member (or read the reply late). [(id, t1 - t_kill)]"""
        with self.lock:
            return ([(i, t1 - t_kill) for i, t0, t1 in self.acks if t0 < t_kill and t1 > t_dead]
                    + [("txn %d" % i, t1 - t_kill) for i, _, t0, t1 in self.txns
                       if t0 < t_kill and t1 > t_dead])

    def first_ack_after(self, t):
        """t1 of the first write (insert or transaction) issued after t and acknowledged."""
        with self.lock:
            times = [t1 for _, t0, t1 in self.acks if t0 > t]
            times += [t1 for _, _, t0, t1 in self.txns if t0 > t]
        return min(times) if times else None

    def wait_progress(self, since, inserts, txns, what, timeout=PROGRESS_TIMEOUT):
        def enough():
            if self.proc.poll() is not None:
                raise AssertionError("the program exited")
            got_inserts, got_txns = self.issued_after(since)
            return got_inserts >= inserts and got_txns >= txns

        try:
            wait_for(enough, timeout, lambda: "%s (%d inserts, %d transactions issued "
                     "after it); %s" % (what, inserts, txns, self.describe()))
        except AssertionError as exc:
            if self.proc.poll() is not None:
                raise AssertionError("%s exited while waiting for %s: %s"
                                     % (self.name, what, self.describe())) from exc
            raise

    def stop(self, timeout=90.0):
        """SIGTERM, then waits for the summary; kills it after `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.reader.join(10)
                raise AssertionError("%s did not stop within %.0fs of SIGTERM: %s"
                                     % (self.name, timeout, self.describe()))
        self.reader.join(30)
        return self.proc.returncode


def _ranges_to_ids(ranges):
    ids = []
    for lo, hi in ranges:
        ids.extend(range(lo, hi + 1))
    return ids


def _kill_primary_and_continue(rs, run, number, is_go):
    """Kills the primary, waits for the program to continue on another member, restarts the
    killed member and waits for a healthy set and more acknowledged writes. Returns a dict
    describing the kill."""
    victim = rs.wait_primary(timeout=30)
    t_kill = time.time()
    victim.kill9()
    t_dead = time.time()            # the process is gone: nothing issued now reaches it
    new = rs.wait_primary(exclude=[victim], timeout=30)
    t_elected = time.time()
    run.wait_progress(t_dead, ACKS_AFTER_KILL, TXNS_AFTER_KILL if is_go else 0,
                      "the driver continued after kill %d (of %s, new primary %s)"
                      % (number, victim.name, new.name))
    victim.start()
    rs.wait_healthy(timeout=60)
    t_rejoined = time.time()
    run.wait_progress(t_rejoined, ACKS_AFTER_RESTART, 0,
                      "writes after %s rejoined (kill %d)" % (victim.name, number))
    first = run.first_ack_after(t_dead)
    return {"victim": victim.name, "new": new.name, "t_kill": t_kill, "t_dead": t_dead,
            "elected_s": t_elected - t_kill, "gap_s": None if first is None else first - t_kill,
            "in_flight": run.in_flight_at(t_kill, t_dead)}


@pytest.mark.parametrize("driver", sorted(PROGRAMS))
def test_driver_continues_on_new_primary_after_kills(driver, rs_factory, tmp_path,
                                                     record_property):
    argv = PROGRAMS[driver](tmp_path)       # a missing driver fails here, before the set starts
    is_go = driver == "go"
    rs = rs_factory(3)
    run = DriverRun(driver, argv + [rs.uri], str(tmp_path / (driver + ".stderr")))
    kills = []
    try:
        run.wait_progress(0, ACKS_BEFORE_FIRST_KILL, TXNS_AFTER_KILL if is_go else 0,
                          "writes before the first kill")
        for k in range(1, KILLS + 1):
            kills.append(_kill_primary_and_continue(rs, run, k, is_go))
    finally:
        status = run.stop()

    # -- what the program saw -----------------------------------------------------------------
    lines = ["%s: kill -9 of the primary -> first acknowledged write issued after it:" % driver]
    for k, kill in enumerate(kills, 1):
        gap = "none" if kill["gap_s"] is None else "%.3fs" % kill["gap_s"]
        lines.append("  kill %d: %s killed, %s elected after %.3fs (as seen by polling), first "
                     "ack after %s; in flight at the kill and acknowledged after it: %s" % (
                         k, kill["victim"], kill["new"], kill["elected_s"], gap,
                         ", ".join("%s after %.3fs" % w for w in kill["in_flight"]) or "none"))
        record_property("%s_failover_%d_s" % (driver, k),
                        "none" if kill["gap_s"] is None else round(kill["gap_s"], 3))
    summary = run.summary or {}
    lines.append("  program: %d inserts, %d transactions acknowledged; %s errors; outages "
                 "(first error -> next success): %s" % (
                     len(run.acks), len(run.txns), summary.get("errors"),
                     ["%.3fs" % (b - a) if b else "unended" for a, b in
                      summary.get("outages", [])]))
    for kind in summary.get("error_kinds", []):
        lines.append("    %dx %s" % (kind["count"], json.dumps(kind)))
    report = "\n".join(lines)
    print(report)

    stderr = run.stderr_text()
    assert status == 0, "%s exited with status %s\n%s\nstderr:\n%s" % (driver, status, report,
                                                                       stderr[-4000:])
    for marker in SANITIZER_MARKERS:
        assert marker not in stderr, "sanitizer report from %s:\n%s" % (driver, stderr[-6000:])
    assert run.summary is not None, "%s printed no summary\n%s" % (driver, run.describe())
    assert not run.other, "%s printed lines that are not its JSON events: %r" % (
        driver, run.other[:5])
    acked = [i for i, _, _ in run.acks]
    assert len(acked) == len(set(acked)), "an id was acknowledged twice"
    assert sorted(acked) == _ranges_to_ids(run.summary["acked"]), (
        "the summary's acknowledged ids differ from the ack lines")
    assert run.summary["acked_count"] == len(acked)
    duplicate_keys = [e for e in run.errors if e.get("code") == DUPLICATE_KEY and (
        is_go or e.get("domain") == MONGOC_ERROR_SERVER)]
    assert not duplicate_keys, (
        "inserts failed with DuplicateKey: a retried insert was applied again instead of being "
        "answered from the session records: %r" % duplicate_keys[:5])

    # -- what the set holds, read at majority on the final primary --------------------------
    primary = rs.wait_healthy(timeout=60)
    with primary.client() as client:
        db = client.get_database("failover", read_concern=ReadConcern("majority"))
        ids_coll = "go_ids" if is_go else "mongoc_ids"
        counts = collections.Counter(
            d["n"] for d in db[ids_coll].find({}, {"n": 1, "_id": 0}).batch_size(1 << 16))
        missing = sorted(i for i in acked if counts[i] == 0)
        twice = sorted(i for i, c in counts.items() if c > 1)
        unacked = sorted(set(counts) - set(acked))
        print("  %s: %d ids present, %d acknowledged, %d present without an acknowledgement "
              "(outcome unknown to the driver)" % (ids_coll, len(counts), len(acked),
                                                   len(unacked)))
        assert not missing, "%d acknowledged ids missing at majority on %s: %s...\n%s" % (
            len(missing), primary.name, missing[:20], report)
        assert not twice, "ids present more than once: %s\n%s" % (twice[:20], report)

        if is_go:
            assert run.summary["txn_count"] == len(run.txns)
            assert sorted(i for i, _, _, _ in run.txns) == _ranges_to_ids(run.summary["txns"])
            accounts = {d["_id"]: d["v"] for d in db.go_accounts.find()}
            ledger = {d["_id"]: d["amt"] for d in db.go_ledger.find().batch_size(1 << 16)}
            total = run.summary["total"]
            print("  go_accounts %r, %d ledger entries, %d transactions committed, %d attempts"
                  % (accounts, len(ledger), len(run.txns), run.summary["txn_attempts"]))
            assert sorted(accounts) == ["a", "b"], "accounts: %r" % accounts
            assert accounts["a"] + accounts["b"] == total, (
                "the transactions did not conserve the total %d: %r" % (total, accounts))
            assert accounts["b"] == sum(ledger.values()), (
                "b (%d) is not the sum of the ledger's amounts (%d): a transaction applied in "
                "part" % (accounts["b"], sum(ledger.values())))
            lost = [(i, amt) for i, amt, _, _ in run.txns if ledger.get(i) != amt]
            assert not lost, ("committed transactions missing from the ledger (or with another "
                              "amount): %r" % lost[:20])
