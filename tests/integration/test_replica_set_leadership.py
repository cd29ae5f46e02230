"""Changing a replica set while it runs: replSetReconfig (add a member that catches up, remove
one, mongod's refusals), replSetStepDown (hand-over to a caught-up secondary, refusals),
replSetFreeze, and members of priority 0 that never become primary."""

import time
import uuid

import pymongo
import pytest
from pymongo.errors import OperationFailure

from cairn_rs import make_replica_set, wait_for


@pytest.fixture
def rs4(tmp_path_factory, request):
    """Four members started, the first three initiated (the fourth is added later)."""
    yield from make_replica_set(tmp_path_factory, request, 4, initiate=False)


def _initiate(rs, members, member_opts=None):
    cfg = rs.config(members=members)
    for m in cfg["members"]:
        m.update((member_opts or {}).get(m["_id"], {}))
    reply = rs[members[0]].command({"replSetInitiate": cfg}, timeout=15)
    assert reply.get("ok") == 1, reply
    return rs.wait_primary()


def _config(client):
    return client.admin.command("replSetGetConfig")["config"]


def test_reconfig_adds_a_member_that_catches_up_and_removes_one(rs4):
    _initiate(rs4, [0, 1, 2])
    tag = uuid.uuid4().hex[:6]
    uri = "mongodb://%s/?replicaSet=rs0" % ",".join(rs4.hosts[:3])
    with pymongo.MongoClient(uri, w="majority") as c:
        c.rc["c" + tag].insert_many([{"_id": i} for i in range(200)])
        cfg = _config(c)
        cfg["version"] += 1
        cfg["members"].append({"_id": 3, "host": rs4[3].host})
        c.admin.command("replSetReconfig", cfg)
        new = rs4[3]

        def caught_up():
            with new.client(readPreference="secondaryPreferred") as d:
                return (d.admin.command("hello").get("secondary")
                        and d.rc["c" + tag].count_documents({}) == 200)
        wait_for(caught_up, 30, "the added member to catch up")
        for m in rs4:
            h = m.hello()
            assert h["setVersion"] == cfg["version"] and rs4[3].host in h["hosts"], (m, h)
        # Writes at w:4 now reach the new member too.
        c.rc.get_collection("c" + tag, write_concern=pymongo.WriteConcern(w=4,
                            wtimeout=10000)).insert_one({"_id": "w4"})

        # Remove a secondary: it leaves hosts everywhere and reports REMOVED.
        victim = next(m for m in rs4 if m.index in (1, 2) and not
                      m.hello().get("isWritablePrimary"))
        cfg = _config(c)
        cfg["version"] += 1
        cfg["members"] = [m for m in cfg["members"] if m["_id"] != victim.index]
        c.admin.command("replSetReconfig", cfg)
        wait_for(lambda: all(victim.host not in m.hello().get("hosts", [])
                             for m in rs4 if m is not victim), 10, "hosts without the victim")
        wait_for(lambda: victim.status().get("myState") == 10, 10,
                 "the removed member to report REMOVED")
        c.rc["c" + tag].insert_one({"_id": "after-remove"})
        assert c.rc["c" + tag].count_documents({}) == 202


def test_reconfig_refusals(rs4):
    _initiate(rs4, [0, 1, 2])
    uri = "mongodb://%s/?replicaSet=rs0" % ",".join(rs4.hosts[:3])
    with pymongo.MongoClient(uri) as c:
        cfg = _config(c)

        def refused(mutate, code):
            new = {k: v for k, v in cfg.items() if k != "term"}
            new["members"] = [dict(m) for m in cfg["members"]]
            mutate(new)
            with pytest.raises(OperationFailure) as e:
                c.admin.command("replSetReconfig", new)
            assert e.value.code == code, (e.value.code, e.value.details)

        refused(lambda n: None, 103)  # version not greater
        refused(lambda n: n.update(version=n["version"] + 1,
                                   members=n["members"] + [{"_id": 5, "host": "127.0.0.1:1"},
                                                           {"_id": 6, "host": "127.0.0.1:2"}]),
                103)  # two voters at once
        refused(lambda n: n.update(version=n["version"] + 1, _id="other"), 93)
        p = rs4.primary()
        refused(lambda n: n.update(version=n["version"] + 1,
                                   members=[m for m in n["members"] if m["_id"] != p.index]),
                93)  # the primary removing itself
        sec = next(m for m in rs4 if m.index in (0, 1, 2) and m is not p)
        reply = sec.command({"replSetReconfig": dict(cfg, version=cfg["version"] + 1)})
        assert reply["ok"] == 0 and reply["code"] == 10107, reply
        with pytest.raises(OperationFailure) as e:
            c.admin.command("replSetReconfig", dict(cfg, version=cfg["version"] + 1), force=True)
        assert e.value.code == 238


def test_step_down_hands_over_and_refusals(rs4):
    old = _initiate(rs4, [0, 1, 2])
    uri = "mongodb://%s/?replicaSet=rs0" % ",".join(rs4.hosts[:3])
    with pymongo.MongoClient(uri, w="majority") as c:
        c.sd.c.insert_one({"_id": 1})
        rs4.wait_caught_up(members=[rs4[0], rs4[1], rs4[2]])
        assert old.command({"replSetStepDown": 30}, timeout=15)["ok"] == 1
        new = rs4.wait_primary(exclude=[old])
        assert new is not old
        c.sd.c.insert_one({"_id": 2})  # the driver follows the new primary
        assert old.hello().get("secondary")
        # The old primary does not campaign during its stepDownSecs.
        time.sleep(1.5)
        assert rs4.wait_primary() is new
        # Refusals: not primary; bad arguments.
        r = old.command({"replSetStepDown": 10})
        assert r["ok"] == 0 and r["code"] == 10107, r
        r = new.command({"replSetStepDown": 5, "secondaryCatchUpPeriodSecs": 10})
        assert r["ok"] == 0 and r["code"] == 2, r
        r = new.command({"replSetFreeze": 10})
        assert r["ok"] == 0 and r["code"] == 95, r


def test_frozen_and_priority_zero_members_never_become_primary(rs4):
    # Member 2 has priority 0; member 1 gets frozen; so when 0 steps down, nobody but 0
    # itself could take over... and 0 may not either during stepDownSecs: no primary.
    p = _initiate(rs4, [0, 1, 2], {2: {"priority": 0}})
    assert p is rs4[0]
    assert rs4[1].command({"replSetFreeze": 30})["ok"] == 1
    # The primary learns that member 1 is frozen from the heartbeat the freeze sends at
    # once (nothing shows it to clients, so no condition to await).
    time.sleep(0.5)
    r = p.command({"replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 2}, timeout=15)
    assert r["ok"] == 0 and r["code"] == 262, r  # no electable secondary caught up
    assert p.hello().get("isWritablePrimary"), "a failed step-down must leave it primary"
    # Unfreeze member 1: now a step-down hands over to it, never to member 2.
    assert rs4[1].command({"replSetFreeze": 0})["ok"] == 1
    assert p.command({"replSetStepDown": 10}, timeout=15)["ok"] == 1
    assert rs4.wait_primary(exclude=[p]) is rs4[1]
    # Kill member 1: member 0 is within its stepDownSecs, member 2 has priority 0.
    rs4[1].kill9()
    time.sleep(3)
    assert not rs4[2].hello().get("isWritablePrimary")
    # After stepDownSecs member 0 may campaign again and wins.
    assert rs4.wait_primary(timeout=30) is rs4[0]
