"""Seeded fuzzing and property checks of sessions, transactions and retryable writes.

A generator sends a few thousand random commands (every CRUD, cursor and DDL command the
session layer handles, commitTransaction/abortTransaction and the session commands) over a
small pool of lsids and txnNumbers, with random combinations of the session fields: wrong
types, missing and extra fields, negative and huge txnNumbers, autocommit true / false /
missing / not a bool, startTransaction true / false / missing, stmtId and stmtIds of wrong
types and lengths, readConcern levels and afterClusterTime / atClusterTime of every shape,
writeConcern shapes, $clusterTime gossip, lsids of wrong shapes, on the admin, config, local
and user databases. Commands go over raw OP_MSG connections (rawwire) and through pymongo.

After every command: a well-formed reply came back (ok 1, or ok 0 with an int code, codeName
and errmsg; well-formed writeErrors / writeConcernError / errorLabels), within BOUND seconds,
and the server answers a ping on another connection. A command whose session fields break
one of mongod's rules (validateSessionOptions, initializeOperationSessionInfo) must fail.
Commands that may legitimately wait (a write meeting another transaction's document, DDL on
a namespace a transaction holds) always carry a small maxTimeMS.

Interleaved with the noise, "sane" operations keep a model of the committed data in fzm.m:
transactions (raw and pymongo) that insert unique _ids (and delete some of their own), spread
over many steps so that the random commands on the same lsids start newer transactions,
commit, abort, kill and end them underneath; plain and retryable inserts; retryable $inc of a
counter, and retries of acknowledged retryable writes. Every reply about a sane transaction,
whoever sent it, is evidence: a commit answered ok (or a statement / abort answered 256
TransactionCommitted) means committed, a commit answered 251 or an abort answered ok means
aborted, a commit without a reply (or with an error that does not rule a commit out) makes
the outcome unknown. The checks, mid-run and at the end: every committed transaction's writes
are visible, no write of an aborted or never-committed transaction is, a transaction of
unknown outcome is all or nothing, every acknowledged plain / retryable insert is visible, a
retried retryable write never runs twice, the counter lies between the acknowledged and the
possible number of increments, and a transaction reads its own writes.

Raw commands also go as OP_MSG document sequences, as legacy OP_QUERY, and fire-and-forget
(moreToCome, then a ping whose reply must be the next thing on the connection). Now and then
the reaper's transactionLifetimeLimitSeconds drops to 1 s (the server's reaper then aborts
transactions under the fuzz), currentOp / killOp run, and session lists at and past the
10,000 limit. Rules of mongod that the session layer must keep are checked too: session
fields that mongod refuses, stmtId / stmtIds shapes (write_ops.cpp), getMore of a cursor in
another session or transaction (50736-50741), a txnNumber that starts a second transaction
on its session, and the drivers' errorLabels rules. These
"soft" failures are counted by kind and reported together at the end of a run, so that one
of them does not hide the rest; crashes, hangs, malformed replies and wrong visibility stop
the run at once. At the end the server is restarted cleanly: everything committed is still
there, retries of acknowledged retryable writes are answered from the durable session
records, and a retried commit of a committed transaction still answers ok.

The second test runs the same fuzz against a server with enableTestCommands and switches
random failCommand fail points (errorCode, closeConnection, blockConnection with a small
blockTimeMS, writeConcernError, errorLabels) on and off between commands. The third runs
WORKERS generators at once on one server with fail points (not replayable step by step).
The fixtures stop the servers with SIGTERM and fail on an unclean exit or a sanitizer
report. The tests after the fuzz tests reproduce what the fuzz found, deterministically.

CAIRN_FUZZ_SEED picks another seed (the default one is what CI replays);
CAIRN_FUZZ_SESSIONS_STEPS and CAIRN_FUZZ_SESSIONS_SECONDS bound each run (5000 steps, 30 s;
per worker in the concurrent test). A failure prints the seed, the step and the last
commands sent.
"""

import collections
import os
import random
import struct
import threading
import time
import uuid

import bson
import pymongo
import pytest
from bson import Binary, Decimal128, Int64, Timestamp
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from rawwire import (MORE_TO_COME, OP_MSG, OP_QUERY, ServerHung, connect, frame, op_msg,
                     read_reply)
from test_fuzz_commands import random_value
from txn_helpers import TEST_COMMANDS_ARGS, env_seconds

SEED = int(os.environ.get("CAIRN_FUZZ_SEED", "20261207"))
STEPS = int(os.environ.get("CAIRN_FUZZ_SESSIONS_STEPS", "5000"))
SECONDS = env_seconds("CAIRN_FUZZ_SESSIONS_SECONDS", 30)
# No command (nor the ping after it) may take longer than this.
BOUND = 10.0
# A run that managed fewer steps than this in its time budget has not fuzzed anything.
MIN_STEPS = 150

MODEL_DB = "fzm"          # only the sane operations write here
MODEL_COLL = "m"
COUNTER_COLL = "ctr"
RANDOM_DBS = ["fz", "fz", "fz", "fz", "fz2", "admin", "config", "local"]
RANDOM_COLLS = ["c", "c", "c", "d", "e", "system.x", "transactions", "system.sessions",
                "oplog.rs", "", "a" * 120]
# Sane retryable writes use stmtIds the random ones never use, so that a random retryable
# write on the same (lsid, txnNumber) cannot be mistaken for one of their statements.
SANE_STMT_BASE = 100000

CRUD = ["insert", "update", "delete", "findAndModify", "find", "aggregate", "count",
        "distinct", "getMore", "killCursors", "create", "drop", "createIndexes"]
SESSION_CMDS = ["commitTransaction", "abortTransaction", "startSession", "endSessions",
                "killSessions", "killAllSessions", "killAllSessionsByPattern",
                "refreshSessions"]
ALL_CMDS = CRUD + SESSION_CMDS
RETRYABLE_CMDS = {"insert", "update", "delete", "findAndModify"}
TXN_CMDS = {"find", "getMore", "killCursors", "insert", "update", "delete", "findAndModify",
            "aggregate", "distinct", "create", "createIndexes", "commitTransaction",
            "abortTransaction"}
# Commands that may wait for another transaction (bounded with a small maxTimeMS).
MAY_BLOCK = {"insert", "update", "delete", "findAndModify", "create", "drop", "createIndexes",
             "aggregate"}

# A commit answered with one of these did not commit (validation, state machine, or a
# commit that failed and aborted). Any other error leaves the outcome unknown.
NOT_COMMITTED_CODES = {2, 9, 13, 14, 20, 59, 72, 73, 79, 112, 117, 125, 207, 217, 225, 251,
                       257, 263, 10107, 40414, 40415, 50768, 51, 50, 10334}
# Errors of a single-document non-transactional write after which it may still have applied.
UNCERTAIN_WRITE_CODES = {1, 6, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11601, 11602, 13436}

FP_COMMANDS = ["insert", "update", "delete", "findAndModify", "find", "aggregate", "count",
               "distinct", "getMore", "killCursors", "create", "drop", "createIndexes",
               "commitTransaction", "abortTransaction", "startSession", "endSessions",
               "killSessions", "killAllSessions", "killAllSessionsByPattern",
               "refreshSessions"]
FP_ERROR_CODES = [2, 6, 50, 91, 112, 189, 251, 262, 9001, 10107, 11600, 13436, 0]


class FuzzFailure(AssertionError):
    pass


def short(x, n=500):
    s = repr(x)
    return s if len(s) <= n else s[:n] + "...(%d chars)" % len(s)


def strip_reply(r):
    if r is None:
        return None
    d = dict(r)
    d.pop("$clusterTime", None)
    d.pop("operationTime", None)
    return d


def lsid_uuid(v):
    """The 16 session-id bytes of a well-formed lsid document, else None."""
    if not isinstance(v, dict) or "id" not in v:
        return None
    for k, x in v.items():
        if k == "id":
            if not (isinstance(x, Binary) and x.subtype == 4 and len(x) == 16):
                return None
        elif k == "uid":
            if not isinstance(x, (Binary, bytes)):
                return None
        else:
            return None
    return bytes(v["id"])


def nonempty(v):
    return v is not None and not (isinstance(v, dict) and not v)


def session_rule_violation(name, db, doc):
    """Why mongod must refuse `doc` for its session fields alone, or None."""
    has = doc.__contains__
    if has("lsid") and lsid_uuid(doc["lsid"]) is None:
        return "malformed lsid"
    if has("txnNumber") and type(doc["txnNumber"]) is not Int64:
        return "txnNumber is not a long"
    if has("autocommit") and type(doc["autocommit"]) is not bool:
        return "autocommit is not a bool"
    if has("startTransaction") and type(doc["startTransaction"]) is not bool:
        return "startTransaction is not a bool"
    if has("txnNumber") and not has("lsid"):
        return "txnNumber without lsid"
    if has("txnNumber") and doc["txnNumber"] < 0:
        return "negative txnNumber"
    if has("autocommit") and not has("txnNumber"):
        return "autocommit without txnNumber"
    if doc.get("autocommit") is True:
        return "autocommit: true"
    if has("startTransaction") and not has("autocommit"):
        return "startTransaction without autocommit"
    if doc.get("startTransaction") is False:
        return "startTransaction: false"
    if has("autocommit"):
        if name not in TXN_CMDS:
            return "%s in a transaction" % name
        if db in ("local", "config"):
            return "transaction on the %s database" % db
        if name not in ("commitTransaction", "abortTransaction") and \
                nonempty(doc.get("writeConcern")):
            return "writeConcern on a transaction statement"
        if not has("startTransaction") and nonempty(doc.get("readConcern")):
            return "readConcern after the first statement"
        if has("startTransaction") and name in ("killCursors", "commitTransaction",
                                                "abortTransaction"):
            return "transaction started by %s" % name
    elif has("txnNumber") and name not in RETRYABLE_CMDS:
        return "txnNumber on %s, not a retryable write" % name
    return stmt_rule_violation(name, doc)


WRITE_BATCH = {"insert": "documents", "update": "updates", "delete": "deletes"}


def stmt_rule_violation(name, doc):
    """mongod's checks of stmtId / stmtIds (write_ops.cpp checkOpCountForCommand and the
    IDL types), or None."""
    if name in RETRYABLE_CMDS and "stmtId" in doc and \
            isinstance(doc["stmtId"], (str, list, dict, Binary, Timestamp)):
        return "stmtId of type %s" % type(doc["stmtId"]).__name__
    if name not in WRITE_BATCH or "stmtIds" not in doc:
        return None
    ids = doc["stmtIds"]
    if not isinstance(ids, list):
        return "stmtIds of type %s" % type(ids).__name__
    if any(isinstance(x, (str, list, dict)) or x is None for x in ids):
        return "stmtIds holding a non-number"
    ops = doc.get(WRITE_BATCH[name])
    if isinstance(ops, list) and len(ids) != len(ops):
        return "%d stmtIds for %d statements" % (len(ids), len(ops))
    if "stmtId" in doc:
        return "both stmtId and stmtIds"
    return None


def getmore_session_mismatch(doc, cid, creator):
    """mongod's getMore checks (getmore_cmd.cpp validateLSID, validateTxnNumber: 50736-50741):
    a cursor opened in a session continues only in that session, one opened outside
    sessions only outside them, one opened in a transaction only in that transaction, and
    one opened outside transactions not inside one."""
    if not isinstance(doc.get("getMore"), Int64) or doc["getMore"] != cid:
        return None
    mine = lsid_uuid(doc.get("lsid")) if "lsid" in doc else None
    theirs = lsid_uuid(creator.get("lsid")) if "lsid" in creator else None
    if mine != theirs:
        return ("the cursor's session %s but the getMore's %s"
                % (theirs and theirs.hex()[:8], mine and mine.hex()[:8]))
    if creator.get("autocommit") is False and "txnNumber" in creator:
        if doc.get("txnNumber") != creator["txnNumber"] or doc.get("autocommit") is not False:
            return "a cursor of transaction %s continued outside it" % creator["txnNumber"]
    elif doc.get("autocommit") is False:
        return "a cursor opened outside a transaction continued inside one"
    return None


