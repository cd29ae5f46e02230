"""Replica sets of several real cairnd members on 127.0.0.1 for the integration tests.

Owns: Member (one cairnd process of a set: start, kill -9, SIGSTOP/SIGCONT, clean stop,
restart, wipe of its dbpath, raw commands over its client port), ReplicaSet (N members on
free port pairs, replSetInitiate, waiting for a writable primary / a healthy, caught-up set by
polling hello and replSetGetStatus, teardown with sanitizer checks, log tails) and the pytest
glue: the `rs_factory` fixture (sets started inside one test, stopped and checked when it
ends) and make_replica_set() for module-scoped sets. When a test fails while a set is running,
the tail of every member's log is appended to the failure report.

Each member listens on P (clients) and P+10000 (the member transport: raft and heartbeats);
both must be free, and a start that loses a race for either port is retried on other ports
(before initiation only: after it, the config names the ports).

The binary is $CAIRND, else build/src/server/cairnd (as for the single-member tests).
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import bson
import pytest

from cairn_server import (RAFT_PORT_OFFSET, SANITIZER_MARKERS, cairnd_binary, pick_port,
                          port_is_free)

SET_NAME = "rs0"
LOG_TAIL_LINES = 40

# Member states as replSetGetStatus reports them.
PRIMARY, SECONDARY = 1, 2


class RSError(AssertionError):
    """A replica-set helper gave up (a member did not start, no primary, ...). An
    AssertionError so that pytest reports it as a test failure with its message."""


# -- raw commands -----------------------------------------------------------------------------

_req = [0]
_req_lock = threading.Lock()


def raw_command(port, doc, db="admin", timeout=2.0, ip="127.0.0.1"):
    """One OP_MSG command on a fresh connection to ip:port, without the driver (so
    nothing adds $readPreference or secondaryOk). Returns the reply document; raises OSError
    (including socket.timeout) when the member does not answer."""
    body = dict(doc)
    body.setdefault("$db", db)
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(body)
    with _req_lock:
        _req[0] += 1
        rid = _req[0]
    msg = struct.pack("<iiii", 16 + len(payload), rid, 0, 2013) + payload
    with socket.create_connection((ip, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(msg)
        head = _recv_exact(s, 16)
        length, _, response_to, opcode = struct.unpack("<iiii", head)
        data = _recv_exact(s, length - 16)
    if opcode != 2013 or response_to != rid:
        raise OSError("unexpected reply (opcode %d, responseTo %d)" % (opcode, response_to))
    if data[4] != 0:
        raise OSError("reply without a kind-0 section")
    return bson.decode(data[5:])


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def wait_for(cond, timeout, what, interval=0.05):
    """Polls cond() until it returns a true value, which is returned; raises RSError after
    `timeout` seconds with `what` (a string, or a function returning one, called then so that
    it can describe the state reached). Exceptions from cond count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - a member may be down or electing
            last_exc = exc
        if time.monotonic() > deadline:
            desc = what() if callable(what) else what
            raise RSError("timed out after %.1fs waiting until %s%s" % (
                timeout, desc, " (last error: %r)" % last_exc if last_exc else ""))
        time.sleep(interval)


# -- one member -------------------------------------------------------------------------------

