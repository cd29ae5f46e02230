#!/usr/bin/env python3
"""make_seeds.py: writes the seed files of tests/fuzz/corpus/{wire,query}/.

Run with the repository's venv (it needs pymongo's bson):
    .venv/bin/python tests/fuzz/make_seeds.py
Query seeds are a 0x00 byte followed by length-prefixed BSON documents (see
fuzz_query.c); each document is tried as filter, update, projection, sort,
pipeline and expressions. Wire seeds are whole OP_MSG / OP_QUERY messages.
Reproducers of bugs (crash-*, leak-*) are added by hand and never rewritten.
"""
import os
import struct

import bson
from bson import Decimal128, Int64, MaxKey, MinKey, Regex

HERE = os.path.dirname(os.path.abspath(__file__))

QUERY = {
    "seed-filter-arrays": [
        {"a": {"$elemMatch": {"b": {"$gte": 1}, "c": {"$ne": None}}}, "c": {"$all": [1, 2]}},
        {"a": {"$size": 3}, "b": {"$not": {"$regex": "^x", "$options": "i"}},
         "c": {"$type": ["int", "string"]}},
    ],
    "seed-filter-logic": [
        {"$or": [{"a": {"$in": [1, "x", None]}}, {"b.c.d": {"$exists": False}}],
         "$nor": [{"n": {"$lt": 0}}], "x": {"$mod": [4, 0]}},
        {"$expr": {"$gt": ["$a", {"$add": ["$n", 1]}]}, "a.0": {"$nin": [[], {}]}},
        {"x": {"$bitsAllSet": [0, 3]}, "s": Regex("hel+o", "i"), "$comment": "c"},
    ],
    "seed-update-push": [
        {"$push": {"c": {"$each": [5, 1, {"b": 2}], "$slice": -3, "$sort": {"b": -1},
                         "$position": 0}},
         "$pull": {"a": {"b": {"$gte": 4}}}, "$inc": {"n": Int64(2)}},
        {"$addToSet": {"c": {"$each": [1, 9]}}, "$pop": {"b.c.d": -1},
         "$currentDate": {"d": {"$type": "timestamp"}}, "$setOnInsert": {"z": 1}},
    ],
    "seed-update-fields": [
        {"$set": {"a.b.0.c": 1, "q.r": [1]}, "$unset": {"s": ""}, "$rename": {"b": "bb"},
         "$mul": {"n": 1.5}, "$min": {"x": -5}, "$max": {"l": 3}},
        {"$bit": {"x": {"and": 5, "or": Int64(2), "xor": 1}}, "$pullAll": {"c": [1, 2]},
         "$set": {"a.$[]": 0}},
        {"_id": 1, "replaced": True, "arr": [1, 2]},
    ],
    "seed-projection-sort": [
        {"a": 1, "b.c": 1, "_id": 0},
        {"c": {"$slice": [1, 2]}, "a": {"$elemMatch": {"b": 1}}},
        {"n": -1, "a.b": 1, "_id": 1},
    ],
    "seed-pipeline-group": [
        {"0": {"$match": {"a": {"$exists": True}}},
         "1": {"$unwind": {"path": "$c", "includeArrayIndex": "i",
                           "preserveNullAndEmptyArrays": True}},
         "2": {"$group": {"_id": {"k": "$b"}, "s": {"$sum": "$c"}, "v": {"$avg": "$n"},
                          "lo": {"$min": "$a"}, "hi": {"$max": "$a"}, "p": {"$push": "$$ROOT"},
                          "f": {"$first": "$c"}, "l": {"$last": "$c"},
                          "u": {"$addToSet": "$a"}, "n": {"$count": {}}}},
         "3": {"$sort": {"s": -1, "_id": 1}}, "4": {"$skip": 1}, "5": {"$limit": 5}},
    ],
    "seed-pipeline-project": [
        {"0": {"$project": {"x": {"$cond": [{"$isArray": "$a"}, {"$size": "$a"}, -1]},
                            "s": {"$concat": [{"$toUpper": "$b"}, "-", {"$toString": "$n"}]},
                            "e": {"$arrayElemAt": ["$c", -1]},
                            "m": {"$mergeObjects": ["$b", {"z": 1}]}}},
         "1": {"$addFields": {"t": {"$type": "$x"}, "r": {"$round": [{"$divide": ["$n", 3]}, 2]}}},
         "2": {"$unset": "s"}, "3": {"$replaceRoot": {"newRoot": {"w": "$$ROOT"}}},
         "4": {"$count": "total"}},
    ],
    "seed-expressions": [
        {"a": {"$substrBytes": ["$s", 1, 3]}, "b": {"$ifNull": ["$zz", "$a", 1]},
         "c": {"$in": [2, "$c"]}, "d": {"$concatArrays": ["$c", [1]]},
         "e": {"$mod": ["$n", 2]}, "f": {"$toInt": "12"}, "g": {"$toLong": 1.9},
         "h": {"$toDouble": Decimal128("2.5")}, "i": {"$toBool": "$a"},
         "j": {"$trunc": [-2.55, 1]}, "k": {"$abs": -2147483648}, "l": {"$ceil": 1.2},
         "m": {"$floor": "$n"}, "n": {"$subtract": [{"$multiply": ["$n", 2]}, "$x"]},
         "o": {"$cmp": ["$a", MinKey()]}, "p": {"$strLenBytes": "$s"},
         "q": {"$sum": ["$c", 1, Int64(9223372036854775807)]}, "r": {"$literal": "$a"},
         "s": {"$and": ["$t", {"$or": [False, {"$not": ["$a"]}]}]},
         "t": {"$cond": {"if": {"$eq": ["$a", 1]}, "then": "$$REMOVE", "else": MaxKey()}}},
    ],
}


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame(opcode, payload, request_id=1):
    return struct.pack("<iiii", 16 + len(payload), request_id, 0, opcode) + payload


