"""The history file format: one JSON object per line, written by the runner, read by the checker.

Owns: the record kinds and their fields (documented in docs/history.md), a thread-safe
HistoryWriter that flushes every line (a crashed run keeps what it recorded), read_history
(which tolerates a torn last line), the Clock that stamps monotonic + wall times, and small
constructors for records, shared by the runner and by tests that build histories by hand.

Record kinds (field "kind"):
  meta   first line: format, uri, seed, database, collection names, run parameters
  op     one operation, written when it completes: id, worker, type ("insert" | "txn"),
         t_invoke/t_complete (monotonic seconds), wall_invoke/wall_complete (epoch seconds),
         outcome ("ok" | "fail" | "info"), error, attempts, and the type's inputs and results
  fault  one fault event: id, name, t_invoke/t_complete, optional action, members, rc, output
  barrier  written before the final reads: members (how many the set has), all (true when a
         write with w:<members> was acknowledged: every member caught up, so deposed primaries
         have rolled back and written their rollback files), error
  final  the final read of one collection: coll, ok, docs (or error)
  end    last line: op count and time
"""

import json
import threading
import time

FORMAT = "cairn-history/1"
OUTCOMES = ("ok", "fail", "info")


class Clock:
    """Monotonic and wall time, read together."""

    @staticmethod
    def now():
        return time.monotonic(), time.time()


def _jsonable(value):
    """json.dumps default: BSON types (ObjectId, Timestamp, datetime...) become strings."""
    return str(value)


class HistoryWriter:
    """Appends records to a history file, one JSON line each, flushed at once."""

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "w", encoding="utf-8")
        self.count = 0

    def write(self, record):
        line = json.dumps(record, default=_jsonable, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            self.count += 1

    def close(self):
        with self._lock:
            if not self._file.closed:
                self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HistoryError(Exception):
    """A history file that cannot be read (not a torn last line: that is tolerated)."""


def read_history(path):
    """All records of a history file, in file order. A torn (unparseable) last line, as a
    crashed runner leaves, is dropped; a bad line anywhere else raises HistoryError."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            if n == len(lines):
                break
            raise HistoryError("%s:%d: not JSON (%s)" % (path, n, exc)) from None
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict) or "kind" not in rec:
            raise HistoryError("%s: record %d has no \"kind\"" % (path, n))
    return records


def write_history(path, records):
    """Writes a list of records (tests build histories by hand with the helpers below)."""
    with HistoryWriter(path) as w:
        for rec in records:
            w.write(rec)


# -- record constructors ------------------------------------------------------------------

def meta_record(**fields):
    t, wall = Clock.now()
    rec = {"kind": "meta", "format": FORMAT, "t": t, "wall": wall}
    rec.update(fields)
    return rec


def op_record(op_id, worker, op_type, outcome, t_invoke, t_complete, wall_invoke=None,
              wall_complete=None, error=None, attempts=None, **fields):
    rec = {"kind": "op", "id": op_id, "worker": worker, "type": op_type, "outcome": outcome,
           "t_invoke": t_invoke, "t_complete": t_complete,
           "wall_invoke": wall_invoke, "wall_complete": wall_complete}
    if error is not None:
        rec["error"] = error
    if attempts is not None:
        rec["attempts"] = attempts
    rec.update(fields)
    return rec


def fault_record(fault_id, name, t_invoke, t_complete, wall_invoke=None, wall_complete=None,
                 **fields):
    rec = {"kind": "fault", "id": fault_id, "name": name, "t_invoke": t_invoke,
           "t_complete": t_complete, "wall_invoke": wall_invoke, "wall_complete": wall_complete}
    rec.update({k: v for k, v in fields.items() if v is not None})
    return rec


def final_record(coll, docs, t_invoke, t_complete, ok=True, error=None):
    rec = {"kind": "final", "coll": coll, "ok": ok, "t_invoke": t_invoke,
           "t_complete": t_complete, "docs": docs}
    if error is not None:
        rec["error"] = error
    return rec


def barrier_record(members, all_members, t_invoke, t_complete, error=None):
    rec = {"kind": "barrier", "members": members, "all": all_members, "t_invoke": t_invoke,
           "t_complete": t_complete}
    if error is not None:
        rec["error"] = error
    return rec


def end_record(ops):
    t, wall = Clock.now()
    return {"kind": "end", "ops": ops, "t": t, "wall": wall}
