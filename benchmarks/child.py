"""One measurement in a fresh interpreter: start a library, run a case, stop.

Run by :mod:`benchmarks.runner` (by hand too, to debug one measurement)::

    python -m benchmarks.child --adapter parsl-threads --case noop --params '{"n": 10000}'

Writes exactly one JSON object on stdout: the record, with ``figures`` or
with ``error``. Everything else the libraries or their subprocesses print on
stdout is sent to stderr (file descriptor 1 is pointed at 2 before any library
is imported), so the record cannot be corrupted.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

from benchmarks.adapters import ADAPTERS, Adapter
from benchmarks.cases import CASES, Case

logger = logging.getLogger("benchmarks.child")


def _private_stdout() -> TextIO:
    """Keep the real stdout for the record and send fd 1 to stderr.

    Returns:
        A text stream on a duplicate of the original stdout.
    """
    sys.stdout.flush()
    record_fd = os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(record_fd, "w", encoding="utf-8")


def measure(adapter: Adapter, case: Case, params: dict[str, Any], workers: int,
            run_dir: Path | None = None) -> dict[str, Any]:
    """Start, run and stop one library, timing start and stop apart from the case.

    Args:
        adapter: not yet started.
        case: what to run.
        params: the case's parameters.
        workers: W.
        run_dir: the library's run directory, kept afterwards (the parent
            decides); None makes a temporary one, removed afterwards.

    Returns:
        ``figures`` (the case's, then the adapter's start-up figures such as
        ``connected_s``), ``startup_s`` and ``stop_s``, or ``error`` (with
        ``traceback``) and whatever was measured before it.
    """
    out: dict[str, Any] = {}
    owned = run_dir is None
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{adapter.name}-"))
    clock = time.perf_counter
    started = False
    try:
        adapter.prepare()  # imports: not start-up
        t0 = clock()
        adapter.start(workers, run_dir)
        started = True
        out["startup_s"] = clock() - t0
        out["figures"] = {**case(adapter, params), **adapter.startup_figures}
        t0 = clock()
        started = False  # a failing stop() is recorded, not retried
        adapter.stop()
        out["stop_s"] = clock() - t0
    except BaseException as exc:  # any failure of the library is the record's content
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc(limit=20)
        logger.error("%s %s %s failed: %s", adapter.name, case.name, params, out["error"])
        if started:
            _stop_quietly(adapter)
    finally:
        if owned:
            shutil.rmtree(run_dir, ignore_errors=True)
    return out


def _stop_quietly(adapter: Adapter) -> None:
    """Stop after a failure; a second failure is logged, not raised."""
    try:
        adapter.stop()
    except Exception:  # the first error is the one recorded
        logger.exception("%s: stop() after a failure also failed", adapter.name)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.child", description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", required=True, choices=sorted(ADAPTERS))
    parser.add_argument("--case", required=True, choices=sorted(CASES))
    parser.add_argument("--params", required=True, help="the case's parameters as a JSON object")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="the library's run directory, left in place (default: a temporary one, removed)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Measure once and write the record on stdout.

    Args:
        argv: command-line arguments; None reads ``sys.argv``.

    Returns:
        0 if the record has figures, 1 if it has an error.
    """
    record_out = _private_stdout()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("child %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("benchmarks").addHandler(handler)
    logging.getLogger("benchmarks").setLevel(logging.INFO)

    args = _parse_args(argv)
    adapter_cls = ADAPTERS[args.adapter]
    params = json.loads(args.params)
    record: dict[str, Any] = {
        "adapter": adapter_cls.name,
        "library": adapter_cls.library,
        "executor": adapter_cls.executor,
        "case": args.case,
        "params": params,
        "workers": args.workers,
        "python": platform.python_version(),
    }
    record.update(measure(adapter_cls(), CASES[args.case], params, args.workers, args.run_dir))
    record_out.write(json.dumps(record) + "\n")
    record_out.flush()
    return 1 if "error" in record else 0


if __name__ == "__main__":
    sys.exit(main())
