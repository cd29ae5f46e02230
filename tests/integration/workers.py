"""Client threads for concurrency and fault tests whose exceptions are never lost.

A thread's uncaught exception only prints a traceback; the test goes on and may pass (a
writer that died early simply acknowledges nothing). Workers records every exception that
escapes a thread's function, and check() fails the test on any. Functions handle the errors
they expect (a PyMongoError while the server is down) themselves; everything else escapes."""

import threading
import time
import traceback

import pytest


class Workers:
    def __init__(self):
        self.lock = threading.Lock()
        self.errors = []     # (thread name, formatted traceback)
        self.threads = []

    def record(self, name, text):
        with self.lock:
            self.errors.append((name, text))

    def start(self, fn, *args, name=None):
        """Starts fn(*args) on a daemon thread; any exception it raises is recorded."""
        name = name or "%s-%d" % (getattr(fn, "__name__", "worker"), len(self.threads))

        def run():
            try:
                fn(*args)
            except BaseException:  # noqa: B902 - every exception must reach the test
                self.record(name, traceback.format_exc())

        t = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(t)
        t.start()
        return t

    def join(self, timeout=120.0):
        """Joins every thread (within `timeout` seconds in all); fails if one hangs."""
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        hung = [t.name for t in self.threads if t.is_alive()]
        assert not hung, "worker threads still running after %.0fs: %s" % (timeout, hung)

    def check(self):
        """Fails the test if any thread raised."""
        with self.lock:
            errors = list(self.errors)
        if errors:
            pytest.fail("%d worker thread(s) raised:\n%s" % (
                len(errors), "\n".join("[%s]\n%s" % e for e in errors[:5])), pytrace=False)

    def finish(self, timeout=120.0):
        self.join(timeout)
        self.check()


def wait_until(cond, timeout, what, interval=0.02):
    """Polls cond() until it is true; fails after `timeout` seconds with `what` (a string,
    or a function returning one, called then so that it can show the state reached)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.0fs waiting until %s"
                        % (timeout, what() if callable(what) else what), pytrace=False)
        time.sleep(interval)
