"""Rollback files: find them under members' data directories and index what they hold.

Owns: load_rollback(dirs) -> RollbackIndex. Each directory given is either a member's dbpath
(then <dbpath>/rollback/ is searched) or a rollback directory itself; every *.bson file below
it is read with bson.decode_file_iter (MongoDB 4.4+ layout: <collectionUUID>/removed.<time>.bson;
any layout below the directory works). Documents are indexed by _id and by the workload's
value field "v", so the checker can tell a rolled-back w:1 insert from a lost one. Files
last modified before the run started (`since`, the meta record's wall time) belong to an
earlier run on the same data directory: they are listed in `stale` and not indexed, since
their documents' _ids and values would collide with this run's.
"""

import glob
import os

import bson
from bson.errors import BSONError


class RollbackIndex:
    def __init__(self):
        self.files = []      # {path, docs, ids (str of each _id), error}
        self.by_id = {}      # str(_id) -> [path]
        self.by_value = {}   # v -> [path]
        self.stale = []      # paths of files older than the run

    def add_file(self, path):
        info = {"path": path, "docs": 0, "ids": []}
        try:
            with open(path, "rb") as f:
                for doc in bson.decode_file_iter(f):
                    info["docs"] += 1
                    info["ids"].append(str(doc.get("_id")))
                    self.by_id.setdefault(str(doc.get("_id")), []).append(path)
                    if "v" in doc:
                        self.by_value.setdefault(doc["v"], []).append(path)
        except (OSError, BSONError) as exc:
            info["error"] = str(exc)
        self.files.append(info)

    def match(self, doc_id=None, value=None):
        """Files holding a document with this _id or value (empty list if none)."""
        if doc_id is not None and str(doc_id) in self.by_id:
            return self.by_id[str(doc_id)]
        if value is not None and value in self.by_value:
            return self.by_value[value]
        return []


def rollback_files(directory):
    root = os.path.join(directory, "rollback")
    if not os.path.isdir(root):
        root = directory
    return sorted(glob.glob(os.path.join(root, "**", "*.bson"), recursive=True))


def load_rollback(dirs, since=None):
    index = RollbackIndex()
    for d in dirs or ():
        for path in rollback_files(d):
            if since is not None and os.path.getmtime(path) < since:
                index.stale.append(path)
                continue
            index.add_file(path)
    return index
