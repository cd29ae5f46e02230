"""A docker/compose.yml replica set driven from the host, for tests/docker and the Docker
failover figures (docker/failover_figures.py).

Owns: ComposeSet (one compose project of docker/compose.yml on ports chosen here: up, down,
kill / start / wipe of one member, containers found by compose's labels
com.docker.compose.project / com.docker.compose.service, health status, clients), Writer
(retryable w:"majority" inserts recording each acknowledgement),
host_resolves_member_names() (what the README's /etc/hosts line does, for this process
only: cairn-n1/2/3 resolve to 127.0.0.1), docker_engine_problem() and compose_command().

Member names and ports: service nK advertises cairn-nK:PORT_K and publishes PORT_K on
127.0.0.1, so a host driver that resolves cairn-nK to 127.0.0.1 reaches every host hello lists.
"""

import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pymongo
from pymongo import WriteConcern
from pymongo.errors import PyMongoError

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
COMPOSE_FILE = os.path.join(REPO, "docker", "compose.yml")
SET_NAME = "rs0"
SERVICES = ("n1", "n2", "n3")
# Ports scripts/run-local.sh and its member transport use; never chosen here.
RESERVED_PORTS = set(range(27017, 27020)) | set(range(37017, 37020))
MAJORITY = WriteConcern(w="majority", wtimeout=30000)

_real_getaddrinfo = socket.getaddrinfo


def host_resolves_member_names():
    """Makes this process resolve cairn-n1, cairn-n2, cairn-n3 to 127.0.0.1, as the line
    "127.0.0.1 cairn-n1 cairn-n2 cairn-n3" in /etc/hosts does for every program (the README's
    instruction; tests do not edit the machine's /etc/hosts). Returns a function that
    undoes it."""
    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host in ("cairn-n1", "cairn-n2", "cairn-n3"):
            host = "127.0.0.1"
        return _real_getaddrinfo(host, *args, **kwargs)

    def undo():
        socket.getaddrinfo = _real_getaddrinfo
    socket.getaddrinfo = getaddrinfo
    return undo


def docker_engine_problem():
    """None when a Docker engine answers, else why not (the reason to skip)."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    try:
        proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "docker info failed: %s" % exc
    if proc.returncode != 0:
        return "no Docker engine runs (docker info: %s)" % proc.stdout.decode(
            "utf-8", "replace").strip().splitlines()[-1:]
    return None


def compose_command():
    """docker-compose (v1) if installed, else the docker compose plugin (v2), else None."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    proc = subprocess.run(["docker", "compose", "version"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    return ["docker", "compose"] if proc.returncode == 0 else None


def run(argv, timeout=300, check=True, env=None):
    """Runs argv; returns its stdout (text). Raises AssertionError with the output on failure."""
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout, env=env)
    out = proc.stdout.decode("utf-8", "replace")
    if check and proc.returncode != 0:
        raise AssertionError("%s exited %d:\n%s" % (" ".join(argv), proc.returncode, out))
    return out


