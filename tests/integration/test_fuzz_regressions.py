"""Client-visible regressions for bugs found by fuzzing the query layer (tests/fuzz,
docs/fuzzing.md): each answers a MongoDB error code and the server keeps serving."""

import pytest
from bson import DatetimeMS, Int64
from pymongo.errors import OperationFailure


@pytest.fixture(scope="module")
def one(client):
    c = client["t_fuzz_regressions"]["c"]
    c.drop()
    c.insert_one({"_id": 1, "s": "abcd", "c": [1],
                  "lo": DatetimeMS(-2**63), "hi": DatetimeMS(2**63 - 1)})
    return c


def code_of(c, pipeline):
    with pytest.raises(OperationFailure) as ei:
        list(c.aggregate(pipeline))
    return ei.value.code


def test_date_arithmetic_overflow_is_15(one):
    assert code_of(one, [{"$project": {"v": {"$subtract": ["$hi", "$lo"]}}}]) == 15
    assert code_of(one, [{"$project": {"v": {"$subtract": ["$lo", 1]}}}]) == 15
    assert code_of(one, [{"$project": {"v": {"$add": ["$hi", Int64(1)]}}}]) == 15
    assert code_of(one, [{"$project": {"v": {"$add": ["$lo", -1e300]}}}]) == 15
    # in range still works
    got = list(one.aggregate([{"$project": {"_id": 0,
                                            "v": {"$toLong": {"$add": ["$lo", 1000]}}}}]))
    assert got == [{"v": -2**63 + 1000}]


def test_growing_values_are_capped_at_16mb(one, client):
    # without the cap these built 67 MB / 54 MB values and answered a small document
    grow_s = [{"$set": {"s": {"$concat": ["$s", "$s", "$s", "$s"]}}}] * 12 + \
        [{"$project": {"n": {"$strLenBytes": "$s"}}}]
    grow_c = [{"$set": {"c": {"$concatArrays": ["$c", "$c", "$c", "$c"]}}}] * 11 + \
        [{"$project": {"n": {"$size": "$c"}}}]
    assert code_of(one, grow_s) == 10334
    assert code_of(one, grow_c) == 10334
    assert client.admin.command("ping")["ok"] == 1


def test_projection_slice_min_long(one):
    got = one.find_one({}, {"c": {"$slice": Int64(-2**63)}, "_id": 0, "s": 0, "lo": 0, "hi": 0})
    assert got == {"c": [1]}


def test_pathological_regexes_fail_fast_with_51091(one, client):
    # glibc compiles these in exponential time / matches back-references in polynomial time
    # of high degree; without the guard each one held a worker for minutes or longer
    for pattern in ["Q" + "+" * 40, "(" * 30 + "Q" + ")+" * 30, "((a?)*){2000}",
                    r"^(a*)*\1b$"]:
        with pytest.raises(OperationFailure) as ei:
            one.find_one({"s": {"$regex": pattern}})
        assert ei.value.code == 51091
    assert one.find_one({"s": {"$regex": "^((ab|cd)+){1,2}$"}}, {"_id": 1}) == {"_id": 1}
    assert client.admin.command("ping")["ok"] == 1
