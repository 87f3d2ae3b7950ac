"""The function service's cases (issue 10, "Measure"): round trip, throughput with a restart, many endpoints.

Run in the ``faas`` group (:mod:`benchmarks.faas_adapters`): the service end to
end through each client, with our own htex (``parsl_lite-htex-ref``) in the
same run for the round trip and the throughput.

- ``faas_latency``: one no-op at a time, ``run`` -> result, as the ``latency``
  case; for the service's adapters also the median of each hop, from the
  task's own timings (``get_task``: received, dispatched, started, finished;
  one clock, one machine).
- ``faas_throughput``: ``n`` no-ops in each client's idiom for many tasks.
- ``faas_restart``: the same, but the service is SIGKILLed once half the
  results are in and started again (same store, same ports): every task must
  still end with its result (``lost_tasks``, ``failed_tasks`` must be 0).
- ``faas_scale``: ``endpoints`` simulated endpoints on one service
  (``parsl_lite-faas-sim`` only; others skip it): dispatch rate, the service's
  CPU per task and RSS.
"""
from __future__ import annotations

import logging
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import faas_adapters, tasks
from benchmarks.adapters.base import Adapter
from benchmarks.cases.base import Case, Figure, Figures, mean, percentile, register_case

logger = logging.getLogger(__name__)

GROUPS = frozenset({faas_adapters.GROUP})
_HOPS = (  # figure, from, to: the task's timings, with the client's own clock at each end
    ("hop_submit_ms", "t_submit", "received"),
    ("hop_queue_ms", "received", "dispatched"),
    ("hop_to_worker_ms", "dispatched", "started"),
    ("hop_run_ms", "started", "finished"),
    ("hop_back_ms", "finished", "t_result"),
)


def _task_id(future: Any) -> str | None:
    """The service's id of what a submit returned (a task id, a FuncXTask, a FuncXFuture)."""
    if isinstance(future, str):
        return future
    task_id = getattr(future, "task_id", None)
    return task_id if isinstance(task_id, str) else None   # a workflow's AppFuture has no service id


def _hop_figures(adapter: Adapter, samples: list[tuple[Any, float, float]]) -> Figures:
    """Median of each hop over the sampled round trips, from ``get_task``'s timings."""
    client = getattr(adapter, "client", None)
    if client is None:
        return {}
    per_hop: dict[str, list[float]] = {name: [] for name, _, _ in _HOPS}
    for future, t_submit, t_result in samples:
        task_id = _task_id(future)
        if task_id is None:
            continue
        timings = {**(client.get_task(task_id).get("timings") or {}), "t_submit": t_submit, "t_result": t_result}
        for name, start, end in _HOPS:
            if timings.get(start) is not None and timings.get(end) is not None:
                per_hop[name].append(1e3 * (timings[end] - timings[start]))
    return {name: statistics.median(values) for name, values in per_hop.items() if values}


def run_faas_latency(adapter: Adapter, n: int, warmup: int, hop_samples: int = 50) -> Figures:
    """Time ``n`` sequential round trips of one no-op after ``warmup`` untimed ones.

    Args:
        adapter: a started library of the ``faas`` group.
        n: timed round trips.
        warmup: untimed ones first.
        hop_samples: round trips (the last ones) whose hops are read back from the service.

    Returns:
        ``p50_ms``, ``p95_ms``, ``p99_ms``, ``mean_ms``, ``max_ms``, and the hops' medians.
    """
    submit = adapter.app(tasks.noop)
    result = adapter.result
    for _ in range(warmup):
        result(submit())
    clock = time.perf_counter
    wall = time.time
    samples: list[float] = []
    kept: list[tuple[Any, float, float]] = []
    for i in range(n):
        w0 = wall()
        t0 = clock()
        future = submit()
        result(future)
        samples.append(clock() - t0)
        if i >= n - hop_samples:
            kept.append((future, w0, wall()))
    ms = sorted(1e3 * s for s in samples)
    figures = {
        "p50_ms": percentile(ms, 0.50),
        "p95_ms": percentile(ms, 0.95),
        "p99_ms": percentile(ms, 0.99),
        "mean_ms": mean(ms),
        "max_ms": ms[-1],
    }
    figures.update(_hop_figures(adapter, kept))
    return figures


