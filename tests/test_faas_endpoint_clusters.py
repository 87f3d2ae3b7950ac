"""Endpoints on real resources: blocks as Kubernetes pods and as Slurm jobs, scaled by the endpoint's strategy.

A real service, a real endpoint daemon (``parsl-lite endpoint start``) whose
config.toml names a ``KubernetesProvider`` or a ``SlurmProvider`` of the test
backends (``tests/faas_cluster_helpers.py`` writes it). A burst of tasks that
hold until a gate file appears brings more blocks (pods listed by the API
server, jobs listed by squeue); once the tasks are done and the blocks idle
past ``max_idletime``, they are released down to ``min_blocks`` (pods deleted,
jobs gone). Each step is checked where a user looks: ``get_endpoint_status``
and ``parsl-lite endpoint status NAME``.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

from parsl_lite.executors.htex.blocks import BlockHistory
from parsl_lite.faas import FuncXClient, TaskPending
from parsl_lite.faas.endpoint.status import report_changes
from parsl_lite.jobs.states import JobState, JobStatus
from tests.conftest import wait_for
from tests.faas_cluster_helpers import (  # noqa: F401 (fixture)
    cluster_endpoints, configured_endpoint, endpoint_pods, endpoint_run_dir, k8s_endpoint_config,
    slurm_endpoint_config, squeue_jobs,
)
from tests.faas_endpoint_helpers import faas_endpoints  # noqa: F401 (fixture)
from tests.faas_helpers import client_home_service


def hold_until(gate: str, marker: str) -> tuple[str, str]:
    """Leave ``marker``, wait until ``gate`` exists; return where this ran (host, Slurm job id)."""
    import os
    import socket
    import time
    open(marker, "w").close()
    while not os.path.exists(gate):
        time.sleep(0.05)
    return socket.gethostname(), os.environ.get("SLURM_JOB_ID", "")


def _result(fxc: FuncXClient, task_id: str, timeout_s: float = 30.0) -> Any:
    def ready() -> Any:
        try:
            return ("value", fxc.get_result(task_id))
        except TaskPending:
            return None
        except Exception as exc:
            return ("error", exc)
    kind, value = wait_for(ready, timeout_s, f"the result of task {task_id}", interval_s=0.05)
    if kind == "error":
        raise value
    return value


class Watched:
    """An endpoint's blocks as the SDK and the CLI show them."""

    def __init__(self, fxc: FuncXClient, ep: Any) -> None:
        self.fxc, self.ep = fxc, ep

    def details(self) -> dict:
        return self.fxc.get_endpoint_status(self.ep.endpoint_id)["details"]

    def first_blocks(self) -> dict:
        """The block details of the first report (the service may say online a moment before it stores it)."""
        return wait_for(lambda: (self.details().get("block_details"),) if "block_details" in self.details() else None,
                        10, "the endpoint's first status report", interval_s=0.05)[0]

    def running(self, n: int) -> dict:
        """The block details once exactly ``n`` blocks are live, each RUNNING with a worker."""
        def ok() -> Any:
            blocks = self.details().get("block_details") or {}
            good = len(blocks) == n and all(b["state"] == "RUNNING" and b["workers"] >= 1 for b in blocks.values())
            return (blocks,) if good else None
        return wait_for(ok, 45, f"{n} RUNNING blocks with workers in get_endpoint_status", interval_s=0.1)[0]

    def cli(self) -> str:
        done = self.ep._cli("status")
        assert done.returncode == 0, done.stderr
        return done.stdout


def _burst(fxc: FuncXClient, ep: Any, run_dir: Path, n: int) -> tuple[list[str], Path, list[Path]]:
    func_id = fxc.register_function(hold_until)
    gate, markers = run_dir / "gate", [run_dir / f"started-{i}" for i in range(n)]
    task_ids = [fxc.run(str(gate), str(m), endpoint_id=ep.endpoint_id, function_id=func_id) for m in markers]
    return task_ids, gate, markers