def rule_kind(why):
    """The kind of a broken rule (soft failures are grouped by kind)."""
    for prefix, kind in (("stmtId of type", "stmtId of a wrong type"),
                         ("stmtIds of type", "stmtIds of a wrong type"),
                         ("the cursor's session", "getMore of a session's cursor in another "
                                                  "session or none"),
                         ("a cursor of transaction", "getMore of a transaction's cursor "
                                                     "outside it")):
        if why.startswith(prefix):
            return kind
    if " stmtIds for " in why:
        return "stmtIds of a wrong length"
    return why


def check_reply_doc(doc):
    """Problems with the shape of a reply document (a list of strings)."""
    bad = []
    ok = doc.get("ok")
    if type(ok) not in (float, int) or ok not in (0, 1):
        return ["ok is %r" % (ok,)]
    if ok == 0:
        if not isinstance(doc.get("errmsg"), str) or not doc["errmsg"]:
            bad.append("errmsg missing or empty")
        if type(doc.get("code")) is not int:
            bad.append("code is not an int")
        if not isinstance(doc.get("codeName"), str) or not doc["codeName"]:
            bad.append("codeName missing or empty")
    else:
        wes = doc.get("writeErrors", [])
        if not isinstance(wes, list):
            bad.append("writeErrors is not an array")
        else:
            for we in wes:
                if not isinstance(we, dict) or type(we.get("index")) is not int or \
                        type(we.get("code")) is not int or not isinstance(we.get("errmsg"), str):
                    bad.append("malformed writeError %r" % (we,))
        wce = doc.get("writeConcernError")
        if wce is not None and (not isinstance(wce, dict) or type(wce.get("code")) is not int
                                or not isinstance(wce.get("errmsg"), str)):
            bad.append("malformed writeConcernError %r" % (wce,))
    labels = doc.get("errorLabels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        bad.append("malformed errorLabels %r" % (labels,))
    return bad


# ---- Raw connections ------------------------------------------------------------------------

class Link:
    """One raw connection; reconnects after the server closed it."""

    def __init__(self, server, name):
        self.server = server
        self.name = name
        self.sock = None

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def send(self, doc, db, sequence=None, opcode=OP_MSG, more_to_come=False):
        """The reply document, or None when the server closed the connection. Raises
        ServerHung after BOUND seconds of silence. `sequence`: the name of a field of `doc`
        to send as an OP_MSG document sequence (as drivers send documents/updates/deletes);
        OP_QUERY sends the command the legacy way (db.$cmd); `more_to_come` sends it
        fire-and-forget, then a ping on the same connection whose reply must be the next
        thing the server sends."""
        full = dict(doc)
        if opcode == OP_QUERY:
            body = struct.pack("<i", 0) + (db + ".$cmd").encode() + b"\x00" + \
                struct.pack("<ii", 0, -1) + bson.encode(full)
        else:
            full["$db"] = db
            seqs = ()
            if sequence is not None:
                seqs = [(sequence, full.pop(sequence))]
            body = op_msg(full, flags=MORE_TO_COME if more_to_come else 0, sequences=seqs)
        msg, rid = frame(opcode, body)
        if self.sock is None:
            self.sock = connect(self.server, timeout=BOUND)
        try:
            self.sock.sendall(msg)
            if more_to_come:
                msg, rid = frame(OP_MSG, op_msg({"ping": 1, "$db": "admin"}))
                self.sock.sendall(msg)
        except OSError:
            self.close()
            return None
        r = read_reply(self.sock)
        if r is None:
            self.close()
            return None
        assert r[1] == rid, "reply answers request %d, not %d%s" % (
            r[1], rid, " (a reply to a moreToCome message?)" if more_to_come else "")
        return r[2]


# ---- The model of committed data -----------------------------------------------------------

class SaneTxn:
    """One sane transaction in fzm.m, raw (lsid bytes + txnNumber) or pymongo."""

    def __init__(self, key, label):
        self.key = key            # (lsid bytes, txnNumber) for raw ones, None for pymongo
        self.label = label
        self.present = set()      # ids it staged (and did not delete), replies ok
        self.deleted = set()      # ids it staged and then deleted, replies ok
        self.maybe = set()        # ids of statements without a reply
        self.k = 0
        self.first = True
        self.dead = False         # a statement failed: no more statements
        self.done = False         # commit or abort sent by the sane side
        self.inflight = 0         # commits sent whose replies are not in yet
        self.superseded = False   # its (lsid, txnNumber) was started again by another
        self.starting = False     # its first statement is in flight
        self.committed = False    # evidence: committed
        self.aborted = False      # evidence: never committed
        self.unknown = False      # a commit may have happened without our knowing
        self.commit_tried = False
        self.session = None       # pymongo ClientSession

    def status(self):
        if self.superseded:
            return "superseded"
        if self.committed:
            return "committed"
        if self.aborted:
            return "aborted"
        if self.unknown:
            return "unknown"
        return "absent"


class Model:
    """Shared by the workers of the concurrent run (its own lock; single assignments to a
    SaneTxn's flags need none). In-flight writes and commits count as possible: a check
    that reads the data counts what must be there before its read and what may be there
    after it."""

    def __init__(self):
        self.lock = threading.RLock()
        self.inflight_ids = collections.Counter()   # plain / retryable inserts in flight
        self.txns = {}            # key -> SaneTxn (raw ones)
        self.all_txns = []        # raw and pymongo
        self.plain = {}           # id -> "acked" | "unknown" | "absent" (non-transactional)
        self.ctr_acked = 0
        self.ctr_unknown = 0      # increments that may or may not have applied
        self.ctr_ops = {}         # op key -> "acked" | "unknown" | "absent"

    def expectation(self):
        """(must, may, txns of unknown outcome)."""
        must, may, unknown = {"seed"}, set(), []
        with self.lock:
            txns = list(self.all_txns)
            plain = list(self.plain.items())
            may |= {i for i, n in self.inflight_ids.items() if n > 0}
        for t in txns:
            st = t.status()
            if st == "committed":
                must |= t.present
                may |= t.maybe
            elif st == "unknown":
                may |= t.present | t.maybe
                unknown.append(t)
            elif st == "superseded":
                # its later statements may have gone into the transaction that took its
                # number over: anything of it may be there
                may |= t.present | t.maybe
            elif t.inflight > 0:
                may |= t.present | t.maybe
        for i, s in plain:
            if s == "acked":
                must.add(i)
            elif s == "unknown":
                may.add(i)
        return must, may, unknown

    def add_txn(self, t):
        """Registers a sane transaction; False when its (lsid, txnNumber) is taken."""
        with self.lock:
            if t.key is not None:
                if t.key in self.txns:
                    return False
                self.txns[t.key] = t
            self.all_txns.append(t)
            return True

    def flight(self, ids, delta):
        with self.lock:
            for i in ids:
                self.inflight_ids[i] += delta

    def set_plain(self, i, outcome):
        with self.lock:
            self._set_plain(i, outcome)

    def _set_plain(self, i, outcome):
        old = self.plain.get(i)
        if old == "acked":
            return
        if old == "unknown" and outcome == "absent":
            return
        self.plain[i] = outcome

    def set_ctr(self, key, outcome):
        with self.lock:
            self._set_ctr(key, outcome)

    def _set_ctr(self, key, outcome):
        old = self.ctr_ops.get(key)
        if old == outcome or old == "acked":
            return
        if old == "unknown":
            if outcome == "absent":
                return
            self.ctr_unknown -= 1
        if outcome == "acked":
            self.ctr_acked += 1
        elif outcome == "unknown":
            self.ctr_unknown += 1
        self.ctr_ops[key] = outcome


# ---- The fuzzer ----------------------------------------------------------------------------

class Shared:
    """What the workers of a concurrent run share: the model, the lsid pool and what was
    sent on each lsid, the cursors, and the sane retryable writes to retry."""

    def __init__(self, rng):
        self.lock = threading.RLock()
        self.model = Model()
        self.pool = [uuid.UUID(int=rng.getrandbits(128), version=4).bytes for _ in range(4)]
        self.top = {}                 # lsid bytes -> highest valid txnNumber sent
        self.cursors = collections.deque(maxlen=24)
        self.retry_queue = collections.deque(maxlen=16)   # sane retryable writes to retry
        self.py_lsids = collections.deque(maxlen=8)
        # failCommand as configured, in order: (names, closes, labels, errorCode) or None.
        # A command checks what was configured at any time while it was in flight.
        self.fp_log = [None]
        self.started = set()          # (lsid, txnNumber) of every transaction started


class Fuzzer:
    def __init__(self, server, seed, fail_points, shared=None, wid=0):
        self.server = server
        self.seed = seed
        self.rng = random.Random(seed)
        self.fail_points = fail_points
        self.shared = shared or Shared(self.rng)
        self.wid = wid
        self.links = [Link(server, "raw%d" % i) for i in range(3)]
        self.ping_link = Link(server, "ping")
        self.admin_link = Link(server, "admin")
        # heartbeatFrequencyMS 500: after a fail point's state-change error (11600, 91...)
        # pymongo marks the server Unknown and cannot select it again until its streaming
        # monitor's awaitable hello returns, which takes maxAwaitTimeMS = heartbeatFrequencyMS
        # (10 s by default) when nothing changes on the server: a retryable write could wait
        # that twice and pass BOUND * 1.5 without anything being wrong with the server.
        self.client = server.client(appName="fz-sessions", retryWrites=True,
                                    socketTimeoutMS=int(BOUND * 1000),
                                    serverSelectionTimeoutMS=int(BOUND * 1000),
                                    heartbeatFrequencyMS=500,
                                    connectTimeoutMS=5000)
        self.pool = self.shared.pool
        self.top = self.shared.top
        self.cursors = self.shared.cursors
        self.cluster_time = Timestamp(1, 1)
        self.model = self.shared.model
        self.open_raw = []            # raw sane transactions still taking statements
        self.open_py = []             # pymongo sane transactions still open
        self.retry_queue = self.shared.retry_queue
        self.py_lsids = self.shared.py_lsids
        self.history = collections.deque(maxlen=30)
        self.stats = collections.Counter()
        self.step = 0
        self.uid = 0
        self.soft = {}                # rule violations by kind: examples
        self.soft_count = collections.Counter()
        self.getmore_cursor = None    # (cursor id, creator's session fields) of a getMore

    # -- helpers ---------------------------------------------------------------------------
    def new_uuid(self):
        return uuid.UUID(int=self.rng.getrandbits(128), version=4).bytes

    def next_id(self, prefix):
        self.uid += 1
        return "%s%d" % (prefix, self.uid) if self.wid == 0 else \
            "%s%d_%d" % (prefix, self.wid, self.uid)

    def fail(self, msg):
        lines = ["seed %d (CAIRN_FUZZ_SEED=%d), fail points %s, worker %d, step %d: %s"
                 % (self.seed, self.seed, "on" if self.fail_points else "off", self.wid,
                    self.step, msg),
                 "last commands:"]
        lines += ["  " + h for h in self.history]
        lines.append(self.server.log_tail(60))
        raise FuzzFailure("\n".join(lines))

    def soft_fail(self, kind, msg):
        """A broken rule that does not stop the run: counted by kind, the first examples of
        each kind kept, and the test failed at the end."""
        self.soft_count[kind] += 1
        examples = self.soft.setdefault(kind, [])
        if len(examples) < 2:
            examples.append("step %d: %s\n      %s" % (self.step, msg, "\n      ".join(
                list(self.history)[-3:])))

    def note(self, text):
        self.history.append("#%d %s" % (self.step, text))

    def close(self):
        for link in self.links + [self.ping_link, self.admin_link]:
            link.close()
        self.client.close()

    def note_txn_number(self, doc):
        u = lsid_uuid(doc.get("lsid"))
        n = doc.get("txnNumber")
        if u is None or type(n) is not Int64 or n < 0:
            return
        with self.shared.lock:
            if n > self.top.get(u, -1):
                self.top[u] = int(n)
            if n > 2 ** 62 and u in self.pool:
                # no room left above it for sane transactions: use a fresh session
                self.pool[self.pool.index(u)] = self.new_uuid()

    @property
    def fp(self):
        """The fail point configured now (see Shared.fp_log)."""
        return self.shared.fp_log[-1]

    @fp.setter
    def fp(self, value):
        self.shared.fp_log.append(value)

    def fps_since(self, mark):
        return [fp for fp in self.shared.fp_log[max(mark, 0):] if fp is not None]

    def closes_allowed(self, name, more_to_come=False, mark=None):
        """closeConnection, or (as mongod) a fire-and-forget command failing with
        NotWritablePrimary / NotPrimaryNoSecondaryOk: closing is how its client learns.
        Any fail point configured since `mark` (the command's start) counts."""
        fps = self.fps_since(len(self.shared.fp_log) - 1 if mark is None else mark)
        return any(name in fp[0] and (fp[1] or (more_to_come and fp[3] in (10107, 13435)))
                   for fp in fps)

    # -- sending ---------------------------------------------------------------------------
    def send(self, doc, db, link=None, what="random", wire=None):
        """Sends a raw command and checks the reply's shape and timing; returns the reply or
        None (closed: only allowed under a closeConnection fail point). `wire`: Link.send's
        options (sequence, opcode, more_to_come); with more_to_come the reply checked is the
        ping's that follows, and the command's outcome is unknown."""
        link = link or self.rng.choice(self.links)
        name = next(iter(doc))
        wire = wire or {}
        try:
            op_msg(doc)
        except (bson.errors.InvalidDocument, OverflowError, ValueError):
            return "unencodable"
        if wire:
            what += " " + ",".join("%s=%s" % kv for kv in sorted(wire.items()))
        flying = self.sane_txn_of(doc) if name == "commitTransaction" else None
        if flying is not None:
            flying.inflight += 1
        try:
            return self._send(doc, db, link, what, wire, name)
        finally:
            if flying is not None:
                flying.inflight -= 1

    def sane_txn_of(self, doc):
        u = lsid_uuid(doc.get("lsid"))
        n = doc.get("txnNumber")
        if u is None or type(n) is not Int64:
            return None
        return self.model.txns.get((u, int(n)))

    def _send(self, doc, db, link, what, wire, name):
        mark = len(self.shared.fp_log) - 1
        t0 = time.monotonic()
        try:
            reply = link.send(doc, db, **wire)
        except ServerHung as e:
            self.note("%s %s db=%s %s -> HUNG" % (what, link.name, db, short(doc)))
            self.fail("no reply within %.0fs: %s" % (BOUND, e))
        except AssertionError as e:
            self.note("%s %s db=%s %s -> MALFORMED" % (what, link.name, db, short(doc)))
            self.fail("malformed reply: %s" % e)
        elapsed = time.monotonic() - t0
        self.note("%s %s db=%s %s -> %s (%.0f ms)" % (what, link.name, db, short(doc),
                                                      short(strip_reply(reply), 300),
                                                      elapsed * 1000))
        if elapsed > BOUND:
            self.fail("%s took %.1fs" % (name, elapsed))
        self.note_txn_number(doc)
        if wire.get("more_to_come") and reply is not None:
            if reply.get("ok") != 1:
                self.fail("the ping after a moreToCome %s failed: %r" % (name, reply))
            self.stats[(name, "moreToCome")] += 1
            self.txn_evidence(name, doc, None)
            return "moreToCome"
        if reply is None:
            self.stats[(name, "closed")] += 1
            if not self.closes_allowed(name, wire.get("more_to_come", False), mark):
                self.fail("server closed the connection on %s" % name)
            self.txn_evidence(name, doc, None)
            return None
        bad = check_reply_doc(reply)
        if bad:
            self.fail("malformed reply to %s: %s: %r" % (name, "; ".join(bad), reply))
        self.stats[(name, reply["ok"] == 1 and "ok" or reply["code"])] += 1
        ct = reply.get("$clusterTime", {}).get("clusterTime")
        if isinstance(ct, Timestamp) and ct > self.cluster_time:
            self.cluster_time = ct
        cur = reply.get("cursor")
        if reply["ok"] == 1 and isinstance(cur, dict):
            if cur.get("id"):
                sess = {k: doc[k] for k in ("lsid", "txnNumber", "autocommit") if k in doc}
                self.cursors.append((cur["id"], cur.get("ns", "fz.c"), sess))
            if cur.get("ns") == "%s.%s" % (MODEL_DB, MODEL_COLL) and "autocommit" not in doc:
                batch = cur.get("firstBatch", cur.get("nextBatch", []))
                txn_cursor = name == "getMore" and self.getmore_cursor is not None and \
                    self.getmore_cursor[1].get("autocommit") is False
                self.check_outside_read(name, batch, soft=txn_cursor)
        self.txn_evidence(name, doc, reply)
        self.check_restart(name, doc, reply)
        self.check_labels(name, doc, reply, mark)
        return reply

    def check_restart(self, name, doc, reply):
        """A txnNumber names one transaction of its session: once one started, another
        startTransaction with that number must fail (mongod: 117, or 225 for a lower one),
        also after killSessions / endSessions aborted it. When the server lets it start
        again anyway, the sane transaction that had the number is superseded (whatever
        commits under the number afterwards is not it)."""
        if reply["ok"] != 1 or doc.get("startTransaction") is not True or \
                doc.get("autocommit") is not False:
            return
        u = lsid_uuid(doc.get("lsid"))
        n = doc.get("txnNumber")
        if u is None or type(n) is not Int64:
            return
        key = (u, int(n))
        with self.shared.lock:
            again = key in self.shared.started
            self.shared.started.add(key)
            t = self.model.txns.get(key) if again else None
            if t is not None and t.starting:
                t = None  # the sane transaction is the one starting now: it keeps the number
            if t is not None:
                t.superseded = True
                del self.model.txns[key]
        if again:
            self.soft_fail("a txnNumber started a second transaction on its session",
                           "%s started transaction %d again on session %s%s: %r"
                           % (name, n, u.hex()[:8],
                              " (taking the number of %s)" % t.label if t else "",
                              strip_reply(reply)))

    def check_labels(self, name, doc, reply, mark):
        """The drivers' transactions spec: TransientTransactionError only inside a
        transaction, RetryableWriteError only on retryable writes and commit / abort; a
        NoSuchTransaction or WriteConflict of a transaction statement is transient."""
        if "failCommand" in reply.get("errmsg", "") or "writeConcernError" in reply or any(
                fp[2] and name in fp[0] for fp in self.fps_since(mark)):
            return  # labels chosen by the fail point
        labels = reply.get("errorLabels", [])
        in_txn = doc.get("autocommit") is False
        if "TransientTransactionError" in labels and not in_txn:
            self.soft_fail("TransientTransactionError outside a transaction",
                           "%s: %r" % (name, strip_reply(reply)))
        if "RetryableWriteError" in labels and not (
                name in ("commitTransaction", "abortTransaction") or
                ("txnNumber" in doc and not in_txn)):
            self.soft_fail("RetryableWriteError on a command that cannot be retried",
                           "%s: %r" % (name, strip_reply(reply)))
        if in_txn and reply["ok"] == 0 and reply["code"] in (112, 251) and \
                name not in ("commitTransaction", "abortTransaction") and \
                session_rule_violation(name, "fz", doc) is None and \
                "TransientTransactionError" not in labels:
            self.soft_fail("transaction error without TransientTransactionError",
                           "%s: %r" % (name, strip_reply(reply)))

    def check_outside_read(self, name, batch, soft=False):
        """Documents of fzm.m read outside any transaction: only committed ones. `soft` for
        a getMore of a transaction's cursor (the getMore should have been refused)."""
        must, may, _ = self.model.expectation()
        seen = {d.get("_id") for d in batch if isinstance(d, dict)}
        foreign = seen - must - may
        if foreign:
            owners = ["%s(%s)" % (t.label, t.status()) for t in self.model.all_txns
                      if (t.present | t.maybe | t.deleted) & foreign]
            msg = ("%s outside a transaction returned documents nobody committed: %s (written "
                   "by %s)" % (name, sorted(foreign, key=str)[:20], owners[:10]))
            if soft:
                self.soft_fail("getMore of a transaction's cursor returned its uncommitted "
                               "writes", msg)
            else:
                self.fail(msg)

    def alive_check(self):
        if not self.server.alive():
            self.fail("cairnd exited with status %s" % self.server.proc.returncode)
        t0 = time.monotonic()
        try:
            r = self.ping_link.send({"ping": 1}, "admin")
        except (ServerHung, OSError) as e:
            self.fail("ping on another connection failed: %r" % e)
        if r is None or r.get("ok") != 1:
            self.fail("ping on another connection answered %r" % (r,))
        if time.monotonic() - t0 > BOUND:
            self.fail("ping took %.1fs" % (time.monotonic() - t0))

    # -- evidence about sane transactions ------------------------------------------------------
    def txn_evidence(self, name, doc, reply):
        u = lsid_uuid(doc.get("lsid"))
        n = doc.get("txnNumber")
        if u is None or type(n) is not Int64 or doc.get("autocommit") is not False:
            return
        t = self.model.txns.get((u, int(n)))
        if t is None:
            return
        fp_error = reply is not None and reply.get("ok") == 0 and \
            "failCommand" in reply.get("errmsg", "")
        if name == "commitTransaction":
            if reply is None:
                t.unknown = True
            elif reply["ok"] == 1:
                t.committed = True
            elif fp_error:
                pass
            elif reply["code"] == 251:
                t.aborted = True
            elif reply["code"] not in NOT_COMMITTED_CODES:
                t.unknown = True
        elif name == "abortTransaction":
            if reply is not None and reply["ok"] == 1:
                t.aborted = True
            elif reply is not None and reply.get("code") == 256 and not fp_error:
                t.committed = True
        elif reply is not None and reply.get("code") == 256 and not fp_error:
            t.committed = True
        if t.committed and t.aborted:
            self.fail("transaction %s is both committed and aborted (last reply %r)"
                      % (t.label, strip_reply(reply)))

    # -- random values ---------------------------------------------------------------------
    def random_lsid(self, for_txn=True):
        rng = self.rng
        r = rng.random()
        u = rng.choice(self.pool)
        if not for_txn and self.py_lsids and rng.random() < 0.3:
            u = rng.choice(self.py_lsids)
        if r < 0.82:
            return {"id": Binary(u, 4)}
        if r < 0.87:
            return {"id": Binary(u, 4), "uid": Binary(bytes(32), 0)}
        return rng.choice([
            lambda: {"id": Binary(u, 0)}, lambda: {"id": Binary(u, 3)},
            lambda: {"id": Binary(u[:15], 4)}, lambda: {"id": Binary(u + b"x", 4)},
            lambda: {"id": Binary(b"", 4)}, lambda: {"id": "x"}, lambda: {"id": None},
            lambda: {}, lambda: {"id": Binary(u, 4), "extra": 1},
            lambda: {"id": Binary(u, 4), "uid": "x"}, lambda: {"uid": Binary(bytes(32), 0)},
            lambda: "lsid", lambda: 5, lambda: [], lambda: None, lambda: [{"id": Binary(u, 4)}],
            lambda: {"id": {"id": Binary(u, 4)}}, lambda: Binary(u, 4),
        ])()

    def random_txn_number(self, lsid, bias_new=False):
        rng = self.rng
        u = lsid_uuid(lsid)
        top = self.top.get(u, -1) if u is not None else rng.randint(-1, 3)
        r = rng.random()
        if bias_new and r < 0.7:
            n = top + 1
        elif r < 0.3:
            n = top + 1
        elif r < 0.6:
            n = max(top, 0)
        elif r < 0.7:
            n = max(top - 1, 0)
        elif r < 0.8:
            n = rng.randint(0, 5)
        elif r < 0.88:
            n = rng.choice([-1, -2 ** 63, 2 ** 63 - 1, 2 ** 62 + 7, 2 ** 31, 2 ** 32 + 1])
        else:
            return rng.choice([1, 0, 1.0, -1.5, "1", None, True, Decimal128("1"), Timestamp(1, 1),
                               [Int64(1)], {"n": Int64(1)}, float("nan")])
        return Int64(min(n, 2 ** 63 - 1))

    def random_stmt_fields(self, n_items):
        rng = self.rng
        f = {}
        r = rng.random()
        if r < 0.4:
            f["stmtId"] = rng.choice([0, 1, 5, -1, 2 ** 31 - 1, Int64(3), "0", 1.5, None, [0]])
        elif r < 0.8:
            length = rng.choice([n_items, n_items, 0, n_items + 1, max(n_items - 1, 0), 50])
            f["stmtIds"] = [rng.choice([rng.randint(0, 10), rng.randint(0, 10), -1, 2 ** 31 - 1,
                                        Int64(2), "x", None, 1.0])
                            for _ in range(length)]
            if rng.random() < 0.1:
                f["stmtIds"] = rng.choice(["0", 0, {"0": 0}, None])
        else:
            f["stmtId"] = rng.randint(0, 4)
            f["stmtIds"] = list(range(n_items))
        return f

    def random_ts(self):
        rng = self.rng
        ct = self.cluster_time
        return rng.choice([
            lambda: ct, lambda: ct, lambda: Timestamp(ct.time, max(ct.inc - 1, 0)),
            lambda: Timestamp(max(ct.time - 1000, 1), 1), lambda: Timestamp(ct.time + 1, 0),
            lambda: Timestamp(ct.time + 100000, 1), lambda: Timestamp(0, 0),
            lambda: Timestamp(1, 1), lambda: Timestamp(0, 1),
            lambda: Timestamp(2 ** 32 - 1, 2 ** 32 - 1), lambda: Timestamp(ct.time, 2 ** 32 - 1),
            lambda: 5, lambda: Int64(ct.time << 32), lambda: "ts", lambda: None,
            lambda: {"t": ct.time, "i": 1},
        ])()

    def random_read_concern(self, in_txn_start=False):
        rng = self.rng
        if rng.random() < 0.08:
            return rng.choice(["majority", 1, [], None, {"level": None}])
        rc = {}
        if rng.random() < 0.85:
            levels = ["local", "majority", "snapshot", "available", "linearizable", "bogus",
                      "", 5, None, "Snapshot"]
            if in_txn_start:
                levels += ["snapshot", "snapshot", "majority", "local"]
            rc["level"] = rng.choice(levels)
        r = rng.random()
        if r < 0.3:
            rc["afterClusterTime"] = self.random_ts()
        elif r < 0.55:
            rc["atClusterTime"] = self.random_ts()
        elif r < 0.6:
            rc["afterClusterTime"] = self.random_ts()
            rc["atClusterTime"] = self.random_ts()
        if rng.random() < 0.05:
            rc[rng.choice(["afterOpTime", "provenance", "zzz", "$x"])] = random_value(rng, 2)
        return rc

    def random_write_concern(self):
        return self.rng.choice([
            {"w": 1}, {"w": "majority"}, {"w": 0}, {"w": 2}, {"w": 51}, {"w": "bogus"},
            {"w": 1, "wtimeout": 1}, {"w": "majority", "wtimeout": 100}, {"j": True},
            {"fsync": True, "j": True}, {"w": -1}, {"w": 1.5}, {"w": 1.0}, {}, "majority", 1,
            None, {"zzz": 1}, {"w": 1, "j": "x"}, {"w": None}, {"wtimeout": -5},
            {"w": "majority", "j": 1, "wtimeout": Int64(2 ** 40)}, {"w": [1]},
        ])

    def random_cluster_time_field(self):
        rng = self.rng
        ct = self.cluster_time
        sig = {"hash": Binary(b"\x00" * 20, 0), "keyId": Int64(0)}
        return rng.choice([
            lambda: {"clusterTime": ct, "signature": sig},
            lambda: {"clusterTime": Timestamp(ct.time + rng.randint(1, 30), 1), "signature": sig},
            lambda: {"clusterTime": Timestamp(int(time.time()) + 400 * 86400, 1),
                     "signature": sig},
            lambda: {"clusterTime": Timestamp(0, 0)}, lambda: {"clusterTime": 5},
            lambda: {}, lambda: "now", lambda: {"signature": sig},
        ])()

    def small_id(self):
        return self.rng.choice([0, 1, 2, 3, 4, 5, 6, 7, "s", "t", Int64(1), 1.0, None,
                                {"a": 1}, [1]])

    def small_doc(self):
        d = {"a": self.rng.randint(0, 3)}
        if self.rng.random() < 0.9:
            d = {"_id": self.small_id(), **d}
        return d

    def random_filter(self):
        rng = self.rng
        return rng.choice([
            lambda: {}, lambda: {"_id": self.small_id()}, lambda: {"a": {"$gt": 0}},
            lambda: {"_id": {"$in": [self.small_id() for _ in range(3)]}},
            lambda: {"a": rng.randint(0, 3)}, lambda: {"$where": "1"}, lambda: {"a": {"$bad": 1}},
        ])()

    def random_update(self):
        rng = self.rng
        return rng.choice([
            lambda: {"$set": {"a": rng.randint(0, 3)}}, lambda: {"$inc": {"a": 1}},
            lambda: {"a": rng.randint(0, 3)}, lambda: [{"$set": {"b": 1}}],
            lambda: {"$bad": 1}, lambda: {"$set": {"_id": 99}}, lambda: {},
        ])()

    def random_pipeline(self):
        rng = self.rng
        stages = [
            lambda: {"$match": self.random_filter()},
            lambda: {"$group": {"_id": "$a", "n": {"$sum": 1}}},
            lambda: {"$sort": {"_id": rng.choice([1, -1])}}, lambda: {"$limit": rng.randint(1, 3)},
            lambda: {"$project": {"a": 1}}, lambda: {"$count": "n"},
            lambda: {"$skip": 1}, lambda: {"$unwind": "$a"},
            lambda: {"$lookup": {"from": "d", "localField": "a", "foreignField": "_id",
                                 "as": "j"}},
            lambda: {"$out": rng.choice(["o", "d"])},
            lambda: {"$merge": {"into": "o"}},
            lambda: {"$currentOp": {"allUsers": True, "idleSessions": True}},
        ]
        return [rng.choice(stages)() for _ in range(rng.randint(0, 3))]

    def random_lsid_list(self):
        rng = self.rng
        n = rng.choice([0, 1, 1, 2, 3])
        out = [self.random_lsid(for_txn=False) for _ in range(n)]
        if rng.random() < 0.05:
            return rng.choice(["x", None, {"id": Binary(self.pool[0], 4)}, 5])
        return out

    def pick_cursor(self):
        rng = self.rng
        if self.cursors and rng.random() < 0.85:
            cid, ns, sess = rng.choice(list(self.cursors))
            coll = ns.split(".", 1)[1] if "." in ns else ns
            return cid, coll, sess
        return rng.choice([Int64(0), Int64(-1), Int64(12345), Int64(2 ** 63 - 1), 5, "x",
                           None]), "c", {}

    # -- random commands -----------------------------------------------------------------------
    def random_command(self):
        """(name, db, doc)."""
        rng = self.rng
        name = rng.choice(ALL_CMDS + ["insert", "update", "find", "commitTransaction",
                                      "abortTransaction", "insert", "find", "delete"])
        coll = rng.choice(RANDOM_COLLS)
        db = rng.choice(RANDOM_DBS)
        cursor_sess = {}
        n_items = 1
        if name == "insert":
            docs = [self.small_doc() for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))]
            n_items = len(docs)
            doc = {"insert": coll, "documents": docs}
            if rng.random() < 0.3:
                doc["ordered"] = rng.choice([True, False])
        elif name == "update":
            ups = [{"q": self.random_filter(), "u": self.random_update(),
                    "upsert": rng.random() < 0.4, "multi": rng.random() < 0.3}
                   for _ in range(rng.choice([1, 1, 2, 0]))]
            n_items = len(ups)
            doc = {"update": coll, "updates": ups}
        elif name == "delete":
            dels = [{"q": self.random_filter(), "limit": rng.choice([0, 1, 1, 2])}
                    for _ in range(rng.choice([1, 1, 2, 0]))]
            n_items = len(dels)
            doc = {"delete": coll, "deletes": dels}
        elif name == "findAndModify":
            doc = {"findAndModify": coll, "query": self.random_filter()}
            if rng.random() < 0.25:
                doc["remove"] = True
            else:
                doc["update"] = self.random_update()
                doc["upsert"] = rng.random() < 0.4
                doc["new"] = rng.random() < 0.5
        elif name == "find":
            doc = {"find": coll, "filter": self.random_filter(),
                   "batchSize": rng.choice([0, 1, 2, 101])}
            if rng.random() < 0.3:
                doc["singleBatch"] = rng.choice([True, False])
            if rng.random() < 0.3:
                doc["limit"] = rng.randint(0, 4)
        elif name == "aggregate":
            doc = {"aggregate": coll if rng.random() < 0.9 else 1,
                   "pipeline": self.random_pipeline(),
                   "cursor": {"batchSize": rng.choice([0, 1, 2])}}
        elif name == "count":
            doc = {"count": coll, "query": self.random_filter()}
        elif name == "distinct":
            doc = {"distinct": coll, "key": rng.choice(["a", "_id", "b"]),
                   "query": self.random_filter()}
        elif name == "getMore":
            cid, coll, cursor_sess = self.pick_cursor()
            doc = {"getMore": cid, "collection": coll, "batchSize": rng.choice([1, 2, 100])}
            self.getmore_cursor = (cid, cursor_sess)
        elif name == "killCursors":
            cid, coll, cursor_sess = self.pick_cursor()
            doc = {"killCursors": coll, "cursors": [cid]}
        elif name == "create":
            doc = {"create": coll}
        elif name == "drop":
            doc = {"drop": coll}
        elif name == "createIndexes":
            doc = {"createIndexes": coll,
                   "indexes": [{"key": {rng.choice(["a", "b"]): rng.choice([1, -1])},
                                "name": rng.choice(["a_1", "b_1", "x"])}]}
        elif name in ("commitTransaction", "abortTransaction"):
            doc = {name: 1}
            db = "admin" if rng.random() < 0.85 else db
        elif name == "startSession":
            doc = {"startSession": 1}
            db = "admin" if rng.random() < 0.8 else db
        elif name in ("endSessions", "killSessions", "refreshSessions"):
            doc = {name: self.random_lsid_list()}
            db = "admin" if rng.random() < 0.8 else db
        elif name == "killAllSessions":
            doc = {name: rng.choice([[], [], [{"user": "u", "db": "admin"}], [{}], ["x"], "x"])}
            db = "admin" if rng.random() < 0.8 else db
        else:  # killAllSessionsByPattern
            doc = {name: rng.choice([[], [{}], [{"users": []}], [{"lsid": {"id": Binary(
                self.pool[0], 4)}}], [{"uid": Binary(bytes(32), 0)}], [5], None])}
            db = "admin" if rng.random() < 0.8 else db

        # Half the commands are well-formed (valid session fields that mean something: they
        # start, continue, commit and abort transactions and retry writes on the sessions the
        # sane operations use); the other half carry garbage of every kind.
        if rng.random() < 0.5:
            self.clean_session_fields(name, doc, cursor_sess)
            if name in TXN_CMDS and "autocommit" in doc and db in ("local", "config"):
                db = "fz"
        else:
            self.garbage_session_fields(name, doc, cursor_sess, n_items)
        # maxTimeMS: small wherever a command may wait for a transaction
        if name in MAY_BLOCK or name in ("commitTransaction", "abortTransaction"):
            if rng.random() < 0.96:
                doc["maxTimeMS"] = rng.choice([100, 200, 300, 300])
            else:
                doc["maxTimeMS"] = rng.choice(["x", -1, 1.5, 2 ** 31, None, Int64(200)])
        elif rng.random() < 0.1:
            doc["maxTimeMS"] = rng.choice([0, 1, 500, "x", -1])
        return name, db, doc

    def clean_session_fields(self, name, doc, cursor_sess):
        rng = self.rng
        modes = ["none", "lsid"]
        weights = [3, 2]
        if name in RETRYABLE_CMDS:
            modes.append("retry")
            weights.append(5)
        if name in TXN_CMDS:
            if name not in ("killCursors", "commitTransaction", "abortTransaction"):
                modes.append("start")
                weights.append(5)
            modes.append("cont")
            weights.append(12 if name in ("commitTransaction", "abortTransaction") else 6)
        if cursor_sess:
            modes.append("cursor")
            weights.append(4)
        mode = rng.choices(modes, weights=weights)[0]
        if mode == "cursor":
            doc.update(cursor_sess)
            return
        if mode != "none":
            u = rng.choice(self.pool)
            doc["lsid"] = {"id": Binary(u, 4)}
            top = self.top.get(u, -1)
            if mode == "retry":
                doc["txnNumber"] = Int64(max(top + rng.choice([0, 1, 1]), 0))
                if rng.random() < 0.3:
                    doc["stmtId"] = rng.randint(0, 10)
            elif mode == "start":
                doc["txnNumber"] = Int64(top + 1)
                doc["autocommit"] = False
                doc["startTransaction"] = True
                if rng.random() < 0.4:
                    ct = self.cluster_time
                    doc["readConcern"] = rng.choice([
                        {"level": "snapshot"}, {"level": "majority"}, {"level": "local"}, {},
                        {"level": "snapshot", "atClusterTime": ct},
                        {"level": "snapshot", "afterClusterTime": ct},
                        {"afterClusterTime": ct}, {"level": "majority", "afterClusterTime": ct}])
            elif mode == "cont":
                doc["txnNumber"] = Int64(max(top, 0))
                doc["autocommit"] = False
        if "autocommit" not in doc and name not in SESSION_CMDS[2:] and rng.random() < 0.15:
            doc["readConcern"] = rng.choice([{"level": "local"}, {"level": "majority"},
                                             {"level": "snapshot"}, {"level": "available"},
                                             {"afterClusterTime": self.cluster_time}])
        if ("autocommit" not in doc or name in ("commitTransaction", "abortTransaction")) and \
                rng.random() < 0.15:
            doc["writeConcern"] = rng.choice([{"w": 1}, {"w": "majority"}, {"j": True},
                                              {"w": "majority", "wtimeout": 1000}])

    def garbage_session_fields(self, name, doc, cursor_sess, n_items):
        rng = self.rng
        mode = rng.choices(["none", "lsid", "retry", "start", "cont", "wild", "cursor"],
                           weights=[8, 8, 18, 20, 24, 14, 6 if cursor_sess else 0])[0]
        if mode == "cursor":
            doc.update(cursor_sess)
        elif mode != "none":
            lsid = self.random_lsid()
            doc["lsid"] = lsid
            if mode in ("retry", "start", "cont", "wild"):
                doc["txnNumber"] = self.random_txn_number(lsid, bias_new=(mode == "start"))
            if mode == "retry" and rng.random() < 0.4:
                doc.update(self.random_stmt_fields(n_items))
            if mode in ("start", "cont"):
                doc["autocommit"] = False if rng.random() < 0.85 else \
                    rng.choice([True, None, 0, 1, "false"])
            if mode == "start":
                doc["startTransaction"] = True if rng.random() < 0.85 else \
                    rng.choice([False, None, 1, "true"])
                if rng.random() < 0.4:
                    doc["readConcern"] = self.random_read_concern(in_txn_start=True)
            if mode == "wild":
                for k in ("lsid", "txnNumber"):
                    if rng.random() < 0.25:
                        doc.pop(k, None)
                if rng.random() < 0.6:
                    doc["autocommit"] = rng.choice([False, False, True, None, 0, "x"])
                if rng.random() < 0.5:
                    doc["startTransaction"] = rng.choice([True, True, False, None, 1])
                if rng.random() < 0.3:
                    doc.update(self.random_stmt_fields(n_items))
        if "readConcern" not in doc and rng.random() < 0.25:
            doc["readConcern"] = self.random_read_concern()
        if rng.random() < 0.2:
            doc["writeConcern"] = self.random_write_concern()
        if rng.random() < 0.08:
            doc["$clusterTime"] = self.random_cluster_time_field()
        if rng.random() < 0.25:
            self.mutate(doc, next(iter(doc)))

    def mutate(self, doc, name):
        rng = self.rng
        keys = list(doc.keys())
        for _ in range(rng.randint(1, 2)):
            r = rng.random()
            if r < 0.5 and len(keys) > 1:
                k = rng.choice(keys[1:])
                if k == "maxTimeMS" and name in MAY_BLOCK:
                    continue
                doc[k] = random_value(rng)
            elif r < 0.8:
                doc[rng.choice(["zzz", "comment", "let", "hint", "collation", "$readPreference",
                                "bypassDocumentValidation", "autocommit", "startTransaction",
                                "stmtId", "coordinator", "txnRetryCounter"])] = random_value(rng)
            elif len(keys) > 1:
                k = rng.choice(keys[1:])
                if k != "maxTimeMS":
                    doc.pop(k, None)
        if "maxTimeMS" in doc and doc["maxTimeMS"] in (0, Int64(0)) and name in MAY_BLOCK:
            doc["maxTimeMS"] = 200

    def run_special(self):
        """Commands around sessions that are not session commands: the reaper's lifetime
        (1 s lets the server's reaper abort transactions between, and during, our commands),
        currentOp (which lists open transactions), killOp, and session lists at and past
        the 10,000 limit."""
        rng = self.rng
        r = rng.random()
        if r < 0.3:
            doc = {"setParameter": 1, "transactionLifetimeLimitSeconds":
                   rng.choice([1, 1, 2, 60, 60, 0, -1, "x", Int64(2 ** 40)])}
        elif r < 0.6:
            doc = rng.choice([{"currentOp": 1, "$all": True}, {"currentOp": 1},
                              {"currentOp": 1, "active": False},
                              {"currentOp": 1, "lsid": {"$exists": True}}])
        elif r < 0.75:
            doc = {"killOp": 1, "op": rng.choice([1, 2, 3, 1000, -1, "x", Int64(5)])}
        else:
            n = rng.choice([10000, 10001, 3000])
            ids = [{"id": Binary(self.new_uuid(), 4)} for _ in range(n - 2)]
            ids += [{"id": Binary(u, 4)} for u in rng.sample(self.pool, 2)]
            rng.shuffle(ids)
            doc = {rng.choice(["endSessions", "killSessions", "refreshSessions"]): ids}
        if rng.random() < 0.2:
            doc["lsid"] = {"id": Binary(rng.choice(self.pool), 4)}
        self.send(doc, "admin" if rng.random() < 0.9 else "fz")

    def run_random(self):
        rng = self.rng
        self.getmore_cursor = None
        name, db, doc = self.random_command()
        wire = {}
        r = rng.random()
        seq_key = WRITE_BATCH.get(name)
        if seq_key and isinstance(doc.get(seq_key), list) and doc[seq_key] and \
                all(isinstance(x, dict) for x in doc[seq_key]) and r < 0.3:
            wire["sequence"] = seq_key
        elif r < 0.33:
            wire["opcode"] = OP_QUERY
        elif r < 0.36:
            wire["more_to_come"] = True
        reply = self.send(doc, db, wire=wire)
        if reply in ("unencodable", "moreToCome"):
            return
        why = session_rule_violation(name, db, doc)
        if why is None and name == "getMore" and self.getmore_cursor is not None:
            why = getmore_session_mismatch(doc, *self.getmore_cursor)
        if why and reply is not None and reply["ok"] == 1:
            self.soft_fail(rule_kind(why), "%s with %s was accepted: %r"
                           % (name, why, strip_reply(reply)))

    # -- sane raw transactions -----------------------------------------------------------------
    def sane_session(self):
        """A session and a txnNumber above every one sent on it, reserved at once (so that
        two workers never use the same one for different writes)."""
        with self.shared.lock:
            u = self.rng.choice(self.pool)
            n = self.top.get(u, -1) + 1
            self.top[u] = n
        return u, n

    def txn_fields(self, t, start=False):
        u, n = t.key
        f = {"lsid": {"id": Binary(u, 4)}, "txnNumber": Int64(n), "autocommit": False}
        if start:
            f["startTransaction"] = True
        return f

    def sane_txn_start(self):
        u, n = self.sane_session()
        t = SaneTxn((u, n), "raw %s/%d" % (u.hex()[:8], n))
        if not self.model.add_txn(t):
            return
        self.open_raw.append(t)
        self.sane_txn_insert(t)

    def sane_txn_insert(self, t):
        ids = [self.next_id("t") for _ in range(self.rng.randint(1, 3))]
        doc = {"insert": MODEL_COLL, "documents": [{"_id": i, "k": t.k} for i in ids]}
        doc.update(self.txn_fields(t, start=t.first))
        if t.first:
            rc = self.rng.choice([None, None, {"level": "snapshot"}, {"level": "majority"},
                                  {"level": "local"}, {"level": "snapshot",
                                                       "afterClusterTime": self.cluster_time}])
            if rc is not None:
                doc["readConcern"] = rc
        starting, t.first = t.first, False
        t.k += 1
        t.starting = starting
        r = self.send(doc, MODEL_DB, what="sane-txn")
        t.starting = False
        if r is None:
            t.maybe |= set(ids)
            t.dead = True
        elif r["ok"] == 1 and r.get("n") == len(ids) and not r.get("writeErrors"):
            t.present |= set(ids)
        else:
            t.dead = True

    def sane_txn_delete(self, t):
        if not t.present:
            return self.sane_txn_insert(t)
        i = self.rng.choice(sorted(t.present))
        doc = {"delete": MODEL_COLL, "deletes": [{"q": {"_id": i}, "limit": 1}]}
        doc.update(self.txn_fields(t))
        r = self.send(doc, MODEL_DB, what="sane-txn")
        if r is None:
            t.present.discard(i)
            t.maybe.add(i)
            t.dead = True
        elif r["ok"] == 1 and not r.get("writeErrors"):
            if r.get("n") != 1:
                self.fail("transaction %s could not delete its own document %r: %r"
                          % (t.label, i, strip_reply(r)))
            t.present.discard(i)
            t.deleted.add(i)
        else:
            t.dead = True

    def sane_txn_read(self, t):
        batch = self.rng.choice([1, 2, 100000, 100000])
        doc = {"find": MODEL_COLL, "filter": {}, "batchSize": batch}
        doc.update(self.txn_fields(t))
        r = self.send(doc, MODEL_DB, what="sane-txn")
        if r is None or r["ok"] != 1:
            t.dead = True
            return
        seen = {d["_id"] for d in r["cursor"]["firstBatch"]}
        if r["cursor"].get("id"):
            if batch == 100000:
                self.fail("a find with batchSize 100000 left a cursor open: %r" % (r["cursor"],))
            return
        missing = t.present - seen
        if missing:
            self.fail("transaction %s does not see its own writes %s" % (t.label, sorted(missing)))
        resurrected = t.deleted & seen
        if resurrected:
            self.fail("transaction %s sees documents it deleted: %s"
                      % (t.label, sorted(resurrected)))
        must, may, _ = self.model.expectation()
        foreign = seen - must - may - t.present - t.maybe
        if foreign:
            self.fail("transaction %s sees documents nobody committed: %s"
                      % (t.label, sorted(foreign, key=str)[:20]))

    def sane_txn_end(self, t, commit):
        t.done = True
        self.open_raw.remove(t)
        if not commit:
            self.send({"abortTransaction": 1, **self.txn_fields(t)}, "admin", what="sane-abort")
            return
        t.commit_tried = True
        wc = self.rng.choice([None, {"w": "majority"}, {"w": 1}, {"w": "majority",
                                                                   "wtimeout": 5000}])
        doc = {"commitTransaction": 1, **self.txn_fields(t)}
        if wc is not None:
            doc["writeConcern"] = wc
        if self.rng.random() < 0.3:
            doc["maxTimeMS"] = 5000
        for attempt in range(2):
            r = self.send(doc, "admin", what="sane-commit")
            # like drivers: retry a commit whose outcome is unknown, once
            if r is None or (r["ok"] == 0 and "RetryableWriteError" in r.get("errorLabels", [])):
                continue
            break

    def sane_txn_step(self):
        rng = self.rng
        live = [t for t in self.open_raw]
        if len(live) < 3 and (not live or rng.random() < 0.35):
            return self.sane_txn_start()
        t = rng.choice(live)
        r = rng.random()
        if t.dead or r < 0.3:
            return self.sane_txn_end(t, commit=rng.random() < 0.85)
        if r < 0.7:
            return self.sane_txn_insert(t)
        if r < 0.82:
            return self.sane_txn_delete(t)
        return self.sane_txn_read(t)

    # -- sane non-transactional writes -------------------------------------------------------
    def write_outcome(self, r, n_expected):
        if r is None:
            return "unknown"
        if r["ok"] == 1:
            if r.get("writeErrors"):
                return "absent"
            return "acked" if r.get("n") == n_expected else "unknown"
        if "failCommand" in r.get("errmsg", ""):
            return "absent"
        return "unknown" if r["code"] in UNCERTAIN_WRITE_CODES else "absent"

    def sane_plain_read(self):
        """A read of fzm.m outside transactions (checked in send), often leaving a cursor that
        random getMores continue, in and out of sessions."""
        rng = self.rng
        doc = {"find": MODEL_COLL, "filter": {}, "batchSize": rng.choice([1, 2, 3])}
        if rng.random() < 0.5:
            doc["lsid"] = {"id": Binary(rng.choice(self.pool), 4)}
        if rng.random() < 0.4:
            doc["readConcern"] = rng.choice([{"level": "snapshot"}, {"level": "majority"},
                                             {"level": "local"}])
        self.send(doc, MODEL_DB, what="sane-read")

    def sane_plain_insert(self):
        i = self.next_id("p")
        doc = {"insert": MODEL_COLL, "documents": [{"_id": i}], "maxTimeMS": 5000}
        if self.rng.random() < 0.5:
            doc["writeConcern"] = self.rng.choice([{"w": 1}, {"w": "majority"}, {"j": True}])
        self.model.flight([i], 1)
        r = self.send(doc, MODEL_DB, what="sane-plain")
        self.model.set_plain(i, self.write_outcome(r, 1))
        self.model.flight([i], -1)

    def sane_retryable_insert(self):
        u, n = self.sane_session()
        ids = [self.next_id("r") for _ in range(self.rng.randint(1, 2))]
        doc = {"insert": MODEL_COLL, "documents": [{"_id": i} for i in ids],
               "lsid": {"id": Binary(u, 4)}, "txnNumber": Int64(n), "maxTimeMS": 5000}
        if self.rng.random() < 0.5:
            doc["stmtIds"] = [SANE_STMT_BASE + k for k in range(len(ids))]
        else:
            doc["stmtId"] = SANE_STMT_BASE
        self.model.flight(ids, 1)
        r = self.send(doc, MODEL_DB, what="sane-retryable")
        out = self.write_outcome(r, len(ids))
        for i in ids:
            self.model.set_plain(i, out)
        self.model.flight(ids, -1)
        self.retry_queue.append(("insert", doc, ids))

    def sane_counter_inc(self, retryable):
        doc = {"update": COUNTER_COLL, "updates": [{"q": {"_id": "ctr"}, "u": {"$inc": {"n": 1}}}],
               "maxTimeMS": 5000}
        if retryable:
            u, n = self.sane_session()
            doc.update({"lsid": {"id": Binary(u, 4)}, "txnNumber": Int64(n),
                        "stmtId": SANE_STMT_BASE})
            key = ("raw", u, n)
        else:
            key = ("plain", self.next_id("c"))
        r = self.send(doc, MODEL_DB, what="sane-counter")
        out = self.write_outcome(r, 1)
        if out == "acked" and r.get("nModified") != 1:
            self.fail("$inc of the counter matched but modified %r: %r"
                      % (r.get("nModified"), strip_reply(r)))
        self.model.set_ctr(key, out)
        if retryable:
            self.retry_queue.append(("ctr", doc, key))

    def sane_retry(self):
        """Sends a sane retryable write again, exactly as before: a retry of one that
        executed must be answered from the session's record, never run a second time."""
        if not self.retry_queue:
            return self.sane_retryable_insert()
        kind, doc, ref = self.rng.choice(list(self.retry_queue))
        flying = ref if kind == "insert" else []
        self.model.flight(flying, 1)
        r = self.send(doc, MODEL_DB, what="sane-retry")
        if r is not None and r["ok"] == 1:
            dup = [we for we in r.get("writeErrors", []) if we.get("code") == 11000]
            if dup:
                self.fail("a retried retryable write ran again (duplicate key): %r"
                          % (strip_reply(r),))
        if kind == "insert":
            out = self.write_outcome(r, len(ref))
            for i in ref:
                self.model.set_plain(i, out)
        else:
            out = self.write_outcome(r, 1)
            self.model.set_ctr(ref, out)
        self.model.flight(flying, -1)

    # -- pymongo --------------------------------------------------------------------------
    def py_call(self, what, fn):
        """Runs a pymongo call; returns (result, exception). Checks timing and the shape of
        server errors; a lost connection is only allowed under a fail point."""
        t0 = time.monotonic()
        res, exc = None, None
        try:
            res = fn()
        except (bson.errors.InvalidDocument, OverflowError, ValueError, TypeError) as e:
            exc = e
        except OperationFailure as e:
            exc = e
            if not isinstance(e.code, int) or not isinstance(e.details, dict):
                self.fail("%s: malformed server error %r (%r)" % (what, e, e.details))
            client_side = "configured timeouts" in str(e.details.get("errmsg", ""))
            if "writeErrors" not in e.details and "ok" in e.details and not client_side:
                bad = check_reply_doc(e.details)
                if bad:
                    self.fail("%s: malformed error reply: %s: %r" % (what, bad, e.details))
        except ConnectionFailure as e:
            exc = e
            # (with fail points, a pooled connection closed by an earlier closeConnection
            # is only noticed at its next use, maybe after the fail point was switched off)
            if not self.fail_points:
                self.fail("%s: connection failure without a fail point: %r" % (what, e))
        except PyMongoError as e:
            exc = e
        elapsed = time.monotonic() - t0
        self.note("pymongo %s -> %s (%.0f ms)" % (what, short(exc if exc else res, 300),
                                                  elapsed * 1000))
        self.stats[("pymongo " + what.split()[0], "ok" if exc is None
                    else getattr(exc, "code", None) or type(exc).__name__)] += 1
        if elapsed > BOUND * 1.5:
            self.fail("pymongo %s took %.1fs" % (what, elapsed))
        return res, exc

    def py_txn_step(self):
        rng = self.rng
        coll = self.client[MODEL_DB][MODEL_COLL]
        if len(self.open_py) < 2 and (not self.open_py or rng.random() < 0.4):
            t = SaneTxn(None, "pymongo %d/%d" % (self.wid, len(self.model.all_txns)))
            s = self.client.start_session()
            self.py_lsids.append(bytes(s.session_id["id"]))
            t.session = s
            rc = rng.choice([None, ReadConcern("snapshot"), ReadConcern("majority"),
                             ReadConcern("local")])
            wc = rng.choice([None, WriteConcern(w="majority"), WriteConcern(w=1)])
            s.start_transaction(read_concern=rc, write_concern=wc)
            self.model.add_txn(t)
            self.open_py.append(t)
        else:
            t = rng.choice(self.open_py)
        if rng.random() < 0.55 and not t.dead:
            ids = [self.next_id("g") for _ in range(rng.randint(1, 3))]
            _, exc = self.py_call("insert_many in txn", lambda: coll.insert_many(
                [{"_id": i} for i in ids], session=t.session))
            if exc is None:
                t.present |= set(ids)
            else:
                t.maybe |= set(ids) if isinstance(exc, ConnectionFailure) else set()
                t.dead = True
            return
        self.open_py.remove(t)
        t.done = True
        if t.dead or rng.random() < 0.15:
            self.py_call("abort_transaction", t.session.abort_transaction)
        else:
            t.commit_tried = True
            t.inflight += 1
            _, exc = self.py_call("commit_transaction", t.session.commit_transaction)
            t.inflight -= 1
            if exc is None:
                t.committed = True
            elif isinstance(exc, OperationFailure) and exc.code == 251 and \
                    not exc.has_error_label("UnknownTransactionCommitResult") and \
                    "failCommand" not in str(exc.details.get("errmsg")):
                t.aborted = True
            else:
                t.unknown = True
        self.py_call("end_session", t.session.end_session)

    def py_random(self):
        rng = self.rng
        db = self.client[rng.choice(["fz", "fz", "fz2"])]
        coll = db[rng.choice(["c", "d"])]
        r = rng.random()
        if r < 0.25:   # sane retryable insert
            i = self.next_id("y")
            self.model.flight([i], 1)
            _, exc = self.py_call("insert_one", lambda: self.client[MODEL_DB][MODEL_COLL]
                                  .insert_one({"_id": i}))
            self.model.set_plain(i, "acked" if exc is None else "unknown")
            self.model.flight([i], -1)
        elif r < 0.35:  # sane retryable $inc
            key = ("py", self.next_id("k"))
            res, exc = self.py_call("update_one $inc", lambda: self.client[MODEL_DB][
                COUNTER_COLL].update_one({"_id": "ctr"}, {"$inc": {"n": 1}}))
            self.model.set_ctr(key, "acked" if exc is None and res.modified_count == 1
                               else "unknown")
        elif r < 0.7:   # random CRUD, sometimes in a random transaction
            ops = [
                lambda s: list(coll.find(self.random_filter(), session=s, batch_size=2)),
                lambda s: list(coll.aggregate([{"$match": self.random_filter()}], session=s)),
                lambda s: coll.count_documents(self.random_filter(), session=s),
                lambda s: coll.distinct("a", session=s),
                lambda s: coll.insert_one(self.small_doc(), session=s),
                lambda s: coll.update_many(self.random_filter(), {"$inc": {"a": 1}}, session=s),
                lambda s: coll.delete_one(self.random_filter(), session=s),
                lambda s: coll.find_one_and_update(self.random_filter(), {"$set": {"b": 1}},
                                                   session=s),
            ]
            picks = [rng.choice(ops) for _ in range(rng.randint(1, 3))]
            in_txn = rng.random() < 0.5
            commit = rng.random() < 0.5

            def body():
                # CSOT: every command carries a maxTimeMS (a write may wait for a
                # transaction's document)
                with pymongo.timeout(2.0), self.client.start_session() as s:
                    self.py_lsids.append(bytes(s.session_id["id"]))
                    if in_txn:
                        s.start_transaction(read_concern=rng.choice(
                            [None, ReadConcern("snapshot"), ReadConcern("majority")]))
                    for op in picks:
                        op(s)
                    if in_txn:
                        s.commit_transaction() if commit else s.abort_transaction()
            self.py_call("crud%s" % (" in txn" if in_txn else ""), body)
        else:           # a random command through db.command
            name, dbname, doc = self.random_command()
            for k in ("lsid", "txnNumber", "autocommit", "startTransaction", "$clusterTime"):
                doc.pop(k, None)
            if name in MAY_BLOCK:
                doc["maxTimeMS"] = 300
            self.py_call("command %s" % name, lambda: self.client[dbname].command(doc))

    # -- fail points ----------------------------------------------------------------------
    def configure_fail_point(self):
        rng = self.rng
        if self.fp is not None and rng.random() < 0.5:
            r = self.send({"configureFailPoint": "failCommand", "mode": "off"}, "admin",
                          link=self.admin_link, what="fp")
            if r is None or r["ok"] != 1:
                self.fail("configureFailPoint off failed: %r" % (r,))
            self.fp = None
            return
        names = rng.sample(FP_COMMANDS, rng.randint(1, 5))
        data = {"failCommands": names}
        kind = rng.choice(["errorCode", "errorCode", "closeConnection", "block", "blockError",
                           "wce", "labels"])
        if kind == "errorCode":
            data["errorCode"] = rng.choice(FP_ERROR_CODES)
        elif kind == "closeConnection":
            data["closeConnection"] = True
        elif kind in ("block", "blockError"):
            data["blockConnection"] = True
            data["blockTimeMS"] = rng.choice([10, 50, 150, 300])
            if kind == "blockError":
                data["errorCode"] = rng.choice(FP_ERROR_CODES)
        elif kind == "wce":
            data["writeConcernError"] = rng.choice([
                {"code": 91, "codeName": "ShutdownInProgress", "errmsg": "injected"},
                {"code": 64, "codeName": "WriteConcernFailed", "errmsg": "injected",
                 "errInfo": {"wtimeout": True}},
                {"code": 100, "errmsg": "injected"}])
        else:
            data["errorCode"] = rng.choice(FP_ERROR_CODES)
            data["errorLabels"] = rng.choice([["TransientTransactionError"],
                                              ["RetryableWriteError"], [], ["Mine"]])
        mode = rng.choice(["alwaysOn", {"times": rng.randint(1, 3)}, {"skip": 1},
                           {"activationProbability": 0.3}])
        # logged before it is sent: other workers' commands may meet it from then on
        self.fp = (set(names), bool(data.get("closeConnection")), "errorLabels" in data,
                   data.get("errorCode"))
        r = self.send({"configureFailPoint": "failCommand", "mode": mode, "data": data},
                      "admin", link=self.admin_link, what="fp")
        if r is None or r["ok"] != 1:
            self.fail("configureFailPoint refused valid data: %r" % (r,))

    # -- checks --------------------------------------------------------------------------
    def read_ids(self, coll=MODEL_COLL):
        r = self.send({"find": coll, "filter": {}, "batchSize": 100000, "sort": {"_id": 1}},
                      MODEL_DB, link=self.admin_link, what="check")
        if r is None or r["ok"] != 1:
            self.fail("reading %s.%s failed: %r" % (MODEL_DB, coll, r))
        if r["cursor"].get("id"):
            self.fail("a find with batchSize 100000 left a cursor open")
        return r["cursor"]["firstBatch"]

    def check_visibility(self, final=False):
        must_before, _, _ = self.model.expectation()
        present = {d["_id"] for d in self.read_ids()}
        must, may, unknown = self.model.expectation()
        missing = must_before - present
        if missing:
            owners = [t.label for t in self.model.all_txns if t.present & missing]
            self.fail("acknowledged committed writes are not visible: %s (transactions %s)"
                      % (sorted(missing)[:20], owners[:10]))
        extra = present - must - may
        if extra:
            owners = ["%s(%s)" % (t.label, t.status()) for t in self.model.all_txns
                      if (t.present | t.maybe | t.deleted) & extra]
            self.fail("writes of aborted or never-committed transactions (or refused writes) "
                      "are visible: %s (owners %s)" % (sorted(extra)[:20], owners[:10]))
        for t in self.model.all_txns:
            if t.committed and t.deleted & present:
                self.fail("committed transaction %s deleted %s, yet visible"
                          % (t.label, sorted(t.deleted & present)))
        for t in unknown:
            got = t.present & present
            if got and got != t.present:
                self.fail("transaction %s (outcome unknown) is partly visible: %s of %s"
                          % (t.label, sorted(got), sorted(t.present)))
        return present

    def check_counter(self):
        docs = self.read_ids(COUNTER_COLL)
        n = docs[0].get("n") if docs else None
        lo = self.model.ctr_acked
        hi = lo + self.model.ctr_unknown
        if not isinstance(n, int) or not lo <= n <= hi:
            self.fail("counter is %r; %d increments were acknowledged and %d more may have "
                      "applied" % (n, lo, hi - lo))

    def finish(self):
        """Fail point off, visibility checked, every session killed, every sane transaction
        committed once more (a transaction that never could have committed must not commit
        now: killAllSessions aborted it), then the final visibility check."""
        if self.fail_points:
            r = self.send({"configureFailPoint": "failCommand", "mode": "off"}, "admin",
                          link=self.admin_link, what="fp")
            if r is None or r["ok"] != 1:
                self.fail("configureFailPoint off failed: %r" % (r,))
            self.fp = None
        self.check_visibility()
        for t in self.open_py:
            self.py_call("abort_transaction", t.session.abort_transaction)
            t.session.end_session()
        self.open_py = []
        r = self.send({"killAllSessions": []}, "admin", link=self.admin_link, what="final")
        if r is None or r["ok"] != 1:
            self.fail("killAllSessions failed: %r" % (r,))
        for t in list(self.model.txns.values()):
            if t.committed or t.aborted:
                continue
            before = t.status()
            r = self.send({"commitTransaction": 1, **self.txn_fields(t)}, "admin",
                          link=self.admin_link, what="final-commit")
            if before == "absent" and r is not None and r["ok"] == 1:
                self.fail("transaction %s committed after killAllSessions (no commit of it "
                          "was ever sent)" % t.label)
        self.check_visibility(final=True)
        self.check_counter()
        # and through pymongo: the same documents
        py = {d["_id"] for d in self.client[MODEL_DB][MODEL_COLL].find({}, batch_size=1000)}
        raw = {d["_id"] for d in self.read_ids()}
        if py != raw:
            self.fail("pymongo and raw reads disagree: %s" % sorted(py ^ raw)[:20])
        self.alive_check()

    def restart_phase(self):
        """A clean restart: what was committed is all still there and nothing else is; a
        retry of an acknowledged retryable write is answered from the durable session record
        (never run again), and a retried commit of a committed transaction still answers
        ok, as long as no newer txnNumber was sent on its session."""
        for link in self.links + [self.ping_link, self.admin_link]:
            link.close()
        self.client.close()
        self.note("restart")
        self.server.restart()
        self.client = self.server.client(appName="fz-sessions", retryWrites=True,
                                         socketTimeoutMS=int(BOUND * 1000),
                                         serverSelectionTimeoutMS=int(BOUND * 1000),
                                         heartbeatFrequencyMS=500)
        self.step += 1
        self.check_visibility()
        self.check_counter()
        for kind, doc, ref in list(self.retry_queue):
            u, n = bytes(doc["lsid"]["id"]), int(doc["txnNumber"])
            if kind == "insert":
                acked = all(self.model.plain.get(i) == "acked" for i in ref)
                expect_n = len(ref)
            else:
                acked = self.model.ctr_ops.get(ref) == "acked"
                expect_n = 1
            r = self.send(doc, MODEL_DB, link=self.admin_link, what="restart-retry")
            if r is not None and r["ok"] == 1 and any(
                    we.get("code") == 11000 for we in r.get("writeErrors", [])):
                self.fail("a retried retryable write ran again after a restart: %r"
                          % (strip_reply(r),))
            if acked and self.top.get(u) == n and (
                    r is None or r["ok"] != 1 or r.get("n") != expect_n or r.get("writeErrors")):
                self.fail("the retry of an acknowledged retryable write (txnNumber %d, no newer "
                          "one sent) was not answered from its record after a restart: %r"
                          % (n, strip_reply(r)))
            if kind == "insert":
                for i in ref:
                    self.model.set_plain(i, self.write_outcome(r, expect_n))
            else:
                self.model.set_ctr(ref, self.write_outcome(r, 1))
        for t in list(self.model.txns.values()):
            u, n = t.key
            if not t.committed or self.top.get(u) != n:
                continue
            r = self.send({"commitTransaction": 1, **self.txn_fields(t)}, "admin",
                          link=self.admin_link, what="restart-commit")
            if r is None or r["ok"] != 1:
                self.fail("a retried commit of committed transaction %s failed after a "
                          "restart: %r" % (t.label, strip_reply(r)))
        self.check_visibility()
        self.check_counter()
        self.alive_check()

    # -- the run --------------------------------------------------------------------------
    def setup(self):
        for doc, what in (({"insert": MODEL_COLL, "documents": [{"_id": "seed"}],
                            "writeConcern": {"w": "majority"}}, "seed"),
                          ({"insert": COUNTER_COLL, "documents": [{"_id": "ctr", "n": 0}],
                            "writeConcern": {"w": "majority"}}, "seed")):
            r = self.send(doc, MODEL_DB, link=self.admin_link, what=what)
            if r is None or r["ok"] != 1 or r.get("n") != 1:
                self.fail("seeding failed: %r" % (r,))

    def run(self, steps=STEPS, seconds=SECONDS):
        self.setup()
        done = self.run_steps(steps, seconds)
        self.finish()
        return done

    def run_steps(self, steps, seconds):
        deadline = time.monotonic() + seconds
        rng = self.rng
        for self.step in range(1, steps + 1):
            if time.monotonic() > deadline:
                break
            if self.fail_points and self.wid == 0 and rng.random() < 0.07:
                self.configure_fail_point()
            r = rng.random()
            if r < 0.015:
                self.run_special()
            elif r < 0.58:
                self.run_random()
            elif r < 0.80:
                self.sane_txn_step()
            elif r < 0.82:
                self.sane_plain_insert()
            elif r < 0.84:
                self.sane_plain_read()
            elif r < 0.88:
                self.sane_retryable_insert()
            elif r < 0.90:
                self.sane_counter_inc(retryable=rng.random() < 0.7)
            elif r < 0.92:
                self.sane_retry()
            elif r < 0.95:
                self.py_txn_step()
            else:
                self.py_random()
            self.alive_check()
            if self.step % 250 == 0 and not (self.fail_points and self.wid != 0):
                if self.fail_points and self.fp is not None:
                    # the check's own find must not meet the fail point
                    self.send({"configureFailPoint": "failCommand", "mode": "off"}, "admin",
                              link=self.admin_link, what="fp")
                    self.fp = None
                self.check_visibility()
        return self.step

    def summary(self):
        by_status = collections.Counter(t.status() for t in self.model.all_txns)
        lines = ["seed %d: %d steps, sane transactions %s, plain writes %s, counter %d..%d"
                 % (self.seed, self.step, dict(by_status),
                    dict(collections.Counter(self.model.plain.values())),
                    self.model.ctr_acked, self.model.ctr_acked + self.model.ctr_unknown)]
        codes = collections.Counter()
        for (name, res), n in self.stats.items():
            codes[res] += n
        lines.append("replies: %s" % dict(codes.most_common()))
        return "\n".join(lines)


