"""Replica sets of 3 and 5 real cairnd members: initiation (and mongod's errors for a bad one),
the topology every member reports (hello, replSetGetStatus, replSetGetConfig), replication
(majority and local reads on secondaries), what secondaries refuse (writes: 10107; reads
without secondaryOk: 13435), and members that come back: restarted after kill -9, or with an
empty dbpath.

Each test awaits conditions by polling (cairn_rs.wait_for) with generous deadlines; none
asserts a duration. The module-scoped sets (3 and 5 members) are shared: every test starts by
waiting until its set is healthy and leaves it so.
"""

import datetime
import random

import pymongo
import pytest
from bson import Timestamp
from pymongo import ReadPreference, WriteConcern
from pymongo.errors import NotPrimaryError, OperationFailure
from pymongo.read_concern import ReadConcern

from cairn_rs import (PRIMARY, SECONDARY, free_port_pair, make_replica_set, rs_factory,  # noqa: F401
                      wait_for)

SEED = 20261205
STATE_STR = {PRIMARY: "PRIMARY", SECONDARY: "SECONDARY"}


@pytest.fixture(scope="module", params=[3, 5], ids=["3members", "5members"])
def rs(tmp_path_factory, request):
    yield from make_replica_set(tmp_path_factory, request, request.param)


@pytest.fixture
def rng(request):
    return random.Random("%s:%s" % (SEED, request.node.name))


def _doc_id(rng, prefix):
    return "%s-%08x" % (prefix, rng.getrandbits(32))


def _code(reply):
    return reply.get("code"), reply.get("codeName"), reply.get("errmsg")


# -- initiation -------------------------------------------------------------------------------

def test_initiate_errors_as_mongod(rs_factory):
    """replSetInitiate refuses, as mongod does: a member that does not answer (74
    NodeNotFound), a config that does not name the member it is sent to (93
    InvalidReplicaSetConfig), a member already initiated (23 AlreadyInitialized), a config
    naming members of another, running set. A refused initiation stores nothing."""
    rs = rs_factory(3, initiate=False)
    m0, m1, m2 = rs.members
    ghost = "127.0.0.1:%d" % free_port_pair(avoid=[m.port for m in rs])

    # A member that does not answer: the quorum check fails, nothing is stored anywhere.
    cfg = rs.config(members=[0, 1])
    cfg["members"].append({"_id": 7, "host": ghost})
    reply = m0.command({"replSetInitiate": cfg}, timeout=30)
    assert reply["ok"] == 0 and reply.get("code") == 74, _code(reply)
    assert reply.get("codeName") == "NodeNotFound", _code(reply)
    for m in (m0, m1):
        st = m.status()
        assert st["ok"] == 0 and st.get("code") == 94, (m.name, _code(st))  # NotYetInitialized
        h = m.hello()
        assert h.get("setName") is None and h.get("isWritablePrimary") is False, (m.name, h)

    # A config that does not name the member it is sent to.
    reply = m2.command({"replSetInitiate": rs.config(members=[0, 1])})
    assert reply["ok"] == 0 and reply.get("code") == 93, _code(reply)
    assert reply.get("codeName") == "InvalidReplicaSetConfig", _code(reply)
    assert m2.status().get("code") == 94

    # A good initiation of m0 and m1 still works after those refusals.
    reply = m0.command({"replSetInitiate": rs.config(members=[0, 1])}, timeout=30)
    assert reply["ok"] == 1, _code(reply)
    primary = rs.wait_healthy(members=[0, 1])
    assert primary is m0, "the initiating member should be elected first"

    # Already initiated: on the primary and on the member that adopted the config.
    for m in (m0, m1):
        reply = m.command({"replSetInitiate": rs.config(members=[0, 1])})
        assert reply["ok"] == 0 and reply.get("code") == 23, (m.name, _code(reply))
        assert reply.get("codeName") == "AlreadyInitialized", (m.name, _code(reply))

    # m2 (not initiated) asked to initiate a set whose other members already run one: the
    # quorum check fails and the running set is untouched.
    reply = m2.command({"replSetInitiate": rs.config()}, timeout=30)
    assert reply["ok"] == 0, reply
    assert m2.status().get("code") == 94, "m2 must stay uninitiated"
    for m in (m0, m1):
        h = m.hello()
        assert h["hosts"] == [m0.host, m1.host] and h["setVersion"] == 1, (m.name, h)
    assert rs.wait_healthy(members=[0, 1]) is m0


