"""Members authenticate each other with the key file (--keyFile, as mongod): a set whose members
share a key replicates; a process with another key, or with none, cannot join it, learns neither
its config nor its data, and the set stays healthy; garbage on the member port closes that
connection only."""

import os
import socket
import uuid

import pymongo
import pytest
from pymongo.errors import OperationFailure

from cairn_rs import raw_command, rs_factory, wait_for  # noqa: F401
from cairn_server import RAFT_PORT_OFFSET


def _key(path, text):
    with open(path, "w") as f:
        f.write(text + "\n")
    os.chmod(path, 0o400)
    return str(path)


@pytest.fixture
def keys(tmp_path):
    return (_key(tmp_path / "key_a", "a" * 40 + "shared"),
            _key(tmp_path / "key_b", "b" * 40 + "other"))


def _not_initiated(member):
    reply = member.command({"replSetGetStatus": 1})
    return reply.get("ok") == 0 and reply.get("code") == 94, reply


@pytest.mark.parametrize("impostor", ["other_key", "no_key"])
def test_member_without_the_key_cannot_join(rs_factory, keys, impostor):
    key_a, key_b = keys
    rs = rs_factory(4, start=False, extra_args=["--keyFile", key_a])
    rs[3].extra_args = ["--keyFile", key_b] if impostor == "other_key" else []
    rs.start()
    cfg = rs.config(members=[0, 1, 2])
    assert rs[0].command({"replSetInitiate": cfg}, timeout=15).get("ok") == 1
    p = rs.wait_primary()
    tag = uuid.uuid4().hex[:6]
    with p.client(directConnection=True) as c:
        c.db["a" + tag].with_options(write_concern=pymongo.WriteConcern(w=3)).insert_one(
            {"_id": 1})
        cfg = c.admin.command("replSetGetConfig")["config"]
        cfg["version"] += 1
        cfg["members"].append({"_id": 3, "host": rs[3].host, "votes": 0, "priority": 0})
        try:
            c.admin.command({"replSetReconfig": cfg})
        except OperationFailure as exc:
            # Refusing a member it cannot reach is refusing it too.
            assert exc.code in (74, 93, 103), exc.details
        # The set heard from the impostor only to refuse it.
        wait_for(lambda: rs[3].log_grep("authentication failed")
                 or p.log_grep("authentication failed"), 30,
                 "a member to log the refused handshake")
        status = c.admin.command("replSetGetStatus")
        for m in status["members"]:
            if m["name"] == rs[3].host:
                assert m["health"] == 0, m
        # Writes still reach a majority.
        c.db["a" + tag].with_options(write_concern=pymongo.WriteConcern(w="majority")).insert_one(
            {"_id": 2})
    ok, reply = _not_initiated(rs[3])
    assert ok, reply
    with rs[3].client(directConnection=True, readPreference="secondaryPreferred") as c3:
        with pytest.raises(OperationFailure) as ei:  # no config, no data to serve
            c3.db["a" + tag].find_one({"_id": 1})
        assert ei.value.code == 94, ei.value.details
    rs.wait_healthy(members=[rs[0], rs[1], rs[2]])


def test_garbage_on_the_member_port_closes_only_that_connection(rs_factory, keys):
    key_a, _ = keys
    rs = rs_factory(3, extra_args=["--keyFile", key_a])
    p = rs.wait_primary()
    rng_bytes = bytes((i * 73 + 11) % 256 for i in range(4096))  # fixed, not random: repeatable
    for m in rs:
        with socket.create_connection((m.ip, m.port + RAFT_PORT_OFFSET), timeout=5) as s:
            s.sendall(rng_bytes)
            s.settimeout(10)
            # The member closes the connection (EOF or reset), having read a bad HELLO.
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
    assert raw_command(p.port, {"ping": 1}, ip=p.ip).get("ok") == 1
    rs.wait_healthy()
    with rs.client(w="majority") as c:
        c.db.g.insert_one({"_id": uuid.uuid4().hex})
    for m in rs:
        assert m.alive()
