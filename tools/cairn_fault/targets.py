"""Where the members are and how to act on their processes: local cairnd processes started by
scripts/run-local.sh, or the containers of a compose project.

Owns: Member (name, the address to ask it on, the addresses it is known by, its firewall
addresses), FaultError, LocalTarget and DockerTarget. A target answers members(), kill/stop/
cont/restart of one member, and the two hooks the network faults need: run(member, argv) (a
command in the member's network namespace: the host for local members, the container's via
nsenter for Docker) and spawn(member, argv) (a background process there). It also names the
state directory and the iptables comment tag of this set, so that `heal` removes exactly the
rules and delayers this tool added for it.

Local members are found from the data directory: n<i>/cairnd.pid, n<i>/cairnd.cmdline (the
command line run-local recorded; --bind_ip and --port give the address), n<i>/cairnd.log. Docker
members are the containers labelled com.docker.compose.project=<project> and
com.docker.compose.service=<name> (Compose v1 and v2 both set these labels) whose command
line has --replSet (one-shot services of the project, such as an initiation, are not members).
"""

import hashlib
import json
import os
import signal
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class FaultError(Exception):
    """A fault cannot be applied (unknown member, no primary, missing tool, ...): the message
    is for the user; the command exits 1."""


def _sh(argv, check=True, timeout=60, **kw):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    except FileNotFoundError as exc:
        raise FaultError("%s is not installed" % argv[0]) from exc
    except subprocess.TimeoutExpired as exc:
        raise FaultError("%s timed out" % " ".join(argv)) from exc
    if check and p.returncode != 0:
        raise FaultError("%s failed (%d): %s" % (" ".join(argv), p.returncode,
                                                 (p.stderr or p.stdout).strip()))
    return p


def _arg(argv, flag, default=None):
    for i, a in enumerate(argv[:-1]):
        if a == flag:
            return argv[i + 1]
    return default


class Member:
    def __init__(self, name, ip, port, ref):
        self.name = name            # n1, n2, ...
        self.ip = ip                # the address firewall rules match
        self.port = port
        self.ref = ref              # the target's handle: a dict
        self.ips = [ip] if ip else []
        self.aliases = []           # other names the set or the driver may use
        self._state = None

    @property
    def admin(self):
        """host:port to ask it on ("-:port" for a stopped container, which has no address)."""
        return "%s:%d" % (self.ip or "-", self.port)

    def hosts(self):
        """Every host:port (and bare name) this member may be known by."""
        out = [self.admin] if self.ip else []
        out += ["%s:%d" % (a, self.port) for a in self.aliases]
        return out + list(self.aliases)

    def proc_state(self):
        return self._state()

    def __repr__(self):
        return "<%s %s>" % (self.name, self.admin)


# -- local processes --------------------------------------------------------------------------

