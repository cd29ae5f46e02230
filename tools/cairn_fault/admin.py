"""Talking to one member directly: hello, replSetGetStatus, replSetStepDown, and the set's
view assembled from them (who is primary, each member's state and ping).

Owns: ask(addr, cmd), SetView and view(members), which asks every member that is running (a
stopped or dead one is not asked: it would only time out) and keeps the newest term's answer.
Every call uses a direct connection with short timeouts; a member that does not answer is
reported as unreachable, never waited for.
"""

import pymongo
from pymongo.errors import PyMongoError

TIMEOUT_MS = 1500


def ask(addr, cmd, timeout_ms=TIMEOUT_MS):
    """Runs one admin command on the member at addr ("host:port"); returns the reply or raises
    PyMongoError."""
    c = pymongo.MongoClient(addr, directConnection=True, serverSelectionTimeoutMS=timeout_ms,
                            connectTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms * 2)
    try:
        return c.admin.command(cmd)
    finally:
        c.close()


class SetView:
    """What the running members say: hello per member name, the replSetGetStatus reply of the
    member with the newest term, and which member names are primary / secondary."""

    def __init__(self):
        self.hello = {}         # name -> hello reply (or None: unreachable)
        self.status = None      # the freshest replSetGetStatus reply
        self.errors = {}        # name -> error text

    def primaries(self):
        """Member names claiming to be writable primaries, the newest term first."""
        out = [(h.get("_term", 0), n) for n, h in self.hello.items()
               if h and h.get("isWritablePrimary")]
        return [n for _, n in sorted(out, reverse=True)]

    def primary(self):
        p = self.primaries()
        return p[0] if p else None

    def secondaries(self):
        return sorted(n for n, h in self.hello.items() if h and h.get("secondary"))

    def state_of(self, member):
        """stateStr of the member in the freshest status (matched by host), or None."""
        if not self.status:
            return None
        for m in self.status.get("members", ()):
            if m.get("name") in member.hosts():
                return m.get("stateStr")
        return None

    def ping_of(self, member):
        if not self.status:
            return None
        for m in self.status.get("members", ()):
            if m.get("name") in member.hosts():
                return m.get("pingMs")
        return None


def view(members):
    """A SetView of the members (objects with .name, .admin, .proc_state(), .hosts())."""
    v = SetView()
    best_term = -1
    for m in members:
        if m.proc_state() != "running":
            continue
        try:
            h = ask(m.admin, "hello")
        except PyMongoError as exc:
            v.hello[m.name] = None
            v.errors[m.name] = str(exc).split(",")[0]
            continue
        try:
            st = ask(m.admin, "replSetGetStatus")
        except PyMongoError as exc:
            st = None
            v.errors[m.name] = str(exc).split(",")[0]
        term = st.get("term", 0) if st else 0
        h["_term"] = term
        v.hello[m.name] = h
        if st and (term > best_term or (term == best_term and h.get("isWritablePrimary"))):
            best_term, v.status = term, st
    return v
