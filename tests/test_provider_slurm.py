"""SlurmProvider against a real single-node Slurm (``../shared/backends/slurm.sh``).

Slurm is started before the tests (see ``conftest.py``; its ``slurm`` fixture
gives the facts). Jobs run as the test's user in its working directory, with the
same Python, so the high-throughput executor's default launch command works
inside them. Fakes of ``squeue``/``scontrol`` on PATH stand in for a hung or
forgetful controller, which a real one cannot be made to be on demand.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from parsl_lite import python_app
from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.launchers import SimpleLauncher, SingleNodeLauncher, SrunLauncher
from parsl_lite.providers import JobState, SlurmProvider
from parsl_lite.providers.cluster import SchedulerCommandFailed, SchedulerCommandTimeout, run_command
from parsl_lite.providers.errors import ProviderError, SubmitException, UnknownJob
from parsl_lite.providers.slurm import SLURM_STATES, parse_sacct, parse_scontrol, parse_squeue, slurm_state

from .conftest import wait_for

WAIT_FOR_FLAG = 'while [ ! -e {flag} ]; do sleep 0.05; done'


def active_jobs(job_ids) -> set[str]:
    """Those of ``job_ids`` that squeue lists as pending, running or completing."""
    if not job_ids:
        return set()
    out = subprocess.run(["squeue", "--noheader", "--format=%i", f"--jobs={','.join(job_ids)}"],
                         check=False, capture_output=True, text=True, timeout=10).stdout
    return set(out.split()) & set(job_ids)


def wait_state(provider: SlurmProvider, job_id: str, states, timeout_s: float = 20.0):
    return wait_for(lambda: (s := provider.status([job_id])[0]).state in states and s,
                    timeout_s, f"job {job_id} to reach {states}")


@pytest.fixture
def provider(slurm, tmp_path):
    """Makes SlurmProviders writing into tmp_path; their jobs are cancelled and gone after the test."""
    made: list[SlurmProvider] = []

    def _make(**kwargs) -> SlurmProvider:
        options = {"partition": slurm["SLURM_PARTITION"], "exclusive": False, "cores_per_node": 1,
                   "walltime": "00:05:00", "init_blocks": 0, "launcher": SimpleLauncher()}
        options.update(kwargs)
        p = SlurmProvider(**options)
        p.script_dir = str(tmp_path / "submit_scripts")
        p.status_poll_interval_s = 0.5
        made.append(p)
        return p

    yield _make
    ours = [job_id for p in made for job_id in p._jobs]
    if ours:
        subprocess.run(["scancel", *ours], check=False, capture_output=True, timeout=10)
        wait_for(lambda: not active_jobs(ours), 20, "our jobs to leave the queue", 0.1)


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def fake_command(monkeypatch, tmp_path: Path, name: str, body: str) -> None:
    """Put a script called ``name`` first on PATH (a stand-in for a broken Slurm command)."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    script = bindir / name
    script.write_text(f"#!/bin/bash\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")


# --------------------------------------------------------------- pure parts

def test_every_slurm_state_and_short_code_maps_to_a_job_state():
    expected = {
        "PENDING": JobState.PENDING, "PD": JobState.PENDING, "CF": JobState.PENDING,
        "RUNNING": JobState.RUNNING, "R": JobState.RUNNING, "CG": JobState.RUNNING,
        "COMPLETED": JobState.COMPLETED, "CD": JobState.COMPLETED,
        "FAILED": JobState.FAILED, "F": JobState.FAILED,
        "CANCELLED": JobState.CANCELLED, "CA": JobState.CANCELLED,
        "TIMEOUT": JobState.TIMEOUT, "TO": JobState.TIMEOUT, "DEADLINE": JobState.TIMEOUT, "DL": JobState.TIMEOUT,
        "NODE_FAIL": JobState.FAILED, "NF": JobState.FAILED, "OUT_OF_MEMORY": JobState.FAILED,
        "OOM": JobState.FAILED, "PREEMPTED": JobState.FAILED, "PR": JobState.FAILED,
        "BOOT_FAIL": JobState.FAILED, "BF": JobState.FAILED,
        "SUSPENDED": JobState.HELD, "S": JobState.HELD, "REQUEUE_HOLD": JobState.HELD,
    }
    for name, state in expected.items():
        assert slurm_state(name) is state, name
    assert slurm_state("CANCELLED by 0") is JobState.CANCELLED  # sacct's wording
    assert slurm_state("WHATEVER") is JobState.UNKNOWN and slurm_state("") is JobState.UNKNOWN
    assert all(isinstance(state, JobState) for state in SLURM_STATES.values())


