"""Many clients at once: read-modify-write operators stay atomic, _id stays unique, and every
acknowledged insert is visible exactly once."""

import threading

from pymongo.errors import DuplicateKeyError


def run_threads(n, fn):
    errors = []

    def wrap(k):
        try:
            fn(k)
        except Exception as exc:  # reported to the test below
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client thread hung"
    assert not errors, errors[:3]


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
