"""Members that are behind the leader's retained raft log catch up from a checkpoint shipped by
a healthy member, then from the log: a member added by replSetReconfig to a set that has taken
raft snapshots, a secondary killed (or paused) while the others write past the trailing window,
and a member killed in the middle of an install. The sets run with a tiny snapshot threshold
and trailing window (--raftSnapshotThreshold 64 --raftSnapshotTrailing 32) so that a few
hundred commits push a member out of the log.

Each test asserts that the install happened (serverStatus repl.initialSync.checkpointInstalls),
that the member then holds exactly the primary's documents, and, where a fail point holds the
install, that the member reports STARTUP2 (no data before) or RECOVERING (data before) and
refuses reads with 13436 NotPrimaryOrSecondary meanwhile. Conditions are awaited by polling.
"""

import random

import pymongo
import pytest
from pymongo.errors import OperationFailure
from pymongo.read_concern import ReadConcern

from cairn_rs import make_replica_set, rs_factory, wait_for  # noqa: F401

SEED = 20261206
SMALL_LOG = ["--raftSnapshotThreshold", "64", "--raftSnapshotTrailing", "32",
             "--setParameter", "enableTestCommands=1"]
STARTUP2, RECOVERING = 5, 3


@pytest.fixture
def rng(request):
    return random.Random("%s:%s" % (SEED, request.node.name))


def _installs(m):
    return m.command({"serverStatus": 1})["repl"]["initialSync"]["checkpointInstalls"]


def _docs(m, coll):
    """Every document of catchup.<coll> on member m, by _id (local read)."""
    with m.client(readPreference="secondaryPreferred") as c:
        return list(c.catchup.get_collection(coll, read_concern=ReadConcern("local"))
                    .find({}).sort("_id", 1))


def _write_commits(coll, rng, n_commits, tag, start=0):
    """n_commits separate majority commits (inserts, then updates and deletes of some), each
    one raft entry; returns nothing: compare with the primary afterwards."""
    for i in range(start, start + n_commits):
        coll.insert_many([{"_id": "%s-%05d-%d" % (tag, i, j), "i": i, "j": j,
                           "pad": "x" * rng.randrange(10, 200)} for j in range(5)])
        if i % 7 == 3:
            coll.update_one({"_id": "%s-%05d-0" % (tag, i)}, {"$set": {"updated": True}})
        if i % 11 == 5:
            coll.delete_one({"_id": "%s-%05d-1" % (tag, i)})


def _assert_same_documents(rs, member, coll):
    p = rs.primary()
    want = _docs(p, coll)
    wait_for(lambda: _docs(member, coll) == want, 60,
             lambda: "%s to hold the primary's %d documents (has %d)"
             % (member.name, len(want), len(_docs(member, coll))))
    return want


def _initiate(rs, members):
    reply = rs[members[0]].command({"replSetInitiate": rs.config(members=members)}, timeout=15)
    assert reply.get("ok") == 1, reply
    return rs.wait_healthy(members=members)


def _add_member(c, m):
    cfg = c.admin.command("replSetGetConfig")["config"]
    cfg["version"] += 1
    cfg["members"].append({"_id": m.index, "host": m.host})
    c.admin.command("replSetReconfig", cfg)


def _wait_state(m, state, timeout=60):
    wait_for(lambda: m.status().get("myState") == state, timeout,
             lambda: "%s to report state %d (reports %r)"
             % (m.name, state, m.status().get("myState")))


def _assert_reads_refused(m):
    reply = m.command({"find": "c", "$readPreference": {"mode": "secondaryPreferred"}},
                      db="catchup")
    assert reply.get("code") == 13436, reply
    hello = m.hello()
    assert hello.get("secondary") is False and hello.get("isWritablePrimary") is False, hello


def test_added_member_catches_up_from_a_checkpoint_then_the_log(rs_factory, rng):
    rs = rs_factory(4, initiate=False, extra_args=SMALL_LOG)
    _initiate(rs, [0, 1, 2])
    new = rs[3]
    uri = "mongodb://%s/?replicaSet=rs0" % ",".join(rs.hosts[:3])
    with pymongo.MongoClient(uri, w="majority") as c:
        coll = c.catchup.c
        _write_commits(coll, rng, 400, "before")       # 2000 documents, ~450 entries
        # Hold the install once it begins, to see the member's state meanwhile.
        assert new.command({"configureFailPoint": "pauseCheckpointInstall",
                            "mode": "alwaysOn"}).get("ok") == 1
        _add_member(c, new)
        _wait_state(new, STARTUP2)
        _assert_reads_refused(new)
        # The set goes on writing while the new member installs.
        _write_commits(coll, rng, 20, "during")
        assert new.command({"configureFailPoint": "pauseCheckpointInstall",
                            "mode": "off"}).get("ok") == 1
        wait_for(lambda: new.hello().get("secondary") is True, 60,
                 "the new member to become SECONDARY")
        _write_commits(coll, rng, 100, "after")      # then from the log
        want = _assert_same_documents(rs, new, "c")
        assert len(want) == 5 * 520 - len([i for i in range(520) if i % 11 == 5])
        assert _installs(new) >= 1     # more when the leader's log moved past it meanwhile
        served = sum(m.command({"serverStatus": 1})["repl"]["initialSync"]["checkpointsServed"]
                     for m in rs.members[:3])
        assert served >= 1
        # Writes at w:4 reach it: it acknowledges appends and applies them.
        c.catchup.get_collection("c", write_concern=pymongo.WriteConcern(w=4, wtimeout=20000)) \
            .insert_one({"_id": "w4"})
    assert new.log_grep("checkpoint installed from"), new.log_tail()


