"""Deciding an operation's outcome: ok, fail (certainly did not happen) or info (unknown).

Owns: AttemptTracker, a pymongo CommandListener that records, per worker thread, every write
command the driver sent for the current operation (driver retries included) and what came back;
the classification rules; and error_summary, the JSON form of an exception.

The rules are conservative: "fail" is claimed only when the operation certainly had no effect,
because the checker treats a failed write that is present as an anomaly.
  * Nothing sent: no write command (insert/update/commitTransaction...) was ever started for
    the operation (server selection failed, a statement of a transaction failed before commit)
    -> fail.
  * Non-transactional write: fail only if every attempt the driver sent was answered by the
    server with a code that rejects the request before anything is executed (DEFINITE_REJECT:
    malformed input, validation). Network errors, timeouts, NotWritablePrimary,
    InterruptedDueToReplStateChange, write concern errors, DuplicateKey... -> info.
  * Transaction: fail only if every commitTransaction sent (over all with_transaction
    attempts) was answered with a definite abort: the TransientTransactionError label, or
    NoSuchTransaction / WriteConflict / TransactionAborted, and no write concern error.
    UnknownTransactionCommitResult, network errors, anything else -> info.
"""

import threading

from pymongo import monitoring
from pymongo.errors import PyMongoError

# Commands whose sending means the operation may have taken effect.
WRITE_COMMANDS = frozenset(("insert", "update", "delete", "findAndModify",
                            "commitTransaction"))

# Server codes that reject a write before it executes (the request itself is invalid).
DEFINITE_REJECT = frozenset((
    2,      # BadValue
    9,      # FailedToParse
    13,     # Unauthorized
    14,     # TypeMismatch
    16,     # InvalidLength
    22,     # InvalidBSON
    40,     # ConflictingUpdateOperators
    52,     # DollarPrefixedFieldName
    53,     # InvalidIdField
    56,     # EmptyFieldName
    57,     # DottedFieldName
    59,     # CommandNotFound
    66,     # ImmutableField
    72,     # InvalidOptions
    73,     # InvalidNamespace
    121,    # DocumentValidationFailure
    10334,  # BSONObjectTooLarge
))

# commitTransaction answers that mean the transaction is aborted (with or without the label).
DEFINITE_ABORT = frozenset((
    112,    # WriteConflict
    244,    # TransactionAborted
    251,    # NoSuchTransaction
))


def _addr(connection_id):
    try:
        host, port = connection_id
        return "%s:%d" % (host, port)
    except (TypeError, ValueError):
        return str(connection_id)


class AttemptTracker(monitoring.CommandListener):
    """Per-thread log of the write commands sent for the current operation.

    pymongo publishes command events on the thread that runs the operation, so a
    threading.local is enough to keep workers apart. begin() starts a new operation;
    attempts() returns its log: dicts {cmd, addr, result: ok|error|network|None, code,
    labels, write_error, wce}."""

    def __init__(self):
        self._local = threading.local()

    def begin(self):
        self._local.attempts = []
        self._local.pending = {}

    def attempts(self):
        return list(getattr(self._local, "attempts", []))

    def started(self, event):
        if event.command_name not in WRITE_COMMANDS or not hasattr(self._local, "attempts"):
            return
        a = {"cmd": event.command_name, "addr": _addr(event.connection_id), "result": None}
        self._local.pending[event.request_id] = a
        self._local.attempts.append(a)

    def succeeded(self, event):
        a = getattr(self._local, "pending", {}).pop(event.request_id, None)
        if a is None:
            return
        a["result"] = "ok"
        reply = event.reply or {}
        werrs = reply.get("writeErrors")
        if werrs:
            a["write_error"] = werrs[0].get("code")
        wce = reply.get("writeConcernError")
        if wce:
            a["wce"] = wce.get("code")

    def failed(self, event):
        a = getattr(self._local, "pending", {}).pop(event.request_id, None)
        if a is None:
            return
        failure = event.failure or {}
        if "code" in failure:
            a["result"] = "error"
            a["code"] = failure.get("code")
            labels = failure.get("errorLabels")
            if labels:
                a["labels"] = list(labels)
            wce = failure.get("writeConcernError")
            if wce:
                a["wce"] = wce.get("code")
        else:  # network error, timeout: pymongo gives {errmsg, errtype}
            a["result"] = "network"
            a["message"] = str(failure.get("errmsg", ""))[:200]


# -- classification -----------------------------------------------------------------------

def write_attempt_rejected(a):
    """True if this attempt of a non-transactional write certainly did nothing."""
    if a.get("wce") is not None:
        return False
    if a["result"] == "error":
        return a.get("code") in DEFINITE_REJECT
    if a["result"] == "ok":
        return a.get("write_error") in DEFINITE_REJECT
    return False


def commit_attempt_aborted(a):
    """True if this commitTransaction answer says the transaction did not commit."""
    if a["result"] != "error" or a.get("wce") is not None:
        return False
    return a.get("code") in DEFINITE_ABORT or "TransientTransactionError" in a.get("labels", ())


def classify_write_error(attempts):
    """Outcome of a non-transactional write that raised: fail or info."""
    sent = [a for a in attempts if a["cmd"] != "commitTransaction"]
    if all(write_attempt_rejected(a) for a in sent):
        return "fail"  # includes "nothing was sent"
    return "info"


def classify_txn_error(attempts):
    """Outcome of a transaction that raised: fail or info."""
    commits = [a for a in attempts if a["cmd"] == "commitTransaction"]
    if all(commit_attempt_aborted(a) for a in commits):
        return "fail"  # includes "commit never sent"
    return "info"


def error_summary(exc):
    """The JSON form of an exception for the history."""
    out = {"class": type(exc).__name__, "message": str(exc)[:300]}
    if isinstance(exc, PyMongoError):
        code = getattr(exc, "code", None)
        if code is not None:
            out["code"] = code
        labels = sorted(getattr(exc, "_error_labels", ()) or ())
        if labels:
            out["labels"] = labels
    return out


def acknowledging_server(attempts):
    """Address of the member whose answer acknowledged the operation (last ok attempt)."""
    for a in reversed(attempts):
        if a["result"] == "ok" and not a.get("write_error"):
            return a["addr"]
    return None


def majority_write(op):
    """True for an operation record that is an acknowledged majority write: a w:"majority"
    insert, or a committed transaction that appended (its commit waits for majority)."""
    if op["outcome"] != "ok":
        return False
    if op["type"] == "insert":
        return (op.get("wc") or {}).get("w") == "majority"
    return op["type"] == "txn" and any(m[0] == "append" for m in op.get("mops", ()))
