"""Network faults: partitions (iptables DROP rules) and slow links (tc netem, or an NFQUEUE
delayer where the kernel has no netem), and heal, which removes exactly what this tool added.

Owns: partition(target, side_a, side_b), slow(target, member, delay_ms, via), heal_net(target),
and active(target) for status.

Invariants:
  1. Every iptables rule added carries the comment target.tag; heal deletes the rules with that
     comment and no other (read back with `iptables -S`, one namespace at a time).
  2. Every rule matches member addresses only: local members on their own loopback addresses
     (rules in the host's INPUT/OUTPUT chains), Docker members on their container addresses
     (rules inside the containers' namespaces, entered with nsenter).
  3. Delayers are recorded in <state_dir>/delays.json (pid, queue, member) before their rules
     are added; heal deletes the rules first (packets flow again), then stops the delayer, which
     releases the packets it still holds.
  4. A netem qdisc is only added where the device has no root qdisc but the default one, under
     the handle OUR_HANDLE, and heal deletes only a root qdisc with that handle.
"""

import json
import os
import shlex
import signal
import sys
import time
import zlib

from .targets import FaultError, _await

OUR_HANDLE = "c41a:"
CHAINS = ("INPUT", "OUTPUT")


def _distinct_ips(target, members):
    ips = [m.ip for m in members]
    if None in ips:
        raise FaultError("a member has no address (not running?): %s" % members)
    if len(set(ips)) < len(ips):
        raise FaultError("the members share the address %s: partitions and slow links need "
                         "one address per member (scripts/run-local.sh --ips IP1,IP2,IP3)"
                         % ips[0])


def _iptables(target, m, args, check=True):
    return target.run(m, ["iptables", "-w"] + args, check=check)


def _rule(target, tag_args):
    return ["-m", "comment", "--comment", target.tag] + tag_args


# -- partitions -----------------------------------------------------------------------------

def partition(target, side_a, side_b):
    """Drops every packet between a member of side_a and a member of side_b, both ways."""
    _distinct_ips(target, target.members())
    if target.kind == "local":
        for a in side_a:
            for b in side_b:
                for src, dst in ((a.ip, b.ip), (b.ip, a.ip)):
                    _iptables(target, None, ["-I", "INPUT", "-s", src, "-d", dst]
                              + _rule(target, ["-j", "DROP"]))
        return
    # Docker: in each member's own namespace, drop what comes from or goes to the other side
    # (both sides, so that restarting one container does not heal the partition alone).
    for mine, other in ((side_a, side_b), (side_b, side_a)):
        for m in mine:
            if m.proc_state() == "dead":
                continue
            for o in other:
                for ip in o.ips:
                    _iptables(target, m, ["-I", "INPUT", "-s", ip]
                              + _rule(target, ["-j", "DROP"]))
                    _iptables(target, m, ["-I", "OUTPUT", "-d", ip]
                              + _rule(target, ["-j", "DROP"]))


def _our_rules(target, m):
    out = []
    for chain in CHAINS:
        p = _iptables(target, m, ["-S", chain], check=False)
        for line in p.stdout.splitlines():
            if line.startswith("-A ") and '--comment "%s"' % target.tag in line:
                out.append(line)
    return out


def _delete_rules(target, m):
    n = 0
    for line in _our_rules(target, m):
        # iptables -S quotes the comment; split it back into argv
        _iptables(target, m, ["-D"] + shlex.split(line)[1:], check=False)
        n += 1
    return n


# -- slow links -----------------------------------------------------------------------------

def netem_available():
    """True if the kernel has the netem qdisc (built in or as a loaded/loadable module)."""
    if os.path.isdir("/sys/module/sch_netem"):
        return True
    try:
        import gzip
        with gzip.open("/proc/config.gz", "rt") as f:
            for line in f:
                if line.startswith("CONFIG_NET_SCH_NETEM="):
                    return line.strip().endswith(("=y", "=m"))
    except OSError:
        pass
    return False


def _delays_path(target):
    return os.path.join(target.state_dir, "delays.json")