def test_parsers_of_squeue_sacct_and_scontrol_output():
    squeue = "CLUSTER: plite\n12 R None\n13 PD (ReqNodeNotAvail, UnavailableNodes:n1)\n99 R None\n"
    records = parse_squeue(squeue, {"12", "13"})
    assert set(records) == {"12", "13"}
    assert records["12"].state == "RUNNING" and records["13"].state == "PENDING"
    assert records["13"].reason == "(ReqNodeNotAvail, UnavailableNodes:n1)"
    sacct = parse_sacct("12|CANCELLED by 0|0:15\n13|FAILED|3:0\n", {"12", "13"})
    assert sacct["12"].state == "CANCELLED" and sacct["12"].signal == 15
    assert (sacct["13"].state, sacct["13"].exit_code) == ("FAILED", 3)
    scontrol = parse_scontrol("JobId=5 JobName=x JobState=OUT_OF_MEMORY Reason=OutOfMemory ExitCode=0:125 x=y\n"
                              "JobId=6 JobName=y JobState=COMPLETED Reason=None ExitCode=0:0\n", {"5"})
    assert set(scontrol) == {"5"}
    assert (scontrol["5"].state, scontrol["5"].reason, scontrol["5"].signal) == ("OUT_OF_MEMORY", "OutOfMemory", 125)
    assert parse_scontrol("slurm_load_jobs error", {"5"}) == {}


def test_bad_configurations_are_refused_by_field():
    with pytest.raises(ConfigurationError, match="walltime"):
        SlurmProvider(walltime="ten minutes")
    with pytest.raises(ConfigurationError, match="walltime"):
        SlurmProvider(walltime="00:75:00")
    with pytest.raises(ConfigurationError, match="max_blocks"):
        SlurmProvider(min_blocks=3, max_blocks=2, init_blocks=0)
    with pytest.raises(ConfigurationError, match="partition"):
        SlurmProvider(partition="debug --exclusive")
    with pytest.raises(ConfigurationError, match="regex_job_id"):
        SlurmProvider(regex_job_id=r"Submitted batch job \S+")
    with pytest.raises(ConfigurationError, match="cmd_timeout"):
        SlurmProvider(cmd_timeout=0)
    with pytest.raises(ConfigurationError, match="status_batch_size"):
        SlurmProvider(status_batch_size=0)


def test_the_parameters_match_parsl_slurm_provider():
    p = SlurmProvider(partition="debug", account="proj", qos="low", constraint="haswell", nodes_per_block=2,
                      cores_per_node=4, mem_per_node=2, walltime="01:00:00", scheduler_options="#SBATCH --hint=x",
                      worker_init="source env.sh", cmd_timeout=5, status_batch_size=10, exclusive=True,
                      launcher=SingleNodeLauncher(debug=False))
    assert (p.partition, p.account, p.qos, p.nodes_per_block, p.cmd_timeout) == ("debug", "proj", "low", 2, 5)
    assert p.label == "slurm" and "SlurmProvider(" in repr(p)


# --------------------------------------------------------- against Slurm

