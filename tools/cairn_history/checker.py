"""The checker: reads a history, runs every check, summarises, prints the report.

Owns: check(records, rollback_dirs) -> Report, check_file(path, rollback_dirs), the summary
(operations by type and outcome, faults, failover times, rollback files) and the text report.
The checks themselves live in writes.py (inserts) and listappend.py (transactions).

Severity: every finding type is an anomaly (exit status 1) except those in ALLOWED, which are
outcomes MongoDB's guarantees permit and are reported for information: rolled-back w:1
writes, w:1 j:false writes lost with a killed member, and G2 (write skew) cycles.
"""

import json

from .history import read_history
from .listappend import check_list_append
from .outcomes import majority_write
from .rollback import load_rollback
from .writes import check_inserts

ALLOWED = frozenset(("rolled-back-w1", "lost-w1-killed", "G2"))
ORDER = ("no-final-read", "lost-write", "lost-w1", "duplicate", "duplicate-key-error",
         "failed-write-present", "unexpected-value", "G0", "G1a", "G1b", "G1c", "G-single",
         "incompatible-order", "internal", "non-atomic", "G2", "rolled-back-w1",
         "lost-w1-killed")


class Report:
    def __init__(self, findings, summary, ops):
        self.findings = findings
        self.summary = summary
        self.ops = ops          # id -> op record, for printing

    def anomalies(self):
        return [f for f in self.findings if f["type"] not in ALLOWED]

    @property
    def clean(self):
        return not self.anomalies()

    def by_type(self):
        out = {}
        for f in self.findings:
            out.setdefault(f["type"], []).append(f)
        return out

    def to_json(self):
        return {"clean": self.clean, "summary": self.summary, "findings": self.findings}


# -- splitting the history ------------------------------------------------------------------

def _split(records):
    meta = next((r for r in records if r["kind"] == "meta"), {})
    ops = [r for r in records if r["kind"] == "op"]
    faults = sorted((r for r in records if r["kind"] == "fault"), key=lambda f: f["t_invoke"])
    finals = {}
    for r in records:
        if r["kind"] == "final":
            finals[r["coll"]] = r["docs"] if r.get("ok", True) else None
    return meta, ops, faults, finals


def _final_lists(docs):
    """{key: vals} from the final documents of the list-append collection."""
    if docs is None:
        return None
    return {d["_id"]: list(d.get("vals") or []) for d in docs}


def check(records, rollback_dirs=()):
    meta, ops, faults, finals = _split(records)
    barrier = next((r for r in records if r["kind"] == "barrier"), None)
    findings = []
    inserts = [op for op in ops if op["type"] == "insert"]
    txns = [op for op in ops if op["type"] == "txn"]
    wanted = set(meta.get("collections") or ())
    wanted |= {op["coll"] for op in ops if "coll" in op}
    for coll in sorted(wanted):
        if finals.get(coll) is None:
            findings.append({"type": "no-final-read", "ops": [], "message":
                             "no final read of %s: lost writes cannot be ruled out" % coll})
    since = meta.get("wall")
    rollback = load_rollback(rollback_dirs, since - 1.0 if since is not None else None)
    insert_colls = set(meta.get("insert_collections") or ()) | {op["coll"] for op in inserts}
    findings += check_inserts(inserts, {c: finals.get(c) for c in insert_colls}, faults,
                              rollback)
    append_colls = set(meta.get("append_collections") or ()) | {op["coll"] for op in txns}
    if append_colls:
        for coll in sorted(append_colls, key=str):
            group = [op for op in txns if op.get("coll") == coll]
            findings += check_list_append(group, _final_lists(finals.get(coll)))
    rank = {t: i for i, t in enumerate(ORDER)}
    findings.sort(key=lambda f: rank.get(f["type"], len(ORDER)))
    present = {str(d.get("_id")) for c in insert_colls for d in (finals.get(c) or ())}
    summary = summarize(meta, ops, faults, rollback, findings, present)
    summary["all_members_caught_up"] = None if barrier is None else barrier.get("all")
    return Report(findings, summary, {op["id"]: op for op in ops})


def check_file(path, rollback_dirs=()):
    return check(read_history(path), rollback_dirs)