def test_initiator_becomes_primary_and_all_agree_in_hello(rs):
    p = rs.wait_healthy()
    hellos = {m: m.hello() for m in rs}
    writable = [m for m, h in hellos.items() if h.get("isWritablePrimary") is True]
    assert writable == [p], "exactly one writable primary expected: %s" % writable
    for m, h in hellos.items():
        assert h["ok"] == 1
        assert h["setName"] == "rs0", (m.name, h)
        assert h["hosts"] == rs.hosts, (m.name, h["hosts"])
        assert h["setVersion"] == 1, (m.name, h)
        assert h["primary"] == p.host, (m.name, h)
        assert h["me"] == m.host, (m.name, h)
        assert h["ismaster"] is (m is p), (m.name, h)
        assert h["secondary"] is (m is not p), (m.name, h)
        assert "topologyVersion" in h and "lastWrite" in h, (m.name, sorted(h))
        if m is p:
            assert "electionId" in h, h
        else:
            assert "electionId" not in h, (m.name, h)
    ids = {h["topologyVersion"]["processId"] for h in hellos.values()}
    assert len(ids) == len(rs), "each member has its own topologyVersion.processId"


def test_driver_discovers_the_primary_from_any_seed(rs):
    p = rs.wait_healthy()
    for m in rs:
        with pymongo.MongoClient("mongodb://%s/?replicaSet=rs0" % m.host,
                                 serverSelectionTimeoutMS=20000) as c:
            c.admin.command("ping")
            assert c.primary == ("127.0.0.1", p.port), (m.name, c.primary)
            wait_for(lambda: len(c.secondaries) == len(rs) - 1, 20,
                     lambda: "the driver (seeded with %s) sees %d secondaries: %s"
                     % (m.name, len(rs) - 1, c.secondaries))


# -- replSetGetStatus / replSetGetConfig ------------------------------------------------------

def _status_problems(rs, p, election_everywhere=False):
    """What is wrong with replSetGetStatus on every member (empty when all is right). The
    primary's electionDate/electionTime are required in its own view, and with
    election_everywhere in every member's view (as mongod reports them from heartbeats)."""
    problems = []
    for m in rs:
        try:
            st = m.status()
        except OSError as exc:
            problems.append("%s: %r" % (m.name, exc))
            continue
        if st.get("ok") != 1:
            problems.append("%s: %r" % (m.name, _code(st)))
            continue
        where = "%s's status" % m.name
        if st.get("set") != "rs0":
            problems.append("%s: set %r" % (where, st.get("set")))
        if st.get("myState") != (PRIMARY if m is p else SECONDARY):
            problems.append("%s: myState %r" % (where, st.get("myState")))
        names = [e.get("name") for e in st.get("members", [])]
        if names != rs.hosts:
            problems.append("%s: members %r, expected %r" % (where, names, rs.hosts))
            continue
        for e, x in zip(st["members"], rs.members):
            what = "%s: entry of %s" % (where, x.name)
            want = PRIMARY if x is p else SECONDARY
            if e.get("_id") != x.index:
                problems.append("%s: _id %r" % (what, e.get("_id")))
            if e.get("health") != 1:
                problems.append("%s: health %r" % (what, e.get("health")))
            if e.get("state") != want or e.get("stateStr") != STATE_STR[want]:
                problems.append("%s: state %r %r" % (what, e.get("state"), e.get("stateStr")))
            op = e.get("optime")
            if not (isinstance(op, dict) and isinstance(op.get("ts"), Timestamp)
                    and isinstance(op.get("t"), int)):
                problems.append("%s: optime %r" % (what, op))
            if not isinstance(e.get("optimeDate"), datetime.datetime):
                problems.append("%s: optimeDate %r" % (what, e.get("optimeDate")))
            if x is m:
                if e.get("self") is not True:
                    problems.append("%s: self %r" % (what, e.get("self")))
            else:
                if not isinstance(e.get("lastHeartbeat"), datetime.datetime):
                    problems.append("%s: lastHeartbeat %r" % (what, e.get("lastHeartbeat")))
                ping = e.get("pingMs")
                if not isinstance(ping, int) or ping < 0:
                    problems.append("%s: pingMs %r" % (what, ping))
            if x is p and (m is p or election_everywhere):
                if not isinstance(e.get("electionDate"), datetime.datetime):
                    problems.append("%s: primary's electionDate %r"
                                    % (what, e.get("electionDate")))
                if not isinstance(e.get("electionTime"), Timestamp):
                    problems.append("%s: primary's electionTime %r"
                                    % (what, e.get("electionTime")))
    return problems


