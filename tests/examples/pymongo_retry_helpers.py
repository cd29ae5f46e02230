#!/usr/bin/env python3
"""tests/examples/pymongo_retry_helpers.py: the manual's hr.employees / reporting.events
transaction with the retry helpers run_transaction_with_retry and commit_with_retry.

Usage: pymongo_retry_helpers.py URI

The example (MongoDB manual, "Transactions" and Session.startTransaction()): as an
employee's record changes in hr.employees, reporting.events must stay in sync, so
update_employee_info sets employee 3's status to "Inactive" and inserts the matching event
in one transaction (read concern "snapshot", write concern "majority", read preference
primary), commits through commit_with_retry (which retries a commit whose result is unknown,
label UnknownTransactionCommitResult), and the whole is run by run_transaction_with_retry
(which reruns the transaction on a TransientTransactionError). The helpers are the seed's,
written in Python: same loops, same labels, same messages.

The collections start with the seed's documents (three employees, three events). Checks:
both writes committed; nothing else changed; the transaction used the seed's options (seen
on the wire through command monitoring); and atomicity: an outside reader looking just
before commitTransaction sees neither write, and both after it.

Prints "ok - ..." / "not ok - ...: why" per check, then "N passed, N failed"; exits 1 if any
check failed.
"""

import os
import signal
import sys

from bson import ObjectId
from pymongo import MongoClient, ReadPreference, monitoring
from pymongo.errors import ConnectionFailure, OperationFailure
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

WATCHDOG_SECONDS = 180  # the seed's retry loops have no limit of their own


class Tap:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what, why=""):
        if cond:
            self.passed += 1
            print("ok - %s" % what)
        else:
            self.failed += 1
            print("not ok - %s: %s" % (what, why or "check failed"))
        sys.stdout.flush()
        return cond

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.stdout.flush()
        return 1 if self.failed else 0


tap = Tap()

# The seed's documents: hr.employees and reporting.events before the transaction.
EMPLOYEES = [
    {"_id": ObjectId("5af0776263426f87dd69319a"), "employee": 3,
     "name": {"title": "Mr.", "name": "Iba Ochs"}, "status": "Active", "department": "ABC"},
    {"_id": ObjectId("5af0776263426f87dd693198"), "employee": 1,
     "name": {"title": "Miss", "name": "Ann Thrope"}, "status": "Active", "department": "ABC"},
    {"_id": ObjectId("5af0776263426f87dd693199"), "employee": 2,
     "name": {"title": "Mrs.", "name": "Eppie Delta"}, "status": "Active", "department": "XYZ"},
]
EVENTS = [
    {"_id": ObjectId("5af07daa051d92f02462644a"), "employee": 1,
     "status": {"new": "Active", "old": None}, "department": {"new": "ABC", "old": None}},
    {"_id": ObjectId("5af07daa051d92f02462644b"), "employee": 2,
     "status": {"new": "Active", "old": None}, "department": {"new": "XYZ", "old": None}},
    {"_id": ObjectId("5af07daa051d92f02462644c"), "employee": 3,
     "status": {"new": "Active", "old": None}, "department": {"new": "ABC", "old": None}},
]
NEW_EVENT = {"employee": 3, "status": {"new": "Inactive", "old": "Active"}}


# ---- the seed's example, in Python ----------------------------------------------------------

# Runs the txn_func and retries if TransientTransactionError encountered
def run_transaction_with_retry(txn_func, session):
    while True:
        try:
            txn_func(session)  # performs transaction
            break
        except (ConnectionFailure, OperationFailure) as error:
            # If transient error, retry the whole transaction
            if error.has_error_label("TransientTransactionError"):
                print("# TransientTransactionError, retrying transaction ...")
                continue
            else:
                raise


# Retries commit if UnknownTransactionCommitResult encountered
def commit_with_retry(session):
    while True:
        try:
            session.commit_transaction()  # Uses write concern set at transaction start.
            print("# Transaction committed.")
            break
        except (ConnectionFailure, OperationFailure) as error:
            # Can retry commit
            if error.has_error_label("UnknownTransactionCommitResult"):
                print("# UnknownTransactionCommitResult, retrying commit operation ...")
                continue
            else:
                print("# Error during commit ...")
                raise


# Updates two collections in a transactions
def update_employee_info(session):
    employees_collection = session.client.hr.employees
    events_collection = session.client.reporting.events

    session.start_transaction(
        read_concern=ReadConcern("snapshot"),
        write_concern=WriteConcern(w="majority"),
        read_preference=ReadPreference.PRIMARY,
    )

    try:
        employees_collection.update_one(
            {"employee": 3}, {"$set": {"status": "Inactive"}}, session=session
        )
        events_collection.insert_one(
            {"employee": 3, "status": {"new": "Inactive", "old": "Active"}}, session=session
        )
    except Exception:
        print("# Caught exception during transaction, aborting.")
        session.abort_transaction()
        raise

    commit_with_retry(session)


def seed_example(client):
    """The seed's driver code: start a session, run the transaction with retry, end the
    session. Returns the error it caught ("Do something with error"), or None."""
    caught = None
    # Start a session.
    session = client.start_session()
    try:
        run_transaction_with_retry(update_employee_info, session)
    except Exception as error:
        # Do something with error
        caught = error
    finally:
        session.end_session()
    return caught


