"""A sort that spilled many runs (allowDiskUse) keeps them in one file, so an open spilled
cursor holds one descriptor, not one per run: under a low RLIMIT_NOFILE it cannot take the
descriptors the raft log needs, which would refuse every write with 264 TooManyFilesOpen while
the cursor lives (docs/decisions.md §31e, §31f)."""

import os

DOCS = 400
CAP = 4096  # bytes held before a run is written: ~2 documents a run, ~200 runs


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_spilled_cursor_holds_one_descriptor_and_writes_go_on(server_factory):
    srv = server_factory(start=False)
    srv.fd_limit = 200
    srv.start()
    c = srv.client(retryWrites=False, maxPoolSize=2)
    try:
        c.admin.command({"setParameter": 1, "internalQueryMaxBlockingSortMemoryUsageBytes": CAP})
        coll = c.fds.t
        coll.insert_many([{"_id": i, "r": (i * 7919) % DOCS, "pad": "p" * 1500}
                          for i in range(DOCS)])
        before = open_fds(srv.proc.pid)
        cur = coll.find({}, {"r": 1}).sort("r", 1).allow_disk_use(True).batch_size(10)
        first = [next(cur)["r"] for _ in range(10)]
        assert first == list(range(10))
        held = open_fds(srv.proc.pid) - before
        assert held <= 2, "the spilled cursor holds %d descriptors" % held
        # Writes go on while the cursor is open.
        for i in range(20):
            coll.insert_one({"_id": "w%d" % i, "r": DOCS + i})
        rest = [d["r"] for d in cur]
        assert first + rest == list(range(DOCS))  # the cursor reads its snapshot
        assert open_fds(srv.proc.pid) <= before + 1
    finally:
        c.close()
