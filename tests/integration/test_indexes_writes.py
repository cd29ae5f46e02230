"""update, delete and findAndModify find their documents through indexes: explain shows the
IXSCAN, and a large seeded sequence of random writes gives exactly the results (counts,
returned documents, final contents) the same writes give on an unindexed copy; an updateMany
that moves the indexed field within (or into) the range it scans changes every document once,
also when the statement commits in several parts; in a transaction whose earlier statements
staged writes, later statements still see them (they scan the collection); aggregate's leading
$match/$sort read through the index with the same results; and on 3 members every index still
equals its rebuild (validate) after indexed updates and deletes."""

import random

import pytest
from pymongo import ReturnDocument, WriteConcern

from cairn_rs import make_replica_set
from workers import Workers

SEED = 20261205


def leaf(plan):
    while "inputStage" in plan:
        plan = plan["inputStage"]
    return plan


def write_plan(db, cmd):
    e = db.command("explain", cmd, verbosity="queryPlanner")
    return e["queryPlanner"]["winningPlan"]


def rand_doc(rng, i):
    d = {"_id": i, "u": i * 7 % 1009, "a": rng.randrange(40), "b": rng.choice(["x", "y", "z"])}
    r = rng.random()
    if r < 0.15:
        d["a"] = [rng.randrange(40), rng.randrange(40)]
    elif r < 0.2:
        del d["a"]
    elif r < 0.25:
        d["a"] = None
    elif r < 0.3:
        d["a"] = rng.randrange(40) + 0.5
    return d


def rand_filter(rng):
    lo = rng.randrange(-2, 42)
    hi = lo + rng.randrange(1, 15)
    return rng.choice([
        {"a": lo},
        {"a": {"$gte": lo, "$lt": hi}},
        {"a": {"$gt": lo}},
        {"a": {"$lte": lo}},
        {"a": {"$in": [lo, hi, None]}},
        {"b": rng.choice("xyz"), "a": {"$gte": lo}},
        {"b": rng.choice("xyz")},
        {"a": {"$gte": lo, "$lt": hi}, "u": {"$gt": rng.randrange(1009)}},
        {"$or": [{"a": lo}, {"b": "x"}]},
        {"a": None},
    ])


def rand_update(rng):
    return rng.choice([
        {"$inc": {"a": rng.randrange(-10, 11)}},
        {"$set": {"a": rng.randrange(40)}},
        {"$set": {"b": rng.choice("xyz")}},
        {"$set": {"a": [rng.randrange(40), rng.randrange(40)]}},
        {"$unset": {"a": ""}},
        {"$set": {"c": rng.randrange(5)}},
        {"$mul": {"a": 2}},
    ])


@pytest.fixture
def pair(db):
    rng = random.Random(SEED)
    docs = [rand_doc(rng, i) for i in range(600)]
    ix, plain = db.ix, db.plain
    ix.insert_many(docs)
    plain.insert_many(docs)
    ix.create_index("a")
    ix.create_index([("b", 1), ("a", 1)])
    ix.create_index("u", unique=True)
    return ix, plain


def contents(c):
    return list(c.find({}, sort=[("_id", 1)]))


def test_writes_use_the_index(db, pair):
    ix, _ = pair
    plan = write_plan(db, {"update": "ix", "updates": [
        {"q": {"a": {"$gte": 5, "$lt": 9}}, "u": {"$set": {"c": 1}}, "multi": True}]})
    assert plan["stage"] == "UPDATE" and leaf(plan)["indexName"] == "a_1"
    plan = write_plan(db, {"delete": "ix", "deletes": [{"q": {"b": "x", "a": 3}, "limit": 0}]})
    assert plan["stage"] == "DELETE" and leaf(plan)["indexName"] == "b_1_a_1"
    plan = write_plan(db, {"findAndModify": "ix", "query": {"u": {"$gt": 10}},
                           "sort": {"u": 1}, "remove": True})
    assert leaf(plan)["indexName"] == "u_1" and plan["inputStage"]["stage"] == "FETCH"


def scanned(db):
    q = db.client.admin.command("serverStatus")["metrics"]["queryExecutor"]
    return q["scanned"], q["scannedObjects"]


