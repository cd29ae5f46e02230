"""The workloads: what one worker operation does against the set, and what it records.

Owns: unique values (Values), the list-append key pool (KeyPool), OpContext (clients, tracker,
timeouts shared by the workers) and the two workloads:

  insert   single-document inserts of unique values, at w:1 (collection ins_w1) or w:"majority"
           (ins_majority), through a client with retryWrites on or off (field "retry").
           Document: {_id: "w1-<v>" | "wm-<v>", v: <v>, retry: bool}.
  append   list-append transactions as in Jepsen's Elle, on collection la: documents
           {_id: key, vals: [...]}. A transaction reads some keys (find_one) and appends unique
           values to other keys ($push with upsert), with readConcern snapshot and
           writeConcern majority, through with_transaction or explicit start/commit; a fraction
           are single appends outside a transaction (a retryable update at w:"majority").

Each run_op returns the type-specific fields of an op record plus outcome, error and attempts;
the runner adds id, worker and times. Values are unique across the whole run, so a value seen
twice was applied twice.
"""

import threading

import pymongo
from pymongo import WriteConcern
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern

from .outcomes import (acknowledging_server, classify_txn_error, classify_write_error,
                       error_summary)

INSERT_COLLS = {"1": "ins_w1", "majority": "ins_majority"}
APPEND_COLL = "la"
TXN_MODES = ("with_transaction", "explicit")


class Values:
    """Unique integers for the whole run."""

    def __init__(self, start=1):
        self._lock = threading.Lock()
        self._next = start

    def next(self):
        with self._lock:
            v = self._next
            self._next += 1
            return v


class KeyPool:
    """The keys transactions choose from: `count` active keys; a key that has received
    `max_writes` appends is retired and replaced by a fresh one (keeps lists short and
    conflicts frequent, as Elle's generator does)."""

    def __init__(self, count, max_writes):
        self._lock = threading.Lock()
        self.active = list(range(count))
        self._next_key = count
        self._writes = {}
        self.max_writes = max_writes

    def choose(self, rng, n):
        with self._lock:
            return rng.sample(self.active, min(n, len(self.active)))

    def note_append(self, key):
        with self._lock:
            self._writes[key] = self._writes.get(key, 0) + 1
            if self._writes[key] >= self.max_writes and key in self.active:
                self.active[self.active.index(key)] = self._next_key
                self._next_key += 1


class OpContext:
    """What every operation needs: the clients (by retryWrites), the tracker, settings."""

    def __init__(self, clients, tracker, db, op_timeout, values, w1_journal=False):
        self.clients = clients          # {True: retryWrites client, False: no retries}
        self.tracker = tracker
        self.db = db
        self.op_timeout = op_timeout
        self.values = values
        self.w1_journal = w1_journal

    def perform(self, fn, classify):
        """Runs fn() under the operation timeout; returns (outcome, result, error, attempts)."""
        self.tracker.begin()
        try:
            with pymongo.timeout(self.op_timeout):
                result = fn()
        except PyMongoError as exc:
            attempts = self.tracker.attempts()
            return classify(attempts), None, error_summary(exc), attempts
        return "ok", result, None, self.tracker.attempts()


class InsertWorkload:
    name = "insert"

    def collections(self):
        return sorted(INSERT_COLLS.values())

    def run_op(self, ctx, rng):
        w = rng.choice(("1", "majority"))
        retry = rng.random() < 0.5
        value = ctx.values.next()
        doc_id = "%s-%d" % ("w1" if w == "1" else "wm", value)
        if w == "1":
            wc = WriteConcern(w=1, j=True) if ctx.w1_journal else WriteConcern(w=1)
            wc_rec = {"w": 1, "j": bool(ctx.w1_journal)}
        else:
            wc = WriteConcern(w="majority")
            wc_rec = {"w": "majority"}
        coll = ctx.clients[retry][ctx.db].get_collection(INSERT_COLLS[w], write_concern=wc)
        doc = {"_id": doc_id, "v": value, "retry": retry}
        outcome, _, error, attempts = ctx.perform(lambda: coll.insert_one(doc),
                                                  classify_write_error)
        return {"type": "insert", "coll": INSERT_COLLS[w], "doc_id": doc_id, "value": value,
                "wc": wc_rec, "retry": retry, "outcome": outcome, "error": error,
                "attempts": attempts, "server": acknowledging_server(attempts)}


