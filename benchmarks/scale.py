"""The ``scale`` benchmark: one real interchange serving N simulated pools of W workers.

``python -m benchmarks scale --pools 1,50,200 --tasks 100000`` starts, for each
N in one run, a real ``HighThroughputExecutor`` (so the real
``InterchangeClient`` starts the real interchange process) and N simulated
pools (:mod:`benchmarks.scale_sim`, ``--pools-per-process`` of them to a
process), which speak the real wire and answer every task at once. Then:

1. connect: until the interchange counts N x W connected workers (``connect_s``);
2. idle: ``--idle-s`` seconds with every pool heartbeating at ``--heartbeat-period``:
   heartbeats answered per second, the interchange's CPU per heartbeat;
3. load: ``--tasks`` no-op tasks through ``executor.submit`` and their futures:
   ``dispatch_rate_per_s`` (first submit to last result), the interchange's CPU
   time per task and per message, its RSS, heartbeats answered meanwhile;
4. check: every result is ``None`` and every pool is still registered (no
   pool declared lost, none told to shut down).

Each N is one record in ``records/scale.jsonl``; ``python -m benchmarks report``
puts them in RESULTS.md's ``scale`` table. The executor runs with
``encrypted=False`` unless ``--encrypted`` (then the simulated sockets are
CurveZMQ clients with the executor's keys); either way the run's secret signs
every message (``wire_auth.py``), as the real pools do.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import select
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import psutil

from benchmarks import records
from benchmarks.tasks import noop

logger = logging.getLogger("benchmarks.scale")

CASE = "scale"
ADAPTER = "parsl_lite-htex-sim"


class SimProcesses:
    """The simulator processes of one measurement, and their stdin/stdout control lines."""

    def __init__(self, port: int, secret_file: str, pools: int, workers: int, per_process: int,
                 cert_dir: Optional[str] = None) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(records.REPO_DIR),
                                                                          os.environ.get("PYTHONPATH")]))}
        self.procs: list[subprocess.Popen] = []
        for first in range(0, pools, per_process):
            count = min(per_process, pools - first)
            self.procs.append(subprocess.Popen(
                [sys.executable, "-m", "benchmarks.scale_sim", "--port", str(port), "--secret-file", secret_file,
                 "--pools", str(count), "--workers", str(workers), "--first-block", str(first),
                 *(["--cert-dir", cert_dir] if cert_dir else [])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=records.REPO_DIR, env=env))

    def _read(self, proc: subprocess.Popen, deadline: float) -> dict[str, Any]:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"simulator pid {proc.pid} said nothing (exit code {proc.poll()})")
        return json.loads(line)

    def wait_registered(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            said = self._read(proc, deadline)
            if said["registered"] < said["pools"]:
                raise RuntimeError(f"{said['pools'] - said['registered']} simulated pools were refused: "
                                   f"{said['lost']}")

    def stats(self, word: str = "stats", timeout_s: float = 30.0) -> dict[str, Any]:
        """The counters of every simulator, summed; ``lost`` merged."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(word + "\n")
            proc.stdin.flush()
        deadline = time.monotonic() + timeout_s
        total: dict[str, Any] = {"lost": {}}
        for proc in self.procs:
            one = self._read(proc, deadline)
            total["lost"].update(one.pop("lost"))
            for key, value in one.items():
                if key.endswith("_max"):
                    total[key] = max(total.get(key, 0), value)
                elif isinstance(value, (int, float)) and key != "time":
                    total[key] = total.get(key, 0) + value
        return total

    def cpu_s(self) -> float:
        return sum(_cpu_s(proc.pid) for proc in self.procs if proc.poll() is None)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.close()  # end of input: the simulator quits
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


