"""The workload runner: drives a replica set with N worker threads and writes the history.

Owns: RunConfig (every knob of a run), Runner (setup, workers, fault threads, heal, final
read) and run(), the one call the command line and the tests use.

A run: write the meta record; drop and recreate the run's database (unless keep_db); start the
workers (each with its own random.Random seeded from the run seed and its index) and the fault
schedules; stop after `duration` seconds or `ops` operations; stop the faults; run the heal
commands (recorded as fault events with action "heal"); then a majority write to a barrier
collection (once it is majority-committed, every earlier entry of that primary's log is too,
so acknowledged w:1 writes that survived are visible to the next read) and a final read of
every workload collection from the primary with readConcern majority, one "final" record each.
"""

import random
import threading
import time
import traceback
from dataclasses import dataclass, field

import pymongo
from pymongo import ReadPreference, WriteConcern
from pymongo.errors import CollectionInvalid, PyMongoError
from pymongo.read_concern import ReadConcern

from .faults import FaultContext, ShellEvery
from .schedule import fault_command
from .schedule import parse as parse_schedule
from .history import (Clock, HistoryWriter, barrier_record, end_record, final_record,
                      meta_record, op_record)
from .outcomes import AttemptTracker, error_summary, majority_write
from .workloads import TXN_MODES, OpContext, Values, make_workloads

BARRIER_COLL = "barrier"


@dataclass
class RunConfig:
    uri: str
    out: str
    seed: int = 0
    workers: int = 4
    duration: float = 10.0          # seconds; ignored when ops is set
    ops: int = 0                    # total operations (0: run for `duration`)
    # > 0: a duration-bounded run goes on past `duration`, for at most this many seconds more,
    # until a majority write completed after the last fault ended (so that a slow restart
    # under load still leaves the run a measured failover).
    recover_timeout: float = 0.0
    workloads: tuple = ("insert", "append")
    db: str = "cairn_history"
    keep_db: bool = False
    op_timeout: float = 10.0        # per operation (pymongo.timeout), retries included
    keys: int = 6
    max_txn_len: int = 4
    max_writes_per_key: int = 32
    single_append: float = 0.1
    txn_modes: tuple = TXN_MODES
    w1_journal: bool = False
    fault_every: float = 0.0
    fault_cmds: list = field(default_factory=list)
    heal_cmds: list = field(default_factory=list)
    fault_timeout: float = 120.0
    final_timeout: float = 60.0
    schedules: list = field(default_factory=list)   # schedule texts (schedule.py)
    fault_opts: str = ""            # options for scripts/cairn-fault (target, data, project)
    members_timeout: float = 30.0   # how long the final w:<members> barrier may take


class RunnerError(Exception):
    """The runner itself failed (a bug, or no final read): the history is incomplete."""