def report_soft(fz, what):
    if fz.soft:
        pytest.fail("seed %d (CAIRN_FUZZ_SEED=%d), fail points %s: rules broken:\n%s"
                    % (SEED, SEED, what, "\n".join(
                        "  %s: %d time(s), e.g.\n    %s" % (kind, fz.soft_count[kind],
                                                         "\n    ".join(ex))
                        for kind, ex in sorted(fz.soft.items()))), pytrace=False)


def run_fuzz(server, fail_points):
    fz = Fuzzer(server, SEED, fail_points)
    try:
        steps = fz.run()
        fz.restart_phase()
        print(fz.summary())
    finally:
        fz.close()
    report_soft(fz, "on" if fail_points else "off")
    assert steps >= MIN_STEPS, "only %d steps in %.0fs" % (steps, SECONDS)


def test_fuzz_sessions(server_factory):
    srv = server_factory()
    run_fuzz(srv, fail_points=False)
    assert srv.alive(), srv.log_tail()


def test_fuzz_sessions_with_fail_points(server_factory):
    srv = server_factory(extra_args=TEST_COMMANDS_ARGS)
    run_fuzz(srv, fail_points=True)
    assert srv.alive(), srv.log_tail()


WORKERS = 3


def test_fuzz_sessions_concurrent(server_factory):
    """The same generator in WORKERS threads at once (seeds derived from SEED), sharing the
    lsid pool and the model, with worker 0 switching fail points: a session checked out by
    one worker while others wait for it, transactions continued, committed, aborted and
    killed by other workers between and during a worker's statements, cursors driven from
    other connections, connections closed by the fail point while other workers kill the
    sessions. The interleaving is the scheduler's, so a failure is not replayable step by
    step, but every check holds in any interleaving (in-flight writes and commits count as
    possible, and a command may meet any fail point configured while it was in flight)."""
    from workers import Workers
    srv = server_factory(extra_args=TEST_COMMANDS_ARGS)
    shared = Shared(random.Random(SEED))
    fzs = [Fuzzer(srv, SEED * 31 + w, True, shared=shared, wid=w) for w in range(WORKERS)]
    main = fzs[0]
    workers = Workers()
    try:
        main.setup()
        for fz in fzs:
            workers.start(fz.run_steps, STEPS, SECONDS, name="fuzz-%d" % fz.wid)
        workers.finish(timeout=SECONDS + 4 * BOUND + 60)
        main.open_py = [t for fz in fzs for t in fz.open_py]
        for fz in fzs[1:]:
            main.stats.update(fz.stats)
            main.soft_count.update(fz.soft_count)
            for kind, ex in fz.soft.items():
                main.soft.setdefault(kind, []).extend(ex[:2])
        main.finish()
        main.restart_phase()
        main.step = sum(fz.step for fz in fzs)
        print(main.summary())
    finally:
        for fz in fzs:
            fz.close()
    report_soft(main, "on, %d workers" % WORKERS)
    assert main.step >= MIN_STEPS, "only %d steps in %.0fs" % (main.step, SECONDS)
    assert srv.alive(), srv.log_tail()


