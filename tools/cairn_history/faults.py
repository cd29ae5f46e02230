"""Fault schedules that run concurrently with the workload, and how their events are recorded.

Owns: FaultContext (what a schedule gets: stop-aware sleep, a recorder for fault events, a
shell-command runner) and ShellEvery, the built-in schedule "every T seconds run the next of
these shell commands".

A schedule is any callable schedule(ctx) run on its own thread; it should return soon after
ctx.stopped() becomes true (ctx.sleep returns False then). Each fault event becomes one
"fault" record: name, t_invoke/t_complete (monotonic), wall times and optional fields:
  action   what it did: kill, stop, resume, restart, partition, heal, stepdown, ...
  members  the members it touched, as the driver names them ("host:port"), or member names
  rc, output  for shell commands: exit status and the tail of their output
The checker uses action "kill" (also "kill9", "crash") with members to excuse w:1, j:false
writes acknowledged by a member that was later killed, and every fault for failover times.
A shell command may print, as the last line of its standard output, a JSON object whose keys
(action, members, name, ...) are merged into its event.
"""

import json
import subprocess
import threading

from .history import Clock, fault_record


class FaultContext:
    def __init__(self, writer, stop_event=None):
        self._writer = writer
        self._stop = stop_event or threading.Event()
        self._lock = threading.Lock()
        self._next_id = 1
        self.events = []

    # -- time -----------------------------------------------------------------------------
    def stopped(self):
        return self._stop.is_set()

    def sleep(self, seconds):
        """Sleeps unless the run is stopping; True if the whole time passed."""
        return not self._stop.wait(seconds)

    # -- recording ------------------------------------------------------------------------
    def record(self, name, t_invoke, t_complete, wall_invoke=None, wall_complete=None,
               **fields):
        with self._lock:
            fid = self._next_id
            self._next_id += 1
        rec = fault_record(fid, name, t_invoke, t_complete, wall_invoke, wall_complete,
                           **fields)
        self.events.append(rec)
        self._writer.write(rec)
        return rec

    def fault(self, name, fn=None, **fields):
        """Runs fn() (may be None) and records it as a fault event; fn may return a dict of
        extra fields. Exceptions from fn are recorded (field "error") and re-raised."""
        t0, w0 = Clock.now()
        extra = {}
        try:
            if fn is not None:
                extra = fn() or {}
        except Exception as exc:
            t1, w1 = Clock.now()
            self.record(name, t0, t1, w0, w1, error=repr(exc), **fields)
            raise
        t1, w1 = Clock.now()
        merged = dict(fields)
        merged.update(extra)
        name = merged.pop("name", name)
        return self.record(name, t0, t1, w0, w1, **merged)

    def run_shell(self, command, name=None, timeout=120.0, **fields):
        """Runs a shell command as a fault event; never raises for its failure."""

        def call():
            try:
                p = subprocess.run(command, shell=True, stdin=subprocess.DEVNULL,
                                   capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                return {"rc": None, "output": "timed out after %.0fs" % timeout}
            extra = {"rc": p.returncode, "output": (p.stdout + p.stderr)[-500:]}
            extra.update(_json_tail(p.stdout))
            return extra

        return self.fault(name or command, call, command=command, **fields)


def _json_tail(stdout):
    """The JSON object on the last non-empty line of stdout, if there is one."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    if not lines:
        return {}
    try:
        obj = json.loads(lines[-1])
    except ValueError:
        return {}
    return obj if isinstance(obj, dict) else {}


class ShellEvery:
    """Every `every` seconds run the next command of `commands` (cycling), e.g.
    ["kill -9 $(cat n1.pid)", "restart n1"]."""

    def __init__(self, commands, every, timeout=120.0):
        if not commands:
            raise ValueError("ShellEvery needs at least one command")
        self.commands = list(commands)
        self.every = every
        self.timeout = timeout

    def __call__(self, ctx):
        i = 0
        while ctx.sleep(self.every):
            ctx.run_shell(self.commands[i % len(self.commands)], timeout=self.timeout)
            i += 1
