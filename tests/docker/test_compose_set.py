"""The Docker deployment (docker/): image, compose file, health check, failover, persistence.

One compose project per run (project cairntest<pid>, ports 20000-29999 chosen here, never
scripts/run-local.sh's 27017-27019 / 37017-37019) brought up once for the module; the tests run
in file order on it and each leaves the set writable with all three members healthy:
  - the image: small, FROM scratch, non-root, with a HEALTHCHECK;
  - `up -d` gives a writable primary and healthy members that advertise cairn-nK:PORT;
  - a host application (pymongo, names resolved as the README's /etc/hosts line does) and an
    application container on the compose network (tests/go/failover, a static Go binary in a
    FROM scratch image) write through the advertised names;
  - docker kill of the primary under w:"majority" retryable writes: the driver goes on with
    the new primary, no acknowledged write is lost, the killed member rejoins when started;
  - down + up keeps data and set; a member whose volume was emptied rejoins the same set
    (same replicaSetId) and resyncs instead of starting a second set.
Everything the module created (containers, network, volumes, the Go client image) is removed
at the end. The image cairn:latest (docker/build-image.sh) is rebuilt here and left in place:
it is the product image the README's compose commands use.

Skipped, with the reason, only when no Docker engine runs.
"""

import json
import os
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compose_set import (MAJORITY, REPO, SERVICES, ComposeSet, Writer,  # noqa: E402
                         docker_engine_problem, free_ports, host_resolves_member_names, run,
                         wait_for)

from pymongo.read_concern import ReadConcern  # noqa: E402

_problem = docker_engine_problem()
if _problem is not None:
    pytest.skip("Docker suite skipped: %s" % _problem, allow_module_level=True)

SEED = 7
IMAGE = os.environ.get("CAIRN_IMAGE", "cairn:latest")
GO_DRIVER_SRC = "/usr/share/gocode/src/go.mongodb.org/mongo-driver"


def _healthy_set(cs, timeout=90):
    """Waits until a primary accepts writes and all three health checks say healthy."""
    wait_for(cs.writable_primary, timeout, "a writable primary")
    for s in SERVICES:
        wait_for(lambda s=s: cs.health(s)[0] == "healthy", timeout,
                 "%s's health check to report healthy" % s, interval=0.5)


def _majority_ids(cs, coll):
    c = cs.client()
    try:
        db = c.get_database("dockertest", read_concern=ReadConcern("majority"))
        return [d["_id"] for d in db[coll].find({}, {"_id": 1})]
    finally:
        c.close()


def _replica_set_id(cs, service):
    cfg = cs.command(service, "replSetGetConfig")["config"]
    return cfg["settings"]["replicaSetId"]


@pytest.fixture(scope="module")
def cs():
    out = run(["bash", os.path.join(REPO, "docker", "build-image.sh")], timeout=1200,
              env=dict(os.environ, CAIRN_IMAGE=IMAGE))
    print(out.strip().splitlines()[-1])
    undo_names = host_resolves_member_names()
    project = "cairntest%d" % os.getpid()
    cs = ComposeSet(project, free_ports(3, SEED + os.getpid()), IMAGE)
    cs.down(volumes=True)  # a leftover of an earlier run with the same pid
    t0 = time.monotonic()
    try:
        cs.up()
        wait_for(cs.writable_primary, 120, "a writable primary after up -d")
        cs.up_to_writable_s = time.monotonic() - t0
        print("compose up -d to a writable primary: %.2f s" % cs.up_to_writable_s)
        yield cs
    finally:
        for s in SERVICES + ("init",):
            tail = cs.logs(s).strip().splitlines()[-15:]
            print("--- %s (last log lines)\n%s" % (s, "\n".join(tail)))
        cs.down(volumes=True)
        undo_names()
        left = run(["docker", "ps", "-aq", "--filter",
                    "label=com.docker.compose.project=%s" % project])
        assert left.strip() == "", "containers left behind: %s" % left
        vols = run(["docker", "volume", "ls", "-q", "--filter",
                    "label=com.docker.compose.project=%s" % project])
        assert vols.strip() == "", "volumes left behind: %s" % vols


