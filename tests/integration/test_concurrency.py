"""Many clients at once: read-modify-write operators stay atomic, _id stays unique, and every
acknowledged insert is visible exactly once."""

import threading

from pymongo.errors import DuplicateKeyError

from workers import Workers


def run_threads(n, fn):
    """Runs fn(0) .. fn(n-1) on n threads; fails if one hangs or raises anything."""
    workers = Workers()
    for k in range(n):
        workers.start(fn, k, name="client-%d" % k)
    workers.finish(timeout=120)


def test_concurrent_inc_is_atomic(server, coll):
    coll.insert_one({"_id": "counter", "n": 0, "log": []})

    def work(k):
        c = server.client()
        try:
            col = c[coll.database.name][coll.name]
            for i in range(100):
                col.update_one({"_id": "counter"}, {"$inc": {"n": 1}, "$push": {"log": k}})
        finally:
            c.close()

    run_threads(8, work)
    d = coll.find_one({"_id": "counter"})
    assert d["n"] == 800
    assert len(d["log"]) == 800
    assert sorted(set(d["log"])) == list(range(8))


def test_concurrent_find_one_and_update_hands_out_unique_values(server, coll):
    coll.insert_one({"_id": "seq", "v": 0})
    got = [[] for _ in range(6)]

    def work(k):
        c = server.client()
        try:
            col = c[coll.database.name][coll.name]
            for _ in range(50):
                d = col.find_one_and_update({"_id": "seq"}, {"$inc": {"v": 1}},
                                            return_document=True)
                got[k].append(d["v"])
        finally:
            c.close()

    run_threads(6, work)
    values = sorted(v for g in got for v in g)
    assert values == list(range(1, 301))


def test_concurrent_duplicate_ids(server, coll):
    wins = [0] * 6
    dups = [0] * 6

    def work(k):
        c = server.client()
        try:
            col = c[coll.database.name][coll.name]
            for i in range(100):
                try:
                    col.insert_one({"_id": i, "by": k})
                    wins[k] += 1
                except DuplicateKeyError:
                    dups[k] += 1
        finally:
            c.close()

    run_threads(6, work)
    assert sum(wins) == 100
    assert sum(dups) == 500
    assert coll.count_documents({}) == 100
    assert sorted(d["_id"] for d in coll.find()) == list(range(100))


def test_concurrent_inserts_and_reads(server, coll):
    def writer(k):
        c = server.client()
        try:
            col = c[coll.database.name][coll.name]
            col.insert_many([{"_id": "%d-%d" % (k, i), "k": k} for i in range(300)])
            for i in range(50):
                col.insert_one({"_id": "%d-single-%d" % (k, i), "k": k})
        finally:
            c.close()

    def reader(k):
        c = server.client()
        try:
            col = c[coll.database.name][coll.name]
            for _ in range(20):
                ids = [d["_id"] for d in col.find({}, {"_id": 1})]
                assert len(ids) == len(set(ids))
        finally:
            c.close()

    run_threads(8, lambda k: writer(k) if k < 4 else reader(k))
    assert coll.count_documents({}) == 4 * 350
    for k in range(4):
        assert coll.count_documents({"k": k}) == 350


def test_large_single_batch(coll):
    r = coll.insert_many([{"_id": i, "v": i % 10} for i in range(20000)])
    assert len(r.inserted_ids) == 20000
    assert coll.count_documents({"v": 3}) == 2000
    r = coll.update_many({"v": 3}, {"$set": {"v": -3}})
    assert r.modified_count == 2000
    assert coll.delete_many({"v": -3}).deleted_count == 2000
    assert coll.estimated_document_count() == 18000


def test_busy_workers_do_not_delay_hello(server_factory):
    """With one base worker and three slow scans running, hello must be answered while the
    scans still run: the worker pool grows instead of queueing the monitor's hello behind
    them (a queued hello made drivers' monitors see seconds of latency, and a long write
    holding the write lock could make them declare the server down)."""
    import socket
    import struct
    import time

    import bson

    from rawwire import read_reply

    srv = server_factory(extra_args=["--workers", "1"])
    c = srv.client()
    c.busy.docs.insert_many([{"_id": i, "x": (i * 7919) % 60013, "pad": "p" * 400}
                             for i in range(60000)])
    events = []
    lock = threading.Lock()

    def scan(k):
        cc = srv.client()
        try:
            # Blocking sorts of every document (a sort with a limit keeps only its top
            # documents and is too quick to overlap).
            list(cc.busy.docs.aggregate([{"$sort": {"x": -1}}, {"$sort": {"pad": 1, "_id": -1}},
                                         {"$count": "n"}]))
        finally:
            cc.close()
        with lock:
            events.append("scan")

    scanners = Workers()
    # Connect (handshakes) before the scans start, so only the hello itself is measured.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    body = struct.pack("<I", 0) + b"\x00" + bson.encode({"hello": 1, "$db": "admin"})
    msg = struct.pack("<iiii", 16 + len(body), 1, 0, 2013) + body
    for k in range(3):
        scanners.start(scan, k)
    # Wait until the three scans are running on the server (connections.active counts
    # connections inside a command, this serverStatus included) before sending hello.
    deadline = time.monotonic() + 60
    while not events and c.admin.command("serverStatus")["connections"]["active"] < 4:
        assert time.monotonic() < deadline, "the three scans were not seen running in 60 s"
    # Fails when no worker is free for serverStatus while the scans run (the pool did not
    # grow), or if the scans became too fast to overlap.
    assert not events, "a scan finished before all three were seen running at once"
    s.sendall(msg)
    reply = read_reply(s)
    with lock:
        events.append("hello")
    s.close()
    scanners.finish(timeout=120)  # a scan that raised never reached events: fail on it
    c.close()
    assert reply is not None and reply[1] == 1, reply
    assert reply[2]["ok"] == 1.0 and reply[2]["isWritablePrimary"] is True, reply[2]
    assert events.index("hello") == 0, events
    assert events.count("scan") == 3, events
