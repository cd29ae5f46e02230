"""Command line: python -m tools.cairn_history run|check ... (or tools/cairn-history).

  run    drive a replica set and write a history (optionally check it right after)
  check  check a history; exit 0 when clean, 1 when anything was found, 2 on bad input

See docs/history.md for the options and the file format.
"""

import argparse
import json
import random
import subprocess
import sys

from .checker import check_file, format_report, write_json
from .history import HistoryError
from .runner import RunConfig, RunnerError, run
from .schedule import ScheduleError, fault_command
from .schedule import parse as parse_schedule
from .workloads import TXN_MODES


def _run_parser(sub):
    p = sub.add_parser("run", help="drive a replica set and record a history")
    p.add_argument("--uri", required=True, help="mongodb:// URI of the set")
    p.add_argument("--out", required=True, help="history file to write (JSON lines)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--duration", type=float, default=None,
                   help="seconds (default 10, or the schedules' `for` + `after` + 5)")
    p.add_argument("--ops", type=int, default=0, help="stop after this many operations")
    p.add_argument("--workloads", default="insert,append", help="insert,append")
    p.add_argument("--db", default="cairn_history")
    p.add_argument("--keep-db", action="store_true", help="do not drop the database first")
    p.add_argument("--recover-timeout", type=float, default=0.0,
                   help="with --duration: go on up to this many seconds past it until a "
                        "majority write completed after the last fault (default 0: stop on time)")
    p.add_argument("--op-timeout", type=float, default=10.0,
                   help="seconds per operation, driver retries included (default 10)")
    p.add_argument("--keys", type=int, default=6, help="active list-append keys")
    p.add_argument("--max-txn-len", type=int, default=4)
    p.add_argument("--max-writes-per-key", type=int, default=32)
    p.add_argument("--single-append", type=float, default=0.1,
                   help="fraction of appends done outside a transaction (retryable update)")
    p.add_argument("--txn-api", choices=("both",) + TXN_MODES, default="both")
    p.add_argument("--w1-journal", action="store_true", help="w:1 inserts with j:true")
    p.add_argument("--fault-every", type=float, default=0.0,
                   help="seconds between fault commands")
    p.add_argument("--fault-cmd", action="append", default=[],
                   help="shell command run as a fault (repeatable: run in turn)")
    p.add_argument("--heal-cmd", action="append", default=[],
                   help="shell command run after the workload, before the final read "
                   "(default with a schedule: cairn-fault heal --all)")
    p.add_argument("--schedule", action="append", default=[],
                   help="a fault schedule, e.g. 'kill primary every 10s for 2m' "
                   "(repeatable: each runs on its own thread; see docs/history.md)")
    p.add_argument("--schedule-file", action="append", default=[],
                   help="a file holding a fault schedule (repeatable)")
    p.add_argument("--fault-opts", default="",
                   help="options for scripts/cairn-fault, e.g. '--data /tmp/d' or "
                   "'--target docker --project cairn'")
    p.add_argument("--final-timeout", type=float, default=60.0)
    p.add_argument("--check", action="store_true", help="check the history afterwards")
    p.add_argument("--rollback-dir", action="append", default=[],
                   help="with --check: a member's dbpath or rollback directory (repeatable; "
                   "default with a schedule: what cairn-fault dbpaths reports)")


def _check_parser(sub):
    p = sub.add_parser("check", help="check a history file")
    p.add_argument("history")
    p.add_argument("--rollback-dir", action="append", default=[],
                   help="a member's dbpath or rollback directory (repeatable)")
    p.add_argument("--json", help="also write the report as JSON to this file")
    p.add_argument("--max-print", type=int, default=10, help="findings printed per type")


def _schedules(args):
    texts = list(args.schedule)
    for path in args.schedule_file:
        with open(path, encoding="utf-8") as f:
            texts.append(f.read())
    spans = []
    for t in texts:
        spans.append(parse_schedule(t, args.fault_opts).span())   # raises ScheduleError
    return texts, spans


def _config(args):
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    modes = TXN_MODES if args.txn_api == "both" else (args.txn_api,)
    schedules, spans = _schedules(args)
    duration = args.duration
    if duration is None:
        known = [s for s in spans if s is not None]
        duration = max(known) + 5.0 if known and len(known) == len(spans) else 10.0
    return RunConfig(uri=args.uri, out=args.out, seed=seed, workers=args.workers,
                     duration=duration, ops=args.ops, schedules=schedules,
                     fault_opts=args.fault_opts,
                     workloads=tuple(w for w in args.workloads.split(",") if w),
                     db=args.db, keep_db=args.keep_db, op_timeout=args.op_timeout,
                     recover_timeout=args.recover_timeout,
                     keys=args.keys, max_txn_len=args.max_txn_len,
                     max_writes_per_key=args.max_writes_per_key,
                     single_append=args.single_append, txn_modes=modes,
                     w1_journal=args.w1_journal, fault_every=args.fault_every,
                     fault_cmds=args.fault_cmd, heal_cmds=args.heal_cmd,
                     final_timeout=args.final_timeout)


def _check(path, rollback_dirs, json_path=None, max_print=10):
    try:
        report = check_file(path, rollback_dirs)
    except (OSError, HistoryError) as exc:
        print("cannot check %s: %s" % (path, exc), file=sys.stderr)
        return 2
    print(format_report(report, max_print))
    if json_path:
        write_json(report, json_path)
    return 0 if report.clean else 1


def fault_dbpaths(fault_opts):
    """The members' data directories as scripts/cairn-fault dbpaths reports them (the same
    target as the schedules); [] when it cannot tell."""
    p = subprocess.run(fault_command(fault_opts, "dbpaths"),
                       shell=True, capture_output=True, text=True, timeout=120)
    try:
        return json.loads(p.stdout.strip().splitlines()[-1]).get("dbpaths") or []
    except (ValueError, IndexError, AttributeError):
        return []


def main(argv=None):
    ap = argparse.ArgumentParser(prog="cairn-history", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    _run_parser(sub)
    _check_parser(sub)
    args = ap.parse_args(argv)
    if args.cmd == "check":
        return _check(args.history, args.rollback_dir, args.json, args.max_print)
    try:
        cfg = _config(args)
    except (OSError, ScheduleError) as exc:
        print("bad schedule: %s" % exc, file=sys.stderr)
        return 2
    print("cairn-history run: seed %d, %d workers, history %s" % (cfg.seed, cfg.workers,
                                                                 cfg.out), flush=True)
    try:
        result = run(cfg)
    except RunnerError as exc:
        print("run failed: %s" % exc, file=sys.stderr)
        return 2
    print("ran %s; %d fault events" % (", ".join("%s: %d" % kv for kv in result["ops"].items()),
                                       result["faults"]), flush=True)
    if args.check:
        dirs = args.rollback_dir
        if not dirs and cfg.schedules:
            dirs = fault_dbpaths(cfg.fault_opts)
            print("rollback files from the members' data directories: %s"
                  % (", ".join(dirs) or "none found"), flush=True)
        return _check(cfg.out, dirs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
