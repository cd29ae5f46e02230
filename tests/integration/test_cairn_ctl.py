"""tools/cairn-ctl (the Docker image's health check, one-time initiation and key file) against
real cairnd members on 127.0.0.1.

The binary is $CAIRN_CTL, else tools/cairn-ctl of the build directory $CAIRND belongs to,
else build/tools/cairn-ctl.
"""

import os
import stat
import subprocess

import pytest

from cairn_rs import rs_factory, wait_for  # noqa: F401 - rs_factory is a fixture
from cairn_server import REPO, cairnd_binary, pick_port, port_is_free


def _ctl_binary():
    if os.environ.get("CAIRN_CTL"):
        return os.environ["CAIRN_CTL"]
    cairnd = cairnd_binary()
    tail = os.path.join("src", "server", "cairnd")
    if cairnd.endswith(tail):
        return os.path.join(cairnd[:-len(tail)], "tools", "cairn-ctl")
    return os.path.join(REPO, "build", "tools", "cairn-ctl")


def ctl(*args, timeout=120, env=None):
    path = _ctl_binary()
    if not os.path.exists(path):
        pytest.fail("cairn-ctl not found at %s (build it, or set CAIRN_CTL)" % path,
                    pytrace=False)
    proc = subprocess.run([path] + [str(a) for a in args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout, env=env)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def _free_port():
    while True:
        p = pick_port()
        if port_is_free(p):
            return p


def _set_id(member):
    return member.command({"replSetGetConfig": 1})["config"]["settings"]["replicaSetId"]


def test_health_says_unreachable_and_fails_when_nothing_listens():
    rc, out, _ = ctl("health", "--port", _free_port(), "--timeout-ms", 2000)
    assert rc == 1
    assert out.startswith("unreachable")


def test_health_takes_the_port_from_the_environment():
    port = _free_port()
    rc, out, _ = ctl("health", env=dict(os.environ, CAIRN_PORT=str(port)))
    assert rc == 1
    assert ":%d" % port in out


def test_initiate_makes_the_set_once_and_health_reports_each_state(rs_factory):  # noqa: F811
    rs = rs_factory(3, initiate=False)
    rc, out, _ = ctl("health", "--port", rs[0].port)
    assert (rc, out.strip()) == (1, "not initiated")

    rc, out, err = ctl("initiate", "--set", "rs0", "--election-timeout-ms", 1000,
                       "--heartbeat-interval-ms", 200, *rs.hosts)
    assert rc == 0, err
    assert "initiated replica set rs0 with 3 members" in out
    assert "primary: " in out
    rs.initiated = True
    primary = rs.wait_primary()
    rs.wait_healthy()
    settings = primary.command({"replSetGetConfig": 1})["config"]["settings"]
    assert settings["electionTimeoutMillis"] == 1000
    assert settings["heartbeatIntervalMillis"] == 200
    for m in rs:
        rc, out, _ = ctl("health", "--port", m.port)
        assert rc == 0
        assert out.split()[0] == ("PRIMARY" if m is primary else "SECONDARY")
        assert "set rs0" in out

    set_id = _set_id(primary)
    rc, out, err = ctl("initiate", "--set", "rs0", *rs.hosts)
    assert rc == 0, err
    assert "already initiated" in out and "initiated replica set" not in out
    assert all(_set_id(m) == set_id for m in rs)


def test_initiate_beside_an_emptied_member_rejoins_it_to_the_same_set(rs_factory):  # noqa: F811
    rs = rs_factory(3)
    set_id = _set_id(rs.wait_primary())
    victim = [m for m in rs if m is not rs.primary()][0]
    victim.stop()
    victim.wipe()
    victim.start()
    rc, out, err = ctl("initiate", "--set", "rs0", *rs.hosts)
    assert rc == 0, err
    assert "initiated replica set" not in out
    rs.wait_healthy()
    assert _set_id(victim) == set_id


def test_cairnd_refuses_an_initiation_while_another_member_has_a_config(rs_factory):  # noqa: F811
    # What keeps a wiped member out of a second set even if an initiation reaches it: the
    # quorum check of cairnd itself (cairn-ctl already stops at the other members' setName).
    rs = rs_factory(3)
    set_id = _set_id(rs.wait_primary())
    victim = [m for m in rs if m is not rs.primary()][0]
    victim.stop()
    victim.wipe()
    victim.start()
    reply = victim.command({"replSetInitiate": rs.config()}, timeout=30)
    if reply.get("ok"):
        pytest.fail("an emptied member initiated a second set: %r" % reply)
    rs.wait_healthy()
    assert _set_id(victim) == set_id


def test_initiate_refuses_a_member_of_another_set(rs_factory):  # noqa: F811
    other = rs_factory(1, set_name="other")
    rc, _, err = ctl("initiate", "--set", "rs0", "--timeout", 10, other.hosts[0])
    assert rc == 1
    assert "belongs to replica set other" in err


def test_initiate_gives_up_without_initiating_when_a_member_never_answers(
        rs_factory):  # noqa: F811
    rs = rs_factory(1, initiate=False)
    missing = "127.0.0.1:%d" % _free_port()
    rc, _, err = ctl("initiate", "--set", "rs0", "--timeout", 2, rs.hosts[0], missing)
    assert rc == 1
    assert "1 of 2 members answer" in err
    assert "setName" not in rs[0].hello()


def test_keygen_writes_a_private_key_cairnd_accepts_and_keeps_it(tmp_path,
                                                                  rs_factory):  # noqa: F811
    path = tmp_path / "keyfile"
    rc, out, _ = ctl("keygen", path)
    assert rc == 0, out
    key = path.read_bytes()
    assert len(key) == 65 and key.endswith(b"\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    rc, out, _ = ctl("keygen", path)
    assert rc == 0 and "exists" in out
    assert path.read_bytes() == key
    rs = rs_factory(1, extra_args=["--keyFile", str(path)])
    assert rs.wait_primary() is not None


@pytest.mark.parametrize("args", [[], ["bogus"], ["health", "--port", "0"],
                                  ["initiate", "127.0.0.1:1"], ["initiate", "--set", "rs0"],
                                  ["initiate", "--set", "rs0", "nohostport"], ["keygen"]])
def test_usage_errors_exit_2(args):
    rc, _, err = ctl(*args)
    assert rc == 2
    assert err.strip() != ""
