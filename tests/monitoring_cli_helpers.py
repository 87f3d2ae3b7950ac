"""(No tests here.) What the monitoring CLI and report tests share: a real monitored workflow script, and the CLI as a subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import wait_for

WORKFLOW = textwrap.dedent('''
    """A monitored workflow: MODE ok (squares, one division by zero), clean (squares), hold (tasks until ./stop exists),
    kill (tasks, then READY and a long sleep).
    On htex each square sleeps 0.1 s, so that the pool's workers are sampled (CPU, RSS) meanwhile."""
    import os, sys, time
    import parsl_lite
    from parsl_lite import python_app
    from parsl_lite.config import Config
    from parsl_lite.executors import HighThroughputExecutor, ThreadPoolExecutor
    from parsl_lite.monitoring import MonitoringHub
    from parsl_lite.providers import LocalProvider

    @python_app
    def square(x, sleep_s=0.0):
        import time
        time.sleep(sleep_s)
        return x * x

    @python_app
    def divide(x):
        return 1 / x

    mode, executor, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if executor == "htex":
        ex = HighThroughputExecutor(label="htex", max_workers_per_node=2, heartbeat_period=1,
                                    provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))
    else:
        ex = ThreadPoolExecutor(label="threads", max_threads=2)
    hub = MonitoringHub(resource_monitoring_interval=0.2, heartbeat_period=1.0,
                        logging_endpoint=os.environ.get("MON_URL") or None)
    with parsl_lite.load(Config(executors=[ex], strategy="none", monitoring=hub)) as dfk:
        print("RUN", dfk.run_id, flush=True)
        total = failed = 0
        while True:
            futures = [square(i, 0.1 if executor == "htex" else 0.0) for i in range(n)] + ([] if mode == "clean" else [divide(i) for i in (-1, 0, 1)])
            total += len(futures)
            failed += sum(1 for f in futures if f.exception() is not None)
            if mode != "hold" or os.path.exists("stop") or total > 10 ** 6:
                break
            time.sleep(0.02)   # hold: a steady trickle of writes until the test says stop
        print("TASKS", total, "FAILED", failed, flush=True)
        if mode == "kill":
            print("READY", flush=True)
            time.sleep(600)
''')


def write_workflow(directory: Path) -> Path:
    script = directory / "wf.py"
    script.write_text(WORKFLOW)
    return script


def env(store_url: str = "") -> dict:
    """This checkout first on the path; PARSL_LITE_HOME is the test's (set by the test's monkeypatch).

    ``store_url``: the workflow's ``logging_endpoint`` (empty: the default, ``runinfo/monitoring.db``).
    """
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""), "COLUMNS": "160",
            "MON_URL": store_url}


def run_workflow(directory: Path, mode: str = "ok", executor: str = "threads", n: int = 20,
                 store_url: str = "") -> dict:
    """Run the workflow to its end in ``directory``; its run id and task counts."""
    script = write_workflow(directory)
    done = subprocess.run([sys.executable, str(script), mode, executor, str(n)], cwd=directory,
                          env=env(store_url), capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stderr
    return parse_output(done.stdout)


def start_workflow(directory: Path, mode: str, executor: str = "threads", n: int = 20,
                   store_url: str = "") -> subprocess.Popen:
    script = write_workflow(directory)
    return subprocess.Popen([sys.executable, str(script), mode, executor, str(n)], cwd=directory,
                            env=env(store_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until_ready(proc: subprocess.Popen) -> dict:
    """Read a ``kill``-mode workflow's output up to READY; its run id and task counts."""
    lines: list[str] = []
    wait_for(lambda: lines.append(proc.stdout.readline()) or "READY" in lines[-1] or proc.poll() is not None,
             40, "the run to be ready")
    assert "READY" in lines[-1], "".join(lines) + proc.stderr.read()
    return parse_output("".join(lines))


def parse_output(stdout: str) -> dict:
    facts: dict = {}
    for line in stdout.splitlines():
        words = line.split()
        if words[:1] == ["RUN"]:
            facts["run_id"] = words[1]
        elif words[:1] == ["TASKS"]:
            facts["tasks"], facts["failed"] = int(words[1]), int(words[3])
    return facts


def cli(directory: Path, *args: str, timeout: float = 50) -> subprocess.CompletedProcess:
    """``parsl-lite ARGS`` in ``directory``, as a user types it."""
    return subprocess.run([sys.executable, "-m", "parsl_lite.cli", *args], cwd=directory, env=env(),
                          capture_output=True, text=True, timeout=timeout)


def status_json(directory: Path, *args: str) -> tuple[int, dict]:
    done = cli(directory, "status", "--json", *args)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)
