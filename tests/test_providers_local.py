"""LocalProvider against real processes, and the checks every provider shares."""
from __future__ import annotations

import inspect
import os
import signal

import psutil
import pytest
from typeguard import TypeCheckError

from parsl_lite.errors import ConfigurationError, ParslError
from parsl_lite.launchers import SimpleLauncher, SingleNodeLauncher
from parsl_lite.providers import TERMINAL_STATES, ExecutionProvider, JobState, JobStatus, LocalProvider
from parsl_lite.providers.base import read_tail, seconds_to_walltime, walltime_to_seconds
from parsl_lite.providers.errors import ProviderError, ScriptWriteError, UnknownJob

from .conftest import wait_for


def state_of(provider, job_id):
    return provider.status([job_id])[0].state


def live_group_members(pgid: int) -> list[psutil.Process]:
    """Processes of a group that are not zombies (PID 1 may be slow to reap orphans)."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process)
        except OSError:
            pass
    return members


@pytest.fixture
def provider(tmp_path):
    """A LocalProvider writing into tmp_path; every job it started is gone after the test."""
    made = []

    def _make(**kwargs):
        p = LocalProvider(**kwargs)
        p.script_dir = str(tmp_path / "submit_scripts")
        made.append(p)
        return p

    yield _make
    for p in made:
        jobs = list(p._jobs.values())
        p.cancel([job.job_id for job in jobs])
        for job in jobs:
            wait_for(lambda: not live_group_members(job.process.pid))


# --- validation, shared by every provider through ExecutionProvider.__init__ ---

@pytest.mark.parametrize("kwargs, field", [
    ({"min_blocks": 3, "max_blocks": 2}, "max_blocks"),
    ({"init_blocks": 3, "max_blocks": 2}, "init_blocks"),
    ({"min_blocks": -1}, "min_blocks"),
    ({"init_blocks": -1}, "init_blocks"),
    ({"nodes_per_block": 0}, "nodes_per_block"),
    ({"parallelism": 1.5}, "parallelism"),
    ({"parallelism": -0.1}, "parallelism"),
    ({"walltime": "1h"}, "walltime"),
    ({"walltime": "00:61:00"}, "walltime"),
    ({"walltime": "00:00:00"}, "walltime"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigurationError) as info:
        LocalProvider(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(field)


@pytest.mark.parametrize("kwargs, name", [
    ({"min_blocks": "2"}, "min_blocks"),
    ({"launcher": "SingleNodeLauncher"}, "launcher"),
    ({"worker_init": None}, "worker_init"),
    ({"parallelism": "1"}, "parallelism"),
    ({"walltime": 60}, "walltime"),
])
def test_wrong_types_name_the_parameter(kwargs, name):
    with pytest.raises(TypeCheckError, match=f'"{name}"'):
        LocalProvider(**kwargs)


def test_init_blocks_below_min_blocks_is_accepted_with_a_warning(caplog):
    provider = LocalProvider(init_blocks=0, min_blocks=1, max_blocks=2)
    assert provider.init_blocks == 0
    assert "below min_blocks" in caplog.text


def test_accepts_every_parameter_of_parsl_local_provider():
    # Parsl 2026.10's LocalProvider, plus channel and move_files from older releases.
    parsl_parameters = {"nodes_per_block", "launcher", "init_blocks", "min_blocks", "max_blocks", "worker_init",
                        "cmd_timeout", "parallelism", "channel", "move_files"}
    assert parsl_parameters <= set(inspect.signature(LocalProvider).parameters)
    provider = LocalProvider(nodes_per_block=1, launcher=SingleNodeLauncher(), init_blocks=1, min_blocks=0,
                             max_blocks=4, worker_init="", cmd_timeout=30, parallelism=0.5,
                             channel=object(), move_files=False)
    assert (provider.max_blocks, provider.parallelism, provider.label) == (4, 0.5, "local")
    assert provider.cores_per_node is None and provider.mem_per_node is None and provider.script_dir is None
    assert repr(LocalProvider(max_blocks=3)) == "LocalProvider(max_blocks=3)"


def test_walltime_helpers():
    assert walltime_to_seconds("01:02:03") == 3723
    assert walltime_to_seconds("48:00:00") == 48 * 3600
    assert walltime_to_seconds(" 0:0:5 ") == 5
    for bad in ("", "10", "01:00", "a:b:c", "01:00:60", "-1:00:00"):
        with pytest.raises(ValueError):
            walltime_to_seconds(bad)
    assert seconds_to_walltime(3723) == "01:02:03"
    assert seconds_to_walltime(0.2) == "00:00:01"
    assert walltime_to_seconds(seconds_to_walltime(100 * 3600 + 59)) == 100 * 3600 + 59


def test_job_states_match_parsl():
    assert [s.name for s in JobState] == ["UNKNOWN", "PENDING", "RUNNING", "CANCELLED", "COMPLETED", "FAILED",
                                          "TIMEOUT", "HELD", "MISSING", "SCALED_IN"]
    assert [s.value for s in JobState] == list(range(10))
    assert {s for s in JobState if s.terminal} == TERMINAL_STATES
    assert not JobStatus(JobState.RUNNING).terminal and JobStatus(JobState.TIMEOUT).terminal
    assert str(JobStatus(JobState.FAILED, "boom")) == "JobState.FAILED (boom)"
    assert issubclass(ProviderError, ParslError)


def test_read_tail_keeps_the_end(tmp_path):
    path = tmp_path / "err"
    path.write_text("x" * 5000 + "the end")
    assert read_tail(str(path), 100).endswith("the end")
    assert read_tail(str(path), 100).startswith("...")
    assert read_tail(str(tmp_path / "missing")) is None
    assert JobStatus(JobState.FAILED, stderr_path=str(path)).stderr_summary.endswith("the end")


# --- jobs ---

def test_job_runs_worker_init_first_and_completes(provider, tmp_path):
    out = tmp_path / "greeting"
    p = provider(worker_init="export GREETING=hello\ncd /", launcher=SimpleLauncher())
    job_id = p.submit(f'echo "$GREETING from $JOBNAME in $PWD" > {out}', 1, job_name="parsl.test.block-0")
    status = wait_for(lambda: (s := p.status([job_id])[0]).terminal and s)
    assert status.state is JobState.COMPLETED and status.exit_code == 0
    assert out.read_text() == "hello from parsl.test.block-0 in /\n"
    files = sorted(os.listdir(p.script_dir))
    assert [f.rsplit(".", 1)[1] for f in files] == ["err", "out", "sh"]
    assert all(f.startswith("parsl.test.block-0.") for f in files)
    assert p.status([job_id]) == [status]  # final states never change


def test_running_job_then_status_of_many_in_order(provider):
    p = provider(launcher=SimpleLauncher())
    slow, quick = p.submit("sleep 30", 1), p.submit("exit 0", 1)
    wait_for(lambda: state_of(p, quick) is JobState.COMPLETED)
    assert [s.state for s in p.status([slow, quick, slow])] == [JobState.RUNNING, JobState.COMPLETED,
                                                               JobState.RUNNING]


def test_failing_job_reports_exit_code_and_stderr(provider):
    p = provider(launcher=SimpleLauncher())
    job_id = p.submit("echo 'cannot import worker' >&2; exit 3", 1)
    status = wait_for(lambda: (s := p.status([job_id])[0]).terminal and s)
    assert status.state is JobState.FAILED
    assert status.exit_code == 3
    assert "exit code 3" in status.message and "cannot import worker" in status.message
    assert "cannot import worker" in status.stderr_summary


def test_job_killed_from_outside_is_failed_naming_the_signal(provider):
    p = provider()
    job_id = p.submit("sleep 30", 2)
    pid = p._jobs[job_id].process.pid
    os.kill(pid, signal.SIGKILL)  # only the job's bash, as an OOM killer would
    status = wait_for(lambda: (s := p.status([job_id])[0]).terminal and s)
    assert status.state is JobState.FAILED and "SIGKILL" in status.message
    wait_for(lambda: not live_group_members(pid))  # its orphaned workers are stopped too


def test_cancel_stops_the_whole_group_including_grandchildren(provider):
    p = provider()
    job_id = p.submit("sleep 300 & sleep 300 & wait", 2)  # bash -> 2 copies -> 2 sleeps each
    leader = psutil.Process(p._jobs[job_id].process.pid)
    # forked children are named bash until they exec sleep: wait for the four sleeps themselves
    def four_sleeps():
        children = leader.children(recursive=True)
        return children if sum(_name(d) == "sleep" for d in children) == 4 else None

    descendants = wait_for(four_sleeps)
    assert sum(_name(d) == "sleep" for d in descendants) == 4
    assert p.cancel([job_id]) == [True]
    assert state_of(p, job_id) is JobState.CANCELLED
    wait_for(lambda: not live_group_members(leader.pid))
    assert state_of(p, job_id) is JobState.CANCELLED


def test_cancel_escalates_to_sigkill_after_the_grace_period(provider):
    p = provider(launcher=SimpleLauncher())
    p.cancel_grace_s = 0.2
    job_id = p.submit("trap '' TERM; sleep 300 & wait", 1)
    pid = p._jobs[job_id].process.pid
    wait_for(lambda: any(c.name() == "sleep" for c in psutil.Process(pid).children()))
    p.cancel([job_id])
    wait_for(lambda: not live_group_members(pid))
    assert state_of(p, job_id) is JobState.CANCELLED


def test_cancel_of_an_ended_job_keeps_its_status(provider):
    p = provider(launcher=SimpleLauncher())
    job_id = p.submit("exit 4", 1)
    wait_for(lambda: p._jobs[job_id].process.poll() is not None)
    assert p.cancel([job_id, "no-such-job"]) == [True, False]
    assert p.status([job_id])[0].exit_code == 4


def test_leftovers_of_a_finished_job_are_stopped(provider):
    p = provider(launcher=SimpleLauncher())
    job_id = p.submit("sleep 300 & exit 0", 1)
    pid = p._jobs[job_id].process.pid
    wait_for(lambda: state_of(p, job_id) is JobState.COMPLETED)
    wait_for(lambda: not live_group_members(pid))


def test_walltime_ends_a_job_as_timeout(provider):
    p = provider(walltime="00:00:01", launcher=SimpleLauncher())
    job_id = p.submit("sleep 300", 1)
    pid = p._jobs[job_id].process.pid
    status = wait_for(lambda: (s := p.status([job_id])[0]).terminal and s)
    assert status.state is JobState.TIMEOUT and "00:00:01" in status.message
    wait_for(lambda: not live_group_members(pid))


def test_unknown_job_ids_are_refused(provider):
    p = provider()
    with pytest.raises(UnknownJob, match="no-such-job"):
        p.status(["no-such-job"])


def test_script_dir_problems_are_named(tmp_path):
    p = LocalProvider()
    with pytest.raises(ScriptWriteError, match="script_dir is not set"):
        p.submit("true", 1)
    (tmp_path / "a_file").write_text("")
    p.script_dir = str(tmp_path / "a_file" / "scripts")
    with pytest.raises(ScriptWriteError, match="a_file"):
        p.submit("true", 1)


def test_provider_interface_is_small():
    abstract = sorted(ExecutionProvider.__abstractmethods__)
    assert abstract == ["cancel", "label", "status", "status_polling_interval", "submit"]


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return ""