def _load_delays(target):
    try:
        with open(_delays_path(target)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


def _save_delays(target, delays):
    os.makedirs(target.state_dir, exist_ok=True)
    tmp = _delays_path(target) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(delays, f)
    os.replace(tmp, _delays_path(target))


def slow(target, m, delay_ms, via="auto"):
    """Delays the packets member m sends to the other members by delay_ms milliseconds (so
    each round trip between m and another member grows by delay_ms). via: netem, nfqueue or
    auto (netem when the kernel has it)."""
    members = target.members()
    _distinct_ips(target, members)
    others = [o for o in members if o is not m]
    if any(d["member"] == m.name for d in _load_delays(target)):
        raise FaultError("%s is already slowed (heal first)" % m.name)
    if via == "auto":
        via = "netem" if netem_available() else "nfqueue"
    if via == "netem" and not netem_available():
        raise FaultError("this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): use "
                         "--via nfqueue (the default picks it)")
    if via == "netem":
        return _slow_netem(target, m, others, delay_ms)
    return _slow_nfqueue(target, m, others, delay_ms)


def _slow_netem(target, m, others, delay_ms):
    ns = m if target.kind == "docker" else None
    dev = target.netdev(m)
    show = target.run(ns, ["tc", "qdisc", "show", "dev", dev]).stdout
    if OUR_HANDLE in show:
        pass                                        # another member already slowed: reuse
    elif show.strip() and not show.startswith(("qdisc noqueue", "qdisc pfifo_fast")) \
            and "qdisc noqueue 0:" not in show:
        raise FaultError("%s already has a root qdisc (%s): not touching it"
                         % (dev, show.splitlines()[0]))
    else:
        # htb with no default class: unmatched packets go straight through (direct queue)
        target.run(ns, ["tc", "qdisc", "add", "dev", dev, "root", "handle", OUR_HANDLE, "htb"])
    delays = _load_delays(target)
    cls = OUR_HANDLE + "%x" % (len([d for d in delays if d.get("via") == "netem"]) + 1)
    try:
        target.run(ns, ["tc", "class", "add", "dev", dev, "parent", OUR_HANDLE, "classid",
                        cls, "htb", "rate", "10gbit"])
        target.run(ns, ["tc", "qdisc", "add", "dev", dev, "parent", cls, "netem", "delay",
                        "%dms" % delay_ms])
        for o in others:
            for ip in o.ips:
                target.run(ns, ["tc", "filter", "add", "dev", dev, "parent", OUR_HANDLE,
                                "protocol", "ip", "prio", "1", "u32", "match", "ip", "src",
                                m.ip + "/32", "match", "ip", "dst", ip + "/32", "flowid",
                                cls])
    except FaultError:
        if not any(d.get("via") == "netem" for d in delays):
            _delete_qdisc(target, ns)       # ours and empty: leave the device as it was
        raise
    delays.append({"member": m.name, "via": "netem", "ms": delay_ms, "dev": dev})
    _save_delays(target, delays)
    return {"via": "netem", "dev": dev}


def _queue_number(target, m):
    base = 20000 + (zlib.crc32(target.tag.encode()) % 2000) * 16
    return base + int("".join(c for c in m.name if c.isdigit()) or 0) % 16


def _slow_nfqueue(target, m, others, delay_ms):
    ns = m if target.kind == "docker" else None
    queue = _queue_number(target, m)
    os.makedirs(target.state_dir, exist_ok=True)
    logpath = os.path.join(target.state_dir, "nfqdelay-%s.log" % m.name)
    with open(logpath, "w") as log:
        p = target.spawn(ns, [sys.executable, "-m", "tools.cairn_fault.nfqdelay", str(queue),
                              "%g" % delay_ms], log)
    delays = _load_delays(target)
    delays.append({"member": m.name, "via": "nfqueue", "ms": delay_ms, "pid": p.pid,
                   "queue": queue, "log": logpath})
    _save_delays(target, delays)

    def ready():
        if p.poll() is not None:
            with open(logpath) as f:
                raise FaultError("the NFQUEUE delayer exited: %s" % f.read().strip())
        with open(logpath) as f:
            return "nfqdelay: queue" in f.read()
    _await(ready, 10, "the NFQUEUE delayer to bind queue %d" % queue)
    for o in others:
        for ip in o.ips:
            _iptables(target, ns, ["-I", "OUTPUT", "-s", m.ip, "-d", ip]
                      + _rule(target, ["-j", "NFQUEUE", "--queue-num", str(queue),
                                       "--queue-bypass"]))
    return {"via": "nfqueue", "queue": queue, "delayer_pid": p.pid}


# -- heal -----------------------------------------------------------------------------------

def heal_net(target):
    """Removes every partition rule and slow link of this target; returns what it removed."""
    rules = 0
    for m in target.namespaces():
        rules += _delete_rules(target, m)
    stopped = 0
    qdiscs = 0
    for d in _load_delays(target):
        if d.get("via") == "nfqueue":
            stopped += _stop_delayer(d)
    if any(d.get("via") == "netem" for d in _load_delays(target)) or target.kind == "local":
        for m in target.namespaces():
            qdiscs += _delete_qdisc(target, m)
    if os.path.exists(_delays_path(target)):
        os.unlink(_delays_path(target))
    return {"rules": rules, "delayers": stopped, "qdiscs": qdiscs}


def _stop_delayer(d):
    pid = d.get("pid")
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            if b"nfqdelay" not in f.read():
                return 0
        os.kill(pid, signal.SIGTERM)
    except (OSError, TypeError):
        return 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except OSError:
            break
        time.sleep(0.02)
    return 1


def _delete_qdisc(target, m):
    dev = target.netdev(m)
    show = target.run(m, ["tc", "qdisc", "show", "dev", dev], check=False).stdout
    if "qdisc htb %s root" % OUR_HANDLE in show:
        target.run(m, ["tc", "qdisc", "del", "dev", dev, "root", "handle", OUR_HANDLE])
        return 1
    return 0


def active(target):
    """The partition rules and slow links in place (for status)."""
    rules = []
    for m in target.namespaces():
        for line in _our_rules(target, m):
            rules.append(("%s: " % m.name if m is not None else "") + line)
    return {"rules": rules, "delays": _load_delays(target)}
