"""Process faults on a one-member set: SIGSTOP/SIGCONT during a write load (the server resumes,
every acknowledged write is there exactly once, new writes work), and kill -9 while a large
multi-commit write is in flight (recovery leaves whole commits only: no document of an
acknowledged write missing, no duplicate)."""

import os
import signal
import threading
import time

from pymongo import WriteConcern
from pymongo.errors import PyMongoError


def _writer(coll, prefix, acked, stop):
    i = 0
    while not stop.is_set():
        try:
            coll.insert_one({"_id": "%s-%d" % (prefix, i)})
            acked.append("%s-%d" % (prefix, i))
        except PyMongoError:
            time.sleep(0.05)  # timed out while the server was stopped: the write may or may not exist
        i += 1


def test_sigstop_sigcont_during_writes(server_factory):
    srv = server_factory()
    c = srv.client(socketTimeoutMS=1000, serverSelectionTimeoutMS=2000, retryWrites=False)
    coll = c.faults.stop.with_options(write_concern=WriteConcern(w="majority"))
    acked, stop = [], threading.Event()
    threads = [threading.Thread(target=_writer, args=(coll, "t%d" % k, acked, stop))
               for k in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(srv.proc.pid, signal.SIGSTOP)
    time.sleep(3)
    os.kill(srv.proc.pid, signal.SIGCONT)
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join()
    c.close()
    assert srv.alive(), srv.log_tail()
    assert len(acked) > 10

    c = srv.client()
    present = [d["_id"] for d in c.faults.stop.find({}, {"_id": 1})]
    assert len(present) == len(set(present))
    missing = set(acked) - set(present)
    assert not missing, "acknowledged writes lost: %r" % sorted(missing)[:5]
    c.faults.stop.insert_one({"_id": "after"})
    assert c.faults.stop.find_one({"_id": "after"}) == {"_id": "after"}
    c.close()


def test_kill9_during_large_multi_commit_insert(server_factory):
    srv = server_factory()
    c = srv.client()
    coll = c.faults.big.with_options(write_concern=WriteConcern(w="majority"))
    coll.insert_many([{"_id": "before-%d" % i} for i in range(100)])
    done = threading.Event()

    def big_insert():
        try:
            coll.insert_many([{"_id": i, "pad": "z" * 500} for i in range(60000)])
        except PyMongoError:
            pass
        done.set()

    t = threading.Thread(target=big_insert)
    t.start()
    time.sleep(0.3)  # the ~32 MB command is being received or committed in parts
    srv.kill9()
    t.join()
    c.close()
    srv.start()

    c = srv.client()
    big = c.faults.big
    assert big.count_documents({"_id": {"$regex": "^before-"}}) == 100
    ints = [d["_id"] for d in big.find({"_id": {"$type": "int"}}, {"_id": 1})]
    assert len(ints) == len(set(ints))
    # parts commit in order, so what survived is a prefix of the batch
    assert ints == list(range(len(ints)))
    for d in big.find({"_id": {"$type": "int"}}).limit(5):
        assert d["pad"] == "z" * 500
    c.close()


def test_sigterm_keeps_acknowledged_w1_writes(server_factory):
    """w:1 is acknowledged once the commit is queued for raft; a clean shutdown must still
    make every such commit durable (the queue is handed to raft before stopping)."""
    srv = server_factory()
    c = srv.client(retryWrites=False, socketTimeoutMS=5000, serverSelectionTimeoutMS=500)
    coll = c.faults.w1.with_options(write_concern=WriteConcern(w=1))
    acked, stop = [], threading.Event()
    threads = [threading.Thread(target=_writer, args=(coll, "w%d" % k, acked, stop))
               for k in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    srv.proc.send_signal(signal.SIGTERM)
    srv.proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join()
    c.close()
    assert srv.proc.returncode == 0, srv.log_tail()
    assert len(acked) > 100
    srv.start()
    c = srv.client()
    present = {d["_id"] for d in c.faults.w1.find({}, {"_id": 1})}
    missing = set(acked) - present
    assert not missing, "%d acknowledged w:1 writes lost, e.g. %r" % (len(missing),
                                                                   sorted(missing)[:3])
    c.close()


def test_out_of_file_descriptors_backs_off_and_recovers(server_factory):
    """More clients than the process may open files: accept fails with EMFILE. The server
    must not spin on the failing accept (it used to retry at once, burning a core and writing
    millions of log lines), and must serve again once clients leave."""
    import socket

    srv = server_factory(start=False)
    srv.fd_limit = 160
    srv.start()
    socks = []
    try:
        for _ in range(400):
            try:
                socks.append(socket.create_connection(("127.0.0.1", srv.port), timeout=0.5))
            except OSError:
                break
        # Far more connections than descriptors were attempted.
        assert len(socks) > 160
        time.sleep(1.5)
        assert srv.alive(), srv.log_tail()
        failures_logged = srv.log_text().count("accept:")
        assert 1 <= failures_logged <= 5, failures_logged
    finally:
        for s in socks:
            s.close()
    c = srv.client(serverSelectionTimeoutMS=15000)
    try:
        c.fd.t.insert_one({"_id": 1})
        assert c.fd.t.find_one({"_id": 1}) == {"_id": 1}
    finally:
        c.close()
    assert "working again" in srv.log_text()
