"""readConcern "linearizable" on a 3-member set, as mongod 7.0: on the primary a read answers
only after a no-op of the primary's leadership is majority-committed (so it reflects every write
acknowledged before it and a deposed primary never answers one); on a secondary it is refused
(10107); with afterClusterTime, in a transaction or on a write command it is refused (72
InvalidOptions); maxTimeMS bounds the confirmation (50), and without it the wait ends when the
primary loses its leadership (11602).

Members run on their own loopback addresses (127.0.0.51-53) so that iptables rules can cut the
primary off from the others while the test's clients still reach it; the partition test needs
root and iptables (the CI machine has both). Every test awaits conditions; none asserts a
duration.
"""

import os
import random
import shutil
import subprocess
import threading

import pytest
from bson import Timestamp
from pymongo import WriteConcern
from pymongo.errors import NotPrimaryError, OperationFailure, PyMongoError
from pymongo.read_concern import ReadConcern

from cairn_rs import make_replica_set, wait_for

IPS = ["127.0.0.51", "127.0.0.52", "127.0.0.53"]
TAG = "cairn-linearizable-%d" % os.getpid()
SEED = 20261205
LIN = {"level": "linearizable"}

NotWritablePrimary = 10107
InvalidOptions = 72
MaxTimeMSExpired = 50
InterruptedDueToReplStateChange = 11602
PrimarySteppedDown = 189
NotPrimaryOrSecondary = 13436
# What a member that is (or becomes) unable to confirm its leadership may answer.
DEPOSED = {NotWritablePrimary, MaxTimeMSExpired, InterruptedDueToReplStateChange,
           PrimarySteppedDown, NotPrimaryOrSecondary, 13435}

needs_iptables = pytest.mark.skipif(
    shutil.which("iptables") is None or os.geteuid() != 0,
    reason="needs root and iptables to cut members apart")


def _iptables(*args):
    subprocess.run(["iptables", "-w", *args], check=True, capture_output=True)


def _drop_leftover_rules():
    if shutil.which("iptables") is None or os.geteuid() != 0:
        return
    out = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        if TAG in line and line.startswith("-A "):
            subprocess.run(["iptables", "-w", "-D"] + line.split()[1:], capture_output=True)


class Partition:
    """Cuts member `ip` off from the other members (both ways); the test's own connections,
    from 127.0.0.1, still reach everyone."""

    def __init__(self, ip, others):
        self.ip, self.others, self.on = ip, others, False

    def _rules(self, action):
        for o in self.others:
            for src, dst in ((self.ip, o), (o, self.ip)):
                _iptables(action, "INPUT", "-s", src, "-d", dst, "-m", "comment", "--comment",
                          TAG, "-j", "DROP")

    def __enter__(self):
        self._rules("-I")
        self.on = True
        return self

    def heal(self):
        if self.on:
            self._rules("-D")
            self.on = False

    def __exit__(self, *exc):
        self.heal()


@pytest.fixture(scope="module")
def rs(tmp_path_factory, request):
    _drop_leftover_rules()
    try:
        yield from make_replica_set(tmp_path_factory, request, 3, ips=IPS)
    finally:
        _drop_leftover_rules()


@pytest.fixture
def rng(request):
    return random.Random("%s:%s" % (SEED, request.node.name))


def _coll_name(rng):
    return "c_%08x" % rng.getrandbits(32)


def _find_lin(member, coll, flt, max_time_ms=None, timeout=30.0):
    """A raw linearizable find on `member` (primary read preference)."""
    cmd = {"find": coll, "filter": flt, "readConcern": LIN}
    if max_time_ms is not None:
        cmd["maxTimeMS"] = max_time_ms
    return member.command(cmd, db="lintest", timeout=timeout)


def test_linearizable_read_returns_the_latest_majority_write(rs, rng):
    rs.wait_healthy()
    name = _coll_name(rng)
    with rs.client() as c:
        coll = c.lintest.get_collection(name, write_concern=WriteConcern(w="majority"))
        lin = c.lintest.get_collection(name, read_concern=ReadConcern("linearizable"))
        for i in range(5):
            coll.update_one({"_id": "k"}, {"$set": {"v": i}}, upsert=True)
            assert lin.find_one({"_id": "k"})["v"] == i
        coll.insert_many([{"_id": i, "g": i % 3} for i in range(10)])
        assert lin.count_documents({}) == 11
        assert sorted(lin.distinct("g")) == [0, 1, 2]
        assert [d["n"] for d in lin.aggregate([{"$match": {"g": 1}}, {"$count": "n"}])] == [3]
        # A w:1 write the primary acknowledged is what the next linearizable read returns
        # (the confirmation commits it at majority on the way).
        c.lintest.get_collection(name, write_concern=WriteConcern(w=1)).update_one(
            {"_id": "k"}, {"$set": {"v": "w1"}})
        assert lin.find_one({"_id": "k"})["v"] == "w1"


