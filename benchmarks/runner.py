"""The parent of a run: one subprocess per measurement, interleaved, recorded.

::

    run(cases, executor, repeats)
      for repeat:                      libraries rotate each repeat, so none
        for case, for params:          is always first (or always last) on a
          for library:                 machine whose load drifts
            python -m benchmarks.child ──stdout──▶ one JSON record
            + run_id, repeat, loadavg, timestamp, commit ──▶ records/<case>.jsonl
                                       (commit and changed files read per child)

Each child gets a fresh interpreter and its own session (process group), so a
library's threads, sockets or worker processes can neither disturb the next
measurement nor outlive their own: whatever is left in the group when the
child ends, or when its time is up, is killed.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import records
from benchmarks.adapters import Adapter
from benchmarks.cases import Case

logger = logging.getLogger(__name__)

_STDERR_TAIL_CHARS = 2000
_LEFTOVER_GRACE_S = 2.0


@dataclass(frozen=True)
class RunPlan:
    """What one ``run`` command measures.

    Attributes:
        cases: in order.
        adapters: the libraries, all of one executor group.
        executor: that group.
        repeats: how many times every measurement is taken.
        workers: W.
        sizes: overrides each case's default sizes when given.
        timeout_s: overrides each case's per-child budget when given.
        records_dir: where records are appended.
        overrides: fixed parameters replaced per case name (``--pi-n``).
        in_all: the plan is ``run all`` (cases use their ``fixed_in_all``).
        keep_run_dirs: keep every child's run directory, not only failed ones'.
    """

    cases: Sequence[Case]
    adapters: Sequence[type[Adapter]]
    executor: str
    repeats: int
    workers: int
    sizes: Sequence[int] | None
    timeout_s: float | None
    records_dir: Path
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    in_all: bool = False
    keep_run_dirs: bool = False


def run(plan: RunPlan) -> list[records.Record]:
    """Take every measurement of the plan, appending each record as it comes.

    Args:
        plan: what to run.

    Returns:
        The records, in the order taken.
    """
    run_id = records.new_run_id()
    common = {"run_id": run_id, "machine": records.machine()}
    steps = [(case, params) for case in plan.cases
             for params in case.param_sets(plan.sizes, plan.executor, plan.overrides.get(case.name), plan.in_all)]
    total = plan.repeats * len(steps) * len(plan.adapters)
    logger.info("run %s: %d measurements (%s; %s)", run_id, total,
                ", ".join(c.name for c in plan.cases), ", ".join(a.name for a in plan.adapters))
    taken: list[records.Record] = []
    for repeat in range(plan.repeats):
        order = _rotated(plan.adapters, repeat)
        for case, params in steps:
            for adapter in order:
                record = _measure(adapter, case, params, plan)
                record.update(common, repeat=repeat)
                records.append(plan.records_dir, record)
                taken.append(record)
                _log_progress(len(taken), total, record)
    return taken


def _rotated(items: Sequence[type[Adapter]], shift: int) -> list[type[Adapter]]:
    k = shift % len(items) if items else 0
    return list(items[k:]) + list(items[:k])


def _measure(adapter: type[Adapter], case: Case, params: dict[str, Any], plan: RunPlan) -> records.Record:
    """Run one child and return its record, or an error record in its name.

    The child's run directory (the library's logs) is removed after a clean
    measurement and kept after a failed one (``run_dir`` in the record).
    """
    run_dir = Path(tempfile.mkdtemp(prefix=f"bench-{adapter.name}-{case.name}-"))
    cmd = [
        sys.executable, "-m", "benchmarks.child",
        "--adapter", adapter.name, "--case", case.name,
        "--params", json.dumps(params), "--workers", str(plan.workers),
        "--run-dir", str(run_dir),
    ]
    timeout_s = plan.timeout_s or case.timeout_s
    # The checkout is read per measurement: the code may be committed or edited while a run goes on.
    before = {"timestamp": records.now_iso(), "git_commit": records.git_commit(), "git_dirty": records.git_dirty(),
              "loadavg_before": records.loadavg()}
    t0 = time.perf_counter()
    stdout, stderr, status = _run_child(cmd, timeout_s)
    after = {"wall_s": round(time.perf_counter() - t0, 3), "loadavg_after": records.loadavg()}
    record = _parse_record(stdout)
    if record is None:
        record = {
            "adapter": adapter.name, "library": adapter.library, "executor": adapter.executor,
            "case": case.name, "params": params, "workers": plan.workers,
            "error": f"child {status} without a record",
            "stderr_tail": stderr[-_STDERR_TAIL_CHARS:],
        }
        logger.warning("%s %s %s: child %s without a record; its stderr ends:\n%s",
                       adapter.name, case.name, params, status, stderr[-_STDERR_TAIL_CHARS:] or "(nothing)")
    elif status != "exited 0" and "error" not in record:
        record["warning"] = f"child {status} after writing its record"
    record.update(before, **after)
    if "error" in record or "warning" in record or plan.keep_run_dirs:
        record["run_dir"] = str(run_dir)
        if "error" in record or "warning" in record:
            logger.warning("%s %s %s: its run directory (logs) is kept: %s", adapter.name, case.name, params, run_dir)
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
    return record


def _run_child(cmd: list[str], timeout_s: float) -> tuple[str, str, str]:
    """Run ``cmd`` in its own session with ``PYTHONPATH`` on the checkout and the interpreter's bin on ``PATH``.

    Output goes to temporary files, not pipes: a grandchild that outlives the
    child (a stray worker process) would hold a pipe open and stall the read.

    Returns:
        stdout, stderr, and how it ended (``exited 0``, ``exited 1``,
        ``timed out after 300 s``, ...).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(records.REPO_DIR), env.get("PYTHONPATH")) if p)
    # The environment's scripts first, as if it were activated: Parsl's HTEX runs
    # `interchange.py` and `process_worker_pool.py` from PATH.
    env["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), env.get("PATH")) if p)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            cmd, cwd=records.REPO_DIR, env=env, text=True,
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout_s)
            status = f"exited {proc.returncode}"
            _grace(proc.pid, _LEFTOVER_GRACE_S)
            if _kill_group(proc.pid, "left behind"):
                status += ", leaving processes behind (killed)"
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, "timed out")
            proc.wait()
            status = f"timed out after {timeout_s:g} s"
        except BaseException:
            # Ctrl-C reaches only our process group, not the child's session.
            _kill_group(proc.pid, "interrupted")
            proc.wait()
            raise
        out.seek(0)
        err.seek(0)
        return out.read(), err.read(), status


def _grace(pgid: int, seconds: float) -> None:
    """Give what is left of a finished child's group ``seconds`` to exit by itself.

    Helpers that end on their own when their parent is gone (the
    ``multiprocessing`` resource tracker that Dask's nannies start) are
    often still alive just after the child exits; they are not left behind.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)


def _kill_group(pgid: int, why: str) -> bool:
    """SIGKILL whatever is left in the child's process group (its session).

    Returns:
        True if anything was left to kill.
    """
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False  # nothing left: the usual case
    logger.warning("killed processes %s by child %d", why, pgid)
    return True


def _parse_record(stdout: str) -> records.Record | None:
    """The last line of stdout that is a JSON object, or None."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return None
            return record if isinstance(record, dict) else None
    return None


def _log_progress(done: int, total: int, record: records.Record) -> None:
    head = f"[{done}/{total}] {record['adapter']} {record['case']} {record['params']} repeat {record['repeat']}"
    if "error" in record:
        logger.info("%s: ERROR %s", head, record["error"])
        return
    figures = ", ".join(f"{k}={v:.4g}" for k, v in record["figures"].items())
    logger.info("%s: startup %.2f s; %s", head, record["startup_s"], figures)
