"""A full disk and an exhausted descriptor table refuse writes with a clear error instead of
killing the server (issue 9, docs/decisions.md §36).

The disk cases run cairnd on a small tmpfs of its own (we mount it; skipped with a message
where the machine cannot mount one) with --diskFreeFloorMB, and fill it with a filler file:
writes answer 14031 OutOfDiskSpace, reads go on, removing the filler lets writes resume, and
every acknowledged write is there after a restart; a start with the disk full exits non-zero
with our message instead of a RocksDB assertion. The descriptor case runs cairnd under a low
RLIMIT_NOFILE and opens more connections than it may: writes never answer 189
PrimarySteppedDown, the server survives and serves new clients once connections close.
"""

import os
import socket
import subprocess
import uuid

import pymongo
import pytest
from pymongo.errors import OperationFailure

from cairn_rs import rs_factory  # noqa: F401 (fixture)
from cairn_server import CairnServer
from workers import wait_until

OUT_OF_DISK_SPACE = 14031
PRIMARY_STEPPED_DOWN = 189
TOO_MANY_FILES_OPEN = 264
MIB = 1 << 20
# Base footprint on a fresh dbpath: three 32 MiB raft segments (one open, two prepared) and
# RocksDB's preallocated WAL (~70 MiB): the tmpfs must hold those and the headroom.
TMPFS_MB = 384
FLOOR_MB = 96