def wait_for(cond, timeout, what, interval=0.1):
    """Polls cond() until it returns a true value (returned) or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (PyMongoError, OSError, AssertionError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0f s waiting for %s%s" % (
                timeout, what, " (last error: %s)" % last_exc if last_exc else ""))
        time.sleep(interval)


def free_ports(n, seed):
    """n distinct ports free on 127.0.0.1, away from RESERVED_PORTS, in 20000..29999 (the
    member transport uses port + 10000 inside the containers only)."""
    rng = random.Random(seed)
    ports = []
    while len(ports) < n:
        p = rng.randrange(20000, 30000)
        if p in RESERVED_PORTS or p in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        ports.append(p)
    return ports


class ComposeSet:
    """One compose project of docker/compose.yml."""

    def __init__(self, project, ports, image="cairn:latest"):
        self.project = project
        self.ports = dict(zip(SERVICES, ports))
        self.image = image
        self.compose = compose_command()
        if self.compose is None:
            raise AssertionError("neither docker-compose nor the docker compose plugin is "
                                 "installed")
        self.env = dict(os.environ, CAIRN_IMAGE=image, CAIRN_N1_PORT=str(ports[0]),
                        CAIRN_N2_PORT=str(ports[1]), CAIRN_N3_PORT=str(ports[2]))

    # -- compose -------------------------------------------------------------------------------
    def compose_run(self, *args, timeout=300, check=True):
        return run(self.compose + ["-p", self.project, "-f", COMPOSE_FILE] + list(args),
                   timeout=timeout, check=check, env=self.env)

    def up(self):
        return self.compose_run("up", "-d")

    def down(self, volumes=False):
        args = ["down", "--remove-orphans", "-t", "30"] + (["-v"] if volumes else [])
        return self.compose_run(*args, check=False)

    # -- containers, by compose's labels ---------------------------------------------------------
    def container(self, service, all_states=True):
        """The id of the service's container (None if there is none)."""
        out = run(["docker", "ps", "-q"] + (["-a"] if all_states else []) + [
            "--filter", "label=com.docker.compose.project=%s" % self.project,
            "--filter", "label=com.docker.compose.service=%s" % service])
        ids = out.split()
        return ids[0] if ids else None

    def inspect(self, service):
        cid = self.container(service)
        if cid is None:
            return None
        return json.loads(run(["docker", "inspect", cid]))[0]

    def health(self, service):
        """(status, last health-check output) of the service's container."""
        info = self.inspect(service)
        health = (info or {}).get("State", {}).get("Health") or {}
        log = health.get("Log") or []
        return health.get("Status"), (log[-1].get("Output", "").strip() if log else "")

    def logs(self, service):
        cid = self.container(service)
        return run(["docker", "logs", cid], check=False) if cid else ""

    def kill(self, service):
        run(["docker", "kill", self.container(service)])

    def start(self, service):
        run(["docker", "start", self.container(service)])

    def wipe(self, service):
        """Stops and removes the service's container and its data volume."""
        self.compose_run("rm", "-s", "-f", service)
        run(["docker", "volume", "rm", "%s_%s-data" % (self.project, service)])

    # -- clients ----------------------------------------------------------------------------------
    def host(self, service):
        return "cairn-%s:%d" % (service, self.ports[service])

    def uri(self):
        return "mongodb://%s/?replicaSet=%s" % (",".join(self.host(s) for s in SERVICES),
                                                SET_NAME)

    def client(self, **kwargs):
        """A replica-set client through the advertised names (needs
        host_resolves_member_names() or the /etc/hosts line)."""
        kwargs.setdefault("serverSelectionTimeoutMS", 30000)
        return pymongo.MongoClient(self.uri(), **kwargs)

    def direct(self, service, **kwargs):
        kwargs.setdefault("serverSelectionTimeoutMS", 5000)
        return pymongo.MongoClient("127.0.0.1", self.ports[service], directConnection=True,
                                   **kwargs)

    def command(self, service, cmd, timeout_ms=3000):
        c = self.direct(service, connectTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms,
                        serverSelectionTimeoutMS=timeout_ms)
        try:
            return c.admin.command(cmd)
        finally:
            c.close()

    def writable_primary(self):
        """The service whose member says isWritablePrimary, else None."""
        for s in SERVICES:
            try:
                if self.command(s, "hello", 1000).get("isWritablePrimary"):
                    return s
            except PyMongoError:
                pass
        return None


class Writer(threading.Thread):
    """Retryable w:"majority" inserts of _id 0, 1, ... through the advertised names; records
    (sent, acknowledged, id) of each acknowledged insert (monotonic times)."""

    def __init__(self, cs):
        super().__init__(daemon=True)
        self.client = cs.client(retryWrites=True, socketTimeoutMS=20000)
        self.acks = []
        self.errors = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        coll = self.client.dockertest.get_collection("failover", write_concern=MAJORITY)
        i = 0
        while not self.stop.is_set():
            sent = time.monotonic()
            try:
                coll.insert_one({"_id": i})
                with self.lock:
                    self.acks.append((sent, time.monotonic(), i))
                i += 1
            except PyMongoError as exc:
                # Outcome unknown: the id is not reused (a retry may have applied it).
                self.errors.append(repr(exc))
                i += 1
                time.sleep(0.01)

    def acked_after(self, t):
        """Ids of the inserts sent after t and acknowledged."""
        with self.lock:
            return [i for (sent, _, i) in self.acks if sent > t]
