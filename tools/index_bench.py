#!/usr/bin/env python3
"""tools/index_bench.py: what secondary indexes cost and buy.

1. Insert throughput into collections with 0, 1 and 3 secondary indexes: --clients threads
   each insert --batch-size documents per insert_many (or one per insert_one with
   --batch-size 1) at the given write concern, for --insert-docs documents in all.
2. Query latency on --docs documents: equality ({k: v}, ~10 matches) and range
   ({r: {$gte: x, $lt: x + 100}}, 100 matches) finds, first without any index (collection
   scans) and then with indexes on k and r; p50/p95 per query, plus the index build time.

With --cairn-bench PATH (tools/cairn-bench, libmongoc), part 1 runs that program instead:
   `cairn-bench --indexes K --clients N --seconds S --w W` for K in --index-counts (default
   0,1,5), one insert per round trip from N client threads, so that the Python client is not
   the bottleneck; it prints inserts/s and latency percentiles.

Starts a single-member set (tests/integration/cairn_server.py) or a 3-member set
(--members 3, cairn_rs.py) in a temporary directory. Numbers depend on the machine and its
load: run it on an idle machine.

Usage: .venv/bin/python tools/index_bench.py [--cairnd PATH] [--docs 1000000]
       [--insert-docs 50000] [--clients 16] [--batch-size 1] [--members 1] [--w majority]
       [--cairn-bench build/tools/cairn-bench [--bench-seconds 8] [--index-counts 0,1,5]]
       [--skip-queries]
e.g. the issue's figures: --members 3 --clients 64 --cairn-bench build/tools/cairn-bench
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import pymongo  # noqa: E402
from pymongo import WriteConcern  # noqa: E402

from cairn_rs import ReplicaSet  # noqa: E402
from cairn_server import CairnServer  # noqa: E402


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def insert_throughput(uri, n_indexes, total, clients, batch, w):
    c = pymongo.MongoClient(uri)
    coll = c.bench["ins%d" % n_indexes]
    coll.drop()
    for f in ["a", "b", "c"][:n_indexes]:
        coll.create_index(f)
    per = total // clients
    start_evt = threading.Event()
    errors = []

    def worker(wi):
        cl = pymongo.MongoClient(uri)
        co = cl.bench[coll.name].with_options(write_concern=WriteConcern(w))
        rng = random.Random(wi)
        try:
            start_evt.wait()
            done = 0
            while done < per:
                n = min(batch, per - done)
                docs = [{"a": rng.randrange(10**6), "b": "s%d" % rng.randrange(10**5),
                         "c": [rng.randrange(100), rng.randrange(100)], "pad": "x" * 50}
                        for _ in range(n)]
                if n == 1:
                    co.insert_one(docs[0])
                else:
                    co.insert_many(docs, ordered=False)
                done += n
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            cl.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in ts:
        t.start()
    t0 = time.monotonic()
    start_evt.set()
    for t in ts:
        t.join()
    dt = time.monotonic() - t0
    if errors:
        raise errors[0]
    n = coll.count_documents({})
    v = c.bench.command("validate", coll.name)
    c.close()
    assert v["valid"], v
    return n / dt, n


def c_bench_throughput(binary, uri, n_indexes, clients, seconds, w):
    """One tools/cairn-bench run; returns its table's data line (and prints its output)."""
    out = subprocess.run([binary, "--uri", uri, "--clients", str(clients), "--seconds",
                          str(seconds), "--w", str(w), "--indexes", str(n_indexes)],
                         capture_output=True, text=True, timeout=seconds + 300)
    sys.stdout.write(out.stdout)
    sys.stderr.write(out.stderr)
    if out.returncode != 0:
        raise RuntimeError("cairn-bench exited %d" % out.returncode)
    return out.stdout.strip().splitlines()[-1]


