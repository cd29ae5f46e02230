"""A sort or $group that spills to <dbpath>/_tmp (allowDiskUse) does not take the data
directory's free space below the free-space floor (--diskFreeFloorMB, docs/decisions.md §36):
past it the spill is refused with 14031 OutOfDiskSpace, as mongod refuses to spill below
internalQuerySpillingMinAvailableDiskSpaceBytes. Otherwise a read could make the member refuse
writes, hold applying, or take RocksDB to ENOSPC (which it does not survive)."""

import os

import pytest
from pymongo.errors import OperationFailure

from test_disk_full import FLOOR_MB, MIB, OUT_OF_DISK_SPACE, disk_server, fill, free_bytes
from test_disk_full import tmpfs  # noqa: F401 (fixture)

DOCS = 1000
PAD = 16 * 1024  # 16 MB in all: more than the margin left above the floor


def test_spill_refused_below_the_floor_then_allowed(tmpfs, tmp_path):  # noqa: F811
    srv = disk_server(tmpfs, tmp_path)
    srv.start()
    filler = None
    try:
        c = srv.client(retryWrites=False)
        c.admin.command({"setParameter": 1,
                         "internalQueryMaxBlockingSortMemoryUsageBytes": 1 * MIB})
        coll = c.spill.t
        for b in range(0, DOCS, 100):
            coll.insert_many([{"_id": i, "r": (i * 7919) % DOCS, "pad": "x" * PAD}
                              for i in range(b, b + 100)])
        lowest = [float("inf")]
        filler = fill(tmpfs, (FLOOR_MB + 8) * MIB)
        floor = FLOOR_MB * MIB

        with pytest.raises(OperationFailure) as ei:
            list(coll.find({}, {"r": 1}).sort("r", 1).allow_disk_use(True))
        assert ei.value.code == OUT_OF_DISK_SPACE, ei.value.details
        assert "spill" in str(ei.value), ei.value.details
        with pytest.raises(OperationFailure) as ei:
            list(coll.aggregate([{"$sort": {"r": 1}}, {"$project": {"r": 1}}],
                                allowDiskUse=True))
        assert ei.value.code == OUT_OF_DISK_SPACE, ei.value.details
        lowest[0] = min(lowest[0], free_bytes(tmpfs))
        assert lowest[0] >= floor, (lowest[0] // MIB, FLOOR_MB)
        assert os.listdir(os.path.join(srv.dbpath, "_tmp")) == []
        # Writes were never refused because of the sort.
        coll.insert_one({"_id": "after", "r": -1})

        # With room again, the same sort spills and answers in order.
        os.remove(filler)
        filler = None
        got = [d["r"] for d in coll.find({}, {"r": 1}).sort("r", 1).allow_disk_use(True)]
        assert got == [-1] + list(range(DOCS))
        c.close()
    finally:
        if filler is not None and os.path.exists(filler):
            os.remove(filler)
        srv.stop()
    problems = srv.check_clean()
    assert not problems, problems