def test_writes_examine_only_what_the_index_gives(db, pair):
    # serverStatus metrics.queryExecutor: index keys and documents the scans examined
    ix, plain = pair
    n = ix.count_documents({"u": {"$gte": 100, "$lt": 120}})
    for op in (lambda c: c.update_many({"u": {"$gte": 100, "$lt": 120}}, {"$inc": {"c": 1}}),
               lambda c: c.delete_many({"u": {"$gte": 100, "$lt": 120}}),
               lambda c: c.find_one_and_update({"u": {"$gt": 500}}, {"$set": {"c": 2}},
                                               sort=[("u", 1)]),
               lambda c: list(c.aggregate([{"$match": {"u": {"$gte": 200, "$lt": 220}}}]))):
        k0, d0 = scanned(db)
        op(ix)
        k1, d1 = scanned(db)
        assert k1 - k0 <= 25 and d1 - d0 <= 25, (k1 - k0, d1 - d0)
        op(plain)
        k2, d2 = scanned(db)
        assert k2 - k1 == 0 and d2 - d1 >= 500
    assert n > 0


def test_random_writes_through_indexes_match_an_unindexed_copy(pair):
    ix, plain = pair
    rng = random.Random(SEED + 1)
    for step in range(400):
        kind = rng.random()
        flt = rand_filter(rng)
        if kind < 0.3:
            upd = rand_update(rng)
            try:
                r1 = ix.update_many(flt, upd)
            except Exception as e:  # an operator the value does not take: no change on both
                with pytest.raises(type(e)):
                    plain.update_many(flt, upd)
                continue
            r2 = plain.update_many(flt, upd)
            assert (r1.matched_count, r1.modified_count) == \
                (r2.matched_count, r2.modified_count), (step, flt, upd)
        elif kind < 0.4:
            r1 = ix.delete_many(flt)
            r2 = plain.delete_many(flt)
            assert r1.deleted_count == r2.deleted_count, (step, flt)
        elif kind < 0.55:
            # findAndModify sorted by the unique indexed field: one right answer
            upd = {"$set": {"c": step}}
            d1 = ix.find_one_and_update(flt, upd, sort=[("u", 1)],
                                        return_document=ReturnDocument.AFTER)
            d2 = plain.find_one_and_update(flt, upd, sort=[("u", 1)],
                                           return_document=ReturnDocument.AFTER)
            assert d1 == d2, (step, flt)
        elif kind < 0.65:
            d1 = ix.find_one_and_delete(flt, sort=[("u", -1)])
            d2 = plain.find_one_and_delete(flt, sort=[("u", -1)])
            assert d1 == d2, (step, flt)
        elif kind < 0.8:
            # update_one / delete_one pick whichever match the plan yields first: the
            # indexed side picks one, which must match; the copy then changes that one.
            upd = rand_update(rng)
            try:
                d1 = ix.find_one_and_update(flt, upd)
            except Exception:
                continue
            if d1 is None:
                assert plain.find_one(flt) is None, (step, flt)
                continue
            assert plain.find_one(dict(flt, _id=d1["_id"])) is not None, (step, flt)
            plain.update_one({"_id": d1["_id"]}, upd)
        elif kind < 0.9:
            before = ix.count_documents(flt)
            r1 = ix.delete_one(flt)
            assert r1.deleted_count == min(before, 1)
            if before:
                gone = {d["_id"] for d in plain.find(flt)} - {d["_id"] for d in ix.find(flt)}
                assert len(gone) == 1
                plain.delete_one({"_id": gone.pop()})
        else:
            # upserts: same outcome when nothing matches
            q = {"u": 2000 + step, "a": rng.randrange(40)}
            r1 = ix.update_one(q, {"$set": {"b": "w"}}, upsert=True)
            r2 = plain.update_one(q, {"$set": {"b": "w"}, "$setOnInsert": {"_id": r1.upserted_id}},
                                  upsert=True)
            assert r1.upserted_id is not None and r2.upserted_id == r1.upserted_id
        if step % 50 == 0:
            assert contents(ix) == contents(plain), step
    assert contents(ix) == contents(plain)
    v = ix.database.command("validate", "ix")
    assert v["valid"] is True, v
    n = ix.count_documents({})
    assert v["nrecords"] == n and v["keysPerIndex"]["u_1"] == n