def _scale_out_and_in(fxc: FuncXClient, ep: Any, run_dir: Path, live_jobs: Callable[[], set[str]],
                      burst: int, floor: int) -> tuple[dict, dict, list]:
    """The common story: ``floor`` warm blocks, a burst needs ``burst`` blocks, then back to ``floor``."""
    watched = Watched(fxc, ep)
    warm = watched.first_blocks()  # the initial blocks are submitted before the endpoint connects
    assert len(warm) == floor and {b["job_id"] for b in warm.values()} == live_jobs()
    wait_for(lambda: all(b["job_id"] in watched.cli() for b in warm.values()) and (floor or "blocks: none" in
                                                                              watched.cli()), 10, "the CLI's blocks")
    task_ids, gate, markers = _burst(fxc, ep, run_dir, burst)  # at once: all pods / jobs start side by side
    wait_for(lambda: all(m.exists() for m in markers), 45, f"{burst} tasks running at once, one per block")
    busy = watched.running(burst)
    assert all(b["tasks"] == 1 for b in busy.values()), busy
    job_ids = {b["job_id"] for b in busy.values()}
    assert job_ids == live_jobs()
    shown = watched.cli()
    assert all(f"{block} RUNNING" in shown for block in busy) and all(job in shown for job in job_ids), shown
    gate.touch()
    results = [_result(fxc, t) for t in task_ids]
    kept = watched.running(floor)
    wait_for(lambda: live_jobs() == {b["job_id"] for b in kept.values()}, 45,
             "the released blocks' pods or jobs to be gone from the backend", interval_s=0.2)
    return busy, kept, results


def _check_released(watched: Watched, busy: dict, kept: dict) -> None:
    details = watched.details()
    released = set(busy) - set(kept)
    assert len(released) == len(busy) - len(kept)
    ended = details["ended_blocks"]
    assert {b: ended[b]["job_id"] for b in released} == {b: busy[b]["job_id"] for b in released}
    assert {ended[b]["state"] for b in released} <= {"CANCELLED", "SCALED_IN"}
    assert details["connected_workers"] == sum(b["workers"] for b in kept.values())
    shown = watched.cli().splitlines()
    for block in released:  # a table row: BLOCK STATE JOB ...
        assert any(line.split()[:3] in ([block, "SCALED_IN", busy[block]["job_id"]],
                                        [block, "CANCELLED", busy[block]["job_id"]]) for line in shown), shown


def test_a_kubernetes_endpoint_scales_pods_out_under_a_burst_and_in_when_idle(k8s, tmp_path, monkeypatch,
                                                                               cluster_endpoints):
    with client_home_service(tmp_path, monkeypatch) as service:
        text = k8s_endpoint_config(service.url, k8s, "pods", workers=1, init_blocks=1, min_blocks=1, max_blocks=2,
                                   max_idletime=1.0)
        ep = cluster_endpoints(service, "pods", service.admin_token, text)
        fxc = FuncXClient()
        live_pods = lambda: endpoint_pods(k8s, "pods")  # noqa: E731
        busy, kept, results = _scale_out_and_in(fxc, ep, endpoint_run_dir("pods"), live_pods, burst=2, floor=1)
        assert {host for host, _ in results} == {b["job_id"] for b in busy.values()}  # each pod ran one task
        assert Watched(fxc, ep).details()["provider_type"] == "KubernetesProvider"
        _check_released(Watched(fxc, ep), busy, kept)
        assert ep.stop() == 0
        assert not endpoint_pods(k8s, "pods")  # the last one deleted when the endpoint stopped


def test_a_slurm_endpoint_scales_jobs_out_under_a_burst_and_in_when_idle(slurm, tmp_path, monkeypatch,
                                                                         cluster_endpoints):
    with client_home_service(tmp_path, monkeypatch) as service:
        text = slurm_endpoint_config(service.url, slurm, "batch", workers=1, init_blocks=0, min_blocks=0,
                                     max_blocks=2, max_idletime=1.0)
        ep = cluster_endpoints(service, "batch", service.admin_token, text)
        fxc = FuncXClient()
        live_jobs = lambda: set(squeue_jobs("batch"))  # noqa: E731
        busy, kept, results = _scale_out_and_in(fxc, ep, endpoint_run_dir("batch"), live_jobs, burst=2, floor=0)
        assert {job for _, job in results} == {b["job_id"] for b in busy.values()}  # each job ran one task
        assert kept == {} and Watched(fxc, ep).details()["provider_type"] == "SlurmProvider"
        _check_released(Watched(fxc, ep), busy, kept)
        assert "blocks: none" in Watched(fxc, ep).cli()