def test_replset_get_status_on_every_member(rs):
    p = rs.wait_healthy()
    # Heartbeats (every heartbeatIntervalMillis) bring each member's view up to date.
    wait_for(lambda: not _status_problems(rs, p), 20,
             lambda: "replSetGetStatus is right on every member:\n  "
             + "\n  ".join(_status_problems(rs, p)))
    statuses = {m: m.status() for m in rs}
    terms = {st["term"] for st in statuses.values()}
    assert len(terms) == 1, "members disagree on the term: %s" % {
        m.name: st["term"] for m, st in statuses.items()}
    for m, st in statuses.items():
        assert st["members"][m.index].get("self") is True
        assert sum(1 for e in st["members"] if e.get("self")) == 1, (m.name, st["members"])


def test_replset_get_status_primary_election_date_on_every_member(rs):
    p = rs.wait_healthy()
    wait_for(lambda: not _status_problems(rs, p, election_everywhere=True), 20,
             lambda: "every member's replSetGetStatus shows the primary's election:\n  "
             + "\n  ".join(_status_problems(rs, p, election_everywhere=True)))
    elections = {m.status()["members"][p.index]["electionDate"] for m in rs}
    assert len(elections) == 1, "members disagree on the primary's electionDate: %s" % elections


def test_replset_get_config_identical_everywhere(rs):
    rs.wait_healthy()
    configs = {}
    for m in rs:
        reply = m.command({"replSetGetConfig": 1})
        assert reply["ok"] == 1, (m.name, _code(reply))
        configs[m] = reply["config"]
    first = configs[rs.members[0]]
    for m, cfg in configs.items():
        assert cfg == first, "%s's config differs:\n%r\n%r" % (m.name, cfg, first)
    assert first["_id"] == "rs0" and first["version"] == 1
    assert [x["host"] for x in first["members"]] == rs.hosts
    assert [x["_id"] for x in first["members"]] == [m.index for m in rs]
    assert all(x["votes"] == 1 and x["priority"] == 1 for x in first["members"]), first
    settings = first["settings"]
    assert isinstance(settings["electionTimeoutMillis"], int)
    assert isinstance(settings["heartbeatIntervalMillis"], int)
    assert settings["heartbeatIntervalMillis"] < settings["electionTimeoutMillis"]
    assert "replicaSetId" in settings


# -- replication ------------------------------------------------------------------------------

def test_majority_write_seen_by_majority_reads_on_every_secondary(rs, rng):
    p = rs.wait_healthy()
    doc = {"_id": _doc_id(rng, "maj"), "n": rng.randint(0, 1 << 30), "members": len(rs)}
    with rs.client() as c:
        coll = c.rsb.majority.with_options(write_concern=WriteConcern(w="majority"))
        with c.start_session(causal_consistency=True) as s:
            coll.insert_one(doc, session=s)
            op_time, cluster_time = s.operation_time, s.cluster_time
    for m in rs:
        if m is p:
            continue
        with m.client(readPreference="secondary") as dc:
            sec = dc.rsb.get_collection("majority", read_concern=ReadConcern("majority"),
                                        read_preference=ReadPreference.SECONDARY)
            # Causally after the write (afterClusterTime): must see it at once.
            with dc.start_session(causal_consistency=True) as s2:
                s2.advance_cluster_time(cluster_time)
                s2.advance_operation_time(op_time)
                got = sec.find_one({"_id": doc["_id"]}, session=s2)
                assert got == doc, "%s: majority read after the write's operationTime: %r" % (
                    m.name, got)
            # Without afterClusterTime: eventually (the majority point travels to it).
            wait_for(lambda: sec.find_one({"_id": doc["_id"]}) == doc, 20,
                     "%s: a plain majority read sees %s" % (m.name, doc["_id"]))


