"""Probes of a running server process through /proc (Linux), shared by the tests that check
what the process itself does rather than what it answers: memory (VmRSS, VmHWM, VmSize), its
thread count, how many of its threads are running, and whether it runs under a sanitizer.

Every probe takes the process id (`server.proc.pid`) and reads /proc afresh."""

import os

_MEMORY_FIELDS = ("VmRSS", "VmHWM", "VmSize")


def memory(pid):
    """The process's VmRSS, VmHWM and VmSize from /proc/<pid>/status, in bytes."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in _MEMORY_FIELDS:
                out[k] = int(v.split()[0]) * 1024  # kB -> bytes
    missing = set(_MEMORY_FIELDS) - set(out)
    if missing:
        raise AssertionError("no %s in /proc/%d/status" % (", ".join(sorted(missing)), pid))
    return out


def rss_kb(pid):
    """The process's resident set size (VmRSS) in kB."""
    return memory(pid)["VmRSS"] // 1024


def thread_count(pid):
    """The number of threads of the process (Threads: in /proc/<pid>/status)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    raise AssertionError("no Threads line")


def running_threads(pid):
    """Threads of the process that are running or runnable (state R)."""
    n = 0
    task_dir = "/proc/%d/task" % pid
    for tid in os.listdir(task_dir):
        try:
            with open("%s/%s/stat" % (task_dir, tid)) as f:
                stat = f.read()
        except FileNotFoundError:
            continue  # the thread ended meanwhile
        if stat[stat.rindex(")") + 2] == "R":
            n += 1
    return n


def sanitized(pid):
    """True when the process runs under ASan or TSan (whose quarantine makes its resident size
    say nothing about what it holds)."""
    with open("/proc/%d/maps" % pid) as f:
        return any("libasan" in line or "libtsan" in line for line in f)