def load(coll, n, rng):
    batch = []
    for i in range(n):
        batch.append({"_id": i, "k": rng.randrange(n // 10), "r": i, "pad": "y" * 40})
        if len(batch) == 5000:
            coll.insert_many(batch, ordered=False)
            batch = []
    if batch:
        coll.insert_many(batch, ordered=False)


def time_queries(coll, queries):
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        n = sum(1 for _ in coll.find(q, {"_id": 1}))
        lat.append((time.perf_counter() - t0) * 1000.0)
        assert n > 0, q
    return lat


def query_latency(uri, n_docs, n_collscan, n_indexed):
    c = pymongo.MongoClient(uri)
    coll = c.bench.q
    coll.drop()
    rng = random.Random(7)
    t0 = time.monotonic()
    load(coll, n_docs, rng)
    print("loaded %d documents in %.1f s" % (n_docs, time.monotonic() - t0), flush=True)
    eq = [{"k": rng.randrange(n_docs // 10)} for _ in range(max(n_collscan, n_indexed))]
    rg = []
    for _ in range(max(n_collscan, n_indexed)):
        x = rng.randrange(n_docs - 100)
        rg.append({"r": {"$gte": x, "$lt": x + 100}})
    out = {}
    out["eq_collscan"] = time_queries(coll, eq[:n_collscan])
    out["range_collscan"] = time_queries(coll, rg[:n_collscan])
    t0 = time.monotonic()
    coll.create_index("k")
    out["build_k_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    coll.create_index("r")
    out["build_r_s"] = time.monotonic() - t0
    plan = coll.find(eq[0]).explain()["queryPlanner"]["winningPlan"]
    assert plan["inputStage"]["stage"] == "IXSCAN", plan
    out["eq_index"] = time_queries(coll, eq[:n_indexed])
    out["range_index"] = time_queries(coll, rg[:n_indexed])
    c.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cairnd", default=os.path.join(HERE, "..", "build", "src", "server",
                                                     "cairnd"))
    ap.add_argument("--docs", type=int, default=1000000)
    ap.add_argument("--insert-docs", type=int, default=50000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--members", type=int, default=1, choices=[1, 3])
    ap.add_argument("--w", default="majority")
    ap.add_argument("--collscan-queries", type=int, default=10)
    ap.add_argument("--indexed-queries", type=int, default=500)
    ap.add_argument("--skip-queries", action="store_true")
    ap.add_argument("--cairn-bench", help="tools/cairn-bench binary for the insert figures")
    ap.add_argument("--bench-seconds", type=float, default=8.0)
    ap.add_argument("--index-counts", default=None,
                    help="secondary index counts for the insert figures (default 0,1,3; "
                         "0,1,5 with --cairn-bench, which takes up to 5)")
    args = ap.parse_args()
    w = int(args.w) if args.w.isdigit() else args.w

    base = tempfile.mkdtemp(prefix="cairn-index-bench-")
    if args.members == 1:
        srv = CairnServer(os.path.join(base, "db"), binary=args.cairnd)
        srv.start()
        uri, stop = srv.uri, srv.stop
    else:
        rs = ReplicaSet(args.members, base, binary=args.cairnd)
        rs.start_and_initiate()
        uri, stop = rs.uri, rs.stop_all
    try:
        counts = args.index_counts or ("0,1,5" if args.cairn_bench else "0,1,3")
        counts = [int(k) for k in counts.split(",")]
        if max(counts) > (5 if args.cairn_bench else 3):
            ap.error("--index-counts: at most 5 indexes with --cairn-bench, 3 without")
        if args.cairn_bench:
            print("insert throughput (cairn-bench), %d clients, %g s runs, w=%s, %d member(s):"
                  % (args.clients, args.bench_seconds, args.w, args.members), flush=True)
            lines = [(k, c_bench_throughput(args.cairn_bench, uri, k, args.clients,
                                            args.bench_seconds, args.w)) for k in counts]
            for k, line in lines:
                print("  %d secondary indexes: %s" % (k, line), flush=True)
        else:
            print("insert throughput, %d clients, batch %d, w=%s, %d member(s):"
                  % (args.clients, args.batch_size, args.w, args.members), flush=True)
            for k in counts:
                rate, n = insert_throughput(uri, k, args.insert_docs, args.clients,
                                            args.batch_size, w)
                print("  %d secondary indexes: %8.0f docs/s (%d docs)" % (k, rate, n),
                      flush=True)
        if not args.skip_queries:
            r = query_latency(uri, args.docs, args.collscan_queries, args.indexed_queries)
            print("index builds on %d documents: k %.1f s, r %.1f s"
                  % (args.docs, r["build_k_s"], r["build_r_s"]))
            for name in ("eq_collscan", "eq_index", "range_collscan", "range_index"):
                xs = r[name]
                print("  %-15s p50 %9.3f ms  p95 %9.3f ms  mean %9.3f ms  (%d queries)"
                      % (name, pct(xs, 0.5), pct(xs, 0.95), statistics.mean(xs), len(xs)))
    finally:
        stop()


if __name__ == "__main__":
    main()