def op_msg(body, seqs=(), checksum=False):
    flags = 1 if checksum else 0
    p = struct.pack("<I", flags) + b"\x00" + bson.encode(body)
    for ident, docs in seqs:
        data = ident.encode() + b"\x00" + b"".join(bson.encode(d) for d in docs)
        p += b"\x01" + struct.pack("<i", 4 + len(data)) + data
    m = frame(2013, p)
    if checksum:
        m = struct.pack("<i", len(m) + 4) + m[4:]
        m += struct.pack("<I", crc32c(m))
    return m


def op_query(ns, query, fields=None, n_return=-1):
    p = struct.pack("<i", 4) + ns.encode() + b"\x00" + struct.pack("<ii", 0, n_return)
    p += bson.encode(query)
    if fields is not None:
        p += bson.encode(fields)
    return frame(2004, p)


WIRE = {
    "seed-msg-hello": op_msg({"hello": 1, "$db": "admin"}),
    "seed-msg-seqs": op_msg({"insert": "c", "$db": "t"},
                            [("documents", [{"_id": 1}, {"_id": 2, "a": [1, {"b": "x"}]}]),
                             ("updates", [{"q": {}, "u": {"$set": {"a": 1}}}])]),
    "seed-msg-checksum": op_msg({"ping": 1, "$db": "admin"}, checksum=True),
    "seed-query-ismaster": op_query("admin.$cmd", {"isMaster": 1, "client": {"x": 1}}),
    "seed-query-wrapped": op_query("db.$cmd", {"$query": {"find": "c"},
                                               "$readPreference": {"mode": "secondary"}},
                                   fields={"a": 1}),
}


def main():
    for name, docs in QUERY.items():
        path = os.path.join(HERE, "corpus", "query", name)
        with open(path, "wb") as f:
            f.write(b"\x00" + b"".join(bson.encode(d) for d in docs))
    for name, msg in WIRE.items():
        with open(os.path.join(HERE, "corpus", "wire", name), "wb") as f:
            f.write(msg)


if __name__ == "__main__":
    main()
