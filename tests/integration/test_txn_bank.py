"""Bank transfers through pymongo's with_transaction: the classic conservation test.

100 accounts start with 1000 each. 16 client threads, each with its own session, move random
amounts between random accounts for CAIRN_BANK_SECONDS (default 20) seconds. Every transfer is
one transaction that reads both balances and writes both back as absolute values ($set of what
it read, plus/minus the amount: a lost update or a read of a half-applied transfer would create
or destroy money) and records the transfer in a ledger collection. A checker thread reads all
balances in snapshot transactions the whole time and requires the total to be exactly 100,000
in every one of them.

At the end: the total is unchanged; the ledger holds exactly one document per successful
with_transaction return; every account's balance equals 1000 + credits - debits as recorded by
the clients (and by the ledger). Conflicts are expected (hot accounts): with_transaction retries
on TransientTransactionError, and the test counts callback invocations to report them.
Randomness is seeded (CAIRN_BANK_SEED); interleavings are not, and do not need to be.
"""

import os
import random
import threading
import time
from collections import Counter

from pymongo import WriteConcern
from pymongo.read_concern import ReadConcern

from txn_helpers import env_seconds

ACCOUNTS = 100
INITIAL = 1000
THREADS = 16
DURATION = env_seconds("CAIRN_BANK_SECONDS", 20)
SEED = int(os.environ.get("CAIRN_BANK_SEED", "7919"))


class _Stop(Exception):
    """Raised inside a callback once the run is long over: ends with_transaction's retries."""


def test_bank_transfers_conserve_money(server, db):
    client = server.client(maxPoolSize=64, socketTimeoutMS=30000, retryWrites=True)
    try:
        _run_bank(client, db.name)
    finally:
        client.close()


def _run_bank(client, dbname):
    mdb = client[dbname]
    accounts = mdb.get_collection("accounts", write_concern=WriteConcern("majority"))
    ledger = mdb.ledger
    accounts.insert_many([{"_id": i, "bal": INITIAL} for i in range(ACCOUNTS)])
    total0 = ACCOUNTS * INITIAL

    stop = threading.Event()
    started = time.monotonic()
    hard_deadline = started + DURATION + 30
    fatal = []
    lock = threading.Lock()
    committed = Counter()      # thread -> successful with_transaction returns
    invocations = Counter()    # thread -> callback invocations
    debits, credits = Counter(), Counter()
    checks = {"snapshots": 0, "violations": [], "invocations": 0}

    def worker(tid):
        rng = random.Random(SEED * 1000 + tid)
        try:
            with client.start_session() as s:
                seq = 0
                while not stop.is_set():
                    src, dst = rng.sample(range(ACCOUNTS), 2)
                    amount = rng.randint(1, 100)
                    seq += 1
                    tag = "%d-%d" % (tid, seq)

                    def transfer(session, src=src, dst=dst, amount=amount, tag=tag):
                        invocations[tid] += 1
                        if stop.is_set() and time.monotonic() > hard_deadline:
                            raise _Stop()
                        a = accounts.find_one({"_id": src}, session=session)
                        b = accounts.find_one({"_id": dst}, session=session)
                        accounts.update_one({"_id": src}, {"$set": {"bal": a["bal"] - amount}},
                                            session=session)
                        accounts.update_one({"_id": dst}, {"$set": {"bal": b["bal"] + amount}},
                                            session=session)
                        ledger.insert_one({"_id": tag, "src": src, "dst": dst, "amt": amount},
                                          session=session)

                    s.with_transaction(transfer, read_concern=ReadConcern("snapshot"),
                                       write_concern=WriteConcern("majority"))
                    with lock:
                        committed[tid] += 1
                        debits[src] += amount
                        credits[dst] += amount
        except BaseException as exc:
            with lock:
                fatal.append("worker %d: %r" % (tid, exc))
            stop.set()

    def checker():
        try:
            with client.start_session() as s:
                while not stop.is_set():
                    def read(session):
                        checks["invocations"] += 1
                        if stop.is_set() and time.monotonic() > hard_deadline:
                            raise _Stop()
                        docs = list(accounts.find({}, session=session))
                        return len(docs), sum(d["bal"] for d in docs)

                    n, total = s.with_transaction(read, read_concern=ReadConcern("snapshot"))
                    checks["snapshots"] += 1
                    if n != ACCOUNTS or total != total0:
                        checks["violations"].append((n, total))
        except BaseException as exc:
            with lock:
                fatal.append("checker: %r" % exc)
            stop.set()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(THREADS)]
    threads.append(threading.Thread(target=checker, daemon=True))
    for t in threads:
        t.start()
    stop.wait(DURATION)
    stop.set()
    for t in threads:
        t.join(max(1.0, hard_deadline + 30 - time.monotonic()))
    elapsed = time.monotonic() - started
    alive = [t.name for t in threads if t.is_alive()]

    n_committed = sum(committed.values())
    n_invocations = sum(invocations.values())
    print("\nbank: %d transfers committed in %.1fs by %d threads; %d callback invocations "
          "(%d retries after transient errors); checker: %d snapshot reads, %d invocations, "
          "%d violations"
          % (n_committed, elapsed, THREADS, n_invocations, n_invocations - n_committed,
             checks["snapshots"], checks["invocations"], len(checks["violations"])))

    assert not alive, "threads still running after the run: %s" % alive
    assert not fatal, "with_transaction failed:\n" + "\n".join(fatal[:10])
    assert not checks["violations"], \
        "a snapshot saw money created or destroyed (count, total): %r" % checks["violations"][:10]
    assert checks["snapshots"] > 0, "the checker never completed a snapshot read"
    assert n_committed >= THREADS, "only %d transfers committed in %.0fs" % (n_committed, elapsed)

    docs = list(accounts.find({}).sort("_id", 1))
    assert len(docs) == ACCOUNTS
    assert sum(d["bal"] for d in docs) == total0, "money was created or destroyed"
    n_ledger = ledger.count_documents({})
    assert n_ledger == n_committed, \
        "ledger holds %d transfers, clients saw %d commits" % (n_ledger, n_committed)
    ledger_debits, ledger_credits = Counter(), Counter()
    for t in ledger.find({}):
        ledger_debits[t["src"]] += t["amt"]
        ledger_credits[t["dst"]] += t["amt"]
    assert ledger_debits == debits and ledger_credits == credits, \
        "the ledger disagrees with what the clients committed"
    wrong = [(d["_id"], d["bal"], INITIAL + credits[d["_id"]] - debits[d["_id"]])
             for d in docs if d["bal"] != INITIAL + credits[d["_id"]] - debits[d["_id"]]]
    assert not wrong, "balances differ from initial + credits - debits " \
        "(account, balance, expected): %r" % wrong[:10]