# -- summary --------------------------------------------------------------------------------

def failover_times(ops, faults):
    """For each fault: seconds from its start (fault_start) to the completion of the first
    successful majority write completing after the fault ended (None when there was none)."""
    done = sorted(op["t_complete"] for op in ops if majority_write(op))
    out = []
    for f in faults:
        nxt = next((t for t in done if t > f["t_complete"]), None)
        out.append(None if nxt is None else nxt - fault_start(f))
    return out


def fault_start(f):
    """When the fault took effect, on the monotonic clock: t_invoke, moved forward to the
    event's at_wall (the moment cairn-fault applied it, after finding the member) if given."""
    at, w0 = f.get("at_wall"), f.get("wall_invoke")
    if at is not None and w0 is not None and w0 <= at <= (f.get("wall_complete") or at):
        return f["t_invoke"] + (at - w0)
    return f["t_invoke"]


DISRUPTIVE = frozenset(("kill", "kill9", "crash", "stop", "pause", "partition", "stepdown"))


def _hit_primary(f):
    """True when the fault event says it hit the primary (cairn-fault's "roles"), or says
    nothing about roles (a hand-written command: counted)."""
    roles = f.get("roles")
    if not isinstance(roles, dict):
        return True
    targets = f.get("targets") or list(roles)
    return any(roles.get(t) == "primary" for t in targets)


