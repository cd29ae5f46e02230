"""Rollback of w:1 writes: a primary cut off from the rest of its set keeps acknowledging w:1
writes until it steps down; the others elect a new primary and take majority writes; after the
partition heals, the old primary's unreplicated writes are gone from every member and saved in
its rollback files (<dbpath>/rollback/<db>.<coll>/removed.*.bson), and every majority write is
everywhere.

Members run on their own loopback addresses (127.0.0.21-23) so that iptables rules can cut one
off from the others while the test's clients still reach it. Needs root and iptables (the CI
machine has both)."""

import glob
import os
import shutil
import subprocess
import time
import uuid

import bson
import pymongo
import pytest
from pymongo.errors import PyMongoError
from pymongo.write_concern import WriteConcern

from cairn_rs import make_replica_set, wait_for

IPS = ["127.0.0.21", "127.0.0.22", "127.0.0.23"]
TAG = "cairn-rollback-%d" % os.getpid()

pytestmark = pytest.mark.skipif(
    shutil.which("iptables") is None or os.geteuid() != 0,
    reason="needs root and iptables to cut members apart")


def _iptables(*args):
    subprocess.run(["iptables", "-w", *args], check=True, capture_output=True)


def _rules(action, a, b):
    for src, dst in ((a, b), (b, a)):
        _iptables(action, "INPUT", "-s", src, "-d", dst, "-m", "comment", "--comment", TAG,
                  "-j", "DROP")


def _drop_leftover_rules():
    out = subprocess.run(["iptables", "-w", "-S", "INPUT"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        if TAG in line and line.startswith("-A "):
            subprocess.run(["iptables", "-w", "-D"] + line.split()[1:], capture_output=True)


class Partition:
    """Cuts member `ip` off from the other members (their member and client traffic both
    ways); the test's own connections, from 127.0.0.1, still reach everyone."""

    def __init__(self, ip, others):
        self.ip, self.others, self.on = ip, others, False

    def __enter__(self):
        for o in self.others:
            _rules("-I", self.ip, o)
        self.on = True
        return self

    def heal(self):
        if self.on:
            for o in self.others:
                _rules("-D", self.ip, o)
            self.on = False

    def __exit__(self, *exc):
        self.heal()


@pytest.fixture
def rs(tmp_path_factory, request):
    _drop_leftover_rules()
    try:
        yield from make_replica_set(tmp_path_factory, request, 3, ips=IPS)
    finally:
        _drop_leftover_rules()


def _rollback_docs(member):
    """{namespace: [documents]} from the member's rollback files."""
    out = {}
    for path in glob.glob(os.path.join(member.dbpath, "rollback", "*", "removed.*.bson")):
        ns = os.path.basename(os.path.dirname(path))
        with open(path, "rb") as f:
            out.setdefault(ns, []).extend(bson.decode_file_iter(f))
    return out


def test_w1_writes_of_a_cut_off_primary_are_rolled_back_into_files(rs):
    tag = uuid.uuid4().hex[:8]
    ns = "rbtest.c_" + tag
    old = rs.wait_primary()
    others = [m for m in rs if m is not old]
    with rs.client(w="majority") as c:
        c.rbtest["c_" + tag].insert_many([{"_id": "base%d" % i, "v": "base"} for i in range(5)])
    rs.wait_caught_up()

    acked = []
    direct = old.client(retryWrites=False, serverSelectionTimeoutMS=2000,
                        socketTimeoutMS=3000)
    coll = direct.rbtest.get_collection("c_" + tag, write_concern=WriteConcern(w=1))
    with Partition(old.ip, [m.ip for m in others]) as part:
        cut = time.monotonic()
        # w:1 writes on the old primary until it notices it lost the majority.
        for i in range(200):
            try:
                coll.insert_one({"_id": "w1-%d" % i, "v": "lost"})
                acked.append("w1-%d" % i)
            except PyMongoError:
                break
        try:
            coll.update_one({"_id": "base0"}, {"$set": {"v": "changed-on-old"}})
            updated = True
        except PyMongoError:
            updated = False
        assert acked, "the cut-off primary acknowledged no w:1 write"
        # It steps down by itself (about an election timeout after losing the majority).
        wait_for(lambda: not old.hello().get("isWritablePrimary"), 15,
                 "the cut-off primary to step down")
        stepped = time.monotonic() - cut
        new = rs.wait_primary(exclude=[old])
        with new.client(w="majority") as c:
            c.rbtest["c_" + tag].insert_many(
                [{"_id": "maj%d" % i, "v": "majority"} for i in range(20)])
        part.heal()
    print("cut-off primary stopped writing %.2fs after the cut; %d w:1 writes acknowledged"
          % (stepped, len(acked)))
    direct.close()

    # The old primary rejoins: its writes are gone, the majority writes are there.
    def converged():
        for m in rs:
            with m.client(readPreference="secondaryPreferred") as c:
                ids = {d["_id"] for d in c.rbtest["c_" + tag].find({}, {"_id": 1})}
                if ids != {"base%d" % i for i in range(5)} | {"maj%d" % i for i in range(20)}:
                    return False
                if c.rbtest["c_" + tag].find_one({"_id": "base0"})["v"] != "base":
                    return False
        return True
    wait_for(converged, 30, "every member to hold exactly the base and majority writes")

    saved = _rollback_docs(old)
    assert set(saved) == {ns}, "rollback files for %s (expected only %s)" % (sorted(saved), ns)
    by_id = {d["_id"]: d for d in saved[ns]}
    expected = set(acked) | ({"base0"} if updated else set())
    assert set(by_id) == expected, (
        "rollback files hold %d documents; missing %s, unexpected %s"
        % (len(by_id), sorted(expected - set(by_id))[:5], sorted(set(by_id) - expected)[:5]))
    assert all(by_id[i]["v"] == "lost" for i in acked)
    if updated:
        assert by_id["base0"]["v"] == "changed-on-old"
    assert old.log_grep("ROLLBACK"), "the old primary did not log its rollback"
    for m in others:
        assert not _rollback_docs(m), "%s wrote rollback files" % m.name


def test_majority_writes_survive_a_partition_of_the_primary(rs):
    tag = uuid.uuid4().hex[:8]
    old = rs.wait_primary()
    others = [m for m in rs if m is not old]
    acked = []
    with rs.client(w="majority", retryWrites=True, serverSelectionTimeoutMS=30000,
                   socketTimeoutMS=5000) as c:
        coll = c.rbtest["m_" + tag]
        with Partition(old.ip, [m.ip for m in others]) as part:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len(acked) < 50:
                i = len(acked)
                try:
                    coll.insert_one({"_id": i})
                    acked.append(i)
                except PyMongoError:
                    time.sleep(0.1)
            part.heal()
        assert len(acked) == 50, "only %d majority writes went through the failover" % len(acked)
    rs.wait_caught_up()
    for m in rs:
        with m.client(readPreference="secondaryPreferred") as d:
            ids = sorted(x["_id"] for x in d.rbtest["m_" + tag].find())
            assert ids == acked, "%s holds %s" % (m.name, ids[:10])