def _plain_batch(adapter: Adapter, n: int) -> list[Any]:
    """What an adapter without its own batch idiom does: ``n`` submits, then every result."""
    submit = adapter.app(tasks.noop)
    return adapter.gather([submit() for _ in range(n)])


def _final_in_store(store: Any) -> int:
    counts = store.count_tasks()
    return sum(counts.get(state, 0) for state in ("success", "failed"))


def _killer(adapter: Any, n: int, out: dict[str, float], stop: threading.Event) -> threading.Thread:
    """A thread that SIGKILLs and restarts the service midway (``adapter.midway(n)``: what the client saw).

    Also recorded: how far the client (``client_done_at_kill``) and the service's store
    (``store_done_at_kill``, read through its own read-only connection) had come at the kill.
    """
    from parsl_lite.faas.service.store import open_store

    def run() -> None:
        store = open_store(adapter.stack.db)
        try:
            base = _final_in_store(store)   # the warm-up's tasks
            while not adapter.midway(n) and not stop.is_set():
                time.sleep(0.001)
            if stop.is_set():
                return
            out["client_done_at_kill"] = adapter.done_count / n
            out["store_done_at_kill"] = (_final_in_store(store) - base) / n
        finally:
            store.close()
        out["restart_s"] = adapter.restart_service()
    thread = threading.Thread(target=run, name="kill-service", daemon=True)
    thread.start()
    return thread


FAILURES_DIR = Path(tempfile.gettempdir()) / "faas-bench-failures"
"""Where the logs of a measurement that lost or failed tasks are copied (the run directory is removed)."""