def failover_stats(faults, times):
    """Failover times of the disruptive faults (kill, stop, partition, stepdown, ...) that
    succeeded and hit the primary: count, p50, max, and how many saw no majority write."""
    vals, none = [], 0
    for f, t in zip(faults, times):
        if f.get("action") not in DISRUPTIVE or f.get("rc") not in (None, 0) or \
                f.get("error") or not _hit_primary(f):
            continue
        if t is None:
            none += 1
        else:
            vals.append(t)
    vals.sort()
    return {"n": len(vals) + none, "p50": vals[(len(vals) - 1) // 2] if vals else None,
            "max": vals[-1] if vals else None, "none": none}


def summarize(meta, ops, faults, rollback, findings, present=frozenset()):
    by = {}
    for op in ops:
        key = op["type"] + (" " + op["mode"] if op.get("mode") else "")
        by.setdefault(key, {"ok": 0, "fail": 0, "info": 0})
        by[key][op["outcome"]] = by[key].get(op["outcome"], 0) + 1
    counts = {}
    for f in findings:
        counts[f["type"]] = counts.get(f["type"], 0) + 1
    t0 = meta.get("t")
    if t0 is None and ops:
        t0 = min(op["t_invoke"] for op in ops)
    times = failover_times(ops, faults)
    fault_rows = [{"id": f.get("id"), "at": f["t_invoke"] - (t0 or 0), "name": f.get("name"),
                   "action": f.get("action"), "members": f.get("members"), "rc": f.get("rc"),
                   "failover": ft} for f, ft in zip(faults, times)]
    return {"seed": meta.get("seed"), "uri": meta.get("uri"), "ops": by,
            "total_ops": len(ops), "faults": fault_rows,
            "failover_max": max((t for t in times if t is not None), default=None),
            "failover_primary": failover_stats(faults, times),
            "rollback_files": rollback_rows(rollback, ops, present),
            "rollback_stale": list(rollback.stale), "findings": counts}


def rollback_rows(rollback, ops, present=frozenset()):
    """Each rollback file with what it held: documents of this run's inserts by the
    insert's outcome and whether the final state has the document anyway (a retried write
    that a later primary applied), list-append documents (by key), and others."""
    inserts = {str(op.get("doc_id")): op["outcome"] for op in ops if op["type"] == "insert"}
    keys = {str(m[1]) for op in ops if op["type"] == "txn" for m in op.get("mops", ())}
    rows = []
    for f in rollback.files:
        held = {}
        for i in f["ids"]:
            what = ("insert %s, %s" % (inserts[i], "also in the final state" if i in present
                                        else "not in the final state")) if i in inserts \
                else "list-append key" if i in keys else "other"
            held[what] = held.get(what, 0) + 1
        row = {"path": f["path"], "docs": f["docs"], "held": held}
        if f.get("error"):
            row["error"] = f["error"]
        rows.append(row)
    return rows


# -- printing -------------------------------------------------------------------------------

def describe_op(op, t0=0.0):
    """One line per operation: id, worker, type, outcome, times, what it did."""
    head = "op %s [w%s %s%s %s %.3f-%.3fs]" % (
        op["id"], op.get("worker"), op["type"], " " + op["mode"] if op.get("mode") else "",
        op["outcome"], op["t_invoke"] - t0, op["t_complete"] - t0)
    if op["type"] == "insert":
        body = "insert %s into %s (w:%s retry=%s) server=%s" % (
            op.get("value"), op.get("coll"), (op.get("wc") or {}).get("w"), op.get("retry"),
            op.get("server"))
    else:
        body = "; ".join("%s %s %s" % (f, k, "-" if v is None else v)
                         for f, k, v in op.get("mops", ()))
    err = op.get("error")
    if err:
        body += "  error: %s%s" % (err.get("class"), " %s" % err["code"] if "code" in err
                                  else "")
    return head + " " + body


def format_report(report, max_per_type=10):
    s = report.summary
    lines = ["history check: %s (seed %s, %d operations)"
             % ("CLEAN" if report.clean else "ANOMALIES FOUND", s["seed"], s["total_ops"])]
    lines.append("operations by type and outcome:")
    for key, c in sorted(s["ops"].items()):
        lines.append("  %-26s ok %6d  fail %6d  info %6d" % (key, c["ok"], c["fail"],
                                                             c["info"]))
    if s["faults"]:
        lines.append("faults (%d), failover = fault start to the next successful majority "
                     "write:" % len(s["faults"]))
        for f in s["faults"]:
            lines.append("  #%s at %.2fs %s%s%s  failover %s" % (
                f["id"], f["at"], f["name"], " action=%s" % f["action"] if f["action"] else "",
                " members=%s" % f["members"] if f["members"] else "",
                "none" if f["failover"] is None else "%.3fs" % f["failover"]))
    fp = s.get("failover_primary") or {}
    if fp.get("n"):
        lines.append("failover after faults that hit the primary (%d): p50 %s, max %s%s" % (
            fp["n"], _secs(fp["p50"]), _secs(fp["max"]),
            ", %d with no majority write after" % fp["none"] if fp["none"] else ""))
    if s.get("all_members_caught_up") is False:
        lines.append("not every member caught up before the final read: a deposed primary "
                     "may not have written its rollback files yet")
    lines.append("rollback files (%d)%s" % (len(s["rollback_files"]),
                                           ":" if s["rollback_files"] else ""))
    if s["rollback_files"]:
        for rf in s["rollback_files"]:
            held = ", ".join("%d %s" % (n, what) for what, n in sorted(rf["held"].items()))
            lines.append("  %s: %d documents%s%s" % (rf["path"], rf["docs"],
                                                     " (%s)" % held if held else "",
                                                     " (error: %s)" % rf["error"]
                                                     if rf.get("error") else ""))
    if s.get("rollback_stale"):
        lines.append("  (%d older rollback files, from before this run, ignored)"
                     % len(s["rollback_stale"]))
    t0 = min((op["t_invoke"] for op in report.ops.values()), default=0.0)
    for ftype, group in report.by_type().items():
        tag = "allowed" if ftype in ALLOWED else "ANOMALY"
        lines.append("%s %s: %d" % (tag, ftype, len(group)))
        shown = max_per_type if tag == "ANOMALY" else min(max_per_type, 2)
        for f in group[:shown]:
            lines.append("  - " + f["message"])
            for step in f.get("cycle", ()):
                a, b, label, note = step
                lines.append("      %s -%s-> %s: %s" % (a, label, b, note))
            for oid in f["ops"][:6]:
                if oid in report.ops:
                    lines.append("      " + describe_op(report.ops[oid], t0))
        if len(group) > shown:
            lines.append("  ... %d more" % (len(group) - shown))
    if report.clean:
        lines.append("no anomalies")
    return "\n".join(lines)


def _secs(v):
    return "-" if v is None else "%.3fs" % v


def write_json(report, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(report.to_json(), f, indent=1, default=str)
