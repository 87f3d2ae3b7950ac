"""Command line: ``python -m benchmarks run CASE ...`` and ``python -m benchmarks report``.

Examples::

    python -m benchmarks run noop --executor threads --repeats 3
    python -m benchmarks run all --executor threads --sizes 1000 --repeats 1
    python -m benchmarks report
    python -m benchmarks scale --pools 1,50,200 --tasks 100000
    python -m benchmarks idle --idle-s 10 --label after
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmarks import idle, records, report, runner, scale
from benchmarks.adapters import ADAPTERS, adapters_for
from benchmarks.cases import CASES

logger = logging.getLogger("benchmarks")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(x.replace("_", "")) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"need integers separated by commas, got {text!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"need positive integers, got {text!r}")
    return values


def _name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description="parsl_lite benchmarks, side by side with peers.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure, appending raw records")
    run.add_argument("case", choices=[*CASES, "all"], help="a case, or all of them")
    run.add_argument("--executor", default="threads",
                     choices=sorted({a.executor for a in ADAPTERS.values()}),
                     help="the executor group: every library with an adapter for it runs (default threads)")
    run.add_argument("--repeats", type=int, default=3, help="times each measurement is taken (default 3)")
    run.add_argument("--sizes", type=_int_list, default=None,
                     help="override the case's size parameter, e.g. 10000,100000 (default: per case)")
    run.add_argument("--workers", type=int, default=2, help="W, threads or worker processes (default 2)")
    run.add_argument("--libraries", type=_name_list, default=None,
                     help=f"only these adapters, comma separated (known: {', '.join(ADAPTERS)})")
    run.add_argument("--timeout", type=float, default=None, dest="timeout_s",
                     help="seconds one child may take, start-up included (default: per case)")
    run.add_argument("--records-dir", type=Path, default=records.RECORDS_DIR,
                     help="where records are appended (default benchmarks/records)")
    run.add_argument("--pi-n", type=int, default=None, dest="pi_n",
                     help="points per pi estimate in the pi case (default 10**6 for `run pi`, "
                          "10**5 in `run all`)")
    run.add_argument("--keep-run-dirs", action="store_true",
                     help="keep every child's run directory (failed ones are always kept)")

    rep = sub.add_parser("report", help="regenerate RESULTS.md from the records")
    rep.add_argument("--records-dir", type=Path, default=records.RECORDS_DIR)
    rep.add_argument("--output", type=Path, default=records.RESULTS_PATH)

    sub.add_parser("list", help="show the registered cases and adapters")
    scale.build_parser(sub.add_parser(
        "scale", help="one real interchange serving N simulated pools (records/scale.jsonl)"))
    idle.build_parser(sub.add_parser(
        "idle", help="CPU of an idle default htex run, all its processes (records/idle.jsonl)"))
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        adapters = adapters_for(args.executor, args.libraries)
    except ValueError as exc:
        logger.error("%s", exc)
        return 2
    if args.repeats < 1 or args.workers < 1:
        logger.error("--repeats and --workers must be at least 1")
        return 2
    if args.pi_n is not None and args.pi_n < 1:
        logger.error("--pi-n must be at least 1")
        return 2
    in_all = args.case == "all"
    cases = [c for c in CASES.values() if c.in_all(args.executor)] if in_all else [CASES[args.case]]
    overrides = {"pi": {"points": args.pi_n}} if args.pi_n is not None else {}
    plan = runner.RunPlan(
        cases=cases, adapters=adapters, executor=args.executor, repeats=args.repeats,
        workers=args.workers, sizes=args.sizes, timeout_s=args.timeout_s, records_dir=args.records_dir,
        overrides=overrides, in_all=in_all, keep_run_dirs=args.keep_run_dirs,
    )
    taken = runner.run(plan)
    failed = sum("error" in rec for rec in taken)
    logger.info("%d records appended to %s (%d failed); `python -m benchmarks report` to update RESULTS.md",
                len(taken), args.records_dir, failed)
    return 1 if failed else 0


def _cmd_report(args: argparse.Namespace) -> int:
    path = report.write(args.records_dir, args.output)
    logger.info("wrote %s", path)
    return 0


def _cmd_list(_: argparse.Namespace) -> int:
    for case in CASES.values():
        groups = "all groups" if case.executors is None else (", ".join(sorted(case.executors)) or "no group")
        extra = "".join(f"; {group}: {case.size_param} in {list(sizes)}"
                        for group, sizes in case.sizes_by_executor.items())
        in_all = f"; in `run all`: {dict(case.fixed_in_all)}" if case.fixed_in_all else ""
        in_all += "".join(f"; in `run all --executor {group}`: {case.size_param} in {list(sizes)}"
                          for group, sizes in case.sizes_in_all.items())
        print(f"case {case.name}: {case.size_param} in {list(case.sizes)}{extra}, {dict(case.fixed)}{in_all} "
              f"(run all: {groups})")
    for adapter in ADAPTERS.values():
        print(f"adapter {adapter.name}: library {adapter.library}, executor {adapter.executor}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command.

    Args:
        argv: arguments; None reads ``sys.argv``.

    Returns:
        The exit status: 0 ok, 1 some measurement failed, 2 bad usage.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    args = _build_parser().parse_args(argv)
    commands = {"run": _cmd_run, "report": _cmd_report, "list": _cmd_list, "scale": scale.main, "idle": idle.main}
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        logger.warning("interrupted; the records taken so far are kept")
        return 130


if __name__ == "__main__":
    sys.exit(main())