class Runner:
    def __init__(self, config, faults=()):
        self.cfg = config
        self.schedules = list(faults)
        if config.fault_cmds and config.fault_every > 0:
            self.schedules.append(ShellEvery(config.fault_cmds, config.fault_every,
                                             config.fault_timeout))
        for text in config.schedules:
            self.schedules.append(parse_schedule(text, config.fault_opts))
        self.heal_cmds = list(config.heal_cmds)
        if config.schedules and not self.heal_cmds:
            # undo whatever a schedule left behind: partitions, slow links, paused and dead
            # members, so that the final read sees every member's state
            self.heal_cmds = [fault_command(config.fault_opts, "heal --all")]
        self.stop = threading.Event()
        self.errors = []                # runner bugs: tracebacks
        self.counts = {}                # (type, outcome) -> n
        self._lock = threading.Lock()
        self._next_op = 0
        self._last_majority_ok = float("-inf")  # t_complete of the newest ok majority write
        self.workloads = make_workloads(config.workloads, keys=config.keys,
                                        max_txn_len=config.max_txn_len,
                                        max_writes_per_key=config.max_writes_per_key,
                                        single_fraction=config.single_append,
                                        txn_modes=config.txn_modes)

    # -- clients --------------------------------------------------------------------------
    def _client(self, retry, listeners=(), **opts):
        ms = int(self.cfg.op_timeout * 1000)
        return pymongo.MongoClient(self.cfg.uri, retryWrites=retry, retryReads=True,
                                   serverSelectionTimeoutMS=ms, connectTimeoutMS=ms,
                                   event_listeners=list(listeners), **opts)

    # -- operations -----------------------------------------------------------------------
    def _take_op_id(self):
        with self._lock:
            if self.cfg.ops and self._next_op >= self.cfg.ops:
                return None
            self._next_op += 1
            return self._next_op

    def _count(self, op_type, outcome):
        with self._lock:
            key = (op_type, outcome)
            self.counts[key] = self.counts.get(key, 0) + 1

    def _worker(self, index, ctx, writer):
        rng = random.Random("%s:%d" % (self.cfg.seed, index))
        while not self.stop.is_set():
            op_id = self._take_op_id()
            if op_id is None:
                return
            workload = rng.choice(self.workloads)
            t0, w0 = Clock.now()
            try:
                fields = workload.run_op(ctx, rng)
            except Exception as exc:  # a runner bug: record it, stop the run
                t1, w1 = Clock.now()
                self.errors.append(traceback.format_exc())
                writer.write(op_record(op_id, index, "runner-error", "info", t0, t1, w0, w1,
                                       error=error_summary(exc), workload=workload.name))
                self.stop.set()
                return
            t1, w1 = Clock.now()
            op_type, outcome = fields.pop("type"), fields.pop("outcome")
            rec = op_record(op_id, index, op_type, outcome, t0, t1, w0, w1, **fields)
            writer.write(rec)
            self._count(op_type, outcome)
            if majority_write(rec):
                with self._lock:
                    self._last_majority_ok = max(self._last_majority_ok, t1)

    # -- set-up and final read ------------------------------------------------------------
    def _retry(self, what, fn, timeout):
        """Calls fn() until it succeeds or `timeout` seconds pass (the set may be electing)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fn()
            except PyMongoError as exc:
                if time.monotonic() >= deadline:
                    raise RunnerError("%s failed for %.0fs: %r" % (what, timeout, exc)) from exc
                time.sleep(0.25)

    def _collections(self, workload=None):
        out = []
        for w in self.workloads:
            if workload is None or w.name == workload:
                out.extend(w.collections())
        return out

    def _setup(self, control):
        db = control[self.cfg.db]
        if not self.cfg.keep_db:
            self._retry("dropping %s" % self.cfg.db,
                        lambda: control.drop_database(self.cfg.db), self.cfg.final_timeout)
        for name in self._collections() + [BARRIER_COLL]:
            def create(name=name):
                try:
                    db.create_collection(name)
                except CollectionInvalid:
                    pass
            self._retry("creating %s" % name, create, self.cfg.final_timeout)

    def _final_read(self, control, writer):
        db = control[self.cfg.db]
        barrier = db.get_collection(BARRIER_COLL, write_concern=WriteConcern(w="majority"))
        self._retry("the barrier write",
                    lambda: barrier.insert_one({"t": time.time()}), self.cfg.final_timeout)
        self._await_all_members(db, writer)
        ok = True
        for name in self._collections():
            coll = db.get_collection(name, read_concern=ReadConcern("majority"),
                                     read_preference=ReadPreference.PRIMARY)
            t0, _ = Clock.now()
            try:
                docs = self._retry("the final read of %s" % name,
                                   lambda: list(coll.find({}).sort("_id", 1)),
                                   self.cfg.final_timeout)
            except RunnerError as exc:
                writer.write(final_record(name, None, t0, Clock.now()[0], ok=False,
                                          error=str(exc)))
                ok = False
                continue
            writer.write(final_record(name, docs, t0, Clock.now()[0]))
        return ok

    def _await_all_members(self, db, writer):
        """A write acknowledged by every member (w:<n>): once it is, every member has caught
        up, so a deposed primary has rolled back and written its rollback files before the
        checker looks for them. Recorded as a barrier record; not reaching it is not an error
        of the run (a member may be down for good), the checker reports it."""
        t0, _ = Clock.now()
        n, err = 0, None
        try:
            n = len(self._retry("hello", lambda: db.client.admin.command("hello"),
                                self.cfg.final_timeout).get("hosts") or ())
            coll = db.get_collection(BARRIER_COLL, write_concern=WriteConcern(
                w=max(n, 1), wtimeout=int(self.cfg.members_timeout * 1000)))
            self._retry("the all-members barrier write",
                        lambda: coll.insert_one({"t": time.time(), "all": True}),
                        self.cfg.members_timeout)
        except (RunnerError, PyMongoError) as exc:
            err = str(exc)
        writer.write(barrier_record(n, err is None, t0, Clock.now()[0], err))

    # -- the run --------------------------------------------------------------------------
    def _start_threads(self, ctx, writer, faults):
        workers = [threading.Thread(target=self._worker, args=(i, ctx, writer),
                                    name="history-worker-%d" % i, daemon=True)
                   for i in range(self.cfg.workers)]
        fthreads = [threading.Thread(target=self._run_schedule, args=(s, faults),
                                     name="history-faults-%d" % i, daemon=True)
                    for i, s in enumerate(self.schedules)]
        for t in workers + fthreads:
            t.start()
        return workers, fthreads

    def _run_schedule(self, schedule, faults):
        try:
            schedule(faults)
        except Exception:
            self.errors.append("fault schedule raised:\n" + traceback.format_exc())

    def _recovered(self, ctx):
        """True once a majority write completed after the last fault event ended."""
        last = max((e["t_complete"] for e in ctx.events), default=None)
        with self._lock:
            return last is None or self._last_majority_ok > last

    def _wait(self, workers, ctx):
        deadline = None if self.cfg.ops else time.monotonic() + self.cfg.duration
        hard = None if deadline is None else deadline + self.cfg.recover_timeout
        while any(t.is_alive() for t in workers):
            now = time.monotonic()
            if deadline is not None and now >= deadline and (
                    now >= hard or self._recovered(ctx)):
                break
            if self.stop.wait(0.05):
                break
        self.stop.set()
        join_deadline = time.monotonic() + self.cfg.op_timeout * 3 + 30
        for t in workers:
            t.join(max(0.0, join_deadline - time.monotonic()))
        hung = [t.name for t in workers if t.is_alive()]
        if hung:
            self.errors.append("workers still running after the stop: %s" % hung)

    def run(self):
        cfg = self.cfg
        tracker = AttemptTracker()
        clients = {True: self._client(True, [tracker]), False: self._client(False, [tracker])}
        control = self._client(True, w="majority")   # set-up and final read
        writer = HistoryWriter(cfg.out)
        try:
            writer.write(meta_record(
                uri=cfg.uri, seed=cfg.seed, db=cfg.db, workers=cfg.workers,
                duration=cfg.duration, ops=cfg.ops, workloads=list(cfg.workloads),
                collections=self._collections(), op_timeout=cfg.op_timeout,
                insert_collections=self._collections("insert"),
                append_collections=self._collections("append"),
                w1_journal=cfg.w1_journal, txn_modes=list(cfg.txn_modes),
                fault_every=cfg.fault_every, fault_cmds=list(cfg.fault_cmds),
                heal_cmds=self.heal_cmds, schedules=len(self.schedules),
                schedule_texts=list(cfg.schedules), fault_opts=cfg.fault_opts))
            self._setup(control)
            ctx = OpContext(clients, tracker, cfg.db, cfg.op_timeout, Values(), cfg.w1_journal)
            faults = FaultContext(writer, self.stop)
            workers, fthreads = self._start_threads(ctx, writer, faults)
            self._wait(workers, faults)
            for t in fthreads:
                t.join(cfg.fault_timeout + 10)
            for cmd in self.heal_cmds:
                faults.run_shell(cmd, name="heal", timeout=cfg.fault_timeout, action="heal")
            final_ok = self._final_read(control, writer)
            writer.write(end_record(sum(self.counts.values())))
        finally:
            writer.close()
            for c in list(clients.values()) + [control]:
                c.close()
        if self.errors:
            raise RunnerError("the runner failed:\n" + "\n".join(self.errors))
        if not final_ok:
            raise RunnerError("no final read of every collection (see the history)")
        return {"path": cfg.out, "seed": cfg.seed, "faults": len(faults.events),
                "ops": {"%s %s" % k: n for k, n in sorted(self.counts.items())}}


def run(config, faults=()):
    """Runs a workload as configured; `faults` are extra schedule callables (see faults.py).
    Returns a small dict (path, seed, ops, faults); raises RunnerError if the runner failed."""
    return Runner(config, faults).run()