def test_a_job_runs_and_completes_and_slurm_shows_it(provider, tmp_path):
    p = provider(worker_init="export PLITE_MARK=from_worker_init")
    flag = tmp_path / "go"
    sent = time.monotonic()
    job_id = p.submit(WAIT_FOR_FLAG.format(flag=flag) + "; echo $PLITE_MARK", 1, "plite-test-run")
    running = wait_state(p, job_id, {JobState.RUNNING})
    print(f"\n[measure] sbatch to RUNNING: {time.monotonic() - sent:.2f}s")

    squeue = subprocess.run(["squeue", "--noheader", "--format=%i %j %T", f"--jobs={job_id}"],
                            check=True, capture_output=True, text=True, timeout=10).stdout.split()
    assert squeue == [job_id, "plite-test-run", "RUNNING"]
    scontrol = subprocess.run(["scontrol", "--oneliner", "show", "job", job_id],
                              check=True, capture_output=True, text=True, timeout=10).stdout
    assert "JobName=plite-test-run" in scontrol and f"StdOut={running.stdout_path}" in scontrol

    script = Path(running.stdout_path).with_suffix(".sh").read_text()
    sbatch_at = script.index("#SBATCH --partition=")
    assert sbatch_at < script.index("PLITE_MARK=from_worker_init") < script.index(str(flag))
    assert "#SBATCH --time=00:05:00" in script and "#SBATCH --cpus-per-task=1" in script

    flag.touch()
    done = wait_state(p, job_id, {JobState.COMPLETED})
    assert done.exit_code == 0 and "from_worker_init" in done.stdout_summary


def test_a_failing_job_reports_its_exit_code_and_stderr(provider):
    p = provider()
    job_id = p.submit("echo 'disk on fire' >&2; exit 7", 1, "plite-test-fail")
    failed = wait_state(p, job_id, {JobState.FAILED, JobState.COMPLETED})
    assert failed.state is JobState.FAILED and failed.exit_code == 7
    assert "exit code 7" in failed.message and "disk on fire" in failed.message
    assert p.status([job_id])[0] == failed  # final: not asked again


def test_srun_launcher_starts_one_copy_per_task(provider):
    p = provider(cores_per_node=2, launcher=SrunLauncher())
    job_id = p.submit("echo rank=$PARSL_LAUNCHER_RANK of $PARSL_LAUNCHER_COUNT", 2, "plite-test-srun")
    done = wait_state(p, job_id, {JobState.COMPLETED, JobState.FAILED})
    assert done.state is JobState.COMPLETED, done.message
    assert "rank=0 of 2" in done.stdout_summary and "rank=1 of 2" in done.stdout_summary


def test_a_job_cancelled_behind_our_back_is_cancelled(provider, tmp_path):
    p = provider()
    job_id = p.submit(WAIT_FOR_FLAG.format(flag=tmp_path / "never"), 1, "plite-test-scancel")
    wait_state(p, job_id, {JobState.RUNNING})
    subprocess.run(["scancel", job_id], check=True, timeout=10)
    cancelled = wait_state(p, job_id, {JobState.CANCELLED, JobState.FAILED})
    assert cancelled.state is JobState.CANCELLED and "outside parsl_lite" in cancelled.message


def test_cancel_through_the_provider(provider, tmp_path):
    p = provider()
    job_id = p.submit(WAIT_FOR_FLAG.format(flag=tmp_path / "never"), 1, "plite-test-cancel")
    assert p.cancel([job_id, "999999"]) == [True, False]
    assert p.status([job_id])[0].state is JobState.CANCELLED
    wait_for(lambda: not active_jobs([job_id]), 20, "the job to leave the queue")
    with pytest.raises(UnknownJob):
        p.status(["999999"])


def test_status_asks_in_batches_and_sees_held_jobs(provider, tmp_path):
    p = provider(scheduler_options="#SBATCH --hold", status_batch_size=20)
    job_ids = [p.submit("true", 1, f"plite-test-held-{i}") for i in range(50)]
    started = time.monotonic()
    statuses = p.status(job_ids)
    print(f"\n[measure] one status() call for 50 jobs (3 squeue calls): {1000 * (time.monotonic() - started):.1f} ms")
    assert [s.state for s in statuses] == [JobState.HELD] * 50
    assert "JobHeldUser" in statuses[0].message
    assert p.cancel(job_ids) == [True] * 50