@pytest.mark.parametrize("pad", [0, 20000])
def test_update_many_moving_the_indexed_field_changes_each_document_once(db, pad):
    # pad 20000: 1000 documents of 20 KB make the statement commit in several parts while
    # the index scan goes on over its view.
    c = db.mv
    c.insert_many([{"_id": i, "a": i, "p": "x" * pad} for i in range(1000)])
    c.create_index("a")
    flt = {"a": {"$gte": 0, "$lt": 5000}}
    assert leaf(write_plan(db, {"update": "mv", "updates": [
        {"q": flt, "u": {"$inc": {"a": 1}}, "multi": True}]}))["stage"] == "IXSCAN"
    # Each document moves up past entries still to be scanned.
    r = c.update_many(flt, {"$inc": {"a": 1}})
    assert (r.matched_count, r.modified_count) == (1000, 1000)
    assert sorted(d["a"] for d in c.find({}, {"a": 1})) == list(range(1, 1001))
    # Documents moving into the range from below it are not visited (not in the view's range).
    c.update_many({"a": {"$lt": 500}}, {"$set": {"a": -1}})
    r = c.update_many({"a": {"$gte": 500}}, {"$inc": {"a": 1000}})
    assert r.modified_count == 501
    r = c.update_many({"a": {"$gte": -1, "$lt": 3000}}, {"$mul": {"a": 2}})
    assert r.modified_count == 1000
    got = sorted(d["a"] for d in c.find({}, {"a": 1}))
    assert got == sorted([-2] * 499 + [2 * (a + 1000) for a in range(500, 1001)])
    v = db.command("validate", "mv")
    assert v["valid"] is True and v["keysPerIndex"]["a_1"] == 1000


def test_concurrent_update_many_through_the_index_changes_every_document_once_each(server, db):
    # Every statement's filter matches every document before and after it changes: each of
    # the 4 x 15 statements must change each document exactly once, while the others move
    # the indexed field it scans.
    c = db.conc
    c.insert_many([{"_id": i, "a": i, "n": 0} for i in range(300)])
    c.create_index("a")
    counts = []

    def work(k):
        cl = server.client()
        try:
            col = cl[db.name].conc
            for _ in range(15):
                counts.append(col.update_many({"a": {"$gte": 0}}, {"$inc": {"a": 1, "n": 1}})
                              .modified_count)
        finally:
            cl.close()

    w = Workers()
    for k in range(4):
        w.start(work, k)
    w.finish(timeout=120)
    assert counts == [300] * 60
    assert all(d["n"] == 60 and d["a"] == d["_id"] + 60 for d in c.find())
    assert db.command("validate", "conc")["valid"] is True


def test_concurrent_find_and_modify_queue_hands_out_each_job_once(server, db):
    c = db.jobs
    c.insert_many([{"_id": i, "state": "todo", "pri": (i * 37) % 200} for i in range(200)])
    c.create_index([("state", 1), ("pri", 1)])
    taken = [[] for _ in range(5)]

    def work(k):
        cl = server.client()
        try:
            col = cl[db.name].jobs
            while True:
                d = col.find_one_and_update({"state": "todo"}, {"$set": {"state": k}},
                                            sort=[("state", 1), ("pri", 1)])
                if d is None:
                    return
                taken[k].append(d["pri"])
        finally:
            cl.close()

    w = Workers()
    for k in range(5):
        w.start(work, k)
    w.finish(timeout=120)
    got = [p for t in taken for p in t]
    assert sorted(got) == list(range(200))
    for t in taken:
        assert t == sorted(t)  # each client takes the least priority left, in order
    plan = write_plan(db, {"findAndModify": "jobs", "query": {"state": "todo"},
                           "sort": {"state": 1, "pri": 1}, "update": {"$set": {"x": 1}}})
    assert plan["inputStage"]["stage"] == "FETCH"  # no SORT: the index gives the order