def test_w1_write_eventually_seen_by_local_reads_on_secondaries(rs, rng):
    p = rs.wait_healthy()
    docs = [{"_id": _doc_id(rng, "w1"), "i": i} for i in range(20)]
    with rs.client() as c:
        coll = c.rsb.get_collection("w1", write_concern=WriteConcern(w=1))
        for d in docs:
            coll.insert_one(d)
    for m in rs:
        if m is p:
            continue
        with m.client(readPreference="secondaryPreferred") as dc:
            sec = dc.rsb.get_collection("w1", read_concern=ReadConcern("local"))
            ids = [d["_id"] for d in docs]
            wait_for(lambda: sorted(sec.find({"_id": {"$in": ids}}), key=lambda d: d["i"])
                     == docs, 20, "%s: a local read sees all 20 w:1 writes" % m.name)


def test_write_concern_with_a_paused_secondary(rs, rng):
    """w:<all> cannot be met while a secondary is stopped (SIGSTOP): wtimeout gives a
    writeConcernError 64 with errInfo.wtimeout, and the write stays; w:"majority" still
    succeeds; w larger than the set is UnsatisfiableWriteConcern (100)."""
    p = rs.wait_healthy()
    victim = rng.choice([m for m in rs if m is not p])
    doc_all = {"_id": _doc_id(rng, "wall")}
    doc_maj = {"_id": _doc_id(rng, "wmaj")}
    with rs.client() as c:
        db = c.rsb
        reply = db.command({"insert": "wc", "documents": [{"_id": "too-many"}],
                            "writeConcern": {"w": len(rs) + 1}}, check=False)
        assert reply.get("code") == 100 or (reply.get("writeConcernError") or {}).get(
            "code") == 100, reply
        victim.pause()
        try:
            reply = db.command({"insert": "wc", "documents": [doc_all],
                                "writeConcern": {"w": len(rs), "wtimeout": 500}})
            wce = reply.get("writeConcernError")
            assert reply["ok"] == 1 and reply.get("n") == 1, reply
            assert wce and wce.get("code") == 64, reply
            assert (wce.get("errInfo") or {}).get("wtimeout") is True, wce
            db.get_collection("wc", write_concern=WriteConcern(w="majority")).insert_one(doc_maj)
            maj = db.get_collection("wc", read_concern=ReadConcern("majority"))
            assert maj.find_one({"_id": doc_all["_id"]}) == doc_all, "the timed-out write stays"
            assert maj.find_one({"_id": doc_maj["_id"]}) == doc_maj
        finally:
            victim.resume()
    assert rs.wait_healthy() is p
    rs.wait_caught_up()


def test_writes_on_a_secondary_get_not_writable_primary(rs, rng):
    p = rs.wait_healthy()
    doc_id = _doc_id(rng, "refused")
    writes = [
        {"insert": "refused", "documents": [{"_id": doc_id}]},
        {"update": "refused", "updates": [{"q": {"_id": doc_id}, "u": {"$set": {"x": 1}},
                                           "upsert": True}]},
        {"delete": "refused", "deletes": [{"q": {}, "limit": 0}]},
        {"findAndModify": "refused", "query": {"_id": doc_id}, "update": {"$set": {"x": 1}},
         "upsert": True},
        {"create": "refused_new"},
    ]
    for m in rs:
        if m is p:
            continue
        for w in writes:
            # Even with secondaryOk ($readPreference) a write is refused.
            for extra in ({}, {"$readPreference": {"mode": "secondaryPreferred"}}):
                cmd = dict(w, **extra)
                reply = m.command(cmd, db="rsb")
                assert reply["ok"] == 0 and reply.get("code") == 10107, (m.name, cmd,
                                                                          _code(reply))
                assert reply.get("codeName") == "NotWritablePrimary", (m.name, _code(reply))
        with m.client() as dc:
            with pytest.raises((NotPrimaryError, OperationFailure)) as ei:
                dc.rsb.refused.insert_one({"_id": doc_id})
            assert (ei.value.details or {}).get("code") == 10107, (m.name, ei.value)
    with rs.client() as c:
        coll = c.rsb.get_collection("refused", read_concern=ReadConcern("majority"))
        assert coll.find_one({"_id": doc_id}) is None, "a refused write was applied"
        assert "refused_new" not in c.rsb.list_collection_names()