class Member:
    def __init__(self, rs, index, port, base_dir, ip="127.0.0.1"):
        self.rs = rs
        self.ip = ip            # the address it binds (clients and member traffic)
        self.index = index
        self.name = "m%d" % index
        self.port = port
        self.dbpath = os.path.join(base_dir, self.name)
        self.logpath = os.path.join(base_dir, self.name + ".log")
        self.proc = None
        self.paused = False
        self._term_sent = False
        self.starts = 0
        self.problems = []      # unclean exits (strings)
        self.extra_args = None  # this member's own extra arguments (None: the set's)

    def __repr__(self):
        return "<%s %s%s>" % (self.name, self.host, "" if self.alive() else " down")

    @property
    def host(self):
        return "%s:%d" % (self.ip, self.port)

    # -- life cycle ---------------------------------------------------------------------------
    def command_line(self):
        return [self.rs.binary, "--replSet", self.rs.set_name, "--port", str(self.port),
                "--bind_ip", self.ip, "--dbpath", self.dbpath] + list(
                    self.rs.extra_args if self.extra_args is None else self.extra_args)

    def spawn(self):
        os.makedirs(self.dbpath, exist_ok=True)
        self.starts += 1
        with open(self.logpath, "ab") as log:
            log.write(("\n==== %s start #%d: %s\n" % (self.name, self.starts,
                                                     " ".join(self.command_line()))).encode())
            log.flush()
            self.proc = subprocess.Popen(self.command_line(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True)
        self.paused = False
        self._term_sent = False

    def wait_listening(self, timeout=30.0):
        """Waits until the member answers hello; raises RSError if it exits first."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RSError("%s exited with status %s during start-up\n%s"
                              % (self.name, self.proc.returncode, self.log_tail()))
            try:
                return self.hello(timeout=1.0)
            except OSError as exc:
                last = exc
            time.sleep(0.02)
        raise RSError("%s (port %d) not answering hello after %.0fs (last: %r)\n%s"
                      % (self.name, self.port, timeout, last, self.log_tail()))

    def start(self, wait=True, timeout=30.0):
        """Starts the process on the member's ports (a restart after kill9/stop)."""
        if self.alive():
            raise RSError("%s is already running" % self.name)
        self.spawn()
        if wait:
            self.wait_listening(timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def kill9(self):
        """SIGKILL (also of a paused member); a crash is not a problem in itself."""
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self.paused = False

    def pause(self):
        """SIGSTOP: the process stays, silent (sockets open, nothing answered)."""
        if not self.alive():
            raise RSError("cannot pause %s: not running" % self.name)
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def terminate(self):
        """Sends SIGTERM (after SIGCONT if paused) without waiting; see stop()."""
        if self.alive() and not self._term_sent:
            if self.paused:
                self.resume()
            self.proc.send_signal(signal.SIGTERM)
            self._term_sent = True

    def stop(self, timeout=30.0):
        """SIGTERM (after SIGCONT if paused), SIGKILL after `timeout`. Records a problem
        unless the process exits 0."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                stacks = self.stacks()
                self.proc.kill()
                self.proc.wait()
                self.problems.append("%s did not exit within %.0fs of SIGTERM; its threads:\n%s"
                                     % (self.name, timeout, stacks))
                return self.proc.returncode
            if self.proc.returncode != 0:
                self.problems.append("%s exited with status %d after SIGTERM"
                                     % (self.name, self.proc.returncode))
        return self.proc.returncode

    def stacks(self, timeout=60.0):
        """Every thread's backtrace (gdb), for a member that hangs; a note when gdb is
        missing or fails."""
        if not self.alive():
            return "(not running)"
        gdb = shutil.which("gdb")
        if gdb is None:
            return "(no gdb to show the threads of pid %d)" % self.proc.pid
        try:
            out = subprocess.run([gdb, "-p", str(self.proc.pid), "-batch", "-nx",
                                  "-ex", "set pagination off", "-ex", "thread apply all bt"],
                                 stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                 timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return "(gdb failed: %r)" % exc
        lines = [ln for ln in out.stdout.splitlines()
                 if ln.startswith(("Thread ", "#")) or not ln.strip()]
        return "\n".join(lines)[-80000:] or out.stderr[-2000:]

    def restart(self, wait=True, timeout=30.0):
        self.stop()
        return self.start(wait=wait, timeout=timeout)

    def wipe(self):
        """Deletes the member's dbpath (the member must be down)."""
        if self.alive():
            raise RSError("cannot wipe %s while it runs" % self.name)
        shutil.rmtree(self.dbpath, ignore_errors=True)

    # -- talking to it ------------------------------------------------------------------------
    def command(self, doc, db="admin", timeout=2.0):
        """A raw command (no driver): the reply document, ok or not."""
        return raw_command(self.port, doc, db=db, timeout=timeout, ip=self.ip)

    def hello(self, timeout=2.0):
        return self.command({"hello": 1}, timeout=timeout)

    def status(self, timeout=2.0):
        return self.command({"replSetGetStatus": 1}, timeout=timeout)

    def client(self, **kwargs):
        """A pymongo client connected directly to this member."""
        import pymongo

        opts = dict(directConnection=True, serverSelectionTimeoutMS=10000,
                    connectTimeoutMS=5000, socketTimeoutMS=30000)
        opts.update(kwargs)
        return pymongo.MongoClient(self.ip, self.port, **opts)

    # -- logs ---------------------------------------------------------------------------------
    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        state = ("running, pid %d%s" % (self.proc.pid, ", PAUSED" if self.paused else "")
                 if self.alive() else
                 "exited with %s" % (self.proc.returncode if self.proc else "never started"))
        return "---- %s %s (%s) log tail %s ----\n%s" % (
            self.name, self.host, state, self.logpath,
            "\n".join(self.log_text().splitlines()[-lines:]))

    def log_grep(self, *needles):
        """The log lines containing any of `needles`."""
        return [ln for ln in self.log_text().splitlines() if any(n in ln for n in needles)]

    def sanitizer_report(self):
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                start = text.rfind("\n", 0, max(0, i - 2000)) + 1
                return text[start:i + 4000]
        return None


# -- the set ----------------------------------------------------------------------------------

_ACTIVE = []            # sets started and not yet torn down (for failure reports)
_ACTIVE_LOCK = threading.Lock()


def _pick_ports(n, avoid=()):
    ports = []
    for _ in range(200):
        p = pick_port()
        if p not in ports and p not in avoid and all(abs(p - q) != RAFT_PORT_OFFSET
                                                     for q in ports + list(avoid)):
            ports.append(p)
            if len(ports) == n:
                return ports
    raise RSError("could not find %d free port pairs" % n)


def free_port_pair(avoid=()):
    """A client port P with P and P+10000 free and nothing listening (a member that will
    never answer)."""
    return _pick_ports(1, avoid)[0]


class ReplicaSet:
    """N members of one set on 127.0.0.1, each in base_dir/m<i> with log base_dir/m<i>.log."""

    def __init__(self, n, base_dir, binary=None, set_name=SET_NAME, extra_args=(),
                 settings=None, ips=None):
        """`ips`: one loopback address per member (default all 127.0.0.1); members on
        distinct addresses can be cut apart with firewall rules."""
        self.base_dir = base_dir
        self.binary = binary or cairnd_binary()
        self.set_name = set_name
        self.extra_args = list(extra_args)
        self.settings = dict(settings or {})
        ports = _pick_ports(n)
        self.members = [Member(self, i, ports[i], base_dir,
                               ip=(ips[i] if ips else "127.0.0.1")) for i in range(n)]
        self.initiated = False

    def __repr__(self):
        return "<ReplicaSet %s %s>" % (self.set_name, self.members)

    # -- members by name, index or host -------------------------------------------------------
    def member(self, key):
        if isinstance(key, Member):
            return key
        for m in self.members:
            if key in (m.index, m.name, m.host, m.port):
                return m
        raise KeyError("no member %r in %r" % (key, self))

    def __getitem__(self, key):
        return self.member(key)

    def __iter__(self):
        return iter(self.members)

    def __len__(self):
        return len(self.members)

    @property
    def hosts(self):
        return [m.host for m in self.members]

    @property
    def uri(self):
        return "mongodb://%s/?replicaSet=%s" % (",".join(self.hosts), self.set_name)

    def client(self, **kwargs):
        """A pymongo client on the whole set (it discovers and follows the primary)."""
        import pymongo

        opts = dict(serverSelectionTimeoutMS=20000, connectTimeoutMS=5000,
                    socketTimeoutMS=30000)
        opts.update(kwargs)
        return pymongo.MongoClient(self.uri, **opts)

    # -- start and initiate -------------------------------------------------------------------
    def start(self, timeout=30.0):
        """Starts every member (not initiated); a member that loses a race for its port pair
        is moved to other free ports and started again."""
        with _ACTIVE_LOCK:
            if self not in _ACTIVE:
                _ACTIVE.append(self)
        for m in self.members:
            m.spawn()
        for m in self.members:
            for attempt in range(5):
                try:
                    m.wait_listening(timeout)
                    break
                except RSError:
                    if m.alive() or "in use" not in m.log_text() or attempt == 4:
                        raise
                    taken = [x.port for x in self.members]
                    m.port = _pick_ports(1, avoid=taken)[0]
                    m.spawn()
        return self

    def config(self, members=None, version=1, **settings):
        """The replSetInitiate document naming `members` (default: all)."""
        members = self.members if members is None else [self.member(k) for k in members]
        doc = {"_id": self.set_name, "version": version,
               "members": [{"_id": m.index, "host": m.host} for m in members]}
        merged = dict(self.settings)
        merged.update(settings)
        if merged:
            doc["settings"] = merged
        return doc

    def initiate(self, on=0, config=None, timeout=30.0):
        """replSetInitiate on member `on`; waits for a writable primary and for every member
        to report SECONDARY with that primary. Returns the primary."""
        reply = self.member(on).command({"replSetInitiate": config or self.config()},
                                        timeout=15.0)
        if reply.get("ok") != 1:
            raise RSError("replSetInitiate on %s failed: %r" % (self.member(on).name, reply))
        self.initiated = True
        return self.wait_healthy(timeout)

    def start_and_initiate(self, timeout=30.0):
        self.start(timeout)
        return self.initiate(timeout=timeout)

    # -- observing ----------------------------------------------------------------------------
    def up(self):
        """Members running and not paused."""
        return [m for m in self.members if m.alive() and not m.paused]

    def hellos(self, members=None, timeout=1.0):
        """{member: hello reply or the exception} for the given (default: up) members."""
        out = {}
        for m in (self.up() if members is None else members):
            try:
                out[m] = m.hello(timeout=timeout)
            except OSError as exc:
                out[m] = exc
        return out

    def describe(self):
        """One line per member: what its hello says (for timeout messages)."""
        lines = []
        for m in self.members:
            if not m.alive():
                lines.append("  %s %s: down" % (m.name, m.host))
                continue
            if m.paused:
                lines.append("  %s %s: paused" % (m.name, m.host))
                continue
            try:
                h = m.hello(timeout=1.0)
                lines.append("  %s %s: writable=%s secondary=%s primary=%s setVersion=%s"
                             % (m.name, m.host, h.get("isWritablePrimary"),
                                h.get("secondary"), h.get("primary"), h.get("setVersion")))
            except OSError as exc:
                lines.append("  %s %s: hello failed: %r" % (m.name, m.host, exc))
        return "\n".join(lines)

    def writable_primaries(self, members=None):
        return [m for m, h in self.hellos(members).items()
                if isinstance(h, dict) and h.get("isWritablePrimary") is True]

    def wait_primary(self, timeout=60.0, exclude=()):
        """The member that reports isWritablePrimary, once exactly one of the running,
        unpaused members outside `exclude` does."""
        exclude = {self.member(k) for k in exclude}

        def one():
            found = self.writable_primaries([m for m in self.up() if m not in exclude])
            return found[0] if len(found) == 1 else None

        return wait_for(one, timeout, lambda: "one writable primary (excluding %s):\n%s"
                        % (sorted(m.name for m in exclude), self.describe()))

    def primary(self):
        """The current writable primary (waits for one)."""
        return self.wait_primary()

    def secondaries(self):
        p = self.primary()
        return [m for m in self.members if m is not p]

    def wait_healthy(self, timeout=60.0, members=None):
        """Waits until exactly one member is a writable primary and every other running
        member (or `members`) answers hello as a SECONDARY naming it, with the same
        setVersion. Returns the primary."""
        def healthy():
            up = self.up() if members is None else [self.member(k) for k in members]
            hs = self.hellos(up)
            if any(not isinstance(h, dict) for h in hs.values()):
                return None
            prim = [m for m, h in hs.items() if h.get("isWritablePrimary") is True]
            if len(prim) != 1:
                return None
            p = prim[0]
            versions = {h.get("setVersion") for h in hs.values()}
            for m, h in hs.items():
                if h.get("primary") != p.host or len(versions) != 1:
                    return None
                if m is not p and h.get("secondary") is not True:
                    return None
            return p

        return wait_for(healthy, timeout, lambda: "a healthy set:\n%s" % self.describe())

    @staticmethod
    def applied(status):
        """(term, ts) of a replSetGetStatus reply's applied optime."""
        op = status["optimes"]["appliedOpTime"]
        return (op["ts"].time, op["ts"].inc)

    def wait_caught_up(self, timeout=30.0, members=None):
        """Waits until every running member (or `members`) has applied at least what the
        primary had applied when called (compared by optime timestamp)."""
        p = self.primary()
        target = self.applied(p.status())
        ms = self.up() if members is None else [self.member(k) for k in members]

        def lagging():
            return [m for m in ms if self.applied(m.status()) < target]

        wait_for(lambda: not lagging(), timeout,
                 lambda: "every member applied %r; lagging: %s" % (target, lagging()))
        return p

    # -- faults, by name, index or host -------------------------------------------------------
    def kill9(self, key):
        m = self.member(key)
        m.kill9()
        return m

    def pause(self, key):
        m = self.member(key)
        m.pause()
        return m

    def resume(self, key):
        m = self.member(key)
        m.resume()
        return m

    def stop(self, key):
        m = self.member(key)
        m.stop()
        return m

    def restart(self, key, wait=True):
        """Stops (cleanly) if running, then starts again; waits until it answers hello."""
        m = self.member(key)
        if m.alive():
            m.stop()
        return m.start(wait=wait)

    def wipe(self, key):
        m = self.member(key)
        m.wipe()
        return m

    # -- teardown -----------------------------------------------------------------------------
    def log_tails(self, lines=LOG_TAIL_LINES):
        return "\n".join(m.log_tail(lines) for m in self.members)

    def stop_all(self):
        """Stops every member (resuming paused ones first); returns the problems found
        (unclean exits, sanitizer reports) as a string, or None."""
        with _ACTIVE_LOCK:
            if self in _ACTIVE:
                _ACTIVE.remove(self)
        # SIGTERM all first so that they shut down in parallel, then wait.
        for m in self.members:
            m.terminate()
        out = []
        for m in self.members:
            m.stop()
            out.extend(m.problems)
            rep = m.sanitizer_report()
            if rep:
                out.append("sanitizer report in %s:\n%s" % (m.logpath, rep))
        if out:
            return "\n".join(out) + "\n" + self.log_tails()
        return None


# -- pytest glue ------------------------------------------------------------------------------

class _LogTailPlugin:
    """Appends the tail of every running set's member logs to a failing test's report."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        rep = outcome.get_result()
        if not rep.failed or hasattr(rep, "wasxfail"):
            return
        with _ACTIVE_LOCK:
            sets = list(_ACTIVE)
        if not sets:
            return
        tails = "\n".join(rs.log_tails() for rs in sets)
        try:
            rep.longrepr = "%s\n\n==== member logs at the failure ====\n%s" % (rep.longrepr,
                                                                             tails)
        except Exception:  # noqa: BLE001 - never break the report itself
            pass


_PLUGIN_NAME = "cairn_rs_log_tails"


def _register_plugin(config):
    if not config.pluginmanager.has_plugin(_PLUGIN_NAME):
        config.pluginmanager.register(_LogTailPlugin(), _PLUGIN_NAME)


def _check_binary():
    path = cairnd_binary()
    if not os.path.exists(path):
        pytest.fail("cairnd binary not found at %s (build it, or set CAIRND)" % path,
                    pytrace=False)


class RSFactory:
    def __init__(self, tmp_path_factory, label):
        self.tmp_path_factory = tmp_path_factory
        self.label = "".join(c if c.isalnum() else "_" for c in label)[:30]
        self.sets = []

    def __call__(self, n=3, initiate=True, start=True, **kwargs):
        """A set of n members: started and initiated (default), only started, or neither."""
        _check_binary()
        rs = ReplicaSet(n, str(self.tmp_path_factory.mktemp(self.label)), **kwargs)
        self.sets.append(rs)
        if start:
            rs.start()
            if initiate:
                rs.initiate()
        return rs

    def finish(self):
        problems = [p for p in (rs.stop_all() for rs in self.sets) if p]
        return problems


@pytest.fixture
def rs_factory(tmp_path_factory, request):
    """Start replica sets inside one test; stopped (and checked for unclean exits and
    sanitizer reports) when the test ends."""
    _register_plugin(request.config)
    factory = RSFactory(tmp_path_factory, request.node.name)
    yield factory
    problems = factory.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def make_replica_set(tmp_path_factory, request, n, **kwargs):
    """For module-scoped fixtures: a generator yielding a started, initiated set of n
    members, stopped and checked afterwards. Use as `yield from make_replica_set(...)`."""
    _register_plugin(request.config)
    factory = RSFactory(tmp_path_factory, "%s_%d" % (request.module.__name__, n))
    try:
        rs = factory(n, **kwargs)
    except Exception as exc:
        tails = "\n".join(s.log_tails() for s in factory.sets)
        problems = factory.finish()
        raise RSError("starting a %d-member set failed: %s\n%s\n%s"
                      % (n, exc, "\n".join(problems), tails)) from exc
    yield rs
    problems = factory.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def ports_free(port):
    """True when P and P+10000 are both free (nothing listening)."""
    return port_is_free(port) and port_is_free(port + RAFT_PORT_OFFSET)