def test_image_is_from_scratch_small_non_root_with_a_health_check(cs):
    info = json.loads(run(["docker", "image", "inspect", IMAGE]))[0]
    cfg = info["Config"]
    assert cfg["User"] == "999:999"
    assert cfg["Healthcheck"]["Test"][:2] == ["CMD", "/usr/bin/cairn-ctl"]
    assert cfg["Cmd"][cfg["Cmd"].index("--dbpath") + 1] == "/data"
    assert not cfg.get("Volumes")  # no anonymous volumes for the one-shot containers
    assert len(info["RootFS"]["Layers"]) == 2  # rootfs/ and owned/: nothing beneath
    print("image %s: %.1f MiB" % (IMAGE, info["Size"] / 2**20))
    assert info["Size"] < 100 * 2**20


def test_up_gives_a_healthy_set_that_advertises_the_member_names(cs):
    _healthy_set(cs)
    primary = cs.writable_primary()
    hello = cs.command(primary, "hello")
    assert sorted(hello["hosts"]) == sorted(cs.host(s) for s in SERVICES)
    assert hello["setName"] == "rs0"
    states = sorted(cs.health(s)[1].split()[0] for s in SERVICES)
    assert states == ["PRIMARY", "SECONDARY", "SECONDARY"]
    assert "initiated replica set rs0" in cs.logs("init")
    # The key file the one-shot service made: mode 0400, owned by the cairnd user (seen
    # through the volume's directory on this host, where the engine runs), and kept.
    vol = json.loads(run(["docker", "volume", "inspect", "%s_key" % cs.project]))[0]
    st = os.stat(os.path.join(vol["Mountpoint"], "keyfile"))
    assert (st.st_mode & 0o777, st.st_uid) == (0o400, 999)
    out = run(["docker", "run", "--rm", "--entrypoint", "/usr/bin/cairn-ctl", "-v",
               "%s_key:/key" % cs.project, IMAGE, "keygen", "/key/keyfile"])
    assert "exists" in out


def test_host_application_writes_through_the_advertised_names(cs):
    c = cs.client()
    try:
        coll = c.dockertest.get_collection("host", write_concern=MAJORITY)
        coll.insert_many([{"_id": i, "by": "host"} for i in range(100)])
        assert c.address[0].startswith("cairn-n")  # the driver uses hello's hosts
    finally:
        c.close()
    assert sorted(_majority_ids(cs, "host")) == list(range(100))


