"""Our ``status`` and ``report`` read a store written by Parsl itself (Parsl 2026.10.26 in its own venv)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

from .monitoring_cli_helpers import cli, status_json

PARSL_PYTHON = Path(__file__).resolve().parents[1] / ".venv-parsl" / "bin" / "python"

PARSL_WORKFLOW = textwrap.dedent('''
    import parsl
    from parsl import python_app
    from parsl.config import Config
    from parsl.executors import ThreadPoolExecutor
    from parsl.monitoring import MonitoringHub

    @python_app
    def square(x):
        return x * x

    @python_app
    def divide(x):
        return 1 / x

    def main():
        config = Config(executors=[ThreadPoolExecutor(label="threads", max_threads=2)],
                        monitoring=MonitoringHub(resource_monitoring_interval=1))
        with parsl.load(config) as dfk:
            futures = [square(i) for i in range(10)] + [divide(0)]
            failed = sum(1 for f in futures if f.exception() is not None)
            print("RUN", dfk.run_id, "FAILED", failed, flush=True)

    if __name__ == "__main__":   # Parsl's monitoring starts its database manager with spawn
        main()
''')


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))


def test_status_and_report_read_a_store_parsl_wrote(tmp_path):
    assert PARSL_PYTHON.exists(), "Parsl's venv (make install-test)"
    (tmp_path / "pwf.py").write_text(PARSL_WORKFLOW)
    done = subprocess.run([str(PARSL_PYTHON), "pwf.py"], cwd=tmp_path, capture_output=True, text=True, timeout=50,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.split()[1]
    code, listing = status_json(tmp_path)   # Parsl's default store, found as parsl-visualize finds it
    (run,) = listing["runs"]
    assert run["run_id"] == run_id and run["state"] == "failed"   # Parsl's run: no pl_run row, ended by time_completed
    assert run["counts"]["exec_done"] == 10 and run["counts"]["failed"] == 1
    one = cli(tmp_path, "status", run_id)
    assert one.returncode == 1 and "division by zero" in one.stdout   # the error from Parsl's fail history
    report = cli(tmp_path, "report", "000", "-o", "parsl.html")
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "parsl.html").read_text()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
    assert len(data["stream"]["s"]) == 11 and sorted(data["stream"]["apps"]) == ["divide", "square"]
