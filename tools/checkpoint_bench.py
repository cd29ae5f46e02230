#!/usr/bin/env python3
"""tools/checkpoint_bench.py: how long a new member takes to install a checkpoint.

Starts a local set of --members members plus one spare with tests/integration/cairn_rs.py,
inserts --docs documents of --doc-size bytes (batches of 1000, w:"majority"), adds the spare with
replSetReconfig and waits until it is SECONDARY holding every document. The set runs with a
small raft trailing window so that the new member cannot catch up from the log. Prints what the
new member's serverStatus reports of its install (repl.initialSync: bytes, keys, milliseconds)
and the time from the reconfig to SECONDARY with every document.

Usage: .venv/bin/python tools/checkpoint_bench.py [--cairnd PATH] [--docs 100000]
       [--doc-size 100] [--members 3]
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import pymongo  # noqa: E402

from cairn_rs import ReplicaSet, wait_for  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cairnd", default=os.path.join(HERE, "..", "build", "src", "server",
                                                     "cairnd"))
    ap.add_argument("--docs", type=int, default=100000)
    ap.add_argument("--doc-size", type=int, default=100)
    ap.add_argument("--members", type=int, default=3)
    args = ap.parse_args()

    base = tempfile.mkdtemp(prefix="cairn-ckpt-bench-")
    rs = ReplicaSet(args.members + 1, base, binary=os.path.abspath(args.cairnd),
                    extra_args=["--raftSnapshotThreshold", "64", "--raftSnapshotTrailing", "32"])
    rs.start()
    first = list(range(args.members))
    reply = rs[0].command({"replSetInitiate": rs.config(members=first)}, timeout=15)
    if reply.get("ok") != 1:
        raise SystemExit("replSetInitiate: %r" % reply)
    rs.wait_healthy(members=first)
    new = rs[args.members]
    uri = "mongodb://%s/?replicaSet=%s" % (",".join(rs.hosts[:args.members]), rs.set_name)
    pad = "x" * max(0, args.doc_size - 40)
    try:
        with pymongo.MongoClient(uri, w="majority") as c:
            coll = c.bench.ckpt
            t = time.monotonic()
            for i in range(0, args.docs, 1000):
                coll.insert_many([{"_id": j, "pad": pad} for j in range(i, min(args.docs,
                                                                              i + 1000))])
            print("inserted %d documents of ~%d bytes in %.1f s"
                  % (args.docs, args.doc_size, time.monotonic() - t), flush=True)
            cfg = c.admin.command("replSetGetConfig")["config"]
            cfg["version"] += 1
            cfg["members"].append({"_id": new.index, "host": new.host})
            t = time.monotonic()
            c.admin.command("replSetReconfig", cfg)

            def caught_up():
                if new.hello().get("secondary") is not True:
                    return False
                with new.client(readPreference="secondaryPreferred") as d:
                    return d.bench.ckpt.estimated_document_count() == args.docs

            wait_for(caught_up, 600, "the new member to hold every document", interval=0.1)
            took = time.monotonic() - t
        st = new.command({"serverStatus": 1})["repl"]["initialSync"]
        print("checkpoint installs %d: %d bytes, %d keys, %d ms; reconfig to SECONDARY with "
              "every document: %.2f s"
              % (st["checkpointInstalls"], st["lastBytes"], st["lastKeys"], st["lastMillis"],
                 took))
        for line in new.log_grep("checkpoint installed from"):
            print("  " + line)
    finally:
        problems = rs.stop_all()
        if problems:
            print(problems)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
