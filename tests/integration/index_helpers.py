"""Helpers shared by the index suites (test_indexes_*.py): reading explain output (the access
stage under the wrapping ones, a find's winning plan and statistics), hints as command fields,
and the `people` collection the hint suites query.

`people` is a pytest fixture: a suite using it imports it by name (`from index_helpers import
people  # noqa: F401`), and it takes the suite's `db` fixture (conftest.py)."""

import pytest
from bson.son import SON

# Stages that wrap the one reading the collection or an index; `access` steps through them.
_WRAPPERS = ("UPDATE", "DELETE", "SORT", "LIMIT", "SKIP", "COUNT", "FETCH", "PROJECTION_COVERED")


def access(plan):
    """The stage under `plan` that reads the data (IXSCAN, COLLSCAN, IDHACK, ...)."""
    while plan.get("stage") in _WRAPPERS and "inputStage" in plan:
        plan = plan["inputStage"]
    return plan


def find_explain(coll, flt, **kw):
    """The winning plan and executionStats of `coll.find(flt, **kw)`."""
    e = coll.find(flt, **kw).explain()
    return e["queryPlanner"]["winningPlan"], e["executionStats"]


def as_cmd(hint):
    """`hint` (an index name, a key-pattern document, or pymongo's list of (field, direction))
    as a command's hint field, field order kept."""
    return hint if isinstance(hint, (str, dict)) else SON(hint)


@pytest.fixture
def people(db):
    """700 people (age 0..49, city c0..c6, name n0000..n0699) indexed on age, (city, age) and
    name (named by_name)."""
    c = db.people
    c.insert_many([{"_id": i, "age": i % 50, "city": "c%d" % (i % 7), "name": "n%04d" % i}
                   for i in range(700)])
    c.create_index("age")
    c.create_index([("city", 1), ("age", 1)])
    c.create_index("name", name="by_name")
    return c


def rand_abc_docs(rng, n, top, cuts):
    """`n` seeded random documents (_id 0..n-1) whose fields a, b and c are each, by
    rng.random() against `cuts` (three rising bounds), an int below `top`, such an int plus 0.5,
    "x", or missing; then one in ten has b replaced by an array of two ints."""
    docs = []
    for i in range(n):
        d = {"_id": i}
        for f in ("a", "b", "c"):
            r = rng.random()
            if r < cuts[0]:
                d[f] = rng.randrange(top)
            elif r < cuts[1]:
                d[f] = rng.randrange(top) + 0.5
            elif r < cuts[2]:
                d[f] = "x"
        if rng.random() < 0.1:
            d["b"] = [rng.randrange(top), rng.randrange(top)]
        docs.append(d)
    return docs


def create_abc_indexes(c):
    """The indexes the rand_abc_docs suites hint: a_1, b_-1, a_1_c_-1 and c_-1_b_1."""
    c.create_index("a")
    c.create_index([("b", -1)])
    c.create_index([("a", 1), ("c", -1)])
    c.create_index([("c", -1), ("b", 1)])
