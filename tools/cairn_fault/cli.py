"""scripts/cairn-fault: inject one fault into a replica set, by member name or role.

  kill SPEC          kill -9 (docker kill -s KILL)
  stop SPEC          SIGSTOP (docker pause)            cont SPEC   SIGCONT (docker unpause)
  restart SPEC       start again with the same command line (docker start / restart)
  partition SPLIT    cut SPEC off from the others, or split groups: "n1,n2|n3"
  slow SPEC DELAY    delay the member's packets to the other members (e.g. 100ms)
  heal [--all]       remove partitions and slow links (--all: also resume and restart members)
  stepdown [SPEC]    replSetStepDown on the member (default: the primary)
  status [--json]    members, processes, replica-set states, faults in place
  dbpaths            each member's data directory on this host (Docker: its volume), in
                     the JSON line: where the checker finds rollback files

SPEC: a member name (n1), a comma list (n1,n3), all, dead, or a role: primary, secondary,
random (chosen among the members the action applies to; --seed makes it repeatable).

Targets: --target local (default; the set scripts/run-local.sh started in --data, default
$CAIRN_DATA or ./data) or --target docker --project P (the compose project's containers;
default $COMPOSE_PROJECT_NAME). $CAIRN_FAULT_TARGET sets the default target.

Output: a line per action on stderr and, as the last line of stdout, a JSON object (name,
action, members as host:port and names, targets, roles, at_wall: the epoch time the fault was
applied, after the member lookup) that tools/cairn-history merges into the fault event it
records. Exit status 0 when the fault was applied, 1 when it could not be
(the reason is printed), 2 on a usage error.
"""

import argparse
import json
import os
import random
import re
import sys
import time

from pymongo.errors import PyMongoError

from . import admin, net
from .targets import REPO, DockerTarget, FaultError, LocalTarget, _await

ROLES = ("primary", "secondary", "random")


def log(msg):
    print("cairn-fault: " + msg, file=sys.stderr, flush=True)