def test_status_is_current_right_after_tasks_ran_not_a_heartbeat_later(tmp_path, monkeypatch, faas_endpoints):
    """The lead's smoke test: a heartbeat of 30 s, yet ``endpoint status`` shows the block RUNNING with its
    worker as soon as the pool connected (without the report watch: PENDING, 0 workers for up to 30 s)."""
    with client_home_service(tmp_path, monkeypatch) as service:
        ep = faas_endpoints(service, "laptop", service.admin_token, workers=1, heartbeat_period=30.0,
                            heartbeat_threshold=120.0)
        fxc = FuncXClient()
        gate, marker = tmp_path / "gate", tmp_path / "marker"
        gate.touch()
        assert _result(fxc, fxc.run(str(gate), str(marker), endpoint_id=ep.endpoint_id,
                                    function_id=fxc.register_function(hold_until))) is not None
        shown = wait_for(lambda: out if "blocks: 0 RUNNING" in (out := Watched(fxc, ep).cli()) else None, 10,
                         "endpoint status to show the block RUNNING (well before the next heartbeat)")
        assert "connected_workers: 1" in shown, shown
        [row] = [line.split() for line in shown.splitlines() if line.split()[:2] == ["0", "RUNNING"]]
        assert row[3] == "1", shown  # WORKERS
        assert Watched(fxc, ep).details()["block_details"]["0"]["workers"] == 1
        listed = subprocess.run([sys.executable, "-m", "parsl_lite.cli", "endpoint", "list"], capture_output=True,
                                text=True, timeout=60).stdout.splitlines()
        assert listed[1].split()[:5] == ["laptop", ep.endpoint_id, "Running", "1", "0"], listed  # WORKERS 1


# ---------------------------------------------------------------- bad input


def test_a_partition_slurm_refuses_fails_the_task_naming_it_and_the_report_says_so(slurm, tmp_path, monkeypatch,
                                                                                   cluster_endpoints):
    with client_home_service(tmp_path, monkeypatch) as service:
        text = slurm_endpoint_config(service.url, {**slurm, "SLURM_PARTITION": "nosuchpartition"}, "lost")
        ep = cluster_endpoints(service, "lost", service.admin_token, text)   # a valid word: only sbatch can tell
        fxc = FuncXClient()
        task_id = fxc.run(str(tmp_path / "g"), str(tmp_path / "m"), endpoint_id=ep.endpoint_id,
                          function_id=fxc.register_function(hold_until))
        with pytest.raises(Exception, match="blocks failed") as info:
            _result(fxc, task_id)
        assert "nosuchpartition" in str(info.value) and "Invalid partition name" in str(info.value)
        details = wait_for(lambda: (d := Watched(fxc, ep).details()).get("alive") is False and d, 20,
                           "the report to say the executor failed")
        assert "Invalid partition name" in details["executor_error"] and details["blocks"] == {}
        assert "executor failed (every task sent here fails): ExecutorError" in Watched(fxc, ep).cli()