def test_reads_on_a_secondary_need_secondary_ok(rs, rng):
    p = rs.wait_healthy()
    doc = {"_id": _doc_id(rng, "sok")}
    with rs.client() as c:
        c.rsb.get_collection("sok", write_concern=WriteConcern(w=len(rs))).insert_one(doc)
    reads = [{"find": "sok"}, {"count": "sok"},
             {"aggregate": "sok", "pipeline": [], "cursor": {}},
             {"distinct": "sok", "key": "_id"}]
    for m in rs:
        for r in reads:
            reply = m.command(r, db="rsb")
            if m is p:
                assert reply["ok"] == 1, (m.name, r, _code(reply))
                continue
            assert reply["ok"] == 0 and reply.get("code") == 13435, (m.name, r, _code(reply))
            assert reply.get("codeName") == "NotPrimaryNoSecondaryOk", _code(reply)
            ok = m.command(dict(r, **{"$readPreference": {"mode": "secondaryPreferred"}}),
                           db="rsb")
            assert ok["ok"] == 1, (m.name, r, _code(ok))
        # killCursors needs no secondaryOk (as with mongod).
        if m is not p:
            r = m.command({"find": "sok", "batchSize": 0,
                           "$readPreference": {"mode": "secondaryPreferred"}}, db="rsb")
            cid = r["cursor"]["id"]
            if cid:
                k = m.command({"killCursors": "sok", "cursors": [cid]}, db="rsb")
                assert k["ok"] == 1 and k["cursorsKilled"] == [cid], (m.name, k)
        # Commands that are not reads of user data stay allowed without secondaryOk.
        for cmd in ({"hello": 1}, {"ping": 1}, {"replSetGetStatus": 1}, {"buildInfo": 1}):
            assert m.command(cmd)["ok"] == 1, (m.name, cmd)


def test_cursor_on_a_secondary_reads_every_batch(rs, rng):
    p = rs.wait_healthy()
    tag = _doc_id(rng, "batches")
    with rs.client(w="majority") as c:
        c.rsb.batches.insert_many([{"tag": tag, "i": i} for i in range(250)])
    for m in rs:
        if m is p:
            continue
        with m.client(readPreference="secondaryPreferred") as dc:
            coll = dc.rsb.get_collection("batches", read_concern=ReadConcern("local"))
            wait_for(lambda: coll.count_documents({"tag": tag}) == 250, 20,
                     "%s applied the 250 documents" % m.name)
            got = [d["i"] for d in coll.find({"tag": tag}).sort("i", 1).batch_size(50)]
            assert got == list(range(250)), (m.name, len(got))
            # What drivers send: getMore without $readPreference.
            r = m.command({"find": "batches", "filter": {"tag": tag}, "batchSize": 10,
                           "$readPreference": {"mode": "secondaryPreferred"}}, db="rsb")
            more = m.command({"getMore": r["cursor"]["id"], "collection": "batches",
                              "batchSize": 10}, db="rsb")
            assert more["ok"] == 1 and len(more["cursor"]["nextBatch"]) == 10, (m.name,
                                                                                 _code(more))


# -- members that come back -------------------------------------------------------------------

def _count_on(m, coll, query):
    with m.client(readPreference="secondaryPreferred") as dc:
        return dc.rsb.get_collection(coll, read_concern=ReadConcern("local")) \
            .count_documents(query)


