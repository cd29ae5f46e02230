"""Results a server holds in memory for open cursors (sorted finds, aggregates) count against
one server-wide budget (cairnQueryMemoryBudgetBytes, Cairn's own parameter): past it a new
query that would hold more answers 146 ExceededMemoryLimit instead of letting many clients, each
within its own 100 MB sort cap, pin memory without bound. Measured both by the server's own count
(serverStatus metrics.query.heldResultBytes) and by the process's resident memory
(/proc/<pid>/status)."""

import pytest
from pymongo.errors import OperationFailure

from proc_probe import rss_kb, sanitized

BUDGET = 16 << 20
DOCS = 2000
PAD = 4096  # about 8.3 MB held by each open sorted cursor


def held(client):
    return client.admin.command("serverStatus")["metrics"]["query"]["heldResultBytes"]


@pytest.fixture(scope="module")
def big(client):
    client.admin.command({"setParameter": 1, "cairnQueryMemoryBudgetBytes": BUDGET})
    coll = client.mem_budget.big
    coll.drop()
    coll.insert_many([{"_id": i, "k": (i * 7919) % DOCS, "pad": "p" * PAD}
                      for i in range(DOCS)])
    yield coll
    client.admin.command({"setParameter": 1, "cairnQueryMemoryBudgetBytes": 1 << 30})


def open_sorted(coll):
    cur = coll.find({}).sort("k", 1).batch_size(1)
    next(cur)
    return cur


def test_parameter_round_trip(client, big):
    r = client.admin.command({"getParameter": 1, "cairnQueryMemoryBudgetBytes": 1})
    assert r["cairnQueryMemoryBudgetBytes"] == BUDGET


def test_open_cursor_holds_then_releases(client, big):
    assert held(client) == 0
    cur = open_sorted(big)
    assert held(client) > DOCS * PAD * 0.9
    cur.close()
    assert held(client) == 0


def test_exhausting_a_cursor_releases_its_bytes(client, big):
    cur = open_sorted(big)
    assert sum(1 for _ in cur) == DOCS - 1
    assert held(client) == 0


@pytest.mark.parametrize("kind", ["find", "aggregate"])
def test_many_open_cursors_stop_at_the_budget(client, server, big, kind):
    before = rss_kb(server.proc.pid)
    cursors, refused = [], 0
    try:
        for _ in range(30):  # 30 x 8 MB = 250 MB without a budget
            try:
                if kind == "find":
                    cursors.append(open_sorted(big))
                else:
                    cur = big.aggregate([{"$sort": {"k": 1}}], batchSize=1)
                    next(cur)
                    cursors.append(cur)
            except OperationFailure as e:
                assert e.code == 146, e
                assert "cairnQueryMemoryBudgetBytes" in str(e)
                refused += 1
        assert len(cursors) >= 1 and refused >= 25
        assert held(client) <= BUDGET
        grown_mb = (rss_kb(server.proc.pid) - before) / 1024
        if not sanitized(server.proc.pid):
            assert grown_mb < 120, grown_mb
    finally:
        for c in cursors:
            c.close()
    assert held(client) == 0
    # With the cursors gone the same query runs again.
    open_sorted(big).close()