def test_finished_jobs_slurm_left_in_scontrol_are_not_lost(provider, tmp_path, monkeypatch):
    p = provider()
    job_ids = [p.submit(f"exit {3 + i}", 1, f"plite-test-gone-from-squeue-{i}") for i in range(6)]
    wait_for(lambda: not active_jobs(job_ids), 20, "the jobs to end")
    # squeue has forgotten them (as after MinJobAge on a busy cluster); scontrol still knows.
    fake_command(monkeypatch, tmp_path, "squeue", "exit 0")
    first = p.status(job_ids[:1])[0]  # asked with `scontrol show job <id>`
    assert first.state is JobState.FAILED and first.exit_code == 3
    rest = p.status(job_ids[1:])  # more than a few: one `scontrol show job` listing
    assert [(s.state, s.exit_code) for s in rest] == [(JobState.FAILED, 4 + i) for i in range(5)]


def test_a_job_slurm_forgot_entirely_is_missing_with_a_reason(provider, tmp_path, monkeypatch):
    p = provider()
    job_id = p.submit("true", 1, "plite-test-forgotten")
    fake_command(monkeypatch, tmp_path, "squeue", "exit 0")
    fake_command(monkeypatch, tmp_path, "scontrol",
                 "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1")
    status = p.status([job_id])[0]
    assert status.state is JobState.MISSING and "no longer knows" in status.message


def test_a_job_past_its_time_limit_is_timeout(provider, tmp_path, monkeypatch):
    # Slurm's time limits count in whole minutes; a squeue double saves the wait.
    p = provider()
    job_id = p.submit(WAIT_FOR_FLAG.format(flag=tmp_path / "never"), 1, "plite-test-timeout")
    fake_command(monkeypatch, tmp_path, "squeue", f"echo '{job_id} TO TimeLimit'")
    status = p.status([job_id])[0]
    assert status.state is JobState.TIMEOUT and "time limit" in status.message


def test_a_bad_partition_shows_slurms_own_error(provider):
    p = provider(partition="no_such_partition")
    with pytest.raises(SubmitException) as caught:
        p.submit("true", 1, "plite-test-bad-partition")
    message = str(caught.value)
    assert "sbatch" in message and "exit code 1" in message
    assert "invalid partition specified: no_such_partition" in message  # Slurm's words


def test_squeue_hanging_past_cmd_timeout_is_an_error_naming_it(provider, tmp_path, monkeypatch):
    p = provider(cmd_timeout=0.5)
    job_id = p.submit("true", 1, "plite-test-hang")
    sleeper = tmp_path / "sleeper.pid"
    # A child holds the pipes too: returning at all (not after 3000 s) shows the whole group was killed.
    fake_command(monkeypatch, tmp_path, "squeue", f"sleep 3000 & echo $! > {sleeper}; wait")
    with pytest.raises(SchedulerCommandTimeout) as caught:
        p.status([job_id])
    wait_for(lambda: process_gone(int(sleeper.read_text())), 10, "the hung squeue's child to die")
    assert "squeue" in str(caught.value) and "cmd_timeout=0.5s" in str(caught.value)
    assert isinstance(caught.value, ProviderError)


def test_a_failing_scheduler_command_names_command_exit_code_and_stderr(slurm):
    with pytest.raises(SchedulerCommandFailed) as caught:
        run_command(["scontrol", "show", "partition", "nope"], timeout_s=10, provider="slurm")
    text = str(caught.value)
    assert "`scontrol show partition nope`" in text and "exit code 1" in text and "nope" in text
    with pytest.raises(SchedulerCommandFailed, match="not found on PATH"):
        run_command(["no-such-sbatch"], timeout_s=10, provider="slurm")


# ------------------------------------------------- the executor on Slurm blocks

@python_app
def pi(n):
    from random import random
    return 4 * sum(random() ** 2 + random() ** 2 < 1 for _ in range(n)) / n


@python_app
def mean(*xs):
    return sum(xs) / len(xs)


@python_app
def block_of_worker():
    import os
    return os.environ.get("SLURM_JOB_ID")


@python_app
def note_then_sleep(path, first_attempt_s):
    import time
    with open(path, "a") as stream:
        stream.write("attempt\n")
    with open(path) as stream:
        attempts = stream.read().count("attempt")
    time.sleep(first_attempt_s if attempts == 1 else 0)
    return attempts


def slurm_htex(p: SlurmProvider) -> HighThroughputExecutor:
    return HighThroughputExecutor(label="htex_slurm", max_workers_per_node=1, heartbeat_period=1,
                                  heartbeat_threshold=10, provider=p)