class RssSampler(threading.Thread):
    """The interchange's peak RSS while tasks run, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return


def _wait_connected(executor: Any, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while executor.connected_workers < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {executor.connected_workers} of {expected} simulated workers connected "
                               f"after {timeout_s:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def simulated(pools: int, workers: int, run_dir: str, per_process: int = 50, heartbeat_period: float = 1.0,
              heartbeat_threshold: float = 10.0, max_batch: int = 64, encrypted: bool = False,
              timeout_s: float = 600.0) -> Iterator[tuple[Any, int, SimProcesses, float]]:
    """A started executor whose interchange has ``pools`` x ``workers`` simulated workers connected.

    Yields:
        The executor, the interchange's pid, the simulators, and the seconds
        from starting the simulators to every worker counted as connected.
    """
    from parsl_lite.executors.htex.executor import HighThroughputExecutor

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(records.REPO_DIR), os.environ.get("PYTHONPATH")]))
    executor = HighThroughputExecutor(label="htex", encrypted=encrypted, heartbeat_period=heartbeat_period,
                                      heartbeat_threshold=heartbeat_threshold, max_batch=max_batch)
    executor.set_run_dir(run_dir)
    executor.start()
    sims: Optional[SimProcesses] = None
    try:
        link = executor.pool_connection()
        started = time.monotonic()
        sims = SimProcesses(link.worker_port, link.secret_file, pools, workers, per_process, link.cert_dir)
        sims.wait_registered(timeout_s)
        _wait_connected(executor, pools * workers, timeout_s)
        yield executor, link.interchange_pid, sims, time.monotonic() - started
    finally:
        executor.shutdown()
        if sims is not None:
            sims.stop()


def measure(pools: int, workers: int, tasks: int, run_dir: str, idle_s: float = 3.0, timeout_s: float = 600.0,
            **options: Any) -> dict[str, Any]:
    """One measurement: a real executor and interchange, ``pools`` simulated pools; the figures.

    Raises:
        RuntimeError: a task was not answered or its result was not None.
    """
    from parsl_lite.executors.htex.messages import StatusReply, StatusRequest

    with simulated(pools, workers, run_dir, timeout_s=timeout_s, **options) as (executor, ix, sims, connect_s):
        figures: dict[str, Any] = {"connect_s": connect_s}
        figures.update(_idle_phase(ix, sims, idle_s))
        figures.update(_load_phase(executor, ix, sims, tasks, timeout_s))
        status = executor.command(StatusRequest(0))
        end = sims.stats()
        registered = len(status.managers) if isinstance(status, StatusReply) else 0
        figures["pools_lost"] = max(pools - registered, len(end["lost"]))
        figures["lost_reasons"] = end["lost"]
        figures["ix_rss_mib_end"] = psutil.Process(ix).memory_info().rss / 2**20
        figures["unexpected_messages"] = end.get("unexpected", 0) + end.get("malformed", 0)
        if isinstance(status, StatusReply):
            figures["refused"], figures["dropped"] = status.refused, status.dropped
        return figures


def _idle_phase(ix: int, sims: SimProcesses, idle_s: float) -> dict[str, float]:
    """Heartbeats only: how many the interchange answers, and what they cost it."""
    cpu0, before, t0 = _cpu_s(ix), sims.stats(), time.monotonic()
    time.sleep(idle_s)  # the phase's length: nothing else is waited for
    cpu1, after, t1 = _cpu_s(ix), sims.stats(), time.monotonic()
    acks = after["heartbeat_acks"] - before["heartbeat_acks"]
    rtt = after["heartbeat_rtt_s_sum"] - before["heartbeat_rtt_s_sum"]
    return {"idle_heartbeat_rtt_ms": 1e3 * rtt / acks if acks else math.nan,
            "idle_heartbeat_rtt_max_ms": 1e3 * after["heartbeat_rtt_s_max"],
            "idle_heartbeat_gap_max_s": after["heartbeat_gap_s_max"], "idle_heartbeats_per_s": acks / (t1 - t0),
            "idle_ix_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
            "ix_cpu_us_per_heartbeat": 1e6 * (cpu1 - cpu0) / acks if acks else math.nan,
            "ix_rss_mib_idle": psutil.Process(ix).memory_info().rss / 2**20}


def _load_phase(executor: Any, ix: int, sims: SimProcesses, tasks: int, timeout_s: float) -> dict[str, float]:
    """``tasks`` no-ops through ``submit`` and their futures, with the heartbeats going on."""
    sampler = RssSampler(ix)
    sampler.start()
    before, cpu0, sim0 = sims.stats(), _cpu_s(ix), sims.cpu_s()
    t0 = time.monotonic()
    futures = [executor.submit(noop, {}) for _ in range(tasks)]
    t_sub = time.monotonic()
    wrong = sum(f.result(timeout=timeout_s) is not None for f in futures)
    t1 = time.monotonic()
    cpu1, sim1, after = _cpu_s(ix), sims.cpu_s(), sims.stats()
    sampler.done.set()
    sampler.join()
    if wrong:
        raise RuntimeError(f"{wrong} of {tasks} results were not None")
    wall = t1 - t0
    batches = after["task_batches"] - before["task_batches"]
    beats = after["heartbeat_acks"] - before["heartbeat_acks"]
    sent = after["heartbeats_sent"] - before["heartbeats_sent"]
    rtt = after["heartbeat_rtt_s_sum"] - before["heartbeat_rtt_s_sum"]
    done = after["tasks"] - before["tasks"]
    if done != tasks:
        raise RuntimeError(f"the simulated workers answered {done} tasks, {tasks} were submitted")
    return {"submit_rate_per_s": tasks / (t_sub - t0), "dispatch_rate_per_s": tasks / wall, "load_s": wall,
            "ix_cpu_us_per_task": 1e6 * (cpu1 - cpu0) / tasks, "ix_cpu_pct": 100 * (cpu1 - cpu0) / wall,
            "ix_cpu_us_per_message": 1e6 * (cpu1 - cpu0) / (2 * batches + beats),
            "tasks_per_batch": tasks / batches if batches else math.nan,
            "load_heartbeats_per_s": beats / wall, "load_heartbeats_sent_per_s": sent / wall,
            "load_heartbeat_rtt_ms": 1e3 * rtt / beats if beats else math.nan,
            "load_heartbeat_rtt_max_ms": 1e3 * after["heartbeat_rtt_s_max"],
            "load_heartbeat_gap_max_s": after["heartbeat_gap_s_max"],
            "sim_cpu_pct": 100 * (sim1 - sim0) / wall,
            "ix_rss_mib_peak": sampler.peak / 2**20}


def run(pools_list: list[int], workers: int, tasks: int, repeats: int, records_dir: Path,
        **options: Any) -> list[records.Record]:
    """Measure every N of ``pools_list`` (each repeat in a rotated order); append and return the records."""
    run_id = records.new_run_id()
    taken = []
    for repeat in range(repeats):
        order = pools_list[repeat % len(pools_list):] + pools_list[:repeat % len(pools_list)]
        for pools in order:
            record = _one(pools, workers, tasks, repeat, run_id, options)
            records.append(records_dir, record)
            taken.append(record)
            logger.info("N=%d: %s", pools, record.get("error") or {k: round(v, 2) for k, v in
                                                                  record["figures"].items()
                                                                  if isinstance(v, float)})
    return taken


def _one(pools: int, workers: int, tasks: int, repeat: int, run_id: str, options: dict[str, Any]) -> records.Record:
    record: records.Record = {
        "case": CASE, "library": "parsl_lite", "adapter": ADAPTER, "executor": "htex", "repeat": repeat,
        "run_id": run_id, "params": {"pools": pools, "workers_per_pool": workers, "tasks": tasks,
                                     "max_batch": options.get("max_batch", 64),
                                     "encrypted": options.get("encrypted", False)},
        "workers": pools * workers, "options": options, "python": platform.python_version(),
        "timestamp": records.now_iso(), "loadavg_before": records.loadavg(), "git_commit": records.git_commit(),
        "git_dirty": records.git_dirty(), "machine": records.machine(),
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="scale-") as run_dir:
        try:
            record["figures"] = measure(pools, workers, tasks, run_dir, **options)
        except Exception as exc:  # recorded, not lost: the next N still runs
            logger.exception("N=%d failed", pools)
            record["error"] = f"{type(exc).__name__}: {exc}"
    record["wall_s"] = time.monotonic() - started
    record["loadavg_after"] = records.loadavg()
    return record


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--pools", default="1,200", help="N values, comma separated (default 1,200)")
    parser.add_argument("--workers", type=int, default=32, help="worker slots per simulated pool (default 32)")
    parser.add_argument("--tasks", type=int, default=100_000, help="no-op tasks per measurement (default 100000)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--pools-per-process", type=int, default=50, dest="per_process")
    parser.add_argument("--heartbeat-period", type=float, default=1.0)
    parser.add_argument("--heartbeat-threshold", type=float, default=10.0)
    parser.add_argument("--idle-s", type=float, default=3.0)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--encrypted", action="store_true", help="CurveZMQ on every connection (the executor's "
                                                                  "default; off here unless given)")
    parser.add_argument("--records-dir", type=Path, default=records.RECORDS_DIR)
    return parser


def main(args: argparse.Namespace) -> int:
    """Run the command of :func:`build_parser`; 1 if any measurement failed."""
    options = {"per_process": args.per_process, "heartbeat_period": args.heartbeat_period,
               "heartbeat_threshold": args.heartbeat_threshold, "idle_s": args.idle_s, "max_batch": args.max_batch,
               "encrypted": args.encrypted}
    pools = [int(x) for x in args.pools.split(",") if x.strip()]
    taken = run(pools, args.workers, args.tasks, args.repeats, args.records_dir, **options)
    return 1 if any("error" in r for r in taken) else 0
