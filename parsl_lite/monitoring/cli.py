"""``parsl-lite status``, ``parsl-lite monitor`` and ``parsl-lite report``: reading a monitoring store.

The store is found as parsl-visualize finds it: ``--db URL`` (``sqlite:///PATH``, ``postgresql://...``,
or a plain file path), by default ``runinfo/monitoring.db`` below the current directory. A RUN is a
run id, a unique prefix of one, or the run's directory (``003``, ``runinfo/003``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any, Callable, Optional

from parsl_lite.monitoring import queries, views

EXIT_OK = 0
EXIT_RUN_FAILED = 1     # status RUN: some task failed, or the run ended abnormally
EXIT_USAGE = 2          # bad arguments, unknown run id
EXIT_NO_STORE = 3       # no store at the URL, or it cannot be read

EXIT_CODES = """exit status:
  0  ok (status RUN: the run is running or completed with no failed task)
  1  status RUN: the run has failed tasks, or ended abnormally (its process died, e.g. SIGKILL)
  2  usage error, or RUN names no run in the store (the message lists the runs there are)
  3  no monitoring store at --db (or it cannot be read)"""

_DB_HELP = ("the monitoring store: sqlite:///PATH, postgresql://..., or a file path "
            "(default: sqlite:///$PWD/runinfo/monitoring.db, as parsl-visualize)")
_RUN_HELP = "a run id, a unique prefix of one, or its run directory (003, runinfo/003)"


def add_monitoring_commands(commands: Any) -> None:
    """Register ``status``, ``monitor`` and ``report`` on ``parsl-lite``'s subparsers."""
    kw = dict(epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    status = commands.add_parser("status", help="workflows in the monitoring store and their tasks by state",
                                 description="List the monitored runs (or one RUN) with their tasks by state. "
                                 "A run whose process died without ending is marked ended abnormally.", **kw)
    status.add_argument("run", nargs="?", metavar="RUN", help=_RUN_HELP + " (default: every run)")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(handler=_guarded(_status))
    monitor = commands.add_parser("monitor", help="live view of a run: tasks, workers, blocks, endpoints, failures",
                                  description="Redraw a run's tasks by state, executors' workers and blocks, "
                                  "endpoints and recent failures until Ctrl-C.", **kw)
    monitor.add_argument("run", nargs="?", metavar="RUN", help=_RUN_HELP + " (default: the latest run)")
    monitor.add_argument("--once", action="store_true", help="print one snapshot and exit (scripts, tests)")
    monitor.add_argument("--interval", type=_positive, default=1.0, metavar="S", help="refresh period (1 s)")
    monitor.add_argument("--web", action="store_true", help="serve the view on http://HOST:PORT/ instead")
    monitor.add_argument("--host", default="127.0.0.1", help="--web: address to listen on (127.0.0.1)")
    monitor.add_argument("--port", type=int, default=0, help="--web: port (default: a free one)")
    monitor.set_defaults(handler=_guarded(_monitor))
    report = commands.add_parser("report", help="one self-contained HTML file of plots of a run",
                                 description="Write a run's task stream per worker, tasks by state over time, "
                                 "worker CPU and memory and per-app durations into one HTML file (no network).",
                                 **kw)
    report.add_argument("run", metavar="RUN", help=_RUN_HELP)
    report.add_argument("-o", "--output", default="report.html", metavar="FILE", help="(default: report.html)")
    report.set_defaults(handler=_guarded(_report))
    for parser in (status, monitor, report):
        parser.add_argument("--db", metavar="URL", help=_DB_HELP)


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _guarded(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Store and run errors become one line on stderr and their exit status."""
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except queries.StoreUnreadable as exc:
            print(f"parsl-lite {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_NO_STORE
        except queries.UnknownRun as exc:
            print(f"parsl-lite {args.command}: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except Exception as exc:  # a database error mid-read (a damaged file, a store of another schema)
            if not type(exc).__module__.startswith(("sqlite3", "psycopg")):
                raise
            print(f"parsl-lite {args.command}: error: cannot read the monitoring store: {exc}", file=sys.stderr)
            return EXIT_NO_STORE
    return run


def _open(args: argparse.Namespace) -> queries.Store:
    return queries.open_store(queries.resolve_store_url(args.db))


# ---------------------------------------------------------------------- status

def _status(args: argparse.Namespace) -> int:
    with _open(args) as db:
        runs = [db.find_run(args.run)] if args.run else db.runs()
        now = queries.naive_now()
        rows = []
        for run in runs:
            state = queries.settle_run(db, run)
            rows.append((views.run_view(run, state, now), views.ordered_counts(db.state_counts(run.run_id))))
        failures = db.recent_failures(runs[0].run_id, 5) if args.run else []
    if args.json:
        print(json.dumps({"store": db.path, "runs": [dict(dataclasses.asdict(r), counts=c) for r, c in rows]},
                         indent=2))
    elif args.run:
        _print_run(*rows[0], failures)
    else:
        _print_runs(db.path, rows)
    if args.run and rows[0][0].state in ("failed", queries.ENDED_ABNORMALLY):
        return EXIT_RUN_FAILED
    return EXIT_OK


def _task_summary(counts: dict[str, int]) -> str:
    return " ".join(f"{state}={n}" for state, n in counts.items() if n) or "no tasks"


def _print_runs(path: str, rows: list) -> None:
    if not rows:
        print(f"no runs in {path}")
        return
    print(f"{'RUN':<36}  {'DIR':<5}  {'NAME':<14}  {'BEGAN':<19}  {'TIME':>9}  {'STATE':<16}  TASKS")
    for run, counts in rows:
        print(f"{run.run_id:<36}  {os.path.basename(run.rundir or ''):<5}  {(run.name or '-')[:14]:<14}  "
              f"{queries.format_time(run.began):<19}  {views.format_duration(run.duration_s):>9}  "
              f"{run.state:<16}  {sum(counts.values())}: {_task_summary(counts)}")


def _print_run(run: views.RunView, counts: dict[str, int], failures: list[dict]) -> None:
    end = queries.format_time(run.completed) if run.completed is not None else "-"
    print(f"run       {run.run_id}\nname      {run.name or '-'}\nrundir    {run.rundir}\n"
          f"user      {run.user}@{run.host}\nstate     {run.state}\nbegan     {queries.format_time(run.began)}\n"
          f"ended     {end}\nduration  {views.format_duration(run.duration_s)}\ntasks     {sum(counts.values())}")
    for state, n in counts.items():
        print(f"  {state:<15} {n}")
    for f in failures:
        print(f"failed    task {f['task_id']} try {f['try_id']} {f['func_name']}: {views.short_error(f['error'])}")


# ---------------------------------------------------------------------- monitor

def _monitor(args: argparse.Namespace) -> int:
    if args.web:
        from parsl_lite.monitoring import web

        return web.serve(queries.resolve_store_url(args.db), args.run, host=args.host, port=args.port,
                         interval_s=args.interval, out=sys.stdout)
    from rich.console import Console

    from parsl_lite.monitoring import terminal

    console = Console()
    with _open(args) as db:
        if args.once:
            console.print(terminal.render(queries.read_snapshot(db, args.run), max(60, console.width - 40)))
            return EXIT_OK
        return terminal.watch(db, args.run, args.interval, console)


# ---------------------------------------------------------------------- report

def _report(args: argparse.Namespace) -> int:
    from parsl_lite.monitoring import report

    started = time.perf_counter()
    with _open(args) as db:
        run = db.find_run(args.run)
        html = report.render_report(db, run.run_id)
    try:
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(html)
    except OSError as exc:
        print(f"parsl-lite report: error: cannot write -o {args.output}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    print(f"wrote {args.output} ({len(html) / 1e6:.1f} MB) for run {run.run_id} "
          f"in {time.perf_counter() - started:.1f} s")
    return EXIT_OK


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m parsl_lite.monitoring.cli``: the same three commands alone (handy in tests)."""
    parser = argparse.ArgumentParser(prog="parsl-lite")
    add_monitoring_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