def test_pi_workflow_on_two_slurm_blocks(provider, make_dfk):
    p = provider(init_blocks=2, min_blocks=0, max_blocks=2, launcher=SingleNodeLauncher())
    executor = slurm_htex(p)
    make_dfk(executors=[executor], strategy="none")
    wait_for(lambda: executor.connected_workers > 0, 30, "a worker pool to connect")
    submitted = min(executor._block_submitted.values())
    print(f"\n[measure] block submission to first pool connected: {time.monotonic() - submitted:.2f}s")
    wait_for(lambda: executor.connected_workers == 2, 30, "both blocks' pools to connect")

    job_ids = set(executor.blocks.values())
    squeue = subprocess.run(["squeue", "--noheader", "--format=%i %j %T", f"--jobs={','.join(job_ids)}"],
                            check=True, capture_output=True, text=True, timeout=10).stdout.splitlines()
    assert sorted(line.split()[2] for line in squeue) == ["RUNNING", "RUNNING"]
    assert all(line.split()[1].startswith("parsl_lite.htex_slurm.block-") for line in squeue)
    sinfo = subprocess.run(["sinfo", "--noheader", "--format=%T"], check=True, capture_output=True, text=True,
                           timeout=10)
    assert sinfo.stdout.strip() in ("mixed", "allocated")

    estimate = mean(*[pi(20_000) for _ in range(8)]).result(timeout=30)
    assert 2.9 < estimate < 3.4
    assert {block_of_worker().result(timeout=30) for _ in range(6)} <= job_ids


def test_a_block_cancelled_behind_our_back_has_its_task_retried_on_a_new_block(provider, make_dfk, tmp_path):
    p = provider(init_blocks=1, min_blocks=0, max_blocks=1)
    executor = slurm_htex(p)
    make_dfk(executors=[executor], strategy="simple", strategy_period=0.2, retries=1)
    marks = tmp_path / "attempts"
    future = note_then_sleep(str(marks), 60)
    wait_for(marks.exists, 30, "the first attempt to start")
    [first_job] = executor.blocks.values()
    subprocess.run(["scancel", first_job], check=True, timeout=10)

    assert future.result(timeout=45) == 2  # the retry ran, and did not sleep
    replacement = set(executor.blocks.values())
    assert replacement and first_job not in replacement
    assert p.status([first_job])[0].state is JobState.CANCELLED


# ------------------------------------------------------------------ configs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_the_slurm_configs_build_the_same_provider():
    from parsl_lite.config_loader import load_config
    toml, module = load_config(CONFIGS / "slurm.toml"), load_config(CONFIGS / "slurm.py")
    assert repr(toml.executors[0]) == repr(module.executors[0]) and toml.retries == module.retries == 1
    assert isinstance(toml.executors[0].provider, SlurmProvider)


def test_the_pi_example_runs_unchanged_on_slurm(slurm, tmp_path):
    run = subprocess.run([sys.executable, str(EXAMPLES / "pi.py"), str(CONFIGS / "slurm.toml")], cwd=tmp_path,
                         check=False, capture_output=True, text=True, timeout=50)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("pi is about 3.")


@python_app
def sleep_a_while(seconds, value):
    import time
    time.sleep(seconds)
    return value


def test_slurm_blocks_scale_out_under_load_and_in_when_idle(provider, make_dfk):
    p = provider(init_blocks=0, min_blocks=0, max_blocks=2)
    executor = slurm_htex(p)
    make_dfk(executors=[executor], strategy="htex_auto_scale", strategy_period=0.2, max_idletime=0.5)
    futures = [sleep_a_while(1.0, i) for i in range(4)]
    wait_for(lambda: len(executor.blocks) == 2, 30, "scale-out to 2 Slurm jobs")
    jobs = set(executor.blocks.values())
    assert [f.result(timeout=45) for f in futures] == [0, 1, 2, 3]
    wait_for(lambda: not executor.blocks, 30, "idle Slurm jobs to be released")
    wait_for(lambda: not active_jobs(jobs), 30, "the released jobs to leave the queue", 0.1)