# ---- Reproductions of what the fuzz found (each fails until its bug is fixed) ---------------

def _raw(srv):
    from txn_helpers import RawConn
    return RawConn(srv, timeout=BOUND)


def test_stmt_id_at_int32_max_in_a_batch_is_not_undefined_behaviour(server_factory):
    """Found by the fuzz (seed 1, UBSan build): a retryable insert of two documents with
    stmtId 2147483647. net_stmt_id (src/net/txnctx.c) computes stmtId + i in int32, and the
    session record's run-length compression (src/txn/session.c txn_session_record_build,
    `run_first + run_count`, and load_record's `first + n`) does the same: signed overflow,
    undefined behaviour ("txnctx.c:545:37: runtime error: signed integer overflow:
    2147483647 + 1 cannot be represented in type 'int'", then session.c:263:50 and, when
    the record is loaded again, session.c:349:18). mongod
    adds the position in size_t and narrows it to a StmtId (it wraps). The ASan/UBSan build
    reports it in the log, which server_factory turns into a failure at teardown; the
    answers (first run, retry, retry after a restart that reloads the record) must hold in
    every build."""
    from txn_helpers import new_lsid, retryable
    srv = server_factory()
    cmd = retryable({"insert": "c", "documents": [{"_id": 1}, {"_id": 2}],
                     "stmtId": 2 ** 31 - 1}, new_lsid(), 1)
    with _raw(srv) as c:
        first = c.run(cmd, "fzr")
        assert first.get("ok") == 1.0 and first.get("n") == 2, first
        again = c.run(cmd, "fzr")
        assert again.get("ok") == 1.0 and again.get("n") == 2 and \
            not again.get("writeErrors"), again
    srv.restart()
    with _raw(srv) as c:
        after = c.run(cmd, "fzr")
        assert after.get("ok") == 1.0 and after.get("n") == 2 and \
            not after.get("writeErrors"), after
        docs = c.run({"find": "c", "filter": {}}, "fzr")["cursor"]["firstBatch"]
        assert docs == [{"_id": 1}, {"_id": 2}], docs


