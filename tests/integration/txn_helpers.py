"""Shared helpers for the sessions / transactions / retryable-writes / causal-consistency suites.

Why raw commands: pymongo replaces any `lsid` a test puts into `db.command(...)` with its own
implicit session id, and adds `$clusterTime`, `readConcern.afterClusterTime` and `txnNumber` on
its own. To pin the server's behaviour per wire-protocol.md §4-§5 the suites send OP_MSG
commands themselves (`RawConn`), with exactly the `lsid`, `txnNumber`, `autocommit`,
`startTransaction`, `readConcern` and `$clusterTime` fields each test means. Driver-level
behaviour (with_transaction, retryWrites, causal sessions) is tested through pymongo.

Owns: RawConn (one socket, OP_MSG in, reply document out), new_lsid, Txn (the fields of one
transaction's statements), assertion helpers that print the whole reply on failure, error
codes by name, wait_until (poll with a deadline, no fixed sleeps) and fail-point helpers.
"""

import os
import socket
import struct
import threading
import time
import uuid

import bson
from bson import Binary, Int64, Timestamp

# MongoDB error codes the suites assert, by name (src/mongo/base/error_codes.yml).
CODES = {
    "BadValue": 2,
    "FailedToParse": 9,
    "Unauthorized": 13,
    "TypeMismatch": 14,
    "IllegalOperation": 20,
    "NamespaceExists": 48,
    "MaxTimeMSExpired": 50,
    "CommandNotFound": 59,
    "InvalidOptions": 72,
    "ShutdownInProgress": 91,
    "WriteConflict": 112,
    "ConflictingOperationInProgress": 117,
    "CommandFailed": 125,
    "ClusterTimeFailsRateLimiter": 205,
    "IncompleteTransactionHistory": 217,
    "TransactionTooOld": 225,
    "NotImplemented": 238,
    "SnapshotTooOld": 239,
    "NoSuchTransaction": 251,
    "TransactionCommitted": 256,
    "TooManyLogicalSessions": 261,
    "OperationNotSupportedInTransaction": 263,
    "DuplicateKey": 11000,
    "NotWritablePrimary": 10107,
    "IDLFailedToParse": 40414,
    "NotARetryableWriteCommand": 50768,
}

TRANSIENT = "TransientTransactionError"
RETRYABLE = "RetryableWriteError"

OP_MSG = 2013
_req_ids = iter(range(7000000, 2 ** 31 - 1))
_req_lock = threading.Lock()


def _next_request_id():
    with _req_lock:
        return next(_req_ids)


class RawConn:
    """One TCP connection that sends OP_MSG commands exactly as given (plus `$db`).

    No handshake, no implicit session, no `$clusterTime` unless the test puts one in.
    `run` returns the reply document whatever its `ok`; it never raises for ok:0.
    """

    def __init__(self, server, timeout=30.0):
        port = server if isinstance(server, int) else server.port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
        return buf

    def run(self, cmd, db="admin"):
        doc = dict(cmd)
        doc["$db"] = db
        body = struct.pack("<I", 0) + b"\x00" + bson.encode(doc)
        rid = _next_request_id()
        self.sock.sendall(struct.pack("<iiii", 16 + len(body), rid, 0, OP_MSG) + body)
        head = self._recv_exact(16)
        length, _rid, response_to, opcode = struct.unpack("<iiii", head)
        rest = self._recv_exact(length - 16)
        assert response_to == rid, "reply to request %d answers %d" % (rid, response_to)
        assert opcode == OP_MSG, "reply opcode %d" % opcode
        assert rest[4] == 0, "reply must start with a kind-0 section"
        return bson.decode(rest[5:])


def new_lsid():
    """A driver-shaped session id: {id: BinData(4, 16 random bytes)}."""
    return {"id": Binary(uuid.uuid4().bytes, 4)}


def cluster_time_doc(ts):
    """A `$clusterTime` as drivers gossip it (zero signature, as with auth off)."""
    return {"clusterTime": ts, "signature": {"hash": Binary(b"\x00" * 20, 0), "keyId": Int64(0)}}


def ts_add(ts, secs):
    return Timestamp(ts.time + secs, ts.inc)


def ts_key(ts):
    return (ts.time, ts.inc)


# -- assertions ------------------------------------------------------------------------------

def _show(reply):
    r = dict(reply)
    r.pop("$clusterTime", None)
    return repr(r)


def assert_ok(reply, what=""):
    assert reply.get("ok") == 1.0, "%s expected ok:1, got %s" % (what, _show(reply))
    return reply


def assert_error(reply, code, code_name=None, labels=None, msg=None, what=""):
    """ok:0 with `code` (and codeName). `labels`: the exact set of errorLabels expected
    (None = do not check). `msg`: a substring (or tuple of alternatives) of errmsg."""
    where = (what + ": ") if what else ""
    assert reply.get("ok") == 0.0, "%sexpected an error %d, got %s" % (where, code, _show(reply))
    assert reply.get("code") == code, "%sexpected code %d, got %s" % (where, code, _show(reply))
    if code_name is not None:
        assert reply.get("codeName") == code_name, "%sexpected codeName %s, got %s" % (
            where, code_name, _show(reply))
    if labels is not None:
        got = sorted(reply.get("errorLabels", []))
        assert got == sorted(labels), "%sexpected errorLabels %s, got %s" % (
            where, sorted(labels), _show(reply))
    if msg is not None:
        alts = msg if isinstance(msg, tuple) else (msg,)
        assert any(m in reply.get("errmsg", "") for m in alts), \
            "%sexpected errmsg containing %r, got %s" % (where, alts, _show(reply))
    return reply


