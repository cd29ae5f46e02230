"""Fault schedules written as text, run with scripts/cairn-fault while the workload runs.

Owns: parse(text) -> Schedule, and Schedule(ctx), a schedule callable for the runner
(faults.py). Each fault step is one `scripts/cairn-fault ...` command run through
FaultContext.run_shell, so its JSON line (action, members, targets, roles) becomes the
recorded fault event the checker uses for failover times and kill attribution.

Text (one rule per line, `#` starts a comment; rules are taken in turn, round-robin):

  for 5m                        stop injecting faults after 5 minutes (default: until the end)
  after 10s                     first fault after 10 s (default: after the first period)
  every 10s: kill primary; sleep 3s; restart @
  every 15s: stop random; sleep 4s; cont @
  every 20s: partition primary; sleep 8s; heal
  kill primary every 10s for 2m               short form: one step, recovery implied

A rule waits its period, then runs its steps. A step is `sleep DURATION` or a cairn-fault
subcommand with its arguments; `@` stands for the members the previous fault step of the same
cycle touched (its "targets"). The short form "STEP every D [for D] [after D] [recover D]"
runs STEP, waits `recover` (default: half the period) and undoes it: kill -> restart @,
stop -> cont @, partition / slow -> heal; other steps have nothing to undo. `for` and `after`
may also be written on a rule and then apply to the whole schedule. Durations: 500ms, 10s,
2m, 1h (a bare number is seconds).

When the run stops in the middle of a cycle, the rest of that cycle's steps still run (without
their sleeps), so that a kill is followed by its restart; the runner then runs its heal
commands (by default `cairn-fault heal --all` when a schedule is given).
"""

import os
import re
import shlex
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAULT_CMD = os.path.join(REPO, "scripts", "cairn-fault")
UNDO = {"kill": "restart @", "stop": "cont @", "partition": "heal", "slow": "heal"}
SUBCOMMANDS = ("kill", "stop", "cont", "restart", "partition", "slow", "heal", "stepdown",
               "status")


class ScheduleError(ValueError):
    pass


def fault_command(fault_opts, step):
    """The shell command running scripts/cairn-fault for a step: the step's words are quoted
    (a split such as n1,n2|n3 must not become a pipe); fault_opts is shell text as the user
    wrote it."""
    return "%s %s %s %s" % (shlex.quote(sys.executable), shlex.quote(FAULT_CMD), fault_opts,
                            " ".join(shlex.quote(w) for w in step.split()))


def parse_duration(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise ScheduleError("bad duration %r (e.g. 500ms, 10s, 2m)" % text)
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600,
                                None: 1}[m.group(2)]


class Rule:
    def __init__(self, every, steps, text):
        self.every = every
        self.steps = steps          # ("sleep", seconds) or ("fault", "kill primary")
        self.text = text


class Schedule:
    def __init__(self, rules, duration=None, after=None, fault_opts="", text=""):
        if not rules:
            raise ScheduleError("a schedule needs at least one rule")
        self.rules = rules
        self.duration = duration    # seconds of fault injection (None: until the run ends)
        self.after = after
        self.fault_opts = fault_opts
        self.text = text

    def command(self, step):
        return fault_command(self.fault_opts, step)

    def span(self):
        """Seconds from the start of the run to the end of fault injection, or None."""
        if self.duration is None:
            return None
        return (self.after or 0) + self.duration

    def __call__(self, ctx):
        start = time.monotonic()
        first = True
        i = 0
        while True:
            rule = self.rules[i % len(self.rules)]
            i += 1
            wait = self.after if first and self.after is not None else rule.every
            first = False
            if not ctx.sleep(wait):
                return
            if self.duration is not None and \
                    time.monotonic() - start > (self.after or 0) + self.duration:
                return
            self._cycle(ctx, rule)

    def _cycle(self, ctx, rule):
        last = None
        for kind, arg in rule.steps:
            if kind == "sleep":
                ctx.sleep(arg)          # returns early when the run stops: go on undoing
                continue
            if "@" in arg.split():
                if not last:
                    continue            # the step it refers to touched nothing
                arg = " ".join(",".join(last) if w == "@" else w for w in arg.split())
            ev = ctx.run_shell(self.command(arg), name=arg, timeout=180.0, schedule=rule.text)
            if ev.get("targets"):
                last = ev["targets"]


def _split_opts(text):
    """Leading/trailing `every D`, `for D`, `after D`, `recover D` clauses of a short rule."""
    opts = {}
    pat = re.compile(r"\s+(every|for|after|recover)\s+(\S+)\s*$")
    while True:
        m = pat.search(" " + text)
        if not m:
            break
        opts.setdefault(m.group(1), parse_duration(m.group(2)))
        text = (" " + text)[:m.start()].strip()
    return text.strip(), opts


def _steps(text):
    out = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        words = part.split()
        if words[0] == "sleep":
            if len(words) != 2:
                raise ScheduleError("sleep takes one duration: %r" % part)
            out.append(("sleep", parse_duration(words[1])))
        elif words[0] in SUBCOMMANDS:
            out.append(("fault", part))
        else:
            raise ScheduleError("unknown step %r (sleep or a cairn-fault subcommand: %s)"
                                % (part, ", ".join(SUBCOMMANDS)))
    if not any(k == "fault" for k, _ in out):
        raise ScheduleError("a rule needs at least one fault step")
    return out


def parse(text, fault_opts=""):
    rules, duration, after = [], None, None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if len(words) == 2 and words[0] in ("for", "after"):
            d = parse_duration(words[1])
            if words[0] == "for":
                duration = d
            else:
                after = d
            continue
        if ":" in line:
            head, body = line.split(":", 1)
            rest, opts = _split_opts(head)
            if rest or "every" not in opts:
                raise ScheduleError("a rule is `every D [for D] [after D]: steps`, not %r"
                                    % line)
            steps = _steps(body)
        else:
            step, opts = _split_opts(line)
            if "every" not in opts:
                raise ScheduleError("%r: say how often (e.g. `kill primary every 10s`)" % line)
            steps = _steps(step)
            if len(steps) != 1:
                raise ScheduleError("the short form has one step: %r" % line)
            undo = UNDO.get(steps[0][1].split()[0])
            if undo:
                steps += [("sleep", opts.get("recover", opts["every"] / 2)), ("fault", undo)]
        if "for" in opts:
            duration = opts["for"]
        if "after" in opts:
            after = opts["after"]
        rules.append(Rule(opts["every"], steps, line))
    return Schedule(rules, duration, after, fault_opts, text)
