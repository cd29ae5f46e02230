"""pytest fixtures: real cairnd processes (single-member replica sets on free loopback ports).

Owns: `server_factory` (start any number of servers, each in its own temp dbpath; all are
stopped at the end of the test and the test fails on an unclean exit or a sanitizer report),
`server`/`client` (one server per test module), `db` (a fresh database per test) and `coll`.
The binary is $CAIRND, else build/src/server/cairnd.
"""

import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cairn_server import CairnServer, ServerError, cairnd_binary  # noqa: E402


def pytest_configure(config):
    # A worker thread's uncaught exception is only a warning by default, and the test that
    # started the thread passes. Make it an error: no exception in a test may go unseen
    # (tests collect their threads' exceptions with workers.Workers; this is the net).
    config.addinivalue_line("filterwarnings",
                            "error::pytest.PytestUnhandledThreadExceptionWarning")


def _check_binary():
    path = cairnd_binary()
    if not os.path.exists(path):
        pytest.fail("cairnd binary not found at %s (build it, or set CAIRND)" % path,
                    pytrace=False)


class _Factory:
    def __init__(self, tmp_path_factory, label):
        self.tmp_path_factory = tmp_path_factory
        self.label = re.sub(r"[^A-Za-z0-9_]", "_", label)[:40]
        self.servers = []

    def __call__(self, initiate=True, start=True, extra_args=()):
        _check_binary()
        for attempt in range(3):
            base = self.tmp_path_factory.mktemp(self.label)
            srv = CairnServer(str(base / "db"), initiate=initiate, extra_args=extra_args)
            if not start:
                self.servers.append(srv)
                return srv
            try:
                srv.start()
            except ServerError as exc:
                srv.kill9()
                if "in use" in srv.log_text() and attempt < 2:
                    continue  # lost a race for the port pair: try other ports
                self.servers.append(srv)
                pytest.fail(str(exc), pytrace=False)
            self.servers.append(srv)
            return srv

    def finish(self):
        problems = []
        for srv in self.servers:
            srv.stop()
            p = srv.check_clean()
            if p:
                problems.append("server on port %d: %s" % (srv.port, p))
        return problems


@pytest.fixture
def server_factory(tmp_path_factory, request):
    """Start servers inside one test; stopped (and checked) when the test ends."""
    factory = _Factory(tmp_path_factory, request.node.name)
    yield factory
    problems = factory.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """One initiated single-member set shared by the tests of a module."""
    factory = _Factory(tmp_path_factory, request.module.__name__)
    srv = factory()
    yield srv
    problems = factory.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def client(server):
    c = server.client()
    yield c
    c.close()


@pytest.fixture
def db(server, client, request):
    """A database of its own for each test; fails fast if the module's server died."""
    if not server.alive():
        pytest.fail("cairnd is not running (exit status %s)\n%s"
                    % (server.proc.returncode if server.proc else None, server.log_tail()),
                    pytrace=False)
    name = "t_" + re.sub(r"[^A-Za-z0-9_]", "_", request.node.name)
    if len(name) > 50:
        name = name[:40] + "_%08x" % (hash(name) & 0xFFFFFFFF)
    yield client[name]


@pytest.fixture
def coll(db):
    return db["c"]