def test_transaction_with_staged_writes_sees_them(client, db):
    ix, plain = db.tix, db.tplain
    for c in (ix, plain):
        c.insert_many([{"_id": i, "a": i % 20, "b": i} for i in range(200)])
    ix.create_index("a")
    results, examined = {}, {}
    for c in (ix, plain):
        with client.start_session() as s:
            with s.start_transaction():
                # first statement: nothing staged yet (an index scan serves it)
                _, d0 = scanned(db)
                r0 = c.update_many({"a": {"$gte": 5, "$lt": 10}}, {"$inc": {"a": 10}}, session=s)
                _, d1 = scanned(db)
                # later statements must see the staged values: they scan the collection
                r1 = c.update_one({"_id": 3}, {"$set": {"a": 777}}, session=s)
                r2 = c.update_many({"a": 777}, {"$set": {"hit": 1}}, session=s)
                _, d2 = scanned(db)
                r3 = c.update_many({"a": {"$gte": 15, "$lt": 20}}, {"$set": {"top": 1}}, session=s)
                _, d3 = scanned(db)
                examined[c.name] = (d1 - d0, d3 - d2)
                c.insert_one({"_id": 1000, "a": 7}, session=s)
                r4 = c.delete_many({"a": 7}, session=s)
                d5 = c.find_one_and_update({"a": {"$gte": 15}}, {"$set": {"f": 1}},
                                           sort=[("a", 1), ("_id", 1)], session=s,
                                           return_document=ReturnDocument.AFTER)
                n6 = c.count_documents({"a": {"$gte": 15, "$lt": 20}}, session=s)
                results[c.name] = ((r0.modified_count, r1.modified_count, r2.modified_count,
                                    r3.modified_count, r4.deleted_count, n6), d5)
    assert results["tix"] == results["tplain"]
    # (range bounds are scanned inclusively: the 10 documents at a=10 are fetched too)
    assert 50 <= examined["tix"][0] <= 60 and examined["tix"][1] == 200
    assert examined["tplain"] == (200, 200)
    (m0, m1, m2, m3, d4, n6), d5 = results["tix"]
    assert (m0, m1, m2, d4) == (50, 1, 1, 1)  # a=7 docs moved to 17: only the insert matches
    assert m3 == 100  # 50 moved in by the first statement, 50 there before
    assert n6 == 100
    assert contents(ix) == contents(plain)
    assert db.command("validate", "tix")["valid"] is True


def test_aggregate_leading_match_and_sort_use_the_index(db, pair):
    ix, plain = pair
    rng = random.Random(SEED + 2)
    for _ in range(60):
        flt = rand_filter(rng)
        for pipe in ([{"$match": flt}],
                     [{"$match": flt}, {"$sort": {"u": 1}}],
                     [{"$match": flt}, {"$sort": {"u": -1}}, {"$limit": 5}],
                     [{"$sort": {"u": 1}}, {"$match": flt}, {"$skip": 3}],
                     [{"$match": flt}, {"$group": {"_id": "$b", "n": {"$sum": 1}}},
                      {"$sort": {"_id": 1}}]):
            got = list(ix.aggregate(pipe))
            want = list(plain.aggregate(pipe))
            if len(pipe) == 1:
                got.sort(key=lambda d: d["_id"])
                want.sort(key=lambda d: d["_id"])
            assert got == want, pipe
    e = ix.database.command("aggregate", "ix", pipeline=[{"$match": {"a": 3}}], explain=True)
    assert leaf(e["queryPlanner"]["winningPlan"])["indexName"] == "a_1"
    e = ix.database.command("aggregate", "ix",
                            pipeline=[{"$sort": {"u": 1}}, {"$limit": 2}], explain=True)
    assert leaf(e["stages"][0]["$cursor"]["queryPlanner"]["winningPlan"])["indexName"] == "u_1"
    assert [d["u"] for d in ix.aggregate([{"$sort": {"u": 1}}, {"$limit": 2}])] == \
        sorted(d["u"] for d in plain.find())[:2]


@pytest.fixture(scope="module")
def rs(tmp_path_factory, request):
    yield from make_replica_set(tmp_path_factory, request, 3)


def test_indexed_writes_keep_indexes_equal_to_rebuild_on_every_member(rs):
    rng = random.Random(SEED + 3)
    rs.wait_healthy()
    client = rs.client()
    coll = client.idxw.c.with_options(write_concern=WriteConcern("majority"))
    coll.insert_many([rand_doc(rng, i) for i in range(400)])
    coll.create_index("a")
    coll.create_index([("b", 1), ("a", -1)])
    for step in range(60):
        flt = rand_filter(rng)
        r = rng.random()
        try:
            if r < 0.5:
                coll.update_many(flt, rand_update(rng))
            elif r < 0.7:
                coll.delete_many(flt)
            elif r < 0.85:
                coll.find_one_and_update(flt, rand_update(rng), sort=[("a", 1)])
            else:
                coll.update_one(flt, rand_update(rng))
        except Exception:  # an operator the value does not take
            pass
    coll.insert_one({"_id": "last"})  # majority: every member has applied it
    rs.wait_caught_up()
    n = coll.count_documents({})
    for m in rs.members:
        c = m.client(readPreference="secondaryPreferred")
        try:
            v = c.idxw.command("validate", "c")
        finally:
            c.close()
        assert v["valid"] is True, (m, v)
        assert v["nrecords"] == n, m
    client.close()
