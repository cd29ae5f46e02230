"""Start, stop, kill and watch real cairnd processes for the integration tests and scripts.

Owns: the CairnServer class (used by conftest.py) and a small command line used by
scripts/run-local.sh and scripts/test.sh:

    cairn_server.py wait --port P [--timeout S]      wait until 127.0.0.1:P is a writable primary
    cairn_server.py run --cairnd BIN -- CMD ARGS...  start a one-member set on free ports, run CMD
                                                     with "{uri}" replaced by its connection string,
                                                     stop the server, exit non-zero on any failure
"""

import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SET_NAME = "rs0"
RAFT_PORT_OFFSET = 10000

# Lines that mean a sanitizer found a bug in the server.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "runtime error:",
    "ThreadSanitizer",
)


def cairnd_binary():
    """The server binary: $CAIRND, else build/src/server/cairnd in the repository."""
    path = os.environ.get("CAIRND") or os.path.join(REPO, "build", "src", "server", "cairnd")
    return os.path.abspath(path)


def port_is_free(port):
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET, "0.0.0.0")):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((addr, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


# One stream per process: seeding per call with the time in ms gave the same port to every
# call within a millisecond, so picking 5 distinct ports in a row could fail.
_PORT_RNG = random.Random(os.getpid() ^ time.time_ns())


def pick_port():
    """A port P such that P and P+10000 (the Raft port) are both free on 127.0.0.1.
    P+10000 stays below Linux's ephemeral range (32768-60999) so that client sockets cannot
    take the Raft port between this check and the server's bind."""
    for _ in range(500):
        port = _PORT_RNG.randint(20000, 22700)
        if port_is_free(port) and port_is_free(port + RAFT_PORT_OFFSET):
            return port
    raise RuntimeError("no free port pair found")


def hello(port, timeout=1.0):
    """One hello over a direct connection; returns the reply or raises."""
    import pymongo

    client = pymongo.MongoClient(
        "127.0.0.1",
        port,
        directConnection=True,
        serverSelectionTimeoutMS=int(timeout * 1000),
        connectTimeoutMS=int(timeout * 1000),
        socketTimeoutMS=int(timeout * 1000) + 2000,
    )
    try:
        return client.admin.command("hello")
    finally:
        client.close()


class ServerError(Exception):
    pass


class CairnServer:
    """One cairnd process: a single-member replica set on 127.0.0.1."""

    def __init__(self, dbpath, port=None, binary=None, initiate=True, extra_args=()):
        self.dbpath = dbpath
        self.port = port or pick_port()
        self.binary = binary or cairnd_binary()
        self.initiate = initiate
        self.extra_args = list(extra_args)
        self.fd_limit = None  # RLIMIT_NOFILE for the process, when set
        self.proc = None
        self.logpath = os.path.join(os.path.dirname(os.path.abspath(dbpath)),
                                    os.path.basename(os.path.abspath(dbpath)) + ".log")
        self.problems = []  # unclean exits seen so far (strings)
        self.starts = 0

    # -- addresses -------------------------------------------------------------------------
    @property
    def host(self):
        return "127.0.0.1:%d" % self.port

    @property
    def uri(self):
        return "mongodb://127.0.0.1:%d/?replicaSet=%s" % (self.port, SET_NAME)

    def client(self, **kwargs):
        import pymongo

        opts = dict(serverSelectionTimeoutMS=10000, connectTimeoutMS=5000, socketTimeoutMS=30000)
        opts.update(kwargs)
        return pymongo.MongoClient(self.uri, **opts)

    # -- life cycle ------------------------------------------------------------------------
    def command_line(self):
        args = [self.binary, "--replSet", SET_NAME, "--port", str(self.port),
                "--bind_ip", "127.0.0.1", "--dbpath", self.dbpath]
        if self.initiate:
            args.append("--initiate")
        return args + self.extra_args

    def start(self, wait=True, timeout=60.0):
        if not os.path.exists(self.binary):
            raise ServerError("cairnd binary not found: %s (set CAIRND)" % self.binary)
        os.makedirs(self.dbpath, exist_ok=True)
        self.starts += 1
        with open(self.logpath, "ab") as log:
            log.write(("\n==== start #%d: %s\n" % (self.starts, " ".join(self.command_line())))
                      .encode())
            log.flush()
            limit = self.fd_limit

            def set_limits():
                if limit is not None:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

            self.proc = subprocess.Popen(self.command_line(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, start_new_session=True,
                                         preexec_fn=set_limits)
        if wait:
            self.wait_ready(timeout=timeout, writable=self.initiate)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=60.0, writable=True):
        """Wait until the server answers hello (and, if writable, is a writable primary)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServerError("cairnd exited with status %s during start-up\n%s"
                                  % (self.proc.returncode, self.log_tail()))
            try:
                reply = hello(self.port)
                last = reply
                if not writable or reply.get("isWritablePrimary") is True:
                    return reply
            except Exception as exc:  # not up yet
                last = exc
            time.sleep(0.1)
        raise ServerError("cairnd on port %d not ready after %.0fs (last: %r)\n%s"
                          % (self.port, timeout, last, self.log_tail()))

    def stop(self, timeout=30.0):
        """SIGTERM, then SIGKILL after timeout. Records a problem unless it exits 0."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.problems.append("cairnd did not exit within %.0fs of SIGTERM" % timeout)
                return self.proc.returncode
            if self.proc.returncode != 0:
                self.problems.append("cairnd exited with status %d after SIGTERM"
                                     % self.proc.returncode)
        else:
            self.problems.append("cairnd had already exited with status %d"
                                 % self.proc.returncode)
        return self.proc.returncode

    def kill9(self):
        """SIGKILL, the crash case: not a problem in itself."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, timeout=60.0):
        self.stop()
        return self.start(timeout=timeout)

    def crash_restart(self, timeout=60.0):
        self.kill9()
        return self.start(timeout=timeout)

    # -- logs ------------------------------------------------------------------------------
    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines=40):
        return "---- cairnd log tail (%s) ----\n%s" % (
            self.logpath, "\n".join(self.log_text().splitlines()[-lines:]))

    def sanitizer_report(self):
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            i = text.find(marker)
            if i >= 0:
                start = text.rfind("\n", 0, max(0, i - 2000)) + 1
                return text[start:i + 4000]
        return None

    def check_clean(self):
        """Problems (unclean exits, sanitizer reports) as one string, or None."""
        out = list(self.problems)
        rep = self.sanitizer_report()
        if rep:
            out.append("sanitizer report in %s:\n%s" % (self.logpath, rep))
        if out:
            return "\n".join(out) + "\n" + self.log_tail()
        return None


# -- command line --------------------------------------------------------------------------
def _main(argv):
    import argparse

    ap = argparse.ArgumentParser(prog="cairn_server.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("wait")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--timeout", type=float, default=60.0)
    w.add_argument("--pid", type=int, default=0, help="give up if this process exits")
    r = sub.add_parser("run")
    r.add_argument("--cairnd", default=None)
    r.add_argument("--timeout", type=float, default=60.0)
    r.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)

    if args.cmd == "wait":
        deadline = time.monotonic() + args.timeout
        last = None
        while time.monotonic() < deadline:
            if args.pid:
                try:
                    os.kill(args.pid, 0)
                except ProcessLookupError:
                    print("cairnd (pid %d) exited" % args.pid, file=sys.stderr)
                    return 1
            try:
                last = hello(args.port)
                if last.get("isWritablePrimary") is True:
                    return 0
            except Exception as exc:
                last = exc
            time.sleep(0.2)
        print("not writable after %.0fs: %r" % (args.timeout, last), file=sys.stderr)
        return 1

    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not cmd:
        print("run: no command", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cairn-run-") as tmp:
        srv = CairnServer(os.path.join(tmp, "db"), binary=args.cairnd)
        try:
            srv.start(timeout=args.timeout)
        except ServerError as exc:
            print("not ok - cairnd start: %s" % exc)
            srv.kill9()
            return 1
        cmd = [c.replace("{uri}", srv.uri) for c in cmd]
        sys.stdout.flush()
        try:
            rc = subprocess.call(cmd, stdin=subprocess.DEVNULL, timeout=600)
        except subprocess.TimeoutExpired:
            print("not ok - %s timed out" % cmd[0])
            rc = 1
        srv.stop()
        problems = srv.check_clean()
        if problems:
            print("not ok - cairnd shut down cleanly without sanitizer reports")
            print(problems)
            return rc or 1
        print("ok - cairnd shut down cleanly without sanitizer reports")
        return rc


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
