"""The ``parsl-lite`` console script, run as a real subprocess."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

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


LABELS_SCRIPT = ("import sys\nimport parsl_lite\nfrom parsl_lite import python_app\n"
                 "@python_app\ndef f(x):\n    return x * 2\n"
                 "{load}"
                 "print('labels', list(parsl_lite.dfk().executors), 'argv', sys.argv[1:])\n"
                 "print('answer', f(21).result())\n")


def write_config(tmp_path, label="from_cli"):
    path = tmp_path / "cli.toml"
    path.write_text(f'strategy = "none"\n[[executors]]\ntype = "ThreadPoolExecutor"\nlabel = "{label}"\n')
    return str(path)


@pytest.mark.parametrize("order", ["config_first", "script_first"])
def test_run_honours_config_before_or_after_the_script(tmp_path, order):
    script = tmp_path / "wf.py"
    script.write_text(LABELS_SCRIPT.format(load=""))
    config = write_config(tmp_path)
    words = (["--config", config, str(script)] if order == "config_first" else [str(script), "--config", config])
    result = run("run", *words, "-n", "3", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "labels ['from_cli'] argv ['-n', '3']" in result.stdout
    assert "answer 42" in result.stdout


def test_run_passes_everything_after_a_double_dash_to_the_script(tmp_path):
    script = tmp_path / "wf.py"
    script.write_text(LABELS_SCRIPT.format(load=""))
    result = run("run", str(script), "--config", write_config(tmp_path), "--", "--config", "x", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "labels ['from_cli'] argv ['--config', 'x']" in result.stdout


def test_run_a_script_that_loads_its_own_config(tmp_path):
    script = tmp_path / "wf.py"
    own = write_config(tmp_path, label="the_scripts")
    script.write_text(LABELS_SCRIPT.format(load=f"parsl_lite.load({own!r})\n"))
    result = run("run", str(script), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "labels ['the_scripts']" in result.stdout


def test_with_config_the_clis_config_wins_over_the_scripts_load(tmp_path):
    script = tmp_path / "wf.py"
    script.write_text(LABELS_SCRIPT.format(
        load="from parsl_lite.configs.local_threads import config\nparsl_lite.load(config)\n"))
    result = run("run", str(script), "--config", write_config(tmp_path), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "labels ['from_cli']" in result.stdout
    assert "instead of the config the script passed to load()" in result.stderr


@pytest.mark.parametrize("config", [None, "configs/threads.toml"])
def test_the_pi_example_runs_under_parsl_lite_run(config):
    words = ["run", "examples/pi.py"] + (["--config", config] if config else [])
    result = run(*words)
    assert result.returncode == 0, result.stderr
    assert 3.0 < float(result.stdout.strip().split()[-1]) < 3.3


def test_run_a_missing_script_says_so_without_a_traceback(tmp_path):
    result = run("run", "missing.py", cwd=str(tmp_path))
    assert result.returncode == 2
    assert "missing.py" in result.stderr and "no such file" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_with_a_bad_config_says_so_before_the_script_runs(tmp_path):
    script = tmp_path / "wf.py"
    script.write_text("print('ran')\n")
    result = run("run", str(script), "--config", "nope.toml", cwd=str(tmp_path))
    assert result.returncode == 2 and "nope.toml" in result.stderr and "Traceback" not in result.stderr
    assert "ran" not in result.stdout


def test_a_failing_script_shows_its_traceback_and_exits_1(tmp_path):
    script = tmp_path / "wf.py"
    script.write_text("def inner():\n    raise ValueError('boom')\ninner()\n")
    result = run("run", str(script), cwd=str(tmp_path))
    assert result.returncode == 1
    assert "ValueError: boom" in result.stderr and 'wf.py", line 2, in inner' in result.stderr
    assert "runpy" not in result.stderr  # the script's frames, not the CLI's


def test_sys_exit_in_the_script_is_the_exit_code(tmp_path):
    script = tmp_path / "wf.py"
    script.write_text("import sys\nimport parsl_lite\nparsl_lite.load()\nsys.exit(3)\n")
    result = run("run", str(script), cwd=str(tmp_path))
    assert result.returncode == 3, result.stderr