@pytest.mark.parametrize("name,extra,code", [
    ("insert", {"stmtIds": [0]}, 16),                  # fewer stmtIds than statements
    ("insert", {"stmtIds": [0, 1, 2]}, 16),            # more
    ("update", {"stmtIds": []}, 16),
    ("insert", {"stmtIds": [0, 1], "stmtId": 0}, 72),  # both
    ("delete", {"stmtIds": [0, 1], "stmtId": 5}, 72),
    ("insert", {"stmtIds": ["a", None]}, 14),          # elements of a wrong type
    ("update", {"stmtIds": "x"}, 14),                  # not an array
    ("delete", {"stmtId": "x"}, 14),                   # stmtId of a wrong type
    ("insert", {"stmtId": [0]}, 14),
])
def test_stmt_ids_are_checked_like_mongod(server, request, name, extra, code):
    """Found by the fuzz (every seed): stmtId / stmtIds that mongod refuses are accepted and
    silently replaced (net_stmt_id falls back to stmtId + i, then to i). mongod
    (write_ops.cpp checkOpCountForCommand, and the IDL types of the write commands):
    16 InvalidLength "Number of statement ids must match the number of batch entries",
    72 InvalidOptions "May not specify both stmtId and stmtIds in write command", 14
    TypeMismatch for a stmtId or stmtIds element that is not a number. Nothing may be
    written."""
    from txn_helpers import new_lsid, retryable
    db = "fzr_%d" % (abs(hash(request.node.name)) % 10 ** 8)
    ops = {"insert": ("documents", [{"_id": 1}, {"_id": 2}]),
           "update": ("updates", [{"q": {"_id": 1}, "u": {"$set": {"x": 1}}, "upsert": True},
                                  {"q": {"_id": 2}, "u": {"$set": {"x": 1}}, "upsert": True}]),
           "delete": ("deletes", [{"q": {"_id": 9}, "limit": 1},
                                  {"q": {"_id": 10}, "limit": 1}])}
    field, batch = ops[name]
    with _raw(server) as c:
        c.run({"insert": "c", "documents": [{"_id": 9}, {"_id": 10}]}, db)
        r = c.run(retryable({name: "c", field: batch}, new_lsid(), 1, **extra), db)
        docs = sorted(d["_id"] for d in c.run({"find": "c", "filter": {}},
                                               db)["cursor"]["firstBatch"])
    r.pop("$clusterTime", None)
    r.pop("operationTime", None)
    assert r.get("ok") == 0.0 and r.get("code") == code, \
        "%s with %r: expected error %d, got %r" % (name, extra, code, r)
    assert docs == [9, 10], "the refused %s wrote: %r" % (name, docs)