def test_a_pod_whose_image_cannot_be_pulled_ends_failed_naming_it_and_is_replaced(k8s, tmp_path, monkeypatch,
                                                                                 cluster_endpoints):
    with client_home_service(tmp_path, monkeypatch) as service:
        image = "localhost/plite-no-such-image:1"
        text = k8s_endpoint_config(service.url, k8s, "nopull", image=image, init_blocks=1, min_blocks=1,
                                   max_blocks=1)
        ep = cluster_endpoints(service, "nopull", service.admin_token, text)
        watched = Watched(fxc := FuncXClient(), ep)
        [first] = watched.first_blocks().values()
        details = wait_for(lambda: (d := watched.details()).get("ended_blocks") and d, 45, "the pod to fail")
        [(block, ended)] = details["ended_blocks"].items()
        assert ended["state"] == "FAILED" and ended["job_id"] == first["job_id"]
        assert image in ended["message"] and ("ErrImagePull" in ended["message"]
                                              or "ImagePullBackOff" in ended["message"]), ended
        assert block not in details["blocks"] and len(details["blocks"]) <= 1  # min_blocks: a new pod is tried
        shown = watched.cli()
        assert any(line.split()[:3] == [block, "FAILED", first["job_id"]] for line in shown.splitlines()), shown
        wait_for(lambda: first["job_id"] not in endpoint_pods(k8s, "nopull"), 30, "the pod that cannot start deleted")
        assert fxc.get_endpoint_status(ep.endpoint_id)["status"] == "online"


def _config_with(provider: str, key: str, value: str) -> str:
    image = '\n  image = "img:1"' if provider == "KubernetesProvider" and key != "imagee" else ""
    return (f'[endpoint]\nservice_url = "http://127.0.0.1:9"\n\n[[executors]]\ntype = "HighThroughputExecutor"\n'
            f'  [executors.provider]\n  type = "{provider}"{image}\n  {key} = {value}\n')


@pytest.mark.parametrize("provider,key,value,says", [
    ("KubernetesProvider", "max_mem", '"lots"', "not a Kubernetes quantity"),
    ("KubernetesProvider", "imagee", '"x"', "unknown key (did you mean 'image'?)"),
    ("KubernetesProvider", "host_path_volumes", '["relative:/x"]', "paths must be absolute"),
    ("KubernetesProvider", "init_cpu", "4", "above the limit max_cpu"),
    ("SlurmProvider", "partiton", '"debug"', "unknown key (did you mean 'partition'?)"),
    ("SlurmProvider", "walltime", '"forever"', "expected HH:MM:SS"),
    ("SlurmProvider", "exclusive", '"yes"', "bool"),
    ("SlurmProvider", "partition", '"two words"', "without spaces"),
])
def test_a_wrong_provider_field_is_refused_naming_the_file_the_table_and_the_key(tmp_path, provider, key, value,
                                                                                  says):
    from parsl_lite.errors import ConfigurationError
    from parsl_lite.faas.endpoint.config import load_endpoint_config

    config = tmp_path / "config.toml"
    config.write_text(_config_with(provider, key, value))
    with pytest.raises(ConfigurationError) as info:
        load_endpoint_config(config)  # what the daemon does first
    assert f"{config}: [executors.0.provider] ({provider}): {key}: " in str(info.value) and says in str(info.value)


def test_endpoint_start_refuses_a_wrong_provider_field_before_registering(tmp_path, monkeypatch):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))
    ep = configured_endpoint(None, "wrong", "no-token", _config_with("KubernetesProvider", "max_mem", '"lots"'))
    done = ep._cli("start", "--timeout", "30")
    assert done.returncode == 2, done.stdout + done.stderr
    config = ep.directory / "config.toml"
    assert f"{config}: [executors.0.provider] (KubernetesProvider): max_mem: not a Kubernetes quantity" \
        in done.stderr, done.stderr
    assert not (ep.directory / "endpoint.json").exists()  # refused before registering


def test_the_documented_endpoint_configs_load_with_their_providers(tmp_path):
    import re

    from parsl_lite.faas.endpoint.config import load_endpoint_config

    root = Path(__file__).resolve().parents[1]
    found = []
    for doc in ("README.md", "docs/faas.md"):
        text = (root / doc).read_text()
        section = text[text.index("Endpoints on Kubernetes and Slurm"):]
        section = section[:section.index("\n## ")] if "\n## " in section else section
        for block in re.findall(r"```toml\n(.*?)```", section, re.S):
            path = tmp_path / f"{len(found)}.toml"
            path.write_text(block)
            found.append(type(load_endpoint_config(path).executor.provider).__name__)
    assert found == ["KubernetesProvider", "KubernetesProvider", "SlurmProvider"]