@pytest.fixture
def tmpfs(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    rv = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % TMPFS_MB, "tmpfs", str(mnt)],
                        capture_output=True, text=True)
    if rv.returncode != 0:
        pytest.skip("cannot mount a tmpfs for the disk-full cases (needs root or CAP_SYS_ADMIN): "
                    + (rv.stderr.strip() or "mount exited %d" % rv.returncode))
    try:
        yield str(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(mnt, leave):
    """Writes a filler file so that about `leave` bytes stay free; returns its path."""
    path = os.path.join(mnt, "filler-%s" % uuid.uuid4().hex[:8])
    chunk = b"\0" * MIB
    with open(path, "wb") as f:
        while free_bytes(mnt) > leave + MIB:
            f.write(chunk)
            f.flush()
    return path


def disk_server(mnt, tmp_path, floor=FLOOR_MB):
    srv = CairnServer(os.path.join(mnt, "db"), extra_args=["--diskFreeFloorMB", str(floor)])
    srv.logpath = str(tmp_path / "cairnd.log")  # not on the small disk
    return srv


def code_of(fn):
    try:
        fn()
    except OperationFailure as exc:
        return exc.code
    return 0


def test_full_disk_refuses_writes_serves_reads_and_resumes(tmpfs, tmp_path):
    srv = disk_server(tmpfs, tmp_path)
    srv.start()
    filler = None
    try:
        c = srv.client(retryWrites=False)
        coll = c.full.t
        acked = []
        for i in range(50):
            coll.insert_one({"_id": i, "pad": "x" * 1000})
            acked.append(i)

        c.full.scratch.insert_many([{"_id": i} for i in range(10)])
        filler = fill(tmpfs, (FLOOR_MB - 16) * MIB)
        # The server measures at most every 100 ms: writes in that window may still pass (and
        # are acknowledged writes like any other); then every kind of write is refused with
        # OutOfDiskSpace, with a message that says so.
        probe = iter(range(1000, 100000))
        last = {}

        def refused():
            i = next(probe)
            try:
                coll.insert_one({"_id": i})
            except OperationFailure as exc:
                last["exc"], last["id"] = exc, i
                return True
            acked.append(i)
            return False

        wait_until(refused, 10, "writes are refused")
        exc = last["exc"]
        assert exc.code == OUT_OF_DISK_SPACE, exc.details
        assert "disk space" in str(exc), exc.details
        n_before = len(acked)
        assert code_of(lambda: coll.update_one({"_id": 1}, {"$set": {"a": 1}})) \
            == OUT_OF_DISK_SPACE
        assert code_of(lambda: coll.delete_one({"_id": 2})) == OUT_OF_DISK_SPACE
        assert code_of(lambda: c.full.other.insert_one({})) == OUT_OF_DISK_SPACE
        with c.start_session() as s:
            s.start_transaction()
            coll.insert_one({"_id": "txn"}, session=s)
            with pytest.raises(OperationFailure) as ei:
                s.commit_transaction()
            assert ei.value.code == OUT_OF_DISK_SPACE, ei.value.details

        # Dropping is how space is freed: allowed.
        c.full.drop_collection("scratch")
        assert "scratch" not in c.full.list_collection_names()

        # Reads go on, at every level that needs no new write.
        assert sorted(d["_id"] for d in coll.find({}, {"_id": 1})) == acked
        assert coll.count_documents({}) == n_before
        maj = coll.with_options(read_concern=pymongo.read_concern.ReadConcern("majority"))
        assert maj.find_one({"_id": 7})["pad"] == "x" * 1000
        assert c.admin.command("hello")["isWritablePrimary"] is True
        assert srv.alive()
        assert "disk space low" in srv.log_text()

        # Space comes back: writes resume by themselves.
        os.remove(filler)
        filler = None

        def writable():
            return code_of(lambda: coll.insert_one({"_id": "after"})) == 0

        wait_until(writable, 10, "writes resume once the filler is gone")
        acked.append("after")
        for i in range(50, 80):
            coll.insert_one({"_id": i})
            acked.append(i)
        assert "disk space back" in srv.log_text()
        c.close()

        srv.restart()
        c = srv.client()
        present = {d["_id"] for d in c.full.t.find({}, {"_id": 1})}
        assert set(acked) <= present, sorted(set(acked) - present, key=str)[:5]
        assert last["id"] not in present and "txn" not in present
        assert "other" not in c.full.list_collection_names()
        c.close()
    finally:
        if filler is not None and os.path.exists(filler):
            os.remove(filler)
        srv.stop()
    problems = srv.check_clean()
    assert not problems, problems


def test_start_with_a_full_disk_exits_with_our_message(tmpfs, tmp_path):
    srv = disk_server(tmpfs, tmp_path)
    srv.start()
    c = srv.client()
    c.start_full.t.insert_many([{"_id": i} for i in range(20)])
    c.close()
    srv.stop()
    assert not srv.check_clean()

    filler = fill(tmpfs, 8 * MIB)
    try:
        srv.start(wait=False)
        rc = srv.proc.wait(timeout=30)
        assert rc != 0
        log = srv.log_text()
        assert "not enough free disk space to start" in log, srv.log_tail()
        assert "Assertion" not in log, srv.log_tail()
    finally:
        os.remove(filler)

    # Enough to open and replay, not enough to write: it starts, serves reads and refuses
    # writes until space is freed.
    filler = fill(tmpfs, (FLOOR_MB // 2 + 64 + 16) * MIB)
    try:
        srv.start(wait=False)
        srv.wait_ready(writable=True)
        c = srv.client(retryWrites=False)
        assert c.start_full.t.count_documents({}) == 20
        assert code_of(lambda: c.start_full.t.insert_one({"_id": "low"})) == OUT_OF_DISK_SPACE
    finally:
        os.remove(filler)
    wait_until(lambda: code_of(lambda: c.start_full.t.insert_one({"_id": "later"})) == 0, 10,
               "writes resume")
    c.close()
    srv.stop()
    problems = srv.check_clean()
    assert not problems, problems


def test_descriptor_exhaustion_never_answers_stepped_down(server_factory):
    """Under a low RLIMIT_NOFILE with more clients than descriptors, large writes (which open
    new raft segments and RocksDB files) succeed or answer TooManyFilesOpen; never 189 (it used
    to, after a failed raft append, and then hung). The server caps connections below the
    limit, survives, and takes new clients once connections close."""
    srv = server_factory(start=False)
    srv.fd_limit = 200
    srv.start()
    c = srv.client(retryWrites=False, maxPoolSize=1)
    c.fds.t.insert_one({"_id": "first"})
    socks = []
    try:
        failures = 0
        while len(socks) < 400 and failures < 5:
            try:
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=0.5))
                failures = 0
            except OSError:
                failures += 1
        wait_until(lambda: "too many open connections" in srv.log_text(), 10,
                   "the server refused connections beyond its cap")
        codes = {}
        big = "y" * 500000
        for i in range(150):  # ~75 MB: more than two 32 MiB raft segments
            code = code_of(lambda: c.fds.t.insert_one({"_id": i, "big": big}))
            codes[code] = codes.get(code, 0) + 1
        assert PRIMARY_STEPPED_DOWN not in codes, codes
        assert set(codes) <= {0, TOO_MANY_FILES_OPEN}, codes
        assert codes.get(0, 0) > 0, codes
        assert srv.alive(), srv.log_tail()
    finally:
        for s in socks:
            s.close()
    c.close()
    c = srv.client(serverSelectionTimeoutMS=15000)
    c.fds.t.insert_one({"_id": "after"})
    assert c.fds.t.find_one({"_id": "after"}) == {"_id": "after"}
    assert c.admin.command("hello")["isWritablePrimary"] is True
    c.close()


def test_follower_with_a_full_disk_waits_then_catches_up(tmpfs, rs_factory):
    """A follower whose disk fills does not die: applying waits (its raft thread blocks, so
    it acknowledges nothing), the two other members go on committing, its data stays readable,
    and once space is freed it applies everything it missed."""
    rs = rs_factory(3, start=False, extra_args=["--diskFreeFloorMB", str(FLOOR_MB)])
    full = rs[2]
    full.dbpath = os.path.join(tmpfs, full.name)
    rs.start()
    cfg = rs.config()
    cfg["members"][2]["priority"] = 0  # the full member never leads
    rs.initiate(config=cfg)
    primary = rs.wait_primary()
    assert primary is not full
    c = rs.client(retryWrites=False)
    coll = c.fdisk.t
    coll.insert_many([{"_id": i, "pad": "p" * 1000} for i in range(30)])
    rs.wait_caught_up()

    filler = fill(tmpfs, (FLOOR_MB // 2 - 16) * MIB)
    try:
        # Majority writes go on through the other two members.
        for i in range(30, 60):
            coll.insert_one({"_id": i, "pad": "q" * 1000})
        wait_until(lambda: "waits for disk space" in full.log_text(), 20,
                   "the full member waits to apply")
        assert full.alive(), full.log_tail()
        # What it applied before stays readable there.
        fc = full.client(readPreference="secondaryPreferred")
        try:
            got = fc.fdisk.t.count_documents({"_id": {"$lt": 30}})
        finally:
            fc.close()
        assert got == 30
    finally:
        os.remove(filler)
    wait_until(lambda: "again:" in full.log_text(), 20, "the full member applies again")
    rs.wait_caught_up(timeout=60)
    fc = full.client(readPreference="secondaryPreferred")
    assert sorted(d["_id"] for d in fc.fdisk.t.find({}, {"_id": 1})) == list(range(60))
    fc.close()
    c.close()