def _keep_logs(adapter: Any, what: str) -> None:
    """Copy the service's and endpoints' logs of this measurement to :data:`FAILURES_DIR`, and say so."""
    stack = getattr(adapter, "stack", None)
    if stack is None:
        return
    target = FAILURES_DIR / f"{time.strftime('%Y%m%dT%H%M%S')}-{adapter.name}-{os.getpid()}"
    root = Path(stack.root)
    for log in [*root.glob("*.log"), *root.glob("service/*.log"), *root.glob("service/*.out"),
                *root.glob("home/endpoints/*/*.log"), *root.glob("home/endpoints/*/*.out")]:
        dest = target / log.relative_to(stack.root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(log, dest)
    (target / "what.txt").parent.mkdir(parents=True, exist_ok=True)
    (target / "what.txt").write_text(what + "\n")
    logger.warning("%s: %s; logs kept in %s", adapter.name, what, target)


def run_faas_throughput(adapter: Adapter, n: int, warmup: int, timeout_s: float, restarts: int = 0) -> Figures:
    """``n`` no-ops through the client's batch idiom; ``restarts=1``: the service SIGKILLed midway.

    Args:
        adapter: a started library of the ``faas`` group.
        restarts: 0, or 1 (kill -9 and restart the service once half the results are in).
        n: tasks.
        warmup: untimed tasks first (the same idiom).
        timeout_s: how long the batch may take before unfinished tasks count as lost.

    Returns:
        ``throughput_per_s`` (first submit -> last result), ``us_per_task``; with a restart also
        ``lost_tasks``, ``failed_tasks``, ``restart_s``, ``client_done_at_kill`` and
        ``store_done_at_kill`` (fractions of ``n``). An adapter that
        cannot restart a service (the htex reference) returns nothing for ``restarts=1``.
    """
    batch = getattr(adapter, "run_batch", None)
    if restarts and not hasattr(adapter, "restart_service"):
        logger.info("%s has no service to restart: faas_throughput restarts=%d skipped", adapter.name, restarts)
        return {}
    if batch is None:
        _plain_batch(adapter, warmup)
    else:
        batch(tasks.noop, warmup)
    if hasattr(adapter, "track_done"):   # only the killer reads done_count
        adapter.track_done = bool(restarts)
    killed: dict[str, float] = {}
    stop = threading.Event()
    thread = _killer(adapter, n, killed, stop) if restarts else None
    processes = {} if restarts else _processes(adapter)   # (a restart changes the service's pid)
    cpu0 = {kind: _cpu_s(procs) for kind, procs in processes.items()}
    client0 = time.process_time()
    t0 = time.perf_counter()
    outcomes = _plain_batch(adapter, n) if batch is None else batch(tasks.noop, n, timeout_s=timeout_s)
    elapsed = time.perf_counter() - t0
    client_cpu = time.process_time() - client0
    cpu = {kind: _cpu_s(procs) - cpu0[kind] for kind, procs in processes.items()}
    stop.set()
    if thread is not None:
        thread.join(60)
    lost = sum(o is faas_adapters.LOST for o in outcomes)
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    wrong = sum(o is not None for o in outcomes) - lost - len(failed)
    figures = {"throughput_per_s": n / elapsed, "us_per_task": 1e6 * elapsed / n, "total_s": elapsed,
               "lost_tasks": float(lost), "failed_tasks": float(len(failed)), "wrong_results": float(wrong)}
    for exc in failed:   # what they failed with, by type, in the record (figures are numbers)
        key = f"failed_{type(exc).__name__}"
        figures[key] = figures.get(key, 0.0) + 1.0
    if failed or lost:
        _keep_logs(adapter, f"{lost} lost, {len(failed)} failed" + (f", e.g. {failed[0]!r}" if failed else ""))
    if restarts:
        figures.update(killed)
        figures["unreachable_retries"] = float(getattr(adapter, "unreachable", 0))
    else:
        figures["client_cpu_us_per_task"] = 1e6 * client_cpu / n
        figures.update((f"{kind}_cpu_us_per_task", 1e6 * seconds / n) for kind, seconds in cpu.items())
    return figures


def _processes(adapter: Any) -> dict[str, list[Any]]:
    """The service process and the endpoint's processes (daemon, interchange, pool, workers; or the
    simulators) of a ``faas`` adapter, for CPU per task; the htex reference's interchange and pool."""
    import psutil
    stack = getattr(adapter, "stack", None)
    try:
        if stack is None:
            children = psutil.Process().children(recursive=True)
            return {"htex": children} if children else {}
        out = {"service": [psutil.Process(stack.pid)]}
        fleet = getattr(adapter, "fleet", None)
        if fleet is not None:
            out["endpoint"] = [psutil.Process(pid) for pid in fleet.pids()]
        else:
            daemon = psutil.Process(stack.endpoint_pid("bench"))
            out["endpoint"] = [daemon, *daemon.children(recursive=True)]
        return out
    except psutil.Error as exc:   # a process gone: no CPU figures rather than a failed measurement
        logger.warning("%s: no CPU figures (%s)", adapter.name, exc)
        return {}


def _cpu_s(procs: list[Any]) -> float:
    """User + system CPU seconds of ``procs`` (0 for one that has exited meanwhile)."""
    import psutil
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


class _RssSampler:
    """The peak RSS of one process, sampled every ``period_s`` in a thread."""

    def __init__(self, proc: Any, period_s: float = 0.05) -> None:
        self.proc, self.period_s, self.peak = proc, period_s, proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def run_faas_scale(adapter: Adapter, endpoints: int, n: int, idle_s: float, per_process: int = 25) -> Figures:
    """``n`` no-ops round robin over ``endpoints`` simulated endpoints of one service.

    Args:
        adapter: ``parsl_lite-faas-sim`` (any other adapter returns nothing).
        endpoints: simulated endpoints connected to the service (the adapter's first one included).
        n: tasks of the measured batch (after a warm-up of one task per endpoint).
        idle_s: seconds of heartbeats only, measured before the load.
        per_process: simulated endpoints per simulator process.

    Returns:
        ``dispatch_rate_per_s`` (first submit -> last result at the client),
        ``service_cpu_us_per_task``, ``service_cpu_pct``, ``service_rss_mib_peak``,
        ``service_rss_mib_idle``, ``idle_service_cpu_pct``, ``sim_cpu_pct``, ``connect_s``, and the
        check's counts (``lost_tasks``, ``failed_tasks``, ``unanswered``, ``unacked``).
    """
    import psutil
    if not hasattr(adapter, "add_endpoints"):
        logger.info("%s has no simulated endpoints: faas_scale skipped", adapter.name)
        return {}
    t0 = time.perf_counter()
    if endpoints > 1:
        adapter.add_endpoints(endpoints - 1, per_process=per_process)
    connect_s = time.perf_counter() - t0
    targets = list(adapter.endpoint_ids[:endpoints])
    service = psutil.Process(adapter.service_pid)
    sims = [psutil.Process(pid) for pid in adapter.fleet.pids()]
    adapter.run_batch(tasks.noop, len(targets), endpoint_ids=targets)   # every endpoint's first delivery
    before = adapter.fleet.stats()
    cpu0, w0 = _cpu_s([service]), time.perf_counter()
    time.sleep(idle_s)
    idle_cpu, idle_wall = _cpu_s([service]) - cpu0, time.perf_counter() - w0
    rss_idle = service.memory_info().rss
    cpu0, sim0 = _cpu_s([service]), _cpu_s(sims)
    with _RssSampler(service) as rss:
        t0 = time.perf_counter()
        outcomes = adapter.run_batch(tasks.noop, n, endpoint_ids=targets)
        elapsed = time.perf_counter() - t0
    cpu, sim_cpu = _cpu_s([service]) - cpu0, _cpu_s(sims) - sim0
    time.sleep(0.2)   # the last ResultsStored on its way to the simulators
    after = adapter.fleet.stats()
    mib = 1024.0 * 1024.0
    return {
        "dispatch_rate_per_s": n / elapsed,
        "service_cpu_us_per_task": 1e6 * cpu / n,
        "service_cpu_pct": 100.0 * cpu / elapsed,
        "service_rss_mib_peak": rss.peak / mib,
        "service_rss_mib_idle": rss_idle / mib,
        "idle_service_cpu_pct": 100.0 * idle_cpu / idle_wall,
        "sim_cpu_pct": 100.0 * sim_cpu / elapsed,
        "connect_s": connect_s,
        "sim_processes": float(len(sims)),
        "lost_tasks": float(sum(o is faas_adapters.LOST for o in outcomes)),
        "failed_tasks": float(sum(isinstance(o, BaseException) for o in outcomes)),
        "unanswered": float(n - (after["results_sent"] - before["results_sent"])),
        "unacked": float(after["unacked"]),
        "duplicates": float(after["duplicates"]),
        "refused": float(after["refused"]),
    }


FAAS_LATENCY = register_case(Case(
    name="faas_latency",
    run=run_faas_latency,
    sizes=(200,),
    fixed={"warmup": 50},
    executors=GROUPS,
    figures=(
        Figure("p50_ms", higher_is_better=False),
        Figure("p95_ms", higher_is_better=False),
        Figure("mean_ms", higher_is_better=False),
        *(Figure(name, higher_is_better=False) for name, _, _ in _HOPS),
    ),
))

FAAS_THROUGHPUT = register_case(Case(
    name="faas_throughput",
    run=run_faas_throughput,
    sizes=(10_000,),
    fixed={"warmup": 200, "timeout_s": 240.0},
    executors=GROUPS,
    timeout_s=420.0,
    figures=(
        Figure("throughput_per_s", higher_is_better=True),
        Figure("us_per_task", higher_is_better=False),
        Figure("lost_tasks", higher_is_better=False),
        Figure("failed_tasks", higher_is_better=False),
        Figure("client_cpu_us_per_task", higher_is_better=False),
        Figure("service_cpu_us_per_task", higher_is_better=False),
        Figure("endpoint_cpu_us_per_task", higher_is_better=False),
        Figure("htex_cpu_us_per_task", higher_is_better=False),
    ),
))

FAAS_RESTART = register_case(Case(
    name="faas_restart",
    run=run_faas_throughput,
    sizes=(10_000,),
    fixed={"warmup": 200, "timeout_s": 240.0, "restarts": 1},
    executors=GROUPS,
    timeout_s=420.0,
    figures=(
        Figure("throughput_per_s", higher_is_better=True),
        Figure("lost_tasks", higher_is_better=False),
        Figure("failed_tasks", higher_is_better=False),
        Figure("restart_s", higher_is_better=False),
        Figure("client_done_at_kill", higher_is_better=False),
        Figure("store_done_at_kill", higher_is_better=False),
    ),
))

FAAS_SCALE = register_case(Case(
    name="faas_scale",
    run=run_faas_scale,
    size_param="endpoints",
    sizes=(1, 100),
    fixed={"n": 10_000, "idle_s": 3.0},
    executors=GROUPS,
    timeout_s=420.0,
    figures=(
        Figure("dispatch_rate_per_s", higher_is_better=True),
        Figure("service_cpu_us_per_task", higher_is_better=False),
        Figure("service_rss_mib_peak", higher_is_better=False),
        Figure("service_rss_mib_idle", higher_is_better=False),
        Figure("idle_service_cpu_pct", higher_is_better=False),
        Figure("lost_tasks", higher_is_better=False),
    ),
))
