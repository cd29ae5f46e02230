#!/usr/bin/env python3
"""docker/failover_figures.py: the Docker deployment's figures, measured on a fresh compose
project of docker/compose.yml (removed at the end, volumes included):

  - the image size (docker/build-image.sh is run first unless --no-build);
  - the time from `docker-compose up -d` to a writable primary;
  - --kills times: `docker kill` the primary while one host driver does retryable w:"majority"
    inserts without pause; the failover time is from `docker kill` returning to the first
    insert sent after it and acknowledged. The killed member is started again and must be
    healthy before the next kill. At the end every acknowledged insert must be in the final
    state exactly once (exit 1 otherwise).

Usage: .venv/bin/python docker/failover_figures.py [--kills 10] [--no-build] [--project P]
Ports are chosen free in 20000-29999 (not scripts/run-local.sh's); member names resolve to
127.0.0.1 inside this process only.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "docker"))

from pymongo.read_concern import ReadConcern  # noqa: E402

from compose_set import (REPO, SERVICES, ComposeSet, Writer, docker_engine_problem,  # noqa: E402
                         free_ports, host_resolves_member_names, run, wait_for)


def healthy(cs, timeout=120):
    wait_for(cs.writable_primary, timeout, "a writable primary")
    for s in SERVICES:
        wait_for(lambda s=s: cs.health(s)[0] == "healthy", timeout, "%s healthy" % s, 0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--project", default="cairnfig%d" % os.getpid())
    ap.add_argument("--image", default="cairn:latest")
    args = ap.parse_args()

    problem = docker_engine_problem()
    if problem:
        sys.exit("failover_figures: %s" % problem)
    if not args.no_build:
        run(["bash", os.path.join(REPO, "docker", "build-image.sh")], timeout=1200,
            env=dict(os.environ, CAIRN_IMAGE=args.image))
    size = json.loads(run(["docker", "image", "inspect", args.image]))[0]["Size"]
    print("image %s: %.1f MiB" % (args.image, size / 2**20), flush=True)

    host_resolves_member_names()
    cs = ComposeSet(args.project, free_ports(3, os.getpid()), args.image)
    cs.down(volumes=True)
    lost = []
    try:
        t0 = time.monotonic()
        cs.up()
        wait_for(cs.writable_primary, 120, "a writable primary after up -d", 0.05)
        print("up -d to a writable primary: %.2f s" % (time.monotonic() - t0), flush=True)
        healthy(cs)

        w = Writer(cs)
        w.start()
        gaps = []
        try:
            for k in range(args.kills):
                wait_for(lambda: len(w.acked_after(time.monotonic() - 1)) > 0, 60,
                         "writes before kill %d" % (k + 1))
                old = cs.writable_primary()
                cid = cs.container(old)
                run(["docker", "kill", cid])
                t_kill = time.monotonic()
                wait_for(lambda: w.acked_after(t_kill), 60, "a write after kill %d" % (k + 1),
                         0.01)
                with w.lock:
                    first = min(at for sent, at, _ in w.acks if sent > t_kill)
                gaps.append(first - t_kill)
                new = cs.writable_primary()
                print("kill %2d: %s killed, first majority write after %.3f s (new primary %s)"
                      % (k + 1, old, first - t_kill, new), flush=True)
                cs.start(old)
                healthy(cs)
        finally:
            w.stop.set()
            w.join(30)
            w.client.close()
        acked = [i for _, _, i in w.acks]
        c = cs.client()
        try:
            db = c.get_database("dockertest", read_concern=ReadConcern("majority"))
            stored = [d["_id"] for d in db.failover.find({}, {"_id": 1})]
        finally:
            c.close()
        lost = sorted(set(acked) - set(stored))
        dup = len(stored) - len(set(stored))
        print("failover over %d kills: p50 %.3f s, mean %.3f s, max %.3f s, min %.3f s" % (
            len(gaps), statistics.median(gaps), statistics.mean(gaps), max(gaps), min(gaps)))
        print("writes: %d acknowledged, %d errors, %d lost, %d duplicated" % (
            len(acked), len(w.errors), len(lost), dup))
    finally:
        cs.down(volumes=True)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
