"""Spilled sorts (allowDiskUse) and the descriptor table: a sort's runs share one file, so an
open spilled cursor holds one descriptor however many runs it wrote, and at most
RLIMIT_NOFILE/16 sorts hold a spill file at once; one more answers 264 TooManyFilesOpen. So
spilled cursors, which live until closed or reaped, cannot take the descriptors RocksDB and
the raft log need: writes go on (they used to be refused with 264 while such cursors lived;
docs/decisions.md §40)."""

import os

import pytest
from pymongo.errors import OperationFailure

DOCS = 400
CAP = 4096  # bytes held before a run is written: ~2 documents a run, ~200 runs
FD_LIMIT = 200  # so at most 12 spill files
TOO_MANY_FILES_OPEN = 264


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


@pytest.fixture
def fd_server(server_factory):
    srv = server_factory(start=False)
    srv.fd_limit = FD_LIMIT
    srv.start()
    c = srv.client(retryWrites=False, maxPoolSize=2)
    c.admin.command({"setParameter": 1, "internalQueryMaxBlockingSortMemoryUsageBytes": CAP})
    c.fds.t.insert_many([{"_id": i, "r": (i * 7919) % DOCS, "pad": "p" * 1500}
                         for i in range(DOCS)])
    yield srv, c
    c.close()


def spilled_cursor(coll):
    cur = coll.find({}, {"r": 1}).sort("r", 1).allow_disk_use(True).batch_size(10)
    first = [next(cur)["r"] for _ in range(10)]
    assert first == list(range(10))
    return cur, first


def test_spilled_cursor_holds_one_descriptor(fd_server):
    srv, c = fd_server
    coll = c.fds.t
    before = open_fds(srv.proc.pid)
    cur, first = spilled_cursor(coll)
    held = open_fds(srv.proc.pid) - before
    assert held <= 2, "the spilled cursor holds %d descriptors" % held
    rest = [d["r"] for d in cur]
    assert first + rest == list(range(DOCS))
    assert open_fds(srv.proc.pid) <= before + 1


def test_spill_files_are_capped_and_writes_go_on(fd_server):
    srv, c = fd_server
    coll = c.fds.t
    cursors = []
    with pytest.raises(OperationFailure) as ei:
        while len(cursors) < 400:
            cursors.append(spilled_cursor(coll)[0])
    assert ei.value.code == TOO_MANY_FILES_OPEN, ei.value.details
    assert "spill" in str(ei.value) and "RLIMIT_NOFILE/16" in str(ei.value), ei.value.details
    assert len(cursors) == FD_LIMIT // 16, len(cursors)
    # The descriptors the storage needs are still there: large writes open new raft segments
    # and RocksDB files.
    big = "y" * 500000
    for i in range(150):  # ~75 MB: more than two 32 MiB raft segments
        c.fds.w.insert_one({"_id": i, "big": big})
    # Closing a spilled cursor lets another sort spill.
    cursors.pop().close()
    cursors.append(spilled_cursor(coll)[0])
    for cur in cursors:
        cur.close()
    assert srv.alive()