def test_get_more_stays_in_the_cursors_session(server):
    """Found by the fuzz (most seeds): a cursor opened in a session is continued by a
    getMore in another session, or in none, a cursor opened outside sessions by a getMore in
    one, and a cursor opened outside transactions by a getMore inside one. mongod
    (getmore_cmd.cpp validateLSID / validateTxnNumber) refuses all four: 50738 (in another
    session), 50737 (created in a session, getMore without an lsid), 50736 (not created in
    a session, getMore in one), 50739 (not created in a transaction, getMore in one). The
    review of
    7982ff5 (test_review_txn_bugs.py) covers the transaction's cursor outside its
    transaction (50740); these are the session cases of the same missing check."""
    from txn_helpers import new_lsid
    db = "fzr_getmore"
    a, b = new_lsid(), new_lsid()
    with _raw(server) as c:
        c.run({"insert": "c", "documents": [{"_id": i} for i in range(10)]}, db)

        def cursor(**session):
            r = c.run({"find": "c", "filter": {}, "batchSize": 1, **session}, db)
            assert r.get("ok") == 1.0 and r["cursor"]["id"], r
            return r["cursor"]["id"]

        other = c.run({"getMore": Int64(cursor(lsid=a)), "collection": "c", "lsid": b}, db)
        none = c.run({"getMore": Int64(cursor(lsid=a)), "collection": "c"}, db)
        some = c.run({"getMore": Int64(cursor()), "collection": "c", "lsid": b}, db)
        assert c.run({"find": "c", "filter": {"_id": -1}, "lsid": a, "txnNumber": Int64(1),
                      "autocommit": False, "startTransaction": True}, db).get("ok") == 1.0
        in_txn = c.run({"getMore": Int64(cursor(lsid=a)), "collection": "c", "lsid": a,
                        "txnNumber": Int64(1), "autocommit": False}, db)
        c.run({"abortTransaction": 1, "lsid": a, "txnNumber": Int64(1), "autocommit": False},
              "admin")
    got = [(r.get("ok"), r.get("code")) for r in (other, none, some, in_txn)]
    assert got == [(0.0, 50738), (0.0, 50737), (0.0, 50736), (0.0, 50739)], \
        "getMore in another session / without one / in one / in a transaction: %r" % (
            [strip_reply(r) for r in (other, none, some, in_txn)],)