# ---------------------------------------------------------------- no backend needed


def test_block_history_keeps_live_states_and_the_last_ended_blocks_with_their_job_ids():
    history = BlockHistory(keep_ended=2)
    history.changed("0", JobStatus(JobState.PENDING), "pod-0")
    history.changed("0", JobStatus(JobState.RUNNING), "pod-0")
    assert history.live == {"0": JobStatus(JobState.RUNNING)} and not history.ended
    history.changed("0", JobStatus(JobState.CANCELLED, "released"), "pod-0")
    history.changed("0", JobStatus(JobState.SCALED_IN, "idle"))  # the poller's note comes after: the job id stays
    assert history.live == {} and history.ended == {"0": ("pod-0", JobStatus(JobState.SCALED_IN, "idle"))}
    for block in ("1", "2"):
        history.changed(block, JobStatus(JobState.FAILED, "exit 1"), f"job-{block}")
    assert list(history.ended) == ["1", "2"]  # the oldest ended block is forgotten


def test_report_changes_are_blocks_workers_queues_and_failure_not_clocks():
    report = {"block_details": {"0": {"state": "RUNNING", "workers": 1, "tasks": 0}}, "managers": 1,
              "connected_workers": 1, "pending_tasks": 0, "timestamp": 1.0, "walltime_left_s": 60.0}
    assert report_changes(report) == report_changes({**report, "timestamp": 2.0, "walltime_left_s": 59.0})
    assert report_changes({**report, "pending_tasks": 500}) != report_changes(report)
    assert report_changes({**report, "executor_error": "ExecutorError: ..."}) != report_changes(report)
    grown = {**report, "block_details": {**report["block_details"], "1": {"state": "PENDING", "workers": 0}}}
    assert report_changes(grown) != report_changes(report)
    connected = {**grown, "block_details": {**grown["block_details"], "1": {"state": "RUNNING", "workers": 1}}}
    assert report_changes(connected) != report_changes(grown)


def test_a_block_shows_the_providers_state_until_its_pool_registers_then_running_with_its_workers():
    from parsl_lite.executors.htex.messages import ManagerStatus
    from parsl_lite.faas.endpoint.status import _block_detail

    history = BlockHistory()
    unschedulable = JobStatus(JobState.PENDING, "not scheduled: Unschedulable: 0/1 nodes are available")
    history.changed("0", unschedulable, "pod-0")
    assert _block_detail("0", "pod-0", [], history) == {"state": "PENDING", "job_id": "pod-0", "workers": 0,
                                                      "tasks": 0, "message": unschedulable.message}
    assert _block_detail("1", "42", [], history)["state"] == "PENDING"  # submitted, not polled yet
    history.changed("1", JobStatus(JobState.RUNNING), "42")
    assert _block_detail("1", "42", [], history)["state"] == "RUNNING"  # the job runs, its pool not there yet
    pool = ManagerStatus("ab", "0", "node", 4, 3, 2, False, False)
    assert _block_detail("0", "pod-0", [pool], history) == {"state": "RUNNING", "job_id": "pod-0", "workers": 3,
                                                          "tasks": 2, "message": None}


def test_the_strategy_starts_no_block_for_an_executor_that_failed():
    from parsl_lite.jobs.strategy import ExecutorSnapshot, ScaleOut, Strategy

    def snap(failed: bool) -> ExecutorSnapshot:
        return ExecutorSnapshot(label="htex", outstanding=3, connected_workers=0, workers_per_block=1, blocks=(),
                                init_blocks=1, min_blocks=1, max_blocks=4, parallelism=1.0, failed=failed)

    working = Strategy(strategy="simple", max_idletime=1.0).decide([snap(False)], 0.0)
    assert [(type(a), a.blocks) for a in working] == [(ScaleOut, 3)]
    assert Strategy(strategy="simple", max_idletime=1.0).decide([snap(True)], 0.0) == []
