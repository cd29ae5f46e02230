"""collMod rewrites an index's spec in place (docs/decisions.md §38): the commit holds the new
spec and a rebind of the index's name, a few hundred bytes whatever the index's size (it used to
copy every entry under a fresh id); the planner and writers see the change at once, the entries
stay complete, and a write after it maintains the index."""

import random

from pymongo import WriteConcern


def queued_bytes(client):
    return client.admin.command("serverStatus")["repl"]["commitBytesQueued"]


def winning(coll, flt):
    return str(coll.find(flt).explain()["queryPlanner"]["winningPlan"])


def test_coll_mod_commit_does_not_grow_with_the_index(client, db):
    rng = random.Random(5)
    for start in range(0, 20000, 5000):
        db.c.insert_many([{"_id": i, "a": rng.randrange(100), "at": i}
                          for i in range(start, start + 5000)])
    db.c.create_index("a")
    db.c.create_index("at", expireAfterSeconds=3600)
    for opts in ({"name": "a_1", "hidden": True}, {"name": "at_1", "expireAfterSeconds": 60},
                 {"keyPattern": {"a": 1}, "hidden": False}):
        q0 = queued_bytes(client)
        db.command("collMod", "c", index=opts)
        q1 = queued_bytes(client)
        # 20,000 entries copied would be hundreds of KiB.
        assert 0 < q1 - q0 < 4096, (opts, q1 - q0)
    specs = {ix["name"]: ix for ix in db.c.list_indexes()}
    assert specs["a_1"].get("hidden", False) is False
    assert specs["at_1"]["expireAfterSeconds"] == 60
    assert "IXSCAN" in winning(db.c, {"a": 7})
    db.command("collMod", "c", index={"name": "a_1", "hidden": True})
    assert "IXSCAN" not in winning(db.c, {"a": 7})
    w = db.c.with_options(write_concern=WriteConcern("majority"))
    w.insert_one({"_id": -1, "a": 7, "at": 0})
    w.update_many({"a": 8}, {"$set": {"a": 108}})
    v = db.command("validate", "c")
    assert v["valid"] is True and v["keysPerIndex"] == {"_id_": 20001, "a_1": 20001,
                                                         "at_1": 20001}, v
    db.command("collMod", "c", index={"name": "a_1", "hidden": False})
    assert "IXSCAN" in winning(db.c, {"a": 108})
    assert db.c.count_documents({"a": 108}, hint="a_1") == db.c.count_documents(
        {"a": 108}, hint={"$natural": 1})
