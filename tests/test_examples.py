"""The scripts in ``examples/`` run as a user runs them, on threads and on worker processes.

Each runs in a subprocess whose working directory is a fresh temporary one, so
its ``runinfo/`` and files land there; the timeouts only guard against a hang.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from .conftest import wait_for

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CONFIGS = {"threads": None, "htex": str(ROOT / "configs" / "local.toml")}


def run_example(name: str, cwd: Path, config: str | None, *flags: str) -> subprocess.CompletedProcess:
    words = [sys.executable, str(EXAMPLES / name), *flags] + ([config] if config else [])
    return subprocess.run(words, cwd=cwd, capture_output=True, text=True, timeout=60)


def last_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(params=sorted(CONFIGS))
def config(request) -> str | None:
    return CONFIGS[request.param]


def test_bash_pipeline_passes_files_from_app_to_app(tmp_path, config):
    line = last_line(run_example("bash_pipeline.py", tmp_path, config))
    assert line == "sum of squares over 3 files: 12710 (expected 12710)"
    assert (tmp_path / "runinfo" / "000" / "pipeline" / "squares_30.txt").read_text().split()[-1] == "900"


def test_join_app_fans_out_and_joins(tmp_path, config):
    result = run_example("join.py", tmp_path, config)
    assert last_line(result) == "sum of squares of 0..4: 30"
    assert "squares [0, 1, 4, 9, 16]" in result.stdout


def test_retries_recover_or_give_up_with_the_last_error(tmp_path, config):
    result = run_example("retries.py", tmp_path, config)
    assert last_line(result) == "attempts: recovers 3, gives up 3 (retries=2)"
    assert "recovers: succeeded on attempt 3" in result.stdout
    assert "gives up: RuntimeError: attempt 3 failed" in result.stdout


def processes_of(run_dir: Path) -> list[psutil.Process]:
    """Our processes whose command line or working directory is inside ``run_dir``'s parent."""
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        words = " ".join(proc.info["cmdline"] or ())
        if "parsl_lite" in words and (str(run_dir) in words or (proc.info["cwd"] or "") == str(run_dir.parent)):
            found.append(proc)
    return found


def test_checkpointed_rerun_after_a_crash_skips_what_finished(tmp_path, config):
    crashed = run_example("checkpoint_rerun.py", tmp_path, config, "--crash")
    assert crashed.returncode == 3, crashed.stderr
    assert crashed.stdout.strip() == "crashing after stage 1: 6 tasks finished"
    assert (tmp_path / "runinfo" / "000" / "checkpoint").is_dir()
    wait_for(lambda: not processes_of(tmp_path / "runinfo"), timeout_s=30,
             what="the crashed run's interchange and workers to exit")

    rerun = last_line(run_example("checkpoint_rerun.py", tmp_path, config))
    summary, counts = rerun.split(": ")
    assert counts == "7 tasks ran, 6 came from the checkpoint"          # stage 1's six were not run again

    again = last_line(run_example("checkpoint_rerun.py", tmp_path, config))
    assert again == f"{summary}: 0 tasks ran, 13 came from the checkpoint"   # same result, nothing ran
