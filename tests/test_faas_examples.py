"""The scripts in ``examples/faas/`` run as a user runs them, against a real service and two real endpoints.

Each runs in a subprocess (its functions live in its ``__main__``, so they
travel by value) with ``PARSL_LITE_HOME`` pointing at the fabric's home, where
the admin's client.json is; the endpoint ids come from the command line or
``PARSL_LITE_FAAS_ENDPOINT`` / ``PARSL_LITE_FAAS_ENDPOINT_2``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from parsl_lite.faas import paths

from .test_faas_sdk_e2e import running_fabric

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "faas"


@pytest.fixture(scope="module")
def fabric(tmp_path_factory):
    with running_fabric(tmp_path_factory.mktemp("faas-examples"), endpoints=2, workers=1) as built:
        yield built


def run_example(fabric, tmp_path: Path, name: str, *args: str, use_env: bool = False) -> str:
    env = {**os.environ, paths.HOME_ENV: str(fabric.home)}
    env.pop(paths.URL_ENV, None)
    env.pop(paths.TOKEN_ENV, None)
    ids = [e.endpoint_id for e in fabric.endpoints]
    if use_env:
        env["PARSL_LITE_FAAS_ENDPOINT"], env["PARSL_LITE_FAAS_ENDPOINT_2"] = ids
        words = list(args)
    else:
        words = [ids[0], *args] if name != "two_endpoints.py" else [*ids, *args]
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *words], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_sum(fabric, tmp_path):
    assert run_example(fabric, tmp_path, "sum.py", "10").strip().splitlines()[-1] == "sum of 1..10 = 55"


def test_polling_loop_sees_task_pending(fabric, tmp_path):
    out = run_example(fabric, tmp_path, "polling.py", "0.5")
    assert "Task is pending due to" in out
    assert out.strip().splitlines()[-1].endswith("result: 42")


def test_asyncio_await(fabric, tmp_path):
    out = run_example(fabric, tmp_path, "asyncio_await.py", "5")
    assert "await fxc.run(7) -> 49" in out
    assert out.strip().splitlines()[-1] == "sum of squares of 0..4 = 30"


def test_executor_batch_timed(fabric, tmp_path):
    out = run_example(fabric, tmp_path, "executor_batch.py", "50")
    assert re.search(r"submitted 50 tasks in [\d.]+ ms; all 50 results in [\d.]+ s", out), out
    assert out.strip().splitlines()[-1] == f"sum of cubes of 0..49 = {sum(i ** 3 for i in range(50))}"


def test_two_endpoints_get_tasks_each(fabric, tmp_path):
    out = run_example(fabric, tmp_path, "two_endpoints.py", use_env=True)
    first, second = (e.endpoint_id for e in fabric.endpoints)
    assert out.strip().splitlines()[-1] == f"tasks per endpoint: {first}=2, {second}=2"
    assert out.count(f"on endpoint {first}") == 2 and out.count(f"on endpoint {second}") == 2