class ListAppendWorkload:
    name = "append"

    def __init__(self, keys=6, max_txn_len=4, max_writes_per_key=32, single_fraction=0.1,
                 txn_modes=TXN_MODES):
        self.pool = KeyPool(keys, max_writes_per_key)
        self.max_txn_len = max_txn_len
        self.single_fraction = single_fraction
        self.txn_modes = tuple(txn_modes)

    def collections(self):
        return [APPEND_COLL]

    # -- generation ---------------------------------------------------------------------
    def _append_mop(self, ctx, key):
        self.pool.note_append(key)
        return ["append", key, ctx.values.next()]

    def gen_txn(self, ctx, rng):
        """Micro-operations: distinct keys, each read or appended to."""
        keys = self.pool.choose(rng, rng.randint(1, self.max_txn_len))
        return [self._append_mop(ctx, k) if rng.random() < 0.5 else ["r", k, None]
                for k in keys]

    # -- execution ----------------------------------------------------------------------
    @staticmethod
    def run_mops(coll, mops, session):
        out = []
        for f, k, v in mops:
            if f == "r":
                doc = coll.find_one({"_id": k}, session=session)
                out.append(["r", k, list(doc.get("vals", [])) if doc else None])
            else:
                coll.update_one({"_id": k}, {"$push": {"vals": v}}, upsert=True,
                                session=session)
                out.append(["append", k, v])
        return out

    def _with_transaction(self, client, coll, mops):
        result = [None]

        def callback(session):
            result[0] = None
            result[0] = self.run_mops(coll, mops, session)

        with client.start_session() as s:
            s.with_transaction(callback, read_concern=ReadConcern("snapshot"),
                               write_concern=WriteConcern(w="majority"))
        return result[0]

    def _explicit(self, client, coll, mops):
        with client.start_session() as s:
            s.start_transaction(read_concern=ReadConcern("snapshot"),
                                write_concern=WriteConcern(w="majority"))
            try:
                done = self.run_mops(coll, mops, s)
            except BaseException:
                try:
                    s.abort_transaction()
                except PyMongoError:
                    pass
                raise
            commits = 0
            while True:  # the driver retries a commit once; retry an unknown result twice more
                try:
                    s.commit_transaction()
                    return done
                except PyMongoError as exc:
                    commits += 1
                    if commits < 3 and exc.has_error_label("UnknownTransactionCommitResult"):
                        continue
                    raise

    def run_op(self, ctx, rng):
        client = ctx.clients[True]
        coll = client[ctx.db].get_collection(APPEND_COLL)
        if rng.random() < self.single_fraction:
            key = self.pool.choose(rng, 1)[0]
            mops = [self._append_mop(ctx, key)]
            mode = "single"
            mcoll = coll.with_options(write_concern=WriteConcern(w="majority"))
            fn = lambda: self.run_mops(mcoll, mops, None)  # noqa: E731
            classify = classify_write_error
        else:
            mops = self.gen_txn(ctx, rng)
            mode = rng.choice(self.txn_modes)
            run = self._with_transaction if mode == "with_transaction" else self._explicit
            fn = lambda: run(client, coll, mops)  # noqa: E731
            classify = classify_txn_error
        outcome, done, error, attempts = ctx.perform(fn, classify)
        return {"type": "txn", "coll": APPEND_COLL, "mode": mode,
                "mops": done if outcome == "ok" else mops, "outcome": outcome,
                "error": error, "attempts": attempts, "server": acknowledging_server(attempts)}


def make_workloads(names, **append_opts):
    out = []
    for name in names:
        if name == "insert":
            out.append(InsertWorkload())
        elif name == "append":
            out.append(ListAppendWorkload(**append_opts))
        else:
            raise ValueError("unknown workload %r (insert, append)" % name)
    return out
