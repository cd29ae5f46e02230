"""Cluster-wide read/write concern defaults on a 3-member set, as mongod 7.0:
getDefaultRWConcern answers the implicit defaults until setDefaultRWConcern stores others in a
replicated document (config.settings {_id: "ReadWriteConcernDefaults"}) that every member
applies, so the defaults survive a failover; commands that name no concern use them; and
setDefaultRWConcern refuses what mongod refuses.

Members run on 127.0.0.54-56. The tests share one set and run in file order: the first one
needs a set where nothing was set yet. Every test awaits conditions; none asserts a duration.
"""

import datetime
import random

import pytest
from bson import Timestamp
from pymongo import WriteConcern
from pymongo.errors import WriteConcernError
from pymongo.read_concern import ReadConcern

from cairn_rs import make_replica_set, wait_for

IPS = ["127.0.0.54", "127.0.0.55", "127.0.0.56"]
SEED = 20261205

BadValue = 2
FailedToParse = 9
TypeMismatch = 14
IllegalOperation = 20
UnknownReplWriteConcern = 79
UnsatisfiableWriteConcern = 100
NotWritablePrimary = 10107
Unauthorized = 13
IdlUnknownField = 40415
WriteConcernFailed = 64


@pytest.fixture(scope="module")
def rs(tmp_path_factory, request):
    yield from make_replica_set(tmp_path_factory, request, 3, ips=IPS)


@pytest.fixture
def rng(request):
    return random.Random("%s:%s" % (SEED, request.node.name))


def _set(member, **fields):
    return member.command(dict({"setDefaultRWConcern": 1}, **fields), timeout=30.0)


def _get(member, **fields):
    return member.command(dict({"getDefaultRWConcern": 1}, **fields))


def _defaults(reply):
    return {k: reply.get(k) for k in ("defaultReadConcern", "defaultWriteConcern",
                                      "defaultReadConcernSource", "defaultWriteConcernSource",
                                      "updateOpTime")}


def _wait_everywhere(rs, expected):
    """Waits until every running member answers getDefaultRWConcern with `expected`."""
    def same():
        return all(_defaults(_get(m)) == expected for m in rs.up())
    wait_for(same, 30, lambda: "every member to report %r; got %r"
             % (expected, {m.name: _defaults(_get(m)) for m in rs.up()}))


def test_implicit_defaults_before_any_set(rs):
    rs.wait_healthy()
    for m in rs:
        r = _get(m)
        assert r["ok"] == 1.0, r
        assert r["defaultReadConcern"] == {"level": "local"}
        assert r["defaultWriteConcern"] == {"w": "majority", "wtimeout": 0}
        assert r["defaultReadConcernSource"] == "implicit"
        assert r["defaultWriteConcernSource"] == "implicit"
        assert "updateOpTime" not in r and "updateWallClockTime" not in r
        assert isinstance(r["localUpdateWallClockTime"], datetime.datetime)
        assert "inMemory" not in r
        assert _get(m, inMemory=True)["inMemory"] is True


def test_set_default_rw_concern_validation_errors(rs):
    p = rs.wait_healthy()
    cases = [
        ({}, BadValue),                                                     # nothing to set
        ({"defaultWriteConcern": {"w": 0}}, BadValue),                      # unacknowledged
        ({"defaultReadConcern": {"level": "snapshot"}}, BadValue),
        ({"defaultReadConcern": {"level": "linearizable"}}, BadValue),
        ({"defaultReadConcern": {"level": "majority",
                                 "afterClusterTime": Timestamp(1, 1)}}, BadValue),
        ({"defaultReadConcern": {"level": "bogus"}}, FailedToParse),
        ({"defaultReadConcern": "majority"}, TypeMismatch),
        ({"defaultWriteConcern": {"w": 5}}, UnsatisfiableWriteConcern),    # 3 members
        ({"defaultWriteConcern": {"w": "noSuchTag"}}, UnknownReplWriteConcern),
        ({"defaultWriteConcern": {"w": 1, "provenance": "customDefault"}}, BadValue),
        ({"defaultReadConcern": {"level": "local"}, "bogusField": 1}, IdlUnknownField),
    ]
    for fields, code in cases:
        r = _set(p, **fields)
        assert r["ok"] == 0.0 and r["code"] == code, (fields, r)
    # Only on the admin database, and only on the primary.
    r = p.command({"setDefaultRWConcern": 1, "defaultReadConcern": {"level": "local"}},
                  db="test")
    assert r["ok"] == 0.0 and r["code"] == Unauthorized, r
    for s in [m for m in rs if m is not p]:
        r = s.command({"setDefaultRWConcern": 1, "defaultReadConcern": {"level": "local"},
                       "$readPreference": {"mode": "secondaryPreferred"}})
        assert r["ok"] == 0.0 and r["code"] == NotWritablePrimary, r
    # None of them changed anything.
    for m in rs:
        r = _get(m)
        assert r["defaultReadConcernSource"] == "implicit", r
        assert r["defaultWriteConcernSource"] == "implicit", r


