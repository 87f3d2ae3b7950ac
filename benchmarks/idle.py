"""The ``idle`` benchmark: what an idle executor costs in CPU, in all its processes.

``python -m benchmarks idle --idle-s 10`` loads the default config with a
``HighThroughputExecutor`` (``LocalProvider``, 2 workers), waits until both
workers are connected and a settling pause has passed, then samples the CPU
time (user + system, psutil) of every process of the run over ``--idle-s``
seconds with nothing submitted: the submitting process itself (kernel,
strategy, the executor's threads), the interchange, the pool and its workers.
The figures are % of one core per kind of process and in total; the target
(issue 9) is a total under 1%.

Each repeat is one record in ``records/idle.jsonl``; ``python -m benchmarks
report`` puts the latest run in RESULTS.md's ``idle`` section (:func:`render`).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from benchmarks import records

logger = logging.getLogger("benchmarks.idle")

CASE = "idle"
KINDS = ("submitter", "interchange", "worker_pool", "worker")
_TARGET_PCT = 1.0


def _kind(proc: psutil.Process) -> str | None:
    """Which part of the run a child process is, from its command line (None: not ours)."""
    try:
        cmd = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for kind in ("worker_pool", "interchange", "worker"):
        if f"parsl_lite.executors.htex.{kind}" in cmd or f"htex/{kind}.py" in cmd:
            return kind
    return None


def _cpu_s(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _processes() -> dict[int, tuple[str, psutil.Process]]:
    me = psutil.Process()
    found = {me.pid: ("submitter", me)}
    for child in me.children(recursive=True):
        kind = _kind(child)
        if kind is not None:
            found[child.pid] = (kind, child)
    return found


def sample(idle_s: float) -> dict[str, Any]:
    """CPU of every process of the run over ``idle_s`` seconds, % of one core, by kind and in total.

    Raises:
        RuntimeError: a process came or went while sampling (a worker restarted: not idle).
    """
    before = _processes()
    start_cpu = {pid: _cpu_s(proc) for pid, (_, proc) in before.items()}
    started = time.monotonic()
    time.sleep(idle_s)
    elapsed = time.monotonic() - started
    after = _processes()
    if set(after) != set(before):
        raise RuntimeError(f"processes changed while idle: {sorted(before)} -> {sorted(after)}")
    by_kind: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for pid, (kind, proc) in after.items():
        by_kind[kind] += (_cpu_s(proc) - start_cpu[pid]) / elapsed * 100
        counts[kind] += 1
    figures: dict[str, Any] = {f"{kind}_cpu_pct": by_kind.get(kind, 0.0) for kind in KINDS}
    figures["total_cpu_pct"] = sum(by_kind.values())
    figures["processes"] = dict(counts)
    figures["idle_s"] = elapsed
    return figures


def measure(idle_s: float, settle_s: float, workers: int, run_dir: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """One measurement: load the default htex config, wait for its workers, sample it idle."""
    import parsl_lite
    from parsl_lite.config import Config
    from parsl_lite.executors.htex.executor import HighThroughputExecutor

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(records.REPO_DIR), os.environ.get("PYTHONPATH")]))
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=workers)
    parsl_lite.load(Config(executors=[executor], run_dir=run_dir))
    try:
        deadline = time.monotonic() + timeout_s
        while executor.connected_workers < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {executor.connected_workers} of {workers} workers after {timeout_s} s")
            time.sleep(0.1)
        time.sleep(settle_s)  # start-up's last messages and log writes are not idle cost
        return sample(idle_s)
    finally:
        parsl_lite.dfk().cleanup()
        parsl_lite.clear()


def run(repeats: int, idle_s: float, settle_s: float, workers: int, records_dir: Path,
        label: str | None) -> list[records.Record]:
    """Take ``repeats`` measurements, each in a fresh executor; append and return the records."""
    run_id = records.new_run_id()
    taken = []
    for repeat in range(repeats):
        record: records.Record = {
            "case": CASE, "library": "parsl_lite", "adapter": "parsl_lite-htex", "executor": "htex",
            "repeat": repeat, "run_id": run_id, "label": label, "workers": workers,
            "params": {"idle_s": idle_s, "settle_s": settle_s, "workers": workers},
            "python": platform.python_version(), "timestamp": records.now_iso(),
            "loadavg_before": records.loadavg(), "git_commit": records.git_commit(),
            "git_dirty": records.git_dirty(), "machine": records.machine(),
        }
        with tempfile.TemporaryDirectory(prefix="idle-") as run_dir:
            try:
                record["figures"] = measure(idle_s, settle_s, workers, run_dir)
            except Exception as exc:  # recorded, not lost
                logger.exception("idle measurement failed")
                record["error"] = f"{type(exc).__name__}: {exc}"
        record["loadavg_after"] = records.loadavg()
        records.append(records_dir, record)
        taken.append(record)
        logger.info("idle: %s", record.get("error") or {k: round(v, 3) for k, v in record["figures"].items()
                                                         if isinstance(v, float)})
    return taken


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--idle-s", type=float, default=10.0, help="seconds sampled idle (default 10)")
    parser.add_argument("--settle-s", type=float, default=2.0, help="pause after the workers connect (default 2)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--label", default=None, help="a name for this run in RESULTS.md (e.g. before, after)")
    parser.add_argument("--records-dir", type=Path, default=records.RECORDS_DIR)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the command of :func:`build_parser`; 1 if any measurement failed."""
    taken = run(args.repeats, args.idle_s, args.settle_s, args.workers, args.records_dir, args.label)
    return 1 if any("error" in r for r in taken) else 0


# ------------------------------------------------------------ RESULTS.md

def render(all_records: Iterable[records.Record]) -> list[str]:
    """The ``idle`` section: per labelled run (latest run of each label), medians of each figure."""
    runs: dict[str, list[records.Record]] = defaultdict(list)
    for rec in all_records:
        if rec.get("case") == CASE and "figures" in rec:
            runs[rec["run_id"]].append(rec)
    if not runs:
        return []
    latest: dict[str, list[records.Record]] = {}
    for run_id in sorted(runs, key=lambda r: runs[r][0]["timestamp"]):
        latest[runs[run_id][0].get("label") or run_id] = runs[run_id]
    lines = ["", "## idle (htex, default config, LocalProvider, 2 workers)", "",
             "`python -m benchmarks idle --label L`: CPU (user+sys) of every process of an idle run,",
             f"% of one core, medians across repeats; target: total under {_TARGET_PCT:g}%.", "",
             "| run | " + " | ".join(KINDS) + " | total | repeats | commit |",
             "|---|" + "---:|" * (len(KINDS) + 2) + "---|"]
    for label, recs in latest.items():
        cells = [f"{statistics.median(r['figures'][f'{kind}_cpu_pct'] for r in recs):.2f}" for kind in KINDS]
        total = statistics.median(r["figures"]["total_cpu_pct"] for r in recs)
        mark = "✓" if total < _TARGET_PCT else "✗"
        commit = (recs[0].get("git_commit") or "?")[:8] + (" +dirty" if recs[0].get("git_dirty") else "")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {total:.2f} {mark} | {len(recs)} | {commit} |")
    return lines + [""]
