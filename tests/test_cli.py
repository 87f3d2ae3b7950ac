"""The ``parsl-lite`` console script, run as a real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "parsl_lite.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_config_check_prints_the_config():
    result = run("config", "configs/threads.toml")
    assert result.returncode == 0, result.stderr
    assert "ThreadPoolExecutor(" in result.stdout


def test_config_check_names_the_bad_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[executors]]\ntype = "ThreadPoolExecutor"\nmax_thread = 2\n')
    result = run("config", str(bad))
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "max_thread" in result.stderr


def test_run_loads_a_config_before_the_script(tmp_path):
    script = tmp_path / "wf.py"
    script.write_text("from parsl_lite import python_app\n"
                      "@python_app\ndef f(x):\n    return x * 2\n"
                      "print('answer', f(21).result())\n")
    result = run("run", str(script), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "answer 42" in result.stdout


def test_the_pi_example_runs():
    result = subprocess.run([sys.executable, "pi.py"], cwd=os.path.join(ROOT, "examples"), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    value = float(result.stdout.strip().split()[-1])
    assert 3.0 < value < 3.3
