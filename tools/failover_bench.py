#!/usr/bin/env python3
"""tools/failover_bench.py: how long a 3-member set is unwritable after kill -9 of its primary.

Starts a local set with tests/integration/cairn_rs.py, runs one pymongo writer doing
w:"majority" retryable inserts without pause, and --kills times: kill -9 the primary, record the
time from the kill to the first insert acknowledged after it, restart the killed member, wait
until every member caught up. Prints each gap and p50/max, and checks at the end that every
acknowledged insert is on the final primary exactly once.

Usage: .venv/bin/python tools/failover_bench.py [--cairnd PATH] [--kills 20] [--members 3]
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import pymongo  # noqa: E402
from pymongo.errors import PyMongoError  # noqa: E402

from cairn_rs import ReplicaSet  # noqa: E402


class Writer(threading.Thread):
    """Inserts _id 0, 1, 2, ... at w:majority; records (sent, acknowledged, id) of each ack
    (monotonic times; an insert counts after a kill only if it was sent after it)."""

    def __init__(self, uri):
        super().__init__(daemon=True)
        self.client = pymongo.MongoClient(uri, w="majority", serverSelectionTimeoutMS=30000,
                                          socketTimeoutMS=10000)
        self.acks = []
        self.errors = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        coll = self.client.bench.failover
        i = 0
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                coll.insert_one({"_id": i})
                with self.lock:
                    self.acks.append((sent, time.monotonic(), i))
                i += 1
            except PyMongoError:
                self.errors += 1
                time.sleep(0.01)

    def first_ack_after(self, t, timeout=60):
        """The time of the first acknowledgement after `t` (waits for it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                later = [at for sent, at, _ in self.acks[-200:] if sent > t]
            if later:
                return later[0]
            time.sleep(0.005)
        raise RuntimeError("no write acknowledged within %ds of the kill" % timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cairnd", default=os.path.join(HERE, "..", "build", "src", "server",
                                                     "cairnd"))
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--members", type=int, default=3)
    args = ap.parse_args()

    base = tempfile.mkdtemp(prefix="cairn-failover-")
    rs = ReplicaSet(args.members, base, binary=os.path.abspath(args.cairnd))
    rs.start()
    rs.initiate()
    w = Writer(rs.uri)
    w.start()
    gaps = []
    try:
        for k in range(args.kills):
            while len(w.acks) < 50 * (k + 1):
                time.sleep(0.01)
            p = rs.wait_primary()
            t = time.monotonic()
            p.kill9()
            first = w.first_ack_after(t)
            gaps.append(first - t)
            print("kill %2d: %s killed, first majority write %.0f ms later" %
                  (k + 1, p.name, (first - t) * 1000), flush=True)
            p.start()
            rs.wait_caught_up(timeout=60)
    finally:
        w.stop.set()
        w.join(30)
    acked = [i for _, _, i in w.acks]
    with rs.client() as c:
        coll = c.get_database("bench", read_concern=pymongo.read_concern.ReadConcern(
            "majority")).failover
        present = [d["_id"] for d in coll.find({}, {"_id": 1})]
    missing = set(acked) - set(present)
    dup = len(present) - len(set(present))
    for m in rs:
        m.stop()
    ms = sorted(g * 1000 for g in gaps)
    print("kills: %d  gap p50 %.0f ms  max %.0f ms  (min %.0f)  acknowledged %d  "
          "driver errors %d  missing %d  duplicated %d"
          % (len(ms), statistics.median(ms), ms[-1], ms[0], len(acked), w.errors,
             len(missing), dup))
    return 1 if missing or dup else 0


if __name__ == "__main__":
    sys.exit(main())