def parse_delay(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*", text)
    if not m:
        raise FaultError("bad delay %r (e.g. 100ms, 0.5s)" % text)
    value = float(m.group(1))
    return value * 1000 if m.group(2) == "s" else value


class Ctx:
    def __init__(self, target, seed, wait):
        self.target = target
        self.rng = random.Random(seed) if seed is not None else random.SystemRandom()
        self.wait = wait
        self._view = None

    def view(self, fresh=False):
        if self._view is None or fresh:
            self._view = admin.view(self.target.members())
        return self._view

    def by_name(self):
        return {m.name: m for m in self.target.members()}

    def resolve(self, spec, applies=lambda m: True):
        """The members SPEC names (see the module docstring)."""
        names = self.by_name()
        spec = spec.strip()
        if spec == "all":
            return list(names.values())
        if spec == "dead":
            return [m for m in names.values() if m.proc_state() == "dead"]
        if spec == "primary":
            deadline = time.monotonic() + self.wait
            while True:
                p = self.view(fresh=True).primary()
                if p:
                    return [names[p]]
                if time.monotonic() > deadline:
                    raise FaultError("no primary within %gs" % self.wait)
                time.sleep(0.1)
        if spec == "secondary":
            deadline = time.monotonic() + self.wait
            while True:
                cands = [names[n] for n in self.view(fresh=True).secondaries()
                         if applies(names[n])]
                if cands:
                    return [self.rng.choice(cands)]
                if time.monotonic() > deadline:
                    raise FaultError("no secondary within %gs" % self.wait)
                time.sleep(0.1)
        if spec == "random":
            cands = [m for m in names.values() if applies(m)]
            if not cands:
                raise FaultError("no member this applies to")
            return [self.rng.choice(cands)]
        out = []
        for n in spec.split(","):
            n = n.strip()
            if n not in names:
                raise FaultError("no member %r (members: %s)" % (n, ", ".join(names)))
            out.append(names[n])
        return out

    def roles(self, members):
        v = self.view()
        out = {}
        for m in members:
            if v.primary() == m.name:
                out[m.name] = "primary"
            elif m.name in v.secondaries():
                out[m.name] = "secondary"
            else:
                out[m.name] = v.state_of(m) or m.proc_state()
        return out


def event(ctx, action, members, name=None, **extra):
    """The JSON fault event: members lists every name the driver may know each member by
    (its address, the host the set's config names, as `hello.me` said before the fault, and
    its name), so that the checker can match acknowledgements to kills."""
    hosts = []
    seen = ctx._view.hello if ctx._view is not None else {}
    for m in members:
        me = (seen.get(m.name) or {}).get("me")
        hosts.extend(h for h in m.hosts() + ([me] if me else []) if h not in hosts)
        if m.name not in hosts:
            hosts.append(m.name)
    ev = {"name": name or "%s %s" % (action, ",".join(m.name for m in members)),
          "action": action, "members": hosts, "targets": [m.name for m in members]}
    ev.update(extra)
    return ev


# -- the actions ----------------------------------------------------------------------------

def _running(m):
    return m.proc_state() == "running"


def do_signal(ctx, args, action):
    t = ctx.target
    applies = {"kill": lambda m: m.proc_state() != "dead", "stop": _running,
               "cont": lambda m: m.proc_state() == "stopped"}[action]
    ms = ctx.resolve(args.spec, applies)
    if args.spec.strip() == "all":
        ms = [m for m in ms if applies(m)]         # `cont all`: the stopped ones
    if not ms:
        raise FaultError("%s: no member matches %r" % (action, args.spec))
    roles = ctx.roles(ms)
    at = time.time()
    for m in ms:
        handle = t.handle(m)
        getattr(t, action)(m)
        log("%s %s (%s, %s)" % (action, m.name, handle, roles.get(m.name)))
    return event(ctx, action, ms, roles=roles, at_wall=at)


def do_restart(ctx, args):
    t = ctx.target
    ms = ctx.resolve(args.spec)
    if not ms:
        return event(ctx, "restart", [], name="restart (nothing to restart)")
    for m in ms:
        log("restarted %s (now %s)" % (m.name, t.handle(m) if t.restart(m) else "?"))
    if not args.no_wait:
        names = {m.name for m in ms}

        def answering():
            return all(_answers(m) for m in t.members() if m.name in names)
        _await(answering, args.wait_restart, "%s to answer" % ",".join(sorted(names)))
    return event(ctx, "restart", ms)


def _answers(m):
    try:
        admin.ask(m.admin, "ping", timeout_ms=500)
        return True
    except PyMongoError:
        return False


def do_partition(ctx, args):
    spec = args.split
    if "|" in spec:
        left, right = spec.split("|", 1)
        a, b = ctx.resolve(left), ctx.resolve(right)
    else:
        a = ctx.resolve(spec, _running)
        b = [m for m in ctx.target.members() if m not in a]
    if not a or not b or set(x.name for x in a) & set(x.name for x in b):
        raise FaultError("a partition needs two disjoint, non-empty sides")
    roles = ctx.roles(a + b)
    at = time.time()
    net.partition(ctx.target, a, b)
    desc = "%s|%s" % (",".join(m.name for m in a), ",".join(m.name for m in b))
    log("partitioned %s" % desc)
    return event(ctx, "partition", a, name="partition " + desc, split=desc, roles=roles,
                 at_wall=at)


def do_slow(ctx, args):
    ms = ctx.resolve(args.spec, _running)
    delay = parse_delay(args.delay)
    roles = ctx.roles(ms)
    at = time.time()
    info = {}
    for m in ms:
        info[m.name] = net.slow(ctx.target, m, delay, args.via)
        log("slowed %s by %gms (%s)" % (m.name, delay, info[m.name]["via"]))
    return event(ctx, "slow", ms, name="slow %s %gms" % (",".join(m.name for m in ms), delay),
                 delay_ms=delay, roles=roles, how=info, at_wall=at)


def do_heal(ctx, args):
    t = ctx.target
    removed = net.heal_net(t)
    log("healed the network: %(rules)d rules, %(delayers)d delayers, %(qdiscs)d qdiscs removed"
        % removed)
    touched = []
    if args.all:
        for m in t.members():
            state = m.proc_state()
            if state == "stopped":
                t.cont(m)
                log("resumed %s" % m.name)
                touched.append(m)
            elif state == "dead":
                t.restart(m)
                log("restarted %s" % m.name)
                touched.append(m)
        if touched and not args.no_wait:
            names = {m.name for m in touched}
            _await(lambda: all(_answers(m) for m in t.members() if m.name in names),
                   args.wait_restart, "%s to answer" % ",".join(sorted(names)))
    return event(ctx, "heal", touched, name="heal" + (" --all" if args.all else ""),
                 removed=removed)


def do_stepdown(ctx, args):
    ms = ctx.resolve(args.spec or "primary", _running)
    if len(ms) != 1:
        raise FaultError("stepdown takes one member")
    m = ms[0]
    roles = ctx.roles(ms)
    at = time.time()
    try:
        admin.ask(m.admin, {"replSetStepDown": args.secs, "secondaryCatchUpPeriodSecs":
                            min(args.secs, 10)}, timeout_ms=15000)
    except PyMongoError as exc:
        # the member closes connections when it steps down: judge by what it says now
        try:
            still = admin.ask(m.admin, "hello").get("isWritablePrimary")
        except PyMongoError:
            still = None
        if still is not False:
            raise FaultError("replSetStepDown on %s failed: %s" % (m.name, exc)) from exc
    log("stepped down %s (%s)" % (m.name, roles.get(m.name)))
    extra = {}
    if not args.no_wait:
        def other_primary():
            p = ctx.view(fresh=True).primary()
            return p if p and p != m.name else None
        try:
            extra["new_primary"] = _await_value(other_primary, ctx.wait)
            log("new primary: %s" % extra["new_primary"])
        except FaultError:
            log("no other primary within %gs" % ctx.wait)
    return event(ctx, "stepdown", ms, roles=roles, at_wall=at, **extra)


def _await_value(fn, timeout):
    box = []

    def cond():
        v = fn()
        if v:
            box.append(v)
        return bool(v)
    _await(cond, timeout, "a condition")
    return box[-1]


def do_dbpaths(ctx, args):
    paths = [ctx.target.dbpath(m) for m in ctx.target.members()]
    for p in paths:
        print(p or "-")
    return {"action": "dbpaths", "dbpaths": [p for p in paths if p]}


def do_status(ctx, args):
    t = ctx.target
    v = ctx.view(fresh=True)
    rows = []
    for m in t.members():
        rows.append({"name": m.name, "address": m.admin, "handle": t.handle(m),
                     "process": m.proc_state(),
                     "state": "PRIMARY" if v.primary() == m.name else v.state_of(m),
                     "pingMs": v.ping_of(m), "error": v.errors.get(m.name)})
    faults = net.active(t)
    if args.json:
        print(json.dumps({"target": t.kind, "members": rows, "primary": v.primary(),
                          "term": (v.status or {}).get("term"), "faults": faults}))
        return None
    print("%-4s %-22s %-24s %-8s %-10s %s" % ("name", "address", "process", "state", "replica",
                                               "pingMs"))
    for r in rows:
        print("%-4s %-22s %-24s %-8s %-10s %s%s" % (
            r["name"], r["address"], r["handle"], r["process"], r["state"] or "-",
            "-" if r["pingMs"] is None else r["pingMs"],
            "  (%s)" % r["error"] if r["error"] else ""))
    print("primary: %s (term %s)" % (v.primary(), (v.status or {}).get("term")))
    for rule in faults["rules"]:
        print("rule: " + rule)
    for d in faults["delays"]:
        print("slow: %s +%gms via %s" % (d["member"], d["ms"], d["via"]))
    return None


# -- command line ---------------------------------------------------------------------------

def _common(ap, defaults):
    d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
    ap.add_argument("--target", choices=("local", "docker"),
                    default=d(os.environ.get("CAIRN_FAULT_TARGET", "local")))
    ap.add_argument("--data", default=d(os.environ.get("CAIRN_DATA",
                                                       os.path.join(REPO, "data"))),
                    help="local: the run-local.sh data directory")
    ap.add_argument("--project", default=d(os.environ.get("COMPOSE_PROJECT_NAME")),
                    help="docker: the compose project name")
    ap.add_argument("--port", type=int, default=d(27017),
                    help="docker: cairnd's port inside the containers (default 27017)")
    ap.add_argument("--seed", type=int, default=d(None),
                    help="for random/secondary choices")
    ap.add_argument("--wait", type=float, default=d(20.0),
                    help="seconds to wait for a primary/secondary to exist (default 20)")
    ap.add_argument("--wait-restart", type=float, default=d(60.0),
                    help="seconds a restarted member has to answer (default 60)")
    ap.add_argument("--no-wait", action="store_true", default=d(False),
                    help="do not wait for restarted members / a new primary")


def parser():
    ap = argparse.ArgumentParser(prog="cairn-fault", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n".join(__doc__.splitlines()[2:]))
    _common(ap, True)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, False)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("kill", "stop", "cont", "restart"):
        sub.add_parser(name, parents=[common]).add_argument("spec")
    p = sub.add_parser("partition", parents=[common])
    p.add_argument("split", help='SPEC (cut off from the others) or "A|B" (e.g. n1,n2|n3)')
    p = sub.add_parser("slow", parents=[common])
    p.add_argument("spec")
    p.add_argument("delay", help="e.g. 100ms")
    p.add_argument("--via", choices=("auto", "netem", "nfqueue"), default="auto")
    p = sub.add_parser("heal", parents=[common])
    p.add_argument("--all", action="store_true", help="also resume and restart members")
    p = sub.add_parser("stepdown", parents=[common])
    p.add_argument("spec", nargs="?", default="primary")
    p.add_argument("--secs", type=int, default=10, help="stepDownSecs (default 10)")
    sub.add_parser("dbpaths", parents=[common])
    p = sub.add_parser("status", parents=[common])
    p.add_argument("--json", action="store_true")
    return ap


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if args.target == "local":
            target = LocalTarget(args.data)
        else:
            target = DockerTarget(args.project, args.port)
        ctx = Ctx(target, args.seed, args.wait)
        if args.cmd in ("kill", "stop", "cont"):
            ev = do_signal(ctx, args, args.cmd)
        else:
            ev = {"restart": do_restart, "partition": do_partition, "slow": do_slow,
                  "heal": do_heal, "stepdown": do_stepdown, "status": do_status,
                  "dbpaths": do_dbpaths}[args.cmd](
                      ctx, args)
    except FaultError as exc:
        log("error: %s" % exc)
        print(json.dumps({"action": args.cmd, "error": str(exc)}))
        return 1
    if ev is not None:
        print(json.dumps(ev))
    return 0