def test_linearizable_read_operation_time_covers_the_write(rs, rng):
    p = rs.wait_healthy()
    name = _coll_name(rng)
    w = p.command({"insert": name, "documents": [{"_id": 1}], "writeConcern": {"w": 1}},
                  db="lintest")
    assert w["ok"] == 1.0, w
    r = _find_lin(p, name, {"_id": 1})
    assert r["ok"] == 1.0, r
    assert r["cursor"]["firstBatch"] == [{"_id": 1}]
    assert isinstance(r["operationTime"], Timestamp)
    assert r["operationTime"] > w["operationTime"]


def test_linearizable_read_on_a_secondary_is_not_writable_primary(rs, rng):
    p = rs.wait_healthy()
    name = _coll_name(rng)
    with rs.client(w="majority") as c:
        c.lintest[name].insert_one({"_id": 1})
    for s in [m for m in rs if m is not p]:
        r = s.command({"find": name, "readConcern": LIN,
                       "$readPreference": {"mode": "secondaryPreferred"}}, db="lintest")
        assert r["ok"] == 0.0 and r["code"] == NotWritablePrimary, r
        assert r["codeName"] == "NotWritablePrimary"
        with s.client(readPreference="secondaryPreferred") as c:
            # pymongo raises 10107 as NotPrimaryError (and marks the server unknown).
            with pytest.raises(NotPrimaryError) as ei:
                c.lintest.get_collection(
                    name, read_concern=ReadConcern("linearizable")).find_one({})
            assert ei.value.details["code"] == NotWritablePrimary


def test_linearizable_refused_where_mongod_refuses_it(rs, rng):
    p = rs.wait_healthy()
    name = _coll_name(rng)
    with rs.client(w="majority") as c:
        c.lintest[name].insert_one({"_id": 1})
        ts = c.lintest.command("ping")["operationTime"]
        # With afterClusterTime: linearizable reads are causally consistent by themselves.
        r = p.command({"find": name, "readConcern": {"level": "linearizable",
                                                     "afterClusterTime": ts}}, db="lintest")
        assert r["ok"] == 0.0 and r["code"] == InvalidOptions, r
        # atClusterTime needs snapshot.
        r = p.command({"find": name, "readConcern": {"level": "linearizable",
                                                     "atClusterTime": ts}}, db="lintest")
        assert r["ok"] == 0.0 and r["code"] == InvalidOptions, r
        # Write commands support no linearizable read concern.
        for cmd in ({"insert": name, "documents": [{"_id": 2}]},
                    {"findAndModify": name, "query": {"_id": 1}, "update": {"$set": {"a": 1}}}):
            r = p.command(dict(cmd, readConcern=LIN), db="lintest")
            assert r["ok"] == 0.0 and r["code"] == InvalidOptions, r
        assert c.lintest[name].count_documents({}) == 1
        # Nor do transactions.
        with c.start_session() as s:
            s.start_transaction(read_concern=ReadConcern("linearizable"))
            with pytest.raises(OperationFailure) as ei:
                c.lintest[name].find_one({}, session=s)
            assert ei.value.code == InvalidOptions
            s.abort_transaction()  # best effort in pymongo: nothing started on the server


def test_linearizable_read_needs_a_majority_and_is_bounded_by_max_time_ms(rs, rng):
    p = rs.wait_healthy()
    name = _coll_name(rng)
    with rs.client(w="majority") as c:
        c.lintest[name].insert_one({"_id": 1, "v": "committed"})
    s1, s2 = [m for m in rs if m is not p]
    s1.pause()
    try:
        # Two of three members are a majority: the read is confirmed.
        r = _find_lin(p, name, {"_id": 1}, max_time_ms=20000)
        assert r["ok"] == 1.0 and r["cursor"]["firstBatch"] == [{"_id": 1, "v": "committed"}], r
        s2.pause()
        try:
            # The no-op cannot reach a majority: maxTimeMS ends the wait (the primary notices
            # the lost majority only an election timeout, 1 s, after the pause).
            r = _find_lin(p, name, {"_id": 1}, max_time_ms=200)
            assert r["ok"] == 0.0 and r["code"] == MaxTimeMSExpired, r
            assert r["codeName"] == "MaxTimeMSExpired"
            assert "cursor" not in r
            # Without maxTimeMS it waits until this member's leadership ends.
            r = _find_lin(p, name, {"_id": 1}, timeout=60.0)
            assert r["ok"] == 0.0, r
            assert r["code"] in (InterruptedDueToReplStateChange, NotWritablePrimary), r
            assert "cursor" not in r
        finally:
            s2.resume()
    finally:
        s1.resume()
    rs.wait_healthy()


