"""Checks of the single-document insert workload against the final state and rollback files.

Owns: check_inserts(ops, finals, faults, rollback), returning findings:
  lost-write            an acknowledged w:"majority" insert missing from the final state
  lost-w1               an acknowledged w:1 insert missing, with no rollback-file entry and
                        no kill to excuse it
  rolled-back-w1        (allowed) an acknowledged w:1 insert missing, found in a rollback file
  lost-w1-killed        (allowed) an acknowledged w:1, j:false insert missing, acknowledged by
                        a member that a later fault event killed (as with mongod, such a write
                        may vanish without a rollback file)
  duplicate             a value present more than once (applied twice)
  duplicate-key-error   an insert of a unique value answered DuplicateKey: a driver retry was
                        executed again instead of being answered from the session record
  failed-write-present  an insert classified fail (certainly not applied) that is present
  unexpected-value      a document no insert of this run wrote

A retryable w:1 write is still a w:1 write: it may be rolled back, so it is judged as w:1.
"""

KILL_ACTIONS = frozenset(("kill", "kill9", "crash"))


def _finding(ftype, message, ops, **extra):
    out = {"type": ftype, "message": message, "ops": [o for o in ops if o is not None]}
    out.update(extra)
    return out


def _member_matches(server, member):
    """A fault's member names the acknowledging server: same host:port, or a bare name
    equal to the server's host (Docker service names)."""
    if server is None or member is None:
        return False
    member = str(member)
    return server == member or (":" not in member and server.rsplit(":", 1)[0] == member)


def killed_later(op, faults):
    """The kill fault that hit the member acknowledging `op` after op was sent, if any."""
    for f in faults:
        if f.get("action") not in KILL_ACTIONS:
            continue
        members = f.get("members") or ([f["member"]] if f.get("member") else [])
        if f.get("t_complete", 0) < op["t_invoke"]:
            continue
        if any(_member_matches(op.get("server"), m) for m in members):
            return f
    return None


def _is_majority(op):
    return (op.get("wc") or {}).get("w") == "majority"


def _dup_key(op):
    if (op.get("error") or {}).get("code") == 11000:
        return True
    return any(a.get("code") == 11000 or a.get("write_error") == 11000
               for a in op.get("attempts") or ())


def _check_missing(op, faults, rollback):
    """A finding for an acknowledged insert that is not in the final state."""
    v, oid = op.get("value"), op["id"]
    if _is_majority(op):
        return _finding("lost-write", "op %s: insert of %s (w:majority, retry=%s) was "
                        "acknowledged but is not in the final state"
                        % (oid, v, op.get("retry")), [oid], value=v)
    files = rollback.match(op.get("doc_id"), v)
    if files:
        return _finding("rolled-back-w1", "op %s: w:1 insert of %s rolled back (in %s)"
                        % (oid, v, files[0]), [oid], value=v, file=files[0])
    kill = None if (op.get("wc") or {}).get("j") else killed_later(op, faults)
    if kill is not None:
        return _finding("lost-w1-killed", "op %s: w:1 j:false insert of %s acknowledged by %s, "
                        "which fault %s (%s) killed later; no rollback entry"
                        % (oid, v, op.get("server"), kill.get("id"), kill.get("name")),
                        [oid], value=v, fault=kill.get("id"))
    return _finding("lost-w1", "op %s: w:1 insert of %s acknowledged by %s is neither in the "
                    "final state nor in a rollback file" % (oid, v, op.get("server")),
                    [oid], value=v)


def check_inserts(ops, finals, faults, rollback):
    """ops: "insert" op records; finals: {coll: docs or None}; faults: fault records;
    rollback: a RollbackIndex. Returns findings (see the module docstring)."""
    findings = []
    counts = {}           # (coll, v) -> occurrences in the final state
    for coll, docs in finals.items():
        for d in docs or ():
            key = (coll, d.get("v"))
            counts[key] = counts.get(key, 0) + 1
    writers = {}
    for op in ops:
        writers.setdefault((op["coll"], op.get("value")), op["id"])
        if finals.get(op["coll"]) is None:
            continue      # no final read of this collection: reported by the checker
        n = counts.get((op["coll"], op.get("value")), 0)
        if op["outcome"] == "ok" and n == 0:
            findings.append(_check_missing(op, faults, rollback))
        elif op["outcome"] == "fail" and n:
            findings.append(_finding("failed-write-present", "op %s: insert of %s failed "
                                     "definitely (%s) but is in the final state"
                                     % (op["id"], op.get("value"), op.get("error")),
                                     [op["id"]], value=op.get("value")))
        if _dup_key(op):
            findings.append(_finding("duplicate-key-error", "op %s: insert of the unique value "
                                     "%s got DuplicateKey (retry=%s): it was executed twice"
                                     % (op["id"], op.get("value"), op.get("retry")),
                                     [op["id"]], value=op.get("value")))
    for (coll, v), n in sorted(counts.items(), key=str):
        if n > 1:
            findings.append(_finding("duplicate", "value %s is %d times in %s (op %s): applied "
                                     "more than once" % (v, n, coll, writers.get((coll, v))),
                                     [writers.get((coll, v))], value=v))
        if (coll, v) not in writers:
            findings.append(_finding("unexpected-value", "value %s in %s was written by no "
                                     "insert of this run" % (v, coll), [], value=v))
    return findings
