"""How long ``parsl-lite report`` takes on a 100,000-task run (goal: <= 5 s, issue 12).

``python -m benchmarks.monitoring_report`` runs a real monitored workflow of ``--tasks`` no-op apps
on the local htex (2 workers, ``MonitoringHub`` with its defaults, SQLite store), then times
``parsl-lite report RUN -o report.html`` as a user runs it (a fresh process each time: interpreter
start, queries, HTML) ``--repeats`` times, and prints the wall and CPU time of each, their medians,
the store's size and the page's size. ``--store URL`` reports on an existing store instead (its
latest run). The machine is shared: the load average is printed beside the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKFLOW = textwrap.dedent('''
    import sys
    import parsl_lite
    from parsl_lite import python_app
    from parsl_lite.config import Config
    from parsl_lite.executors import HighThroughputExecutor
    from parsl_lite.monitoring import MonitoringHub
    from parsl_lite.providers import LocalProvider

    @python_app
    def noop():
        return None

    ex = HighThroughputExecutor(label="htex_local", max_workers_per_node=2,
                                provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))
    with parsl_lite.load(Config(executors=[ex], strategy="none", monitoring=MonitoringHub())) as dfk:
        futures = [noop() for _ in range(int(sys.argv[1]))]
        for f in futures:
            f.result()
        print(dfk.run_id)
''')


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def make_store(directory: Path, tasks: int) -> tuple[str, str, float]:
    """Run the workflow in ``directory``; (store URL, run id, seconds it took)."""
    script = directory / "noops.py"
    script.write_text(WORKFLOW)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), str(tasks)], cwd=directory, env=_env(),
                          capture_output=True, text=True, timeout=3600, check=True)
    took = time.perf_counter() - started
    return "sqlite:///" + str(directory / "runinfo" / "monitoring.db"), done.stdout.split()[-1], took


def time_report(url: str, run_id: str, output: Path) -> tuple[float, float]:
    """One ``parsl-lite report`` in a fresh process: (wall s, CPU s of that process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "parsl_lite.cli", "report", run_id, "--db", url, "-o", str(output)],
                   env=_env(), check=True, capture_output=True, timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.monitoring_report", description=__doc__)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", metavar="URL", help="an existing store (its latest run) instead of a new run")
    parser.add_argument("--keep", metavar="DIR", help="make the run in DIR and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="monitoring_report-") as tmp:
        directory = Path(args.keep or tmp)
        directory.mkdir(parents=True, exist_ok=True)
        if args.store:
            url = args.store
            run_id = json.loads(subprocess.run([sys.executable, "-m", "parsl_lite.cli", "status", "--json", "--db",
                                                url], env=_env(), capture_output=True, text=True).stdout)
            run_id = run_id["runs"][-1]["run_id"]
            print(f"store {url}, run {run_id}")
        else:
            url, run_id, took = make_store(directory, args.tasks)
            print(f"workflow: {args.tasks} monitored no-ops on htex in {took:.1f} s ({args.tasks / took:.0f} tasks/s)")
        path = url.split("sqlite:///", 1)[-1]
        if os.path.exists(path):
            print(f"store: {os.path.getsize(path) / 1e6:.1f} MB")
        output = directory / "report.html"
        walls, cpus = [], []
        for i in range(args.repeats):
            load = os.getloadavg()[0]
            wall, cpu = time_report(url, run_id, output)
            walls.append(wall)
            cpus.append(cpu)
            print(f"report {i + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU (load average {load:.1f})")
        print(f"report: median {statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU; "
              f"page {output.stat().st_size / 1e6:.1f} MB; goal <= 5 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
