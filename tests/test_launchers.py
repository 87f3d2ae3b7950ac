"""Launchers build shell text; these tests run that text with bash (srun is faked on PATH)."""
from __future__ import annotations

import os
import stat
import subprocess

import pytest
from typeguard import TypeCheckError

import parsl_lite.launchers as launchers
from parsl_lite.launchers import Launcher, SimpleLauncher, SingleNodeLauncher, SrunLauncher, WrappedLauncher
from parsl_lite.launchers.errors import LauncherError


def run_bash(script: str, cwd, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(["/bin/bash", "-c", script], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=30)


def rank_files(directory) -> dict[str, str]:
    return {p.name: p.read_text().strip() for p in directory.iterdir() if p.name.startswith("rank")}


RECORD_RANK = 'echo "$PARSL_LAUNCHER_COUNT $CORES" > "rank$PARSL_LAUNCHER_RANK"'


def test_simple_launcher_returns_the_command_unchanged(tmp_path):
    command = 'echo "a b" > out; echo $((1 + 2)) >> out'
    wrapped = SimpleLauncher()(command, 1, 1)
    assert wrapped == command
    assert run_bash(wrapped, tmp_path).returncode == 0
    assert (tmp_path / "out").read_text() == "a b\n3\n"


def test_wrapped_launcher_prepends(tmp_path):
    wrapped = WrappedLauncher(prepend="env FOO=bar")("sh -c 'echo $FOO > out'", 1, 1)
    assert run_bash(wrapped, tmp_path).returncode == 0
    assert (tmp_path / "out").read_text() == "bar\n"


def test_single_node_starts_one_copy_per_slot_with_rank_and_count(tmp_path):
    wrapped = SingleNodeLauncher(debug=False)(RECORD_RANK, tasks_per_node=3, nodes_per_block=2)
    result = run_bash(wrapped, tmp_path)
    assert result.returncode == 0, result.stderr
    files = rank_files(tmp_path)
    assert sorted(files) == [f"rank{i}" for i in range(6)]
    counts = {value.split()[0] for value in files.values()}
    cores = {value.split()[1] for value in files.values()}
    assert counts == {"6"}
    assert cores == {str(os.cpu_count())}


def test_single_node_keeps_a_multiline_command_with_quotes_intact(tmp_path):
    command = 'X="it\'s $PARSL_LAUNCHER_RANK"\nif true; then\n  echo "$X" > "out$PARSL_LAUNCHER_RANK"\nfi'
    result = run_bash(SingleNodeLauncher(debug=False)(command, 2, 1), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out0").read_text() == "it's 0\n"
    assert (tmp_path / "out1").read_text() == "it's 1\n"


def test_single_node_debug_reports_cores_and_copies(tmp_path):
    result = run_bash(SingleNodeLauncher()("true", 2, 1), tmp_path)
    assert f"{os.cpu_count()} cores, starting 2 copies" in result.stdout
    assert "all copies done, 0 failed" in result.stdout


FAIL_RANK_1 = '[[ $PARSL_LAUNCHER_RANK == 1 ]] && exit 7; exit 0'


def test_single_node_by_default_fails_only_if_every_copy_failed(tmp_path):
    assert run_bash(SingleNodeLauncher(debug=False)(FAIL_RANK_1, 3, 1), tmp_path).returncode == 0
    everyone_fails = 'exit $((5 + PARSL_LAUNCHER_RANK))'
    assert run_bash(SingleNodeLauncher(debug=False)(everyone_fails, 3, 1), tmp_path).returncode == 5


def test_single_node_fail_on_any_reports_the_failing_copys_exit_code(tmp_path):
    launcher = SingleNodeLauncher(debug=False, fail_on_any=True)
    assert run_bash(launcher(FAIL_RANK_1, 3, 1), tmp_path).returncode == 7
    assert run_bash(launcher("exit 0", 3, 1), tmp_path).returncode == 0


FAKE_SRUN = """#!/bin/bash
# A stand-in for srun: records its options, then runs 'bash -c CMD' once per task.
echo "$@" > "$SRUN_LOG"
ntasks=1
while [[ $1 == -* ]]; do
    case $1 in --ntasks=*) ntasks=${1#--ntasks=} ;; esac
    shift
done
for (( i = 0; i < ntasks; i++ )); do SLURM_PROCID=$i SLURM_NTASKS=$ntasks "$@" & done
wait
"""


@pytest.fixture
def fake_srun(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = bin_dir / "srun"
    srun.write_text(FAKE_SRUN)
    srun.chmod(srun.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SRUN_LOG": str(tmp_path / "srun.log"),
            "SLURM_CPUS_ON_NODE": "16", "SLURM_JOB_NUM_NODES": "2"}


def test_srun_launcher_command_line():
    text = SrunLauncher(overrides="--exclusive --mpi=none")("worker --port 5 'quoted arg'", 4, 2)
    srun_line = [line for line in text.splitlines() if line.startswith("srun ")]
    assert len(srun_line) == 1
    assert srun_line[0].startswith("srun --ntasks=8 --ntasks-per-node=4 -l --exclusive --mpi=none bash -c ")
    assert "export CORES=$SLURM_CPUS_ON_NODE" in text


def test_srun_launcher_passes_the_command_through_intact(tmp_path, fake_srun):
    command = 'echo "$PARSL_LAUNCHER_COUNT $CORES" > "rank$PARSL_LAUNCHER_RANK"'
    result = run_bash(SrunLauncher(debug=False, overrides="--exclusive")(command, 2, 2), tmp_path, fake_srun)
    assert result.returncode == 0, result.stderr
    assert rank_files(tmp_path) == {f"rank{i}": "4 16" for i in range(4)}
    assert (tmp_path / "srun.log").read_text().startswith("--ntasks=4 --ntasks-per-node=2 -l --exclusive bash -c")


@pytest.mark.parametrize("launcher", [SimpleLauncher(), SingleNodeLauncher(), SrunLauncher(), WrappedLauncher("x")])
@pytest.mark.parametrize("command, tasks, nodes", [("", 1, 1), ("  \n", 1, 1), ("true", 0, 1), ("true", 1, 0)])
def test_launchers_refuse_empty_commands_and_counts_below_one(launcher, command, tasks, nodes):
    with pytest.raises(LauncherError) as info:
        launcher(command, tasks, nodes)
    assert type(launcher).__name__ in str(info.value)


def test_wrong_parameter_types_are_named():
    with pytest.raises(TypeCheckError, match='"overrides"'):
        SrunLauncher(overrides=3)
    with pytest.raises(TypeCheckError, match='"fail_on_any"'):
        SingleNodeLauncher(fail_on_any="yes")


def test_repr_equality_and_exports():
    assert repr(SrunLauncher(overrides="-x")) == "SrunLauncher(overrides='-x')"
    assert repr(SingleNodeLauncher()) == "SingleNodeLauncher()"
    assert SingleNodeLauncher() == SingleNodeLauncher()
    assert SingleNodeLauncher() != SingleNodeLauncher(fail_on_any=True)
    assert len({SingleNodeLauncher(), SingleNodeLauncher()}) == 1
    for name in ("SimpleLauncher", "SingleNodeLauncher", "SrunLauncher", "WrappedLauncher"):
        assert issubclass(getattr(launchers, name), Launcher)