@pytest.mark.parametrize("fault", ["kill9", "pause"])
def test_secondary_behind_the_trailing_log_installs_a_checkpoint(rs_factory, rng, fault):
    rs = rs_factory(3, extra_args=SMALL_LOG)
    p = rs.wait_healthy()
    victim = rng.choice([m for m in rs if m is not p])
    with rs.client(w="majority") as c:
        coll = c.catchup.c
        _write_commits(coll, rng, 50, "before")
        rs.wait_caught_up()
        assert _installs(victim) == 0
        if fault == "kill9":
            victim.kill9()
        else:
            # A cursor open on the victim across the install is killed by it.
            direct = victim.client(readPreference="secondaryPreferred")
            cursor = direct.catchup.c.find({}, batch_size=2)
            assert next(cursor) is not None
            # Set now, it holds the install that starts once the member resumes.
            assert victim.command({"configureFailPoint": "pauseCheckpointInstall",
                                   "mode": "alwaysOn"}).get("ok") == 1
            victim.pause()
        # Majority writes go on with two members, well past the trailing window.
        _write_commits(coll, rng, 300, "down")
        if fault == "kill9":
            victim.start()
        else:
            victim.resume()
            _wait_state(victim, RECOVERING)      # it had data
            _assert_reads_refused(victim)
            assert victim.command({"configureFailPoint": "pauseCheckpointInstall",
                                   "mode": "off"}).get("ok") == 1
            wait_for(lambda: victim.hello().get("secondary") is True, 60,
                     "the victim to become SECONDARY")
            with pytest.raises(OperationFailure) as info:
                list(cursor)
            assert info.value.code == 175, info.value.details
            direct.close()
        assert rs.wait_healthy() is p, "a returning secondary must not disturb the primary"
        _write_commits(coll, rng, 30, "after")
    want = _assert_same_documents(rs, victim, "c")
    assert len(want) == 5 * 380 - len([i for r in (50, 300, 30) for i in range(r) if i % 11 == 5])
    # One, or more when the leader's log moved past the installed snapshot meanwhile (the
    # tiny trailing window of these tests).
    assert _installs(victim) >= 1
    rs.wait_caught_up()


@pytest.mark.parametrize("stop", ["kill9", "sigterm"])
def test_member_stopped_during_an_install_resyncs_after_restart(rs_factory, rng, stop):
    rs = rs_factory(4, initiate=False, extra_args=SMALL_LOG)
    _initiate(rs, [0, 1, 2])
    new = rs[3]
    uri = "mongodb://%s/?replicaSet=rs0" % ",".join(rs.hosts[:3])
    with pymongo.MongoClient(uri, w="majority") as c:
        coll = c.catchup.c
        _write_commits(coll, rng, 200, "before")
        assert new.command({"configureFailPoint": "pauseCheckpointInstall",
                            "mode": "alwaysOn"}).get("ok") == 1
        _add_member(c, new)
        _wait_state(new, STARTUP2)
        wait_for(lambda: new.log_grep("checkpoint install paused"), 60,
                 "the install to begin (and stop at the fail point)")
        # Stopped mid-install: its data directory holds a partial install (the marker). A
        # clean stop abandons the install and exits 0.
        if stop == "kill9":
            new.kill9()
        else:
            assert new.stop() == 0, new.log_tail()
            assert new.log_grep("checkpoint install abandoned"), new.log_tail()
        _write_commits(coll, rng, 100, "later")
        # At start-up it finds the partial install, starts empty and installs again.
        new.start(timeout=60)
        wait_for(lambda: new.hello().get("secondary") is True, 60,
                 "the restarted member to become SECONDARY")
        _write_commits(coll, rng, 20, "after")
    want = _assert_same_documents(rs, new, "c")
    assert len(want) == 5 * 320 - len([i for r in (200, 100, 20) for i in range(r) if i % 11 == 5])
    # At least the one after the restart (its raft log restarts at the old snapshot, so the
    # leader may have to send a newer one too).
    assert _installs(new) >= 1
    assert new.log_grep("a checkpoint install did not finish"), new.log_tail()
    assert new.log_grep("checkpoint installed from"), new.log_tail()