def assert_code_in(reply, codes, what=""):
    assert reply.get("ok") == 0.0 and reply.get("code") in codes, \
        "%s expected one of codes %s, got %s" % (what, codes, _show(reply))
    return reply


def labels_of(reply):
    return sorted(reply.get("errorLabels", []))


# -- transactions ----------------------------------------------------------------------------

class Txn:
    """The session fields of one multi-document transaction on a RawConn.

    start() sends the first statement (startTransaction: true), run() a later statement,
    commit()/abort() the admin commands. `number` is the txnNumber (Int64 on the wire)."""

    def __init__(self, conn, db, lsid=None, number=1):
        self.conn = conn
        self.db = db
        self.lsid = lsid or new_lsid()
        self.number = number

    def fields(self, start=False):
        f = {"lsid": self.lsid, "txnNumber": Int64(self.number), "autocommit": False}
        if start:
            f["startTransaction"] = True
        return f

    def start(self, cmd, db=None, **extra):
        doc = dict(cmd)
        doc.update(self.fields(start=True))
        doc.update(extra)
        return self.conn.run(doc, db or self.db)

    def run(self, cmd, db=None, **extra):
        doc = dict(cmd)
        doc.update(self.fields())
        doc.update(extra)
        return self.conn.run(doc, db or self.db)

    def commit(self, **extra):
        doc = {"commitTransaction": 1}
        doc.update(self.fields())
        doc.update(extra)
        return self.conn.run(doc, "admin")

    def abort(self, **extra):
        doc = {"abortTransaction": 1}
        doc.update(self.fields())
        doc.update(extra)
        return self.conn.run(doc, "admin")

    def next(self, step=1):
        """The next transaction on the same session."""
        return Txn(self.conn, self.db, self.lsid, self.number + step)


def retryable(cmd, lsid, number, **extra):
    """`cmd` as a retryable write: lsid + txnNumber, no autocommit."""
    doc = dict(cmd)
    doc["lsid"] = lsid
    doc["txnNumber"] = Int64(number)
    doc.update(extra)
    return doc


def find_docs(conn, db, coll, filt=None, **extra):
    """All documents of a non-session find (one batch; the suites' collections are small)."""
    cmd = {"find": coll, "filter": filt or {}, "batchSize": 100000, "sort": {"_id": 1}}
    cmd.update(extra)
    r = assert_ok(conn.run(cmd, db), "find %s.%s" % (db, coll))
    return r["cursor"]["firstBatch"]


def txn_find(txn, coll, filt=None, start=False, **extra):
    """The documents a find statement of `txn` sees (asserts ok)."""
    cmd = {"find": coll, "filter": filt or {}, "batchSize": 100000, "sort": {"_id": 1}}
    r = txn.start(cmd, **extra) if start else txn.run(cmd, **extra)
    assert_ok(r, "find in transaction %d" % txn.number)
    return r["cursor"]["firstBatch"]


def seed(conn, db, coll, docs):
    """Insert `docs` outside any session, majority-acknowledged (so that any later snapshot,
    including one taken at the majority point, contains them)."""
    r = assert_ok(conn.run({"insert": coll, "documents": list(docs),
                            "writeConcern": {"w": "majority"}}, db), "seed insert")
    assert r.get("n") == len(docs) and "writeErrors" not in r, _show(r)
    return r


def collection_names(conn, db):
    r = assert_ok(conn.run({"listCollections": 1, "nameOnly": True}, db), "listCollections")
    return sorted(c["name"] for c in r["cursor"]["firstBatch"])


def cluster_time(reply):
    return reply["$clusterTime"]["clusterTime"]


# -- waiting ---------------------------------------------------------------------------------

def wait_until(pred, timeout, message, interval=0.05):
    """Poll `pred` until it returns a truthy value (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError("%s (waited %.1fs; last: %r)" % (message, timeout, last))
        time.sleep(interval)


class Background:
    """Runs `fn` on a daemon thread; `done` is set when it returns or raises."""

    def __init__(self, fn, *args, **kwargs):
        self.result = None
        self.error = None
        self.done = threading.Event()

        def body():
            try:
                self.result = fn(*args, **kwargs)
            except BaseException as exc:  # reported by join()
                self.error = exc
            finally:
                self.done.set()

        self.thread = threading.Thread(target=body, daemon=True)
        self.thread.start()

    def join(self, timeout):
        assert self.done.wait(timeout), "background operation did not finish within %.0fs" % timeout
        self.thread.join(5)
        if self.error is not None:
            raise self.error
        return self.result


# -- fail points -----------------------------------------------------------------------------

TEST_COMMANDS_ARGS = ("--setParameter", "enableTestCommands=1")


def fail_command(conn, mode, **data):
    """configureFailPoint failCommand (mongod's shape); asserts it was accepted."""
    r = conn.run({"configureFailPoint": "failCommand", "mode": mode, "data": data}, "admin")
    return assert_ok(r, "configureFailPoint failCommand")


def fail_command_off(conn):
    return assert_ok(conn.run({"configureFailPoint": "failCommand", "mode": "off"}, "admin"),
                     "configureFailPoint failCommand off")


def env_seconds(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)