def test_application_container_on_the_compose_network_writes(cs, tmp_path):
    if not os.path.isdir(GO_DRIVER_SRC):
        pytest.fail("the Go driver is not installed (%s missing): scripts/setup.sh installs "
                    "golang-mongodb-mongo-driver-dev" % GO_DRIVER_SRC, pytrace=False)
    cache = os.environ.get("GOCACHE") or os.path.join(REPO, "build", "go-cache")
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOPROXY="off", GOCACHE=cache, CGO_ENABLED="0")
    proc = subprocess.run(["go", "build", "-ldflags=-s -w", "-o", str(tmp_path / "go_failover"),
                           "./tests/go/failover"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=900)
    assert proc.returncode == 0, "static go build failed:\n%s" % proc.stdout.decode()
    (tmp_path / "Dockerfile").write_text(
        "FROM scratch\nCOPY go_failover /go_failover\nENTRYPOINT [\"/go_failover\"]\n")
    tag = "cairn-test-goclient:%s" % cs.project
    run(["docker", "build", "-q", "-t", tag, str(tmp_path)],
        env=dict(os.environ, DOCKER_BUILDKIT="0"))
    try:
        out = run(["docker", "run", "--rm", "--network", "%s_cairn" % cs.project, tag,
                   "-count", "50", "-seconds", "120", "-txn=false", cs.uri()], timeout=300)
    finally:
        run(["docker", "image", "rm", "-f", tag], check=False)
    summary = [json.loads(l) for l in out.splitlines() if l.startswith("{")][-1]
    assert summary["ev"] == "summary", out[-2000:]
    assert summary["acked_count"] == 50, out[-2000:]
    c = cs.client()
    try:
        db = c.get_database("failover", read_concern=ReadConcern("majority"))
        got = {d["n"] for d in db.go_ids.find({"by": "go"}, {"n": 1})}
    finally:
        c.close()
    for lo, hi in summary["acked"]:
        assert set(range(lo, hi + 1)) <= got


def test_killing_the_primary_fails_over_and_loses_no_majority_write(cs):
    _healthy_set(cs)
    old = cs.writable_primary()
    w = Writer(cs)
    w.start()
    try:
        wait_for(lambda: len(w.acked_after(0)) >= 50, 60, "50 writes before the kill")
        cs.kill(old)
        t_kill = time.monotonic()  # docker kill returned: SIGKILL delivered
        wait_for(lambda: len(w.acked_after(t_kill)) >= 50, 60,
                 "50 acknowledged writes after killing %s" % old)
        with w.lock:
            first_after = min(at for sent, at, _ in w.acks if sent > t_kill)
        print("kill of %s to the first majority write: %.2f s" % (old, first_after - t_kill))
        new = cs.writable_primary()
        assert new is not None and new != old
    finally:
        w.stop.set()
        w.join(30)
        w.client.close()
    acked = sorted(i for _, _, i in w.acks)
    stored = _majority_ids(cs, "failover")
    assert len(stored) == len(set(stored))
    missing = sorted(set(acked) - set(stored))
    assert missing == [], "acknowledged majority writes lost: %s" % missing[:20]

    # The killed member rejoins when started again, and catches up.
    cs.start(old)
    wait_for(lambda: cs.health(old)[0] == "healthy", 90, "%s healthy after restart" % old,
             interval=0.5)
    assert cs.health(old)[1].startswith("SECONDARY")
    c = cs.direct(old, readPreference="secondaryPreferred")
    try:
        wait_for(lambda: c.dockertest.failover.count_documents({}) >= len(stored), 60,
                 "%s to catch up" % old)
    finally:
        c.close()


def test_down_and_up_keep_the_data_and_the_set(cs):
    _healthy_set(cs)
    set_id = _replica_set_id(cs, cs.writable_primary())
    before = sorted(_majority_ids(cs, "host"))
    cs.down(volumes=False)
    assert cs.container("n1") is None
    cs.up()
    _healthy_set(cs, timeout=120)
    assert sorted(_majority_ids(cs, "host")) == before == list(range(100))
    for s in SERVICES:
        assert _replica_set_id(cs, s) == set_id
    wait_for(lambda: "already initiated" in cs.logs("init"), 60, "the init service's rerun")
    assert "initiated replica set" not in cs.logs("init")


def test_a_member_with_an_emptied_volume_rejoins_the_set_instead_of_a_second_one(cs):
    _healthy_set(cs)
    primary = cs.writable_primary()
    set_id = _replica_set_id(cs, primary)
    victim = [s for s in SERVICES if s != primary][0]
    expected = sorted(_majority_ids(cs, "host"))
    cs.wipe(victim)
    # up recreates the member on an empty volume and runs the initiation again.
    cs.up()
    wait_for(lambda: cs.health(victim)[0] == "healthy", 120,
             "the emptied %s to rejoin as a healthy member" % victim, interval=0.5)
    assert cs.health(victim)[1].startswith("SECONDARY")
    assert _replica_set_id(cs, victim) == set_id
    status = cs.command(cs.writable_primary(), "replSetGetStatus")
    assert sorted(m["stateStr"] for m in status["members"]) == [
        "PRIMARY", "SECONDARY", "SECONDARY"]
    assert all(m["health"] == 1 for m in status["members"])
    # It resynced: the data written before its volume was emptied is on it.
    c = cs.direct(victim, readPreference="secondaryPreferred")
    try:
        wait_for(lambda: sorted(d["_id"] for d in c.dockertest.host.find()) == expected, 90,
                 "%s to resync the data" % victim)
    finally:
        c.close()
    assert "initiated replica set" not in cs.logs("init")