# ---- harness ---------------------------------------------------------------------------------

class Watcher(monitoring.CommandListener):
    """Records the transaction's commands, and what an outside reader sees at the moment
    commitTransaction is about to be sent."""

    def __init__(self, observer):
        self.observer = observer
        self.commands = []  # (name, command) in order
        self.at_commit = []  # (employee 3's status, number of new events) per commit sent
        self.errors = []

    def started(self, event):
        self.commands.append((event.command_name, dict(event.command)))
        if event.command_name == "commitTransaction":
            try:
                self.at_commit.append(outside_view(self.observer))
            except Exception as exc:
                self.errors.append(exc)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def outside_view(client):
    """(employee 3's status, how many copies of the new event) as a reader outside any
    transaction sees them."""
    emp = client.hr.employees.find_one({"employee": 3})
    n = client.reporting.events.count_documents(NEW_EVENT)
    return (emp or {}).get("status"), n


def load_seed_documents(client):
    wc = WriteConcern("majority")
    for db, coll, docs in (("hr", "employees", EMPLOYEES), ("reporting", "events", EVENTS)):
        c = client[db].get_collection(coll, write_concern=wc)
        c.drop()
        c.insert_many([dict(d) for d in docs])


def describe(exc):
    if isinstance(exc, OperationFailure):
        d = exc.details or {}
        return "%s (code %s %s, labels %s)" % (d.get("errmsg", str(exc)), exc.code,
                                               d.get("codeName", ""),
                                               sorted(d.get("errorLabels", [])))
    return "%s: %s" % (type(exc).__name__, exc)


def on_watchdog(signum, frame):
    tap.check(False, "the example finished", "still running after %d s" % WATCHDOG_SECONDS)
    tap.finish()
    os._exit(1)


def check_wire(watcher):
    """The transaction's statements as the driver sent them carry the seed's options."""
    stmts = [(n, c) for n, c in watcher.commands if n in ("update", "insert")]
    first = stmts[0][1] if stmts else {}
    tap.check(first.get("startTransaction") is True
              and first.get("readConcern", {}).get("level") == "snapshot",
              "the transaction's first statement started it with read concern snapshot",
              "first statement sent: %r" % (first or None))
    in_txn = [c for _, c in stmts if c.get("autocommit") is False and "txnNumber" in c]
    tap.check(len(stmts) >= 2 and len(in_txn) == len(stmts),
              "the update and the insert were sent inside the transaction",
              "%d of %d statements had autocommit false and a txnNumber"
              % (len(in_txn), len(stmts)))
    commits = [c for n, c in watcher.commands if n == "commitTransaction"]
    tap.check(bool(commits) and all(c.get("writeConcern", {}).get("w") == "majority"
                                    for c in commits),
              "commitTransaction was sent with write concern majority",
              "commits sent: %r" % commits if commits else "no commitTransaction was sent")


def main(argv):
    if len(argv) != 2:
        print("usage: %s URI" % argv[0], file=sys.stderr)
        return 2
    uri = argv[1]
    signal.signal(signal.SIGALRM, on_watchdog)
    signal.alarm(WATCHDOG_SECONDS)

    observer = MongoClient(uri, serverSelectionTimeoutMS=10000)
    try:
        try:
            load_seed_documents(observer)
        except Exception as exc:
            tap.check(False, "load the seed's employees and events", describe(exc))
            return tap.finish()
        tap.check(True, "load the seed's employees and events")

        watcher = Watcher(observer)
        client = MongoClient(uri, event_listeners=[watcher])
        try:
            error = seed_example(client)
        finally:
            client.close()
        tap.check(error is None, "run_transaction_with_retry(update_employee_info) succeeded",
                  describe(error) if error is not None else "")

        status, n = outside_view(observer)
        tap.check(status == "Inactive", "employee 3's status is now \"Inactive\"",
                  "it is %r" % status)
        tap.check(n == 1, "reporting.events has the new event for employee 3 once",
                  "found %d" % n)
        others = {e["employee"]: e["status"] for e in observer.hr.employees.find()}
        tap.check(others == {1: "Active", 2: "Active", 3: status},
                  "employees 1 and 2 are untouched and no employee was added",
                  "employees: %r" % others)
        old = [e for e in observer.reporting.events.find(
            {"_id": {"$in": [e["_id"] for e in EVENTS]}})]
        total = observer.reporting.events.count_documents({})
        tap.check(sorted(old, key=lambda d: d["_id"]) == sorted(EVENTS, key=lambda d: d["_id"])
                  and total == len(EVENTS) + n,
                  "the seed's three events are untouched and nothing else was added",
                  "%d events in all, old ones: %r" % (total, old))

        # Atomicity: just before every commitTransaction (retries included) an outside
        # reader saw neither write; after the commit it sees both (checked above).
        if watcher.errors:
            tap.check(False, "an outside reader looked just before commitTransaction",
                      describe(watcher.errors[0]))
        else:
            tap.check(bool(watcher.at_commit)
                      and all(v == ("Active", 0) for v in watcher.at_commit),
                      "atomic: just before the commit an outside reader saw neither write",
                      "it saw (status, new events) = %r" % watcher.at_commit
                      if watcher.at_commit else "no commitTransaction was sent")
        check_wire(watcher)
    except Exception as exc:
        tap.check(False, "the example ran to its end", describe(exc))
    finally:
        observer.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