def test_get_more_of_a_linearizable_cursor_confirms_again(rs, rng):
    p = rs.wait_healthy()
    name = _coll_name(rng)
    with rs.client(w="majority") as c:
        c.lintest[name].insert_many([{"_id": i} for i in range(6)])
        # Through the driver: batches of 2, each getMore confirmed.
        lin = c.lintest.get_collection(name, read_concern=ReadConcern("linearizable"))
        assert [d["_id"] for d in lin.find({}, batch_size=2)] == list(range(6))
    r = p.command({"find": name, "readConcern": LIN, "batchSize": 2}, db="lintest")
    assert r["ok"] == 1.0 and r["cursor"]["id"] != 0, r
    cursor_id = r["cursor"]["id"]
    secondaries = [m for m in rs if m is not p]
    for s in secondaries:
        s.pause()
    try:
        # Without a majority the next batch is never answered: the wait ends with the
        # primary's leadership (getMore has no maxTimeMS; mongod bounds it at 15 s, 187).
        g = p.command({"getMore": cursor_id, "collection": name, "batchSize": 2},
                      db="lintest", timeout=60.0)
        assert g["ok"] == 0.0, g
        assert g["code"] in (InterruptedDueToReplStateChange, NotWritablePrimary,
                             187), g
        assert "cursor" not in g
    finally:
        for s in secondaries:
            s.resume()
    rs.wait_healthy()


@needs_iptables
def test_isolated_old_primary_never_answers_a_linearizable_read(rs, rng):
    old = rs.wait_healthy()
    rs.wait_caught_up()
    name = _coll_name(rng)
    others = [m for m in rs if m is not old]
    with rs.client(w="majority") as c:
        c.lintest[name].insert_one({"_id": "k", "v": "old"})
    rs.wait_caught_up()
    results = []

    def read_on_old():
        try:
            results.append(_find_lin(old, name, {"_id": "k"}, timeout=60.0))
        except (OSError, PyMongoError) as exc:  # noqa: BLE001 - recorded and asserted below
            results.append(exc)

    with Partition(old.ip, [m.ip for m in others]):
        # Started while the old primary may still believe it leads: it must not answer.
        t = threading.Thread(target=read_on_old)
        t.start()
        new = rs.wait_primary(exclude=[old])
        with new.client(w="majority") as c:
            c.lintest[name].update_one({"_id": "k"}, {"$set": {"v": "new"}})
            lin = c.lintest.get_collection(name, read_concern=ReadConcern("linearizable"))
            assert lin.find_one({"_id": "k"})["v"] == "new"
        t.join(60)
        assert not t.is_alive(), "the linearizable read on the cut-off primary never ended"
        r = results[0]
        assert isinstance(r, dict) and r["ok"] == 0.0, r
        assert r["code"] in DEPOSED, r
        print("linearizable read on the cut-off primary: %s" % r["codeName"])
        # Again, now that it has certainly lost the primaryship, with and without maxTimeMS.
        for mt in (500, None):
            r = _find_lin(old, name, {"_id": "k"}, max_time_ms=mt, timeout=60.0)
            if r["ok"] == 0.0 and r["code"] == 13435:
                r = old.command({"find": name, "readConcern": LIN, "maxTimeMS": 500,
                                 "$readPreference": {"mode": "secondaryPreferred"}},
                                db="lintest", timeout=60.0)
            assert r["ok"] == 0.0 and r["code"] in DEPOSED, r
        # Its local data is still the stale value.
        with old.client(readPreference="secondaryPreferred") as c:
            assert c.lintest[name].find_one({"_id": "k"})["v"] == "old"
    # Healed: it catches up, and the new primary's value is what everyone reads.
    rs.wait_healthy()

    def caught_up():
        with old.client(readPreference="secondaryPreferred") as c:
            return c.lintest[name].find_one({"_id": "k"})["v"] == "new"
    wait_for(caught_up, 60, "the old primary to catch up with the new value")