def test_set_default_rw_concern_round_trip_on_every_member(rs):
    p = rs.wait_healthy()
    before = p.command({"ping": 1})["operationTime"]
    r = _set(p, defaultReadConcern={"level": "majority"},
             defaultWriteConcern={"w": 2, "wtimeout": 5000})
    assert r["ok"] == 1.0, r
    assert r["defaultReadConcern"] == {"level": "majority"}
    assert r["defaultWriteConcern"] == {"w": 2, "wtimeout": 5000}
    assert r["defaultReadConcernSource"] == "global"
    assert r["defaultWriteConcernSource"] == "global"
    assert isinstance(r["updateOpTime"], Timestamp) and r["updateOpTime"] >= before
    assert isinstance(r["updateWallClockTime"], datetime.datetime)
    assert isinstance(r["localUpdateWallClockTime"], datetime.datetime)
    _wait_everywhere(rs, _defaults(r))
    # The stored document is the replicated one, as in mongod.
    with rs.client() as c:
        doc = c.config.settings.find_one({"_id": "ReadWriteConcernDefaults"})
    assert doc["defaultReadConcern"] == {"level": "majority"}
    assert doc["defaultWriteConcern"] == {"w": 2, "wtimeout": 5000}
    assert doc["updateOpTime"] == r["updateOpTime"]

    # Setting one keeps the other; {} unsets the read concern default.
    r2 = _set(p, defaultReadConcern={})
    assert r2["ok"] == 1.0, r2
    assert r2["defaultReadConcern"] == {"level": "local"}
    assert r2["defaultReadConcernSource"] == "implicit"
    assert r2["defaultWriteConcern"] == {"w": 2, "wtimeout": 5000}
    assert r2["defaultWriteConcernSource"] == "global"
    assert r2["updateOpTime"] > r["updateOpTime"]
    _wait_everywhere(rs, _defaults(r2))
    # The write concern default cannot be unset once set.
    r3 = _set(p, defaultWriteConcern={})
    assert r3["ok"] == 0.0 and r3["code"] == IllegalOperation, r3
    r4 = _set(p, defaultWriteConcern={"w": "majority", "j": True})
    assert r4["ok"] == 1.0, r4
    assert r4["defaultWriteConcern"] == {"w": "majority", "j": True, "wtimeout": 0}
    _wait_everywhere(rs, _defaults(r4))


def test_default_write_concern_applies_to_writes_without_one(rs, rng):
    p = rs.wait_healthy()
    rs.wait_caught_up()
    name = "c_%08x" % rng.getrandbits(32)
    r = _set(p, defaultWriteConcern={"w": 3, "wtimeout": 1000})
    assert r["ok"] == 1.0, r
    _wait_everywhere(rs, _defaults(r))
    paused = [m for m in rs if m is not p][0]
    paused.pause()
    try:
        with p.client() as c:
            coll = c.wrc[name]  # pymongo sends no writeConcern: the default applies
            with pytest.raises(WriteConcernError) as ei:
                coll.insert_one({"_id": 1})
            assert ei.value.code == WriteConcernFailed
            assert ei.value.details["errInfo"]["wtimeout"] is True
            # The write itself stays; an explicit write concern overrides the default.
            coll.with_options(write_concern=WriteConcern(w=2)).insert_one({"_id": 2})
            assert coll.count_documents({}) == 2
            # A write concern without w takes w from the default.
            r = p.command({"insert": name, "documents": [{"_id": 3}],
                           "writeConcern": {"wtimeout": 300}}, db="wrc", timeout=30.0)
            assert r["ok"] == 1.0 and r["n"] == 1, r
            assert r["writeConcernError"]["code"] == WriteConcernFailed, r
    finally:
        paused.resume()
    rs.wait_healthy()
    r = _set(p, defaultWriteConcern={"w": "majority"})
    assert r["ok"] == 1.0, r
    _wait_everywhere(rs, _defaults(r))


def test_default_read_concern_applies_to_reads_without_one(rs, rng):
    """With defaultReadConcern majority, a plain find on the primary misses a w:1 write that
    is not yet majority-committed (both secondaries paused), which an explicit local read
    right after it sees."""
    p = rs.wait_healthy()
    name = "c_%08x" % rng.getrandbits(32)
    r = _set(p, defaultReadConcern={"level": "majority"})
    assert r["ok"] == 1.0, r
    _wait_everywhere(rs, _defaults(r))
    seen = None
    for attempt in range(5):
        p = rs.wait_healthy()
        secondaries = [m for m in rs if m is not p]
        key = "w1-%d" % attempt
        with p.client(retryWrites=False, retryReads=False) as c:
            for s in secondaries:
                s.pause()
            try:
                c.rrc.get_collection(name, write_concern=WriteConcern(w=1)).insert_one(
                    {"_id": key})
                plain = c.rrc[name].find_one({"_id": key})
                local = c.rrc.get_collection(
                    name, read_concern=ReadConcern("local")).find_one({"_id": key})
            except Exception:  # noqa: BLE001 - the primary stepped down: try again
                local = None
            finally:
                for s in secondaries:
                    s.resume()
        if local is not None:
            seen = plain
            break
    assert local is not None, "the primary stepped down before every attempt's reads"
    assert seen is None, "a read without readConcern saw a write that is not majority-committed"
    rs.wait_healthy()
    r = _set(p, defaultReadConcern={})
    assert r["ok"] == 1.0, r


def test_defaults_persist_across_failover(rs):
    old = rs.wait_healthy()
    rs.wait_caught_up()
    r = _set(old, defaultReadConcern={"level": "majority"},
             defaultWriteConcern={"w": 2, "wtimeout": 7000})
    assert r["ok"] == 1.0, r
    expected = _defaults(r)
    _wait_everywhere(rs, expected)
    old.kill9()
    try:
        new = rs.wait_primary(exclude=[old])
        got = _get(new)
        assert _defaults(got) == expected, got
        # The new primary applies them: its own next change builds on them.
        r2 = _set(new, defaultReadConcern={"level": "local"})
        assert r2["ok"] == 1.0, r2
        assert r2["defaultWriteConcern"] == {"w": 2, "wtimeout": 7000}
        assert r2["defaultReadConcern"] == {"level": "local"}
    finally:
        old.start()
    rs.wait_healthy()
    _wait_everywhere(rs, _defaults(r2))
    r = _set(rs.primary(), defaultWriteConcern={"w": "majority"}, defaultReadConcern={})
    assert r["ok"] == 1.0, r