def test_killed_secondary_rejoins_and_catches_up(rs, rng):
    p = rs.wait_healthy()
    victim = rng.choice([m for m in rs if m is not p])
    tag = _doc_id(rng, "rejoin")
    with rs.client(w="majority") as c:
        coll = c.rsb.rejoin
        coll.insert_many([{"tag": tag, "i": i, "phase": "before"} for i in range(50)])
        victim.kill9()
        # A majority remains: majority writes go on while the member is down.
        coll.insert_many([{"tag": tag, "i": i, "phase": "down"} for i in range(200)])
        victim.start()
        assert rs.wait_healthy() is p, "a returning secondary must not disturb the primary"
        coll.insert_many([{"tag": tag, "i": i, "phase": "after"} for i in range(50)])
    rs.wait_caught_up()
    assert _count_on(victim, "rejoin", {"tag": tag}) == 300
    _primary_sees_caught_up(p, victim)


def _primary_sees_caught_up(p, victim):
    """The primary's replSetGetStatus (from heartbeats) shows `victim` healthy, SECONDARY,
    at the primary's own optime (term included)."""
    def view():
        st = p.status()
        return st["members"][victim.index], st["members"][p.index]

    def ok():
        entry, own = view()
        return (entry["health"] == 1 and entry["stateStr"] == "SECONDARY"
                and entry["optime"] == own["optime"])

    wait_for(ok, 20, lambda: "the primary's status shows %s caught up: %r vs its own %r"
             % (victim.name, *[{k: e.get(k) for k in ("health", "stateStr", "optime")}
                               for e in view()]))


def test_cleanly_restarted_secondary_rejoins_and_catches_up(rs, rng):
    p = rs.wait_healthy()
    victim = rng.choice([m for m in rs if m is not p])
    tag = _doc_id(rng, "restart")
    with rs.client(w="majority") as c:
        coll = c.rsb.restart
        victim.stop()
        assert victim.proc.returncode == 0, victim.log_tail()
        coll.insert_many([{"tag": tag, "i": i} for i in range(100)])
        victim.start()
        assert rs.wait_healthy() is p
    rs.wait_caught_up()
    assert _count_on(victim, "restart", {"tag": tag}) == 100
    _primary_sees_caught_up(p, victim)


def test_restarted_secondary_reports_its_optime_term(rs_factory):
    rs = rs_factory(3)
    with rs.client(w=3) as c:
        c.rsb.term.insert_one({"_id": 1})
        first = rs.wait_primary()
        first.kill9()
        p = rs.wait_primary(exclude=[first])
        first.start()
        assert rs.wait_healthy() is p
        c.rsb.term.insert_one({"_id": 2})       # an entry of the new term everywhere
    rs.wait_caught_up()
    victim = next(m for m in rs if m is not p)
    victim.kill9()
    victim.start()
    assert rs.wait_healthy() is p
    own = p.status()["members"][p.index]["optime"]
    assert own["t"] >= 2, own
    assert victim.status()["optimes"]["appliedOpTime"] == own
    wait_for(lambda: p.status()["members"][victim.index]["optime"] == own, 20,
             lambda: "the primary's status shows %s at %r, not %r" % (
                 victim.name, p.status()["members"][victim.index]["optime"], own))


def test_wiped_secondary_rejoins_and_catches_up(rs_factory, rng):
    rs = rs_factory(3)
    p = rs.wait_healthy()
    victim = rng.choice([m for m in rs if m is not p])
    with rs.client(w="majority") as c:
        coll = c.rsb.wiped
        coll.insert_many([{"i": i, "phase": "before"} for i in range(100)])
        victim.stop()
        victim.wipe()
        coll.insert_many([{"i": i, "phase": "down"} for i in range(100)])
        victim.start()
        wait_for(lambda: victim.hello().get("setName") == "rs0", 20,
                 "the wiped member adopts the config from heartbeats")
        assert rs.wait_healthy() is p
        coll.insert_many([{"i": i, "phase": "after"} for i in range(100)])
    rs.wait_caught_up(timeout=30)
    assert _count_on(victim, "wiped", {}) == 300
