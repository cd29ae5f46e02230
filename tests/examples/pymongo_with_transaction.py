#!/usr/bin/env python3
"""tests/examples/pymongo_with_transaction.py: the PyMongo guide's with_transaction example.

Usage: pymongo_with_transaction.py URI

Runs, against the replica set named by URI, the example of the PyMongo "Transactions" guide
(sample_restaurants.restaurants: a callback inserts "PyMongo Pizza" and "PyMongo Burger"
through restaurants_collection.with_options(write_concern=WriteConcern("majority"),
read_concern=ReadConcern("local")), and session.with_transaction(insert_documents) runs it),
as the guide writes it, then checks that both documents were committed. A second run uses
the same collection and options with a callback that raises after its two inserts: the
exception must come out of with_transaction, and the aborted transaction must leave no trace.

The guide assumes the Atlas sample data set is loaded; two of its sample_restaurants
documents stand in for it (the collection exists before the transaction, as there).

Prints "ok - ..." / "not ok - ...: why" per check, then "N passed, N failed"; exits 1 if any
check failed.
"""

import os
import signal
import sys

from pymongo import MongoClient
from pymongo.errors import ConnectionFailure, OperationFailure
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

WATCHDOG_SECONDS = 180  # with_transaction gives up retrying after 120 s


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

SAMPLE_RESTAURANTS = [
    {"name": "Morris Park Bake Shop", "cuisine": "Bakery", "borough": "Bronx",
     "restaurant_id": "30075445"},
    {"name": "Wendy'S", "cuisine": "Hamburgers", "borough": "Brooklyn",
     "restaurant_id": "30112340"},
]


def load_sample_data(uri):
    """Stands in for the Atlas sample data set: sample_restaurants.restaurants, fresh."""
    with MongoClient(uri) as setup:
        coll = setup["sample_restaurants"].get_collection(
            "restaurants", write_concern=WriteConcern("majority"))
        coll.drop()
        coll.insert_many([dict(d) for d in SAMPLE_RESTAURANTS])


def guide_example(uri):
    """The guide's example, unchanged but for the connection string and the prints (TAP
    comments here). Returns the exception it caught, or None when it printed success."""
    caught = None

    # Establishes a connection to the MongoDB server
    client = MongoClient(uri)

    # Defines the database and collection
    restaurants_db = client["sample_restaurants"]
    restaurants_collection = restaurants_db["restaurants"]

    # Function performs the transaction
    def insert_documents(session):
        restaurants_collection_with_session = restaurants_collection.with_options(
            write_concern=WriteConcern("majority"),
            read_concern=ReadConcern("local")
        )

        # Inserts documents within the transaction
        restaurants_collection_with_session.insert_one(
            {"name": "PyMongo Pizza", "cuisine": "Pizza"}, session=session
        )
        restaurants_collection_with_session.insert_one(
            {"name": "PyMongo Burger", "cuisine": "Burger"}, session=session
        )

    # Starts a client session
    with client.start_session() as session:
        try:
            # Uses the with_transaction method to start a transaction, execute the callback,
            # and commit (or abort on error).
            session.with_transaction(insert_documents)
            print("# Transaction succeeded")
        except (ConnectionFailure, OperationFailure) as e:
            print(f"# Transaction failed: {e}")
            caught = e

    # Closes the client connection
    client.close()
    return caught


class CallbackFailed(Exception):
    """Raised by the second run's callback after its writes."""


def failing_example(uri, observer):
    """The same collection, options and session use, with a callback that raises after its
    two inserts. Returns (exception out of with_transaction, what the callback saw)."""
    seen = {}
    client = MongoClient(uri)
    restaurants_collection = client["sample_restaurants"]["restaurants"]

    def insert_documents_then_fail(session):
        restaurants_collection_with_session = restaurants_collection.with_options(
            write_concern=WriteConcern("majority"),
            read_concern=ReadConcern("local")
        )
        restaurants_collection_with_session.insert_one(
            {"name": "PyMongo Tacos", "cuisine": "Mexican"}, session=session
        )
        restaurants_collection_with_session.insert_one(
            {"name": "PyMongo Sushi", "cuisine": "Japanese"}, session=session
        )
        names = {"name": {"$in": ["PyMongo Tacos", "PyMongo Sushi"]}}
        # Inside the transaction its own writes are visible; outside, not yet.
        seen["inside"] = restaurants_collection_with_session.count_documents(
            names, session=session)
        seen["outside"] = observer.count_documents(names)
        raise CallbackFailed("the callback failed after its writes")

    caught = None
    with client.start_session() as session:
        try:
            session.with_transaction(insert_documents_then_fail)
        except Exception as e:  # the callback's own exception is expected
            caught = e
    client.close()
    return caught, seen


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


def main(argv):
    if len(argv) != 2:
        print("usage: %s URI" % argv[0], file=sys.stderr)
        return 2
    uri = argv[1]
    signal.signal(signal.SIGALRM, on_watchdog)
    signal.alarm(WATCHDOG_SECONDS)

    try:
        load_sample_data(uri)
    except Exception as exc:
        tap.check(False, "load the sample restaurants", describe(exc))
        return tap.finish()
    tap.check(True, "load the sample restaurants")

    verify = MongoClient(uri, serverSelectionTimeoutMS=10000)
    restaurants = verify["sample_restaurants"]["restaurants"]
    try:
        # Run 1: the guide's example.
        error = guide_example(uri)
        tap.check(error is None, "the guide's with_transaction example committed",
                  describe(error) if error is not None else "")
        for name in ("PyMongo Pizza", "PyMongo Burger"):
            n = restaurants.count_documents({"name": name})
            tap.check(n == 1, "%r is in sample_restaurants.restaurants once" % name,
                      "found %d" % n)
        n = restaurants.count_documents({"restaurant_id": {"$exists": True}})
        tap.check(n == len(SAMPLE_RESTAURANTS), "the sample restaurants are untouched",
                  "found %d of %d" % (n, len(SAMPLE_RESTAURANTS)))

        # Run 2: the callback raises after its writes; the abort must leave no trace.
        before = restaurants.count_documents({})
        error, seen = failing_example(uri, restaurants)
        tap.check(isinstance(error, CallbackFailed),
                  "with_transaction aborted and re-raised the callback's exception",
                  "it raised %s" % describe(error) if error is not None else "it raised nothing")
        tap.check(seen.get("inside") == 2,
                  "inside the transaction, the callback saw its own two inserts",
                  "saw %s" % seen.get("inside", "nothing (the callback did not get there)"))
        tap.check(seen.get("outside") == 0,
                  "outside the open transaction, its inserts were invisible",
                  "an outside reader saw %s" % seen.get("outside",
                                                         "nothing (the callback did not get there)"))
        n = restaurants.count_documents({"name": {"$in": ["PyMongo Tacos", "PyMongo Sushi"]}})
        tap.check(n == 0, "the aborted transaction's inserts are not in the collection",
                  "found %d" % n)
        after = restaurants.count_documents({})
        tap.check(after == before, "the aborted transaction left the collection as it was",
                  "%d documents before, %d after" % (before, after))
    except Exception as exc:
        tap.check(False, "the example ran to its end", describe(exc))
    finally:
        verify.close()
    return tap.finish()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
