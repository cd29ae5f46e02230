"""The fault kit (scripts/cairn-fault and cairn-history's schedules) against a local 3-member
set that scripts/run-local.sh starts on its own loopback addresses (127.0.0.41-43), its own
ports and its own data directory: every subcommand has the effect it names on the set, and a
short run under a schedule of kills, a pause and a partition checks clean.

  kill       the process is gone and another member becomes primary; restart rejoins it
  stop/cont  the process is stopped (state T) and another member takes over; cont rejoins it
  partition  the cut-off primary steps down and another is elected; heal makes it a secondary
             again; a 2|1 split with the primary on the majority side keeps it primary
  slow       the primary's heartbeat round trip to the slowed member grows; heal restores it
  stepdown   another member becomes primary
  status     names, processes and states
Partitions and slow links need one address per member: on a set sharing one address they are
refused with a message. Needs root and iptables (as the rollback suite)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from cairn_rs import wait_for
from cairn_server import RAFT_PORT_OFFSET, cairnd_binary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from tools.cairn_history.checker import check_file, format_report  # noqa: E402
from tools.cairn_history.runner import RunConfig, run  # noqa: E402

IPS = ["127.0.0.41", "127.0.0.42", "127.0.0.43"]
FAULT = os.path.join(REPO, "scripts", "cairn-fault")
RUN_LOCAL = os.path.join(REPO, "scripts", "run-local.sh")

pytestmark = pytest.mark.skipif(
    shutil.which("iptables") is None or os.geteuid() != 0,
    reason="needs root and iptables to cut members apart")


def _free(ip, port):
    import socket
    s = socket.socket()
    try:
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _pick_base_port():
    import random
    rng = random.Random(os.getpid())
    for _ in range(200):
        p = rng.randint(20000, 22600)
        if all(_free(ip, p + i) and _free(ip, p + i + RAFT_PORT_OFFSET)
               for i, ip in enumerate(IPS)):
            return p
    raise RuntimeError("no free ports on %s" % IPS)


class FaultSet:
    """A set scripts/cairn-fault acts on: `target_args` name it (--data DIR, or --target
    docker --project P)."""

    def __init__(self, target_args, data=None, port=None, uri=None):
        self.target_args = list(target_args)
        self.data, self.port, self.uri = data, port, uri

    def fault(self, *args, ok=True):
        """Runs scripts/cairn-fault on this set; returns (exit status, JSON event, stderr)."""
        p = subprocess.run([sys.executable, FAULT, "--wait", "60"] + self.target_args
                           + list(args), capture_output=True, text=True, timeout=180)
        lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
        ev = json.loads(lines[-1]) if lines else None
        if ok:
            assert p.returncode == 0, "cairn-fault %s: %s%s" % (args, p.stdout, p.stderr)
        return p.returncode, ev, p.stderr

    def status(self):
        _, st, _ = self.fault("status", "--json")
        return st

    def states(self):
        """{name: replica state} as the freshest status says (PRIMARY for the primary)."""
        return {r["name"]: r["state"] for r in self.status()["members"]}

    def primary(self):
        return self.status()["primary"]

    def healthy(self):
        st = self.status()
        procs = {r["name"]: r["process"] for r in st["members"]}
        states = sorted(r["state"] or "" for r in st["members"])
        return (set(procs.values()) == {"running"} and not st["faults"]["rules"]
                and states == ["PRIMARY", "SECONDARY", "SECONDARY"])

    def pid(self, name):
        with open(os.path.join(self.data, name, "cairnd.pid")) as f:
            return int(f.read())


@pytest.fixture(scope="module")
def lset(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("faultkit"))
    port = _pick_base_port()
    env = dict(os.environ, CAIRND=cairnd_binary(), CAIRN_DATA=data, CAIRN_PORT=str(port))
    p = subprocess.run(["bash", RUN_LOCAL, "--ips", ",".join(IPS)], env=env,
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    s = FaultSet(["--data", data], data, port, p.stdout.strip().splitlines()[-1])
    try:
        yield s
    finally:
        subprocess.run([sys.executable, FAULT, "--data", data, "heal"], capture_output=True,
                       timeout=60)
        subprocess.run(["bash", RUN_LOCAL, "--stop"], env=env, capture_output=True,
                       timeout=120)


@pytest.fixture(autouse=True)
def healthy_set(lset):
    """Each test starts on a set with every member up, one primary and no rules."""
    wait_for(lset.healthy, 60, lambda: "a healthy set: %s" % lset.status())
    yield


def test_run_local_records_addresses_and_command_lines(lset):
    assert lset.uri == "mongodb://%s/?replicaSet=rs0" % ",".join(
        "%s:%d" % (ip, lset.port + i) for i, ip in enumerate(IPS))
    with open(os.path.join(lset.data, "n2", "cairnd.cmdline"), "rb") as f:
        argv = f.read().split(b"\0")
    assert b"--bind_ip" in argv and argv[argv.index(b"--bind_ip") + 1] == IPS[1].encode()
    st = lset.status()
    assert [(r["name"], r["address"]) for r in st["members"]] == [
        ("n%d" % (i + 1), "%s:%d" % (ip, lset.port + i)) for i, ip in enumerate(IPS)]


def test_kill_primary_elects_another_and_restart_rejoins(lset):
    old = lset.primary()
    pid = lset.pid(old)
    _, ev, _ = lset.fault("kill", "primary")
    assert ev["action"] == "kill" and ev["targets"] == [old]
    assert ev["roles"] == {old: "primary"}
    assert "%s:%d" % (IPS[int(old[1:]) - 1], lset.port + int(old[1:]) - 1) in ev["members"]
    assert not os.path.exists("/proc/%d" % pid) or \
        open("/proc/%d/stat" % pid).read().split(")")[1].split()[0] == "Z"
    new = wait_for(lambda: (lset.primary() or old) != old and lset.primary(), 30,
                   "another primary after the kill")
    assert new != old
    lset.fault("restart", old)
    wait_for(lambda: lset.states()[old] == "SECONDARY", 30, "%s to rejoin" % old)


def test_stop_and_cont(lset):
    old = lset.primary()
    _, ev, _ = lset.fault("stop", "primary")
    assert ev["action"] == "stop"
    stat = open("/proc/%d/stat" % lset.pid(old)).read().split(")")[1].split()[0]
    assert stat == "T"
    wait_for(lambda: lset.primary() not in (None, old), 30, "another primary while paused")
    lset.fault("cont", old)
    wait_for(lambda: lset.states()[old] == "SECONDARY", 30, "%s back as secondary" % old)


def test_partition_of_the_primary_and_heal(lset):
    old = lset.primary()
    _, ev, _ = lset.fault("partition", "primary")
    others = sorted(n for n in ("n1", "n2", "n3") if n != old)
    assert ev["split"] == "%s|%s" % (old, ",".join(others))
    # the cut-off primary steps down; the others elect one of themselves
    wait_for(lambda: lset.primary() in others, 30, "a primary among %s" % others)

    def old_stepped_down():
        from tools.cairn_fault.admin import ask
        return not ask("%s:%d" % (IPS[int(old[1:]) - 1], lset.port + int(old[1:]) - 1),
                       "hello").get("isWritablePrimary")
    wait_for(old_stepped_down, 30, "%s to step down" % old)
    _, ev, _ = lset.fault("heal")
    assert ev["removed"]["rules"] == 4
    wait_for(lambda: lset.states()[old] == "SECONDARY", 30, "%s to rejoin" % old)


def test_split_with_the_primary_on_the_majority_side(lset):
    p = lset.primary()
    s1, s2 = sorted(n for n in ("n1", "n2", "n3") if n != p)
    lset.fault("partition", "%s,%s|%s" % (p, s1, s2))
    wait_for(lambda: lset.states()[s2] not in ("SECONDARY", "PRIMARY"), 30,
             "the primary to see %s unreachable" % s2)
    assert lset.primary() == p
    lset.fault("heal")
    wait_for(lambda: lset.states()[s2] == "SECONDARY", 30, "%s back" % s2)


def test_slow_link_raises_the_heartbeat_ping(lset):
    p = lset.primary()
    s = sorted(n for n in ("n1", "n2", "n3") if n != p)[0]

    def ping():
        st = lset.status()
        return next(r["pingMs"] for r in st["members"] if r["name"] == s)
    _, ev, _ = lset.fault("slow", s, "150ms")
    assert ev["action"] == "slow" and ev["delay_ms"] == 150
    wait_for(lambda: (ping() or 0) >= 150, 30, lambda: "ping of %s >= 150ms (%s)"
             % (s, ping()))
    lset.fault("heal")
    wait_for(lambda: ping() is not None and ping() < 100, 30, "the ping to drop")


def test_stepdown_moves_the_primary(lset):
    old = lset.primary()
    _, ev, _ = lset.fault("stepdown")
    assert ev["targets"] == [old] and ev["new_primary"] != old
    assert lset.primary() != old


def test_partition_and_slow_refused_when_members_share_an_address(tmp_path):
    for i in (1, 2, 3):
        d = tmp_path / ("n%d" % i)
        d.mkdir()
        argv = ["cairnd", "--replSet", "rs0", "--port", str(30000 + i), "--bind_ip",
                "127.0.0.1", "--dbpath", str(d)]
        (d / "cairnd.cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    for args in (["partition", "n1"], ["slow", "n2", "100ms"]):
        p = subprocess.run([sys.executable, FAULT, "--data", str(tmp_path)] + args,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 1, p.stdout + p.stderr
        assert "share the address 127.0.0.1" in p.stderr and "--ips" in p.stderr


def test_short_fault_run_checks_clean(lset, tmp_path):
    """40 s of both workloads while a schedule kills the primary, pauses a member and
    partitions the primary in turn; then heal --all, the final read, and the checker."""
    schedule = "\n".join([
        "after 2s",
        "for 33s",
        "every 2s: kill primary; sleep 2s; restart @",
        "every 2s: stop random; sleep 3s; cont @",
        "every 2s: partition primary; sleep 4s; heal",
    ])
    out = str(tmp_path / "run.jsonl")
    cfg = RunConfig(uri=lset.uri, out=out, seed=20261205, workers=4, duration=40,
                    op_timeout=5.0, final_timeout=60.0, schedules=[schedule],
                    fault_opts="--data %s --seed 7" % lset.data)
    run(cfg)
    report = check_file(out, [os.path.join(lset.data, n) for n in ("n1", "n2", "n3")])
    assert report.clean, format_report(report)
    faults = report.summary["faults"]
    actions = [f["action"] for f in faults]
    for a in ("kill", "restart", "stop", "cont", "partition", "heal"):
        assert a in actions, actions
    assert all(f["rc"] == 0 and f["action"] for f in faults), faults
    fp = report.summary["failover_primary"]
    assert fp["n"] >= 2 and fp["max"] is not None, fp
    ops = report.summary["ops"]
    assert ops["insert"]["ok"] > 50 and ops["txn with_transaction"]["ok"] > 20, ops


# -- the Docker target ----------------------------------------------------------------------

COMPOSE_FILE = os.environ.get("CAIRN_COMPOSE_FILE",
                              os.path.join(REPO, "docker", "compose.yml"))


def _docker_skip_reason():
    if shutil.which("docker") is None or subprocess.run(
            ["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "no Docker engine runs here"
    if not os.path.exists(COMPOSE_FILE):
        return "no compose file at %s (docker/compose.yml)" % COMPOSE_FILE
    if shutil.which("docker-compose") is None:
        return "no docker-compose"
    return None


@pytest.fixture(scope="module")
def dset():
    reason = _docker_skip_reason()
    if reason:
        pytest.skip(reason)
    image = os.environ.get("CAIRN_IMAGE", "cairn:latest")
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                      timeout=30).returncode != 0:
        build = os.path.join(os.path.dirname(COMPOSE_FILE), "build-image.sh")
        p = subprocess.run(["bash", build], capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stdout + p.stderr
    project = "cairnfaultkit%d" % os.getpid()
    base = _pick_base_port()
    env = dict(os.environ, COMPOSE_PROJECT_NAME=project, CAIRN_N1_PORT=str(base),
               CAIRN_N2_PORT=str(base + 1), CAIRN_N3_PORT=str(base + 2))
    compose = ["docker-compose", "-f", COMPOSE_FILE]
    p = subprocess.run(compose + ["up", "-d"], env=env, capture_output=True, text=True,
                       timeout=300)
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        yield FaultSet(["--target", "docker", "--project", project])
    finally:
        subprocess.run([sys.executable, FAULT, "--target", "docker", "--project", project,
                        "heal"], capture_output=True, timeout=60)
        subprocess.run(compose + ["down", "-v", "-t", "5"], env=env, capture_output=True,
                       timeout=300)


def test_docker_target_kill_partition_slow_heal(dset):
    """The same subcommands on the compose members: kill (docker kill) and restart (docker
    start), partition and slow inside the containers' namespaces (nsenter), heal."""
    ds = dset

    def fault(*args):
        return ds.fault(*args)[1]
    wait_for(ds.healthy, 120, lambda: "a healthy compose set: %s" % ds.status())
    old = ds.primary()
    ev = fault("kill", "primary")
    assert ev["targets"] == [old] and "cairn-%s" % old in ev["members"]
    assert {r["name"]: r["process"] for r in ds.status()["members"]}[old] == "dead"
    wait_for(lambda: ds.primary() not in (None, old), 30, "another primary")
    fault("restart", "dead")
    wait_for(lambda: ds.states()[old] == "SECONDARY", 60, "%s to rejoin" % old)

    old = ds.primary()
    fault("partition", old)
    wait_for(lambda: ds.primary() not in (None, old), 30, "a primary on the majority side")
    assert len(ds.status()["faults"]["rules"]) == 8     # 4 in the old primary, 2 in each other
    assert fault("heal")["removed"]["rules"] == 8
    wait_for(lambda: ds.states()[old] == "SECONDARY", 60, "%s back" % old)

    p = ds.primary()
    s = sorted(n for n in ("n1", "n2", "n3") if n != p)[0]
    fault("slow", s, "150ms")

    def ping():
        return next(r["pingMs"] for r in ds.status()["members"] if r["name"] == s)
    wait_for(lambda: (ping() or 0) >= 150, 30, lambda: "ping of %s >= 150 (%s)" % (s, ping()))
    assert fault("heal")["removed"]["delayers"] == 1
    wait_for(lambda: ping() is not None and ping() < 100, 30, "the ping to drop")