def _proc_state(pid):
    """running, stopped (SIGSTOP) or dead, from /proc/<pid>/stat."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "dead"
    if state in ("Z", "X"):
        return "dead"
    return "stopped" if state in ("T", "t") else "running"


class LocalTarget:
    kind = "local"

    def __init__(self, data):
        self.data = os.path.realpath(data)
        if not os.path.isdir(self.data):
            raise FaultError("no data directory %s (start the set with scripts/run-local.sh, "
                             "or give --data / CAIRN_DATA)" % self.data)
        self.tag = "cairn-fault:" + hashlib.sha1(self.data.encode()).hexdigest()[:10]
        self.state_dir = os.path.join(self.data, "fault")
        self._members = None

    def _cmdline(self, d):
        path = os.path.join(d, "cairnd.cmdline")
        if os.path.exists(path):
            with open(path, "rb") as f:
                return [a.decode() for a in f.read().split(b"\0") if a]
        pid = self._pid(d)
        if pid and _proc_state(pid) != "dead":
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return [a.decode() for a in f.read().split(b"\0") if a]
        raise FaultError("%s has no cairnd.cmdline and no running cairnd: start the set with "
                         "scripts/run-local.sh" % d)

    @staticmethod
    def _pid(d):
        try:
            with open(os.path.join(d, "cairnd.pid")) as f:
                return int(f.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def members(self):
        if self._members is None:
            dirs = sorted((e for e in os.listdir(self.data) if e.startswith("n") and
                           e[1:].isdigit() and os.path.isdir(os.path.join(self.data, e))),
                          key=lambda e: int(e[1:]))
            if not dirs:
                raise FaultError("no members (n1, n2, ...) in %s" % self.data)
            out = []
            for name in dirs:
                d = os.path.join(self.data, name)
                argv = self._cmdline(d)
                ip = _arg(argv, "--bind_ip", "127.0.0.1").split(",")[0]
                m = Member(name, ip, int(_arg(argv, "--port", "27017")),
                           {"dir": d, "argv": argv})
                m._state = (lambda d=d: self._state_of(d))
                out.append(m)
            self._members = out
        return self._members

    def _state_of(self, d):
        pid = self._pid(d)
        if not pid:
            return "dead"
        state = _proc_state(pid)
        if state != "dead" and not self._is_ours(pid, d):
            return "dead"           # the pid was reused by another process
        return state

    @staticmethod
    def _is_ours(pid, d):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = [a.decode() for a in f.read().split(b"\0") if a]
        except OSError:
            return False
        dbpath = _arg(argv, "--dbpath")
        return dbpath is not None and os.path.realpath(dbpath) == os.path.realpath(d)

    def dbpath(self, m):
        return m.ref["dir"]

    def handle(self, m):
        pid = self._pid(m.ref["dir"])
        return "pid %s" % pid if m.proc_state() != "dead" else "dead"

    def _signal(self, m, sig):
        pid = self._pid(m.ref["dir"])
        if not pid or m.proc_state() == "dead":
            raise FaultError("%s is not running" % m.name)
        os.kill(pid, sig)
        return pid

    def kill(self, m):
        pid = self._signal(m, signal.SIGKILL)
        _await(lambda: m.proc_state() == "dead", 10, "%s (pid %d) to die" % (m.name, pid))

    def stop(self, m):
        self._signal(m, signal.SIGSTOP)
        _await(lambda: m.proc_state() == "stopped", 10, "%s to stop" % m.name)

    def cont(self, m):
        self._signal(m, signal.SIGCONT)
        _await(lambda: m.proc_state() == "running", 10, "%s to resume" % m.name)

    def restart(self, m):
        """Stops the member if it runs (SIGTERM, SIGKILL after 30 s), then starts it with the
        recorded command line, appending to its log."""
        if m.proc_state() != "dead":
            pid = self._pid(m.ref["dir"])
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
            try:
                _await(lambda: m.proc_state() == "dead", 30, "%s to exit" % m.name)
            except FaultError:
                os.kill(pid, signal.SIGKILL)
                _await(lambda: m.proc_state() == "dead", 10, "%s to die" % m.name)
        d = m.ref["dir"]
        with open(os.path.join(d, "cairnd.log"), "ab") as log:
            log.write(("\n==== cairn-fault restart: %s\n" % " ".join(m.ref["argv"])).encode())
            log.flush()
            p = subprocess.Popen(m.ref["argv"], stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        with open(os.path.join(d, "cairnd.pid"), "w") as f:
            f.write("%d\n" % p.pid)
        return p.pid

    # network namespace hooks: local members share the host's
    def run(self, m, argv, check=True):
        return _sh(argv, check=check)

    def spawn(self, m, argv, log):
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)

    def namespaces(self):
        """One representative member per network namespace holding our rules."""
        return [None]

    def netdev(self, m):
        return "lo"


# -- docker containers ------------------------------------------------------------------------

class DockerTarget:
    kind = "docker"

    def __init__(self, project, port=27017):
        if not project:
            raise FaultError("docker target: name the compose project (--project or "
                             "COMPOSE_PROJECT_NAME)")
        self.project = project
        self.default_port = port
        self.tag = "cairn-fault:" + project
        self.state_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                      "cairn-fault-" + project)
        self._members = None

    def _inspect(self, cid):
        return json.loads(_sh(["docker", "inspect", cid]).stdout)[0]

    def members(self):
        if self._members is None:
            ids = _sh(["docker", "ps", "-a", "-q", "--filter",
                       "label=com.docker.compose.project=%s" % self.project]).stdout.split()
            out = []
            for cid in ids:
                info = self._inspect(cid)
                labels = info["Config"].get("Labels") or {}
                name = labels.get("com.docker.compose.service")
                if not name or labels.get("com.docker.compose.oneoff") == "True":
                    continue
                argv = [info.get("Path") or ""] + list(info.get("Args") or [])
                if "--replSet" not in argv:
                    continue        # a one-shot service of the project (key file, initiation)
                port = int(_arg(argv, "--port", self.default_port))
                nets = info["NetworkSettings"].get("Networks") or {}
                ips = [n.get("IPAddress") for n in nets.values() if n.get("IPAddress")]
                dbpath = _arg(argv, "--dbpath", "/data")
                volume = next((mt.get("Source") for mt in info.get("Mounts") or ()
                               if mt.get("Destination") == dbpath), None)
                m = Member(name, ips[0] if ips else None, port,
                           {"id": info["Id"], "cname": info["Name"].lstrip("/"),
                            "dbpath": volume})
                m.ips = ips
                m.aliases = [name, (info["Config"].get("Hostname") or name)]
                m._state = (lambda cid=info["Id"]: self._state_of(cid))
                out.append(m)
            if not out:
                raise FaultError("no containers of compose project %r (labels "
                                 "com.docker.compose.project/service)" % self.project)
            self._members = sorted(out, key=lambda m: m.name)
        return self._members

    def _state_of(self, cid):
        st = self._inspect(cid)["State"]
        if st.get("Paused"):
            return "stopped"
        return "running" if st.get("Running") else "dead"

    def _pid(self, m):
        pid = self._inspect(m.ref["id"])["State"].get("Pid") or 0
        if not pid:
            raise FaultError("%s (%s) is not running" % (m.name, m.ref["cname"]))
        return pid

    def dbpath(self, m):
        """The host directory of the volume mounted at the member's --dbpath (None if the
        dbpath is not a mount)."""
        return m.ref["dbpath"]

    def handle(self, m):
        return "container %s" % m.ref["cname"]

    def kill(self, m):
        _sh(["docker", "kill", "-s", "KILL", m.ref["id"]])
        _await(lambda: m.proc_state() == "dead", 20, "%s to die" % m.name)

    def stop(self, m):
        _sh(["docker", "pause", m.ref["id"]])

    def cont(self, m):
        _sh(["docker", "unpause", m.ref["id"]])

    def restart(self, m):
        state = m.proc_state()
        if state == "stopped":
            _sh(["docker", "unpause", m.ref["id"]])
        if state == "dead":
            _sh(["docker", "start", m.ref["id"]])
        else:
            _sh(["docker", "restart", "-t", "30", m.ref["id"]], timeout=90)
        # a new container process has a new network namespace and maybe a new address
        self._members = None
        return self._pid(m)

    def run(self, m, argv, check=True):
        return _sh(["nsenter", "-t", str(self._pid(m)), "-n"] + argv, check=check)

    def spawn(self, m, argv, log):
        return subprocess.Popen(["nsenter", "-t", str(self._pid(m)), "-n"] + argv,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=REPO)

    def namespaces(self):
        return [m for m in self.members() if m.proc_state() != "dead"]

    def netdev(self, m):
        out = self.run(m, ["ip", "-o", "route", "show", "default"], check=False).stdout.split()
        return out[out.index("dev") + 1] if "dev" in out else "eth0"


def _await(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise FaultError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(0.05)