@pytest.mark.parametrize("end", ["killSessions", "endSessions", "killAllSessions"])
def test_txn_number_is_not_reused_after_the_session_is_killed_or_ended(server, end):
    """Found by the fuzz (concurrent run; 248e933 build, ASan, default seed): killSessions,
    killAllSessions and endSessions abort a session's open transaction and then forget the
    idle session (txn/session.c forget_if_idle), and with it the txnNumber the aborted
    transaction used (only durable records are reloaded). A startTransaction with the same
    txnNumber then starts a second, different transaction (and commits), and a lower
    txnNumber starts too: one (lsid, txnNumber) names two transactions, so a client's retried
    commit can answer for the wrong one. After a plain abortTransaction the server refuses
    (117), as mongod does in every case: mongod keeps the session and its active txnNumber
    (ended sessions are reaped only at the next logical session cache refresh), so the same
    number is 117 ConflictingOperationInProgress and a lower one 225 TransactionTooOld."""
    from txn_helpers import RawConn, Txn, new_lsid
    db = "fzr_reuse_%s" % end
    lsid = new_lsid()
    with RawConn(server, timeout=BOUND) as c:
        first = Txn(c, db, lsid=lsid, number=5)
        assert first.start({"insert": "c", "documents": [{"_id": "x"}]}).get("ok") == 1.0
        r = c.run({end: [] if end == "killAllSessions" else [lsid]}, "admin")
        assert r.get("ok") == 1.0, r
        lower = Txn(c, db, lsid=lsid, number=3).start(
            {"insert": "c", "documents": [{"_id": "z"}]})
        Txn(c, db, lsid=lsid, number=3).abort()
        same = first.start({"insert": "c", "documents": [{"_id": "y"}]})
        commit = first.commit()
        docs = c.run({"find": "c", "filter": {}}, db)["cursor"]["firstBatch"]
    got = [(r.get("ok"), r.get("code")) for r in (lower, same, commit)]
    assert got == [(0.0, 225), (0.0, 117), (0.0, 251)], (
        "after %s: startTransaction with a lower txnNumber, with the same one, its commit: "
        "%r; documents %r" % (end, [strip_reply(r) for r in (lower, same, commit)], docs))
    assert docs == [], docs
