"""KubernetesProvider against a real API server and kubelet (``../shared/backends/k8s.sh``).

The backend runs with a node (``WITH_NODE=1``), started before the tests
(see ``conftest.py``). Worker pods use the backend's
``plite-host`` image: an empty skeleton into which this machine's ``/usr``,
Python prefixes and parsl_lite's source are mounted read-only (hostPath), plus
the run directory read-write, so pools find the executor's CurveZMQ keys
(``encrypted=True``, the default, is what runs here) and write their logs
beside the executor's.

Apps are built inside :func:`_apps` so that dill sends their code by value:
a pod cannot import this test module.

Timings (pod created -> Running, block submitted -> first pool connected, one
status poll) are printed, never asserted; run with ``-s`` to see them.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.config_loader import load_config
from parsl_lite.errors import ConfigurationError, OptionalModuleMissing
from parsl_lite.executors.htex.errors import ManagerLost
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.providers import JobState, KubernetesProvider
from parsl_lite.providers import kubernetes as kube_module
from parsl_lite.providers.errors import ProviderError, SubmitException
from parsl_lite.providers.kubernetes import LABEL_EXECUTOR, LABEL_RUN, host_python_mounts, pod_status

from .conftest import wait_for

PROJECT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- fixtures (``k8s``: conftest)


@pytest.fixture
def make_provider(k8s: dict[str, str]) -> Any:
    """Build providers for the backend; delete every pod they made at teardown."""
    made: list[KubernetesProvider] = []

    def _make(**kwargs: Any) -> KubernetesProvider:
        kwargs.setdefault("image", k8s["K8S_IMAGE_HOST"])
        kwargs.setdefault("kubeconfig", k8s["KUBECONFIG"])
        kwargs.setdefault("namespace", k8s["K8S_NAMESPACE"])
        kwargs.setdefault("init_blocks", 0)
        kwargs.setdefault("max_cpu", 1)
        kwargs.setdefault("max_mem", "1Gi")
        provider = KubernetesProvider(**kwargs)
        provider.status_poll_interval_s = 0.3
        made.append(provider)
        return provider

    yield _make
    for provider in made:  # those pointed at a bad server or with bad credentials made nothing
        if provider.kubeconfig == k8s["KUBECONFIG"]:
            provider._api().delete_collection_namespaced_pod(
                provider.namespace, label_selector=f"{LABEL_RUN}={provider.run_id}", grace_period_seconds=0)


def _apps() -> tuple[Callable, Callable, Callable, Callable]:
    """The pi workflow's apps and a sleeper, defined here so they travel by value."""

    @python_app
    def pi(n):
        from random import random
        return 4 * sum(random() ** 2 + random() ** 2 < 1 for _ in range(n)) / n

    @python_app
    def mean(*xs):
        return sum(xs) / len(xs)

    @python_app
    def sleep_once(marker, seconds):
        """Sleep on the first try (leaving a marker); return the pod's name at once on a retry."""
        import os
        import socket
        import time
        if not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(seconds)
        return socket.gethostname()

    @python_app
    def hold_until(path):
        """Wait in the pod until ``path`` exists (the run dir is a hostPath); return the pod's name."""
        import os
        import socket
        import time
        while not os.path.exists(path):
            time.sleep(0.05)
        return socket.gethostname()

    return pi, mean, sleep_once, hold_until


def _htex(k8s: dict[str, str], provider: KubernetesProvider, **kwargs: Any) -> HighThroughputExecutor:
    kwargs.setdefault("heartbeat_period", 2)
    kwargs.setdefault("heartbeat_threshold", 60)  # pods lost behind our back are noticed by the provider
    return HighThroughputExecutor(label="htex_k8s", address=k8s["K8S_HOST_ADDR_FROM_PODS"], max_workers_per_node=1,
                                  provider=provider, **kwargs)


def _pod_mounts(run_dir: str) -> list[str]:
    os.makedirs(run_dir, exist_ok=True)
    return host_python_mounts() + [f"{run_dir}:{run_dir}"]


# ---------------------------------------------------------------- pods really run


def test_pi_workflow_runs_on_pods_from_the_shipped_config(k8s, make_dfk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KUBECONFIG", k8s["KUBECONFIG"])
    monkeypatch.setenv("PLITE_K8S_IMAGE", k8s["K8S_IMAGE_HOST"])
    monkeypatch.setenv("PLITE_K8S_ADDRESS", k8s["K8S_HOST_ADDR_FROM_PODS"])
    config = load_config(str(PROJECT / "configs" / "kubernetes.py"))
    [executor] = config.executors
    provider = executor.provider
    provider.status_poll_interval_s = 0.3
    created, submit = [], provider.submit
    provider.submit = lambda *args, **kwargs: (submit(*args, **kwargs), created.append(time.monotonic()))[0]
    submitted = time.monotonic()
    dfk = make_dfk(config)  # the initial block's pod is created before this returns
    [job_id] = executor.blocks.values()
    running = wait_for(lambda: provider.status([job_id])[0].state is JobState.RUNNING and time.monotonic(), 30,
                       what="the block's pod to run")
    connected = wait_for(lambda: executor.connected_workers > 0 and time.monotonic(), 30, what="the first pool")
    started = time.monotonic()
    provider.status([job_id])
    poll_s = time.monotonic() - started

    pi, mean, _, _ = _apps()
    estimate = mean(*[pi(20_000) for _ in range(4)]).result(timeout=60)
    assert abs(estimate - 3.14159) < 0.1

    pods = provider._api().list_namespaced_pod(provider.namespace, label_selector=f"{LABEL_EXECUTOR}=htex_k8s,"
                                                                                 f"{LABEL_RUN}={provider.run_id}")
    assert [pod.metadata.name for pod in pods.items] == [job_id]
    assert pods.items[0].spec.restart_policy == "Never"
    assert executor.cert_dir and executor.cert_dir.startswith(str(tmp_path))  # encrypted, keys via the hostPath
    pool_logs = list(Path(dfk.config.run_dir).rglob("worker_pool.log"))
    assert pool_logs, "the pool's log should reach the run dir through the read-write hostPath"
    print(f"\n[k8s] pod created->Running {running - created[0]:.2f}s, block submitted->first pool connected "
          f"{connected - created[0]:.2f}s (load()->connected {connected - submitted:.2f}s), "
          f"one status poll (1 block) {poll_s * 1000:.1f}ms")


def test_blocks_scale_out_under_load_and_in_when_idle(k8s, make_provider, make_dfk, run_dir):
    provider = make_provider(min_blocks=0, max_blocks=2, host_path_volumes=_pod_mounts(run_dir))
    executor = _htex(k8s, provider, max_batch=1)  # else the first pool to connect takes the whole queue
    make_dfk(executors=[executor], strategy="htex_auto_scale", strategy_period=0.2, max_idletime=1.0)
    assert executor.blocks == {}
    _, _, _, hold_until = _apps()
    go = os.path.join(run_dir, "go")
    futures = [hold_until(go) for _ in range(2)]  # one per pool: a pool has 1 worker and takes 1 task at a time
    wait_for(lambda: len(executor.blocks) == 2, 30, what="scale-out to 2 pods")
    job_ids = list(executor.blocks.values())
    wait_for(lambda: executor.connected_workers == 2, 30, what="both pods' pools to connect")
    open(go, "w").close()
    hosts = {future.result(timeout=30) for future in futures}
    assert hosts == set(job_ids)  # each pod ran one task
    wait_for(lambda: not executor.blocks, 30, what="idle pods to be released")
    assert [s.state for s in provider.status(job_ids)] == [JobState.CANCELLED] * 2
    gone = lambda: not [p for p in provider._api().list_namespaced_pod(  # noqa: E731
        provider.namespace, label_selector=f"{LABEL_RUN}={provider.run_id}").items if not p.metadata.deletion_timestamp]
    wait_for(gone, 30, what="the released pods to be deleted")


@pytest.mark.parametrize("retries", [0, 1])
def test_a_pod_deleted_behind_our_back_ends_its_task_with_manager_lost_or_a_retry(k8s, make_provider, make_dfk,
                                                                                 run_dir, retries):
    provider = make_provider(init_blocks=1, min_blocks=0, max_blocks=1, host_path_volumes=_pod_mounts(run_dir))
    executor = _htex(k8s, provider)
    make_dfk(executors=[executor], strategy="simple", strategy_period=0.2, retries=retries)
    _, _, sleep_once, _ = _apps()
    marker = os.path.join(run_dir, "marker")
    future = sleep_once(marker, 60)
    wait_for(lambda: os.path.exists(marker), 30, what="the task to start in the pod")
    [job_id] = executor.blocks.values()
    provider._api().delete_namespaced_pod(job_id, provider.namespace, grace_period_seconds=0)
    deleted = time.monotonic()
    if retries:
        new_pod = future.result(timeout=45)  # the retry finds the marker and returns at once
        assert new_pod != job_id
    else:
        with pytest.raises(ManagerLost, match="deleted outside parsl_lite"):
            future.result(timeout=45)
    print(f"\n[k8s] pod deleted -> task {'retried and done' if retries else 'failed'} "
          f"in {time.monotonic() - deleted:.2f}s")


# ---------------------------------------------------------------- statuses and bad input


def test_an_image_that_does_not_exist_fails_the_block_naming_the_pull_error(make_provider, tmp_path):
    provider = make_provider(image="localhost/plite-no-such-image:1")
    job_id = provider.submit("true", 1, "parsl_lite.htex.block-0")
    status = wait_for(lambda: (lambda s: s if s.terminal else None)(provider.status([job_id])[0]), 30,
                   what="the pull failure")
    assert status.state is JobState.FAILED
    assert "ErrImagePull" in status.message or "ImagePullBackOff" in status.message
    assert "localhost/plite-no-such-image:1" in status.message
    assert status.exit_code is None  # it never started
    [pod] = provider._api().list_namespaced_pod(provider.namespace,
                                               label_selector=f"{LABEL_RUN}={provider.run_id}").items or [None]
    assert pod is None or pod.metadata.deletion_timestamp, "deleted, so that kubelet stops retrying the pull"


def test_a_block_over_its_memory_limit_is_failed_naming_oomkilled(make_provider, tmp_path):
    provider = make_provider(init_mem="40Mi", max_mem="40Mi", host_path_volumes=host_python_mounts())
    job_id = provider.submit(f"{sys.executable} -c 'x = bytearray(400 * 2**20)'", 1, "oom")
    status = wait_for(lambda: (lambda s: s if s.terminal else None)(provider.status([job_id])[0]), 30,
                   what="the OOM kill")
    assert status.state is JobState.FAILED
    assert "OOMKilled" in status.message and "max_mem=40Mi" in status.message


def test_one_status_poll_covers_fifty_blocks(make_provider):
    provider = make_provider(node_selector={"plite-test": "no-such-node"})  # stored and scheduled, never run
    started = time.monotonic()
    job_ids = [provider.submit("true", 1, f"parsl_lite.htex.block-{i}") for i in range(50)]
    submit_s = time.monotonic() - started
    wait_for(lambda: all(s.message for s in provider.status(job_ids)), 30, what="the scheduler's verdicts")
    started = time.monotonic()
    statuses = provider.status(job_ids)
    poll_s = time.monotonic() - started
    assert {s.state for s in statuses} == {JobState.PENDING}
    assert all("Unschedulable" in s.message for s in statuses)
    assert provider.cancel(job_ids) == [True] * 50
    assert {s.state for s in provider.status(job_ids)} == {JobState.CANCELLED}
    print(f"\n[k8s] 50 pods created in {submit_s:.2f}s; one status poll of 50 blocks {poll_s * 1000:.1f}ms")


def test_a_pod_gone_without_us_is_missing_and_a_cancelled_one_cancelled(make_provider):
    provider = make_provider(node_selector={"plite-test": "no-such-node"})
    gone, cancelled = (provider.submit("true", 1, f"job-{i}") for i in range(2))
    provider._api().delete_namespaced_pod(gone, provider.namespace, grace_period_seconds=0)
    assert provider.cancel([cancelled]) == [True]
    missing, was_cancelled = provider.status([gone, cancelled])
    assert missing.state is JobState.MISSING and "deleted outside parsl_lite" in missing.message
    assert was_cancelled.state is JobState.CANCELLED


def _kubeconfig_copy(k8s: dict[str, str], tmp_path: Path, old: str, new: str) -> str:
    text = Path(k8s["KUBECONFIG"]).read_text()
    assert old in text
    path = tmp_path / "kubeconfig"
    path.write_text(text.replace(old, new))
    return str(path)


def test_an_unreachable_apiserver_is_a_provider_error_naming_the_url(k8s, make_provider, tmp_path):
    server = k8s["K8S_API"]
    kubeconfig = _kubeconfig_copy(k8s, tmp_path, server, "https://127.0.0.1:1")
    provider = make_provider(kubeconfig=kubeconfig)
    with pytest.raises(SubmitException, match=r"https://127\.0\.0\.1:1.*[Cc]onnection refused"):
        provider.submit("true", 1, "job")
    provider._jobs["pod-0"] = kube_module._Job("pod-0")  # as if submitted before the server went away
    with pytest.raises(ProviderError, match=r"cannot list pods .* cannot reach the API server https://127\.0\.0\.1:1"):
        provider.status(["pod-0"])
    assert provider.cancel(["pod-0"]) == [False]  # not deleted: not reported as cancelled


def test_credentials_the_apiserver_refuses_are_a_provider_error_naming_the_url(k8s, make_provider, tmp_path):
    text = Path(k8s["KUBECONFIG"]).read_text()
    user_line = next(line for line in text.splitlines() if "client-certificate" in line)
    bogus_token = _kubeconfig_copy(k8s, tmp_path, user_line, '  user: {token: "not-a-real-token"}')
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp_path / "intruder.key"), "-out", str(tmp_path / "intruder.crt"),
                    "-subj", "/CN=intruder", "-days", "1"], check=True, capture_output=True, timeout=30)
    (tmp_path / "cert").mkdir()
    bogus_cert = _kubeconfig_copy(k8s, tmp_path / "cert", user_line,
                                  f'  user: {{client-certificate: "{tmp_path}/intruder.crt", '
                                  f'client-key: "{tmp_path}/intruder.key"}}')
    for kubeconfig in (bogus_token, bogus_cert):
        provider = make_provider(kubeconfig=kubeconfig)
        with pytest.raises(SubmitException) as info:
            provider.submit("true", 1, "job")
        message = str(info.value)
        assert k8s["K8S_API"] in message and "401 Unauthorized" in message and kubeconfig in message, message


def test_a_kubeconfig_that_cannot_be_loaded_is_a_provider_error_naming_it(make_provider, tmp_path):
    provider = make_provider(kubeconfig=str(tmp_path / "missing-kubeconfig"))
    with pytest.raises(SubmitException, match="missing-kubeconfig"):
        provider.submit("true", 1, "job")


def test_kubeconfig_is_read_from_the_environment_when_the_provider_connects(k8s, tmp_path):
    """$KUBECONFIG set after ``kubernetes`` was imported still counts (the client fixes its default at import)."""
    script = tmp_path / "late_env.py"
    script.write_text(
        "import os, sys\n"
        "import kubernetes.config  # imported while KUBECONFIG is unset\n"
        "from parsl_lite.providers import KubernetesProvider\n"
        "os.environ['KUBECONFIG'] = sys.argv[1]\n"
        "KubernetesProvider(image='unused:1')._api().list_namespaced_pod('default', limit=1)\n"
        "print('connected')\n")
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config to fall back on
    done = subprocess.run([sys.executable, str(script), k8s["KUBECONFIG"]], capture_output=True, text=True,
                          env=env, timeout=50)
    assert done.returncode == 0 and "connected" in done.stdout, done.stderr[-2000:]


# ---------------------------------------------------------------- no cluster needed


def _pod(phase: str, *, waiting: Any = None, terminated: Any = None, reason: Any = None, conditions: Any = None) -> Any:
    from kubernetes import client as k

    state = k.V1ContainerState(waiting=waiting, terminated=terminated)
    status = k.V1PodStatus(phase=phase, reason=reason, message=reason and f"{reason} happened",
                           conditions=conditions, container_statuses=[k.V1ContainerStatus(
                               name="parsl-worker", state=state, image="img:1", image_id="", ready=False,
                               restart_count=0)])
    return k.V1Pod(spec=k.V1PodSpec(containers=[k.V1Container(name="parsl-worker", image="img:1")]), status=status)


def test_pod_phases_and_container_states_map_to_job_states():
    from kubernetes import client as k

    oom = pod_status(_pod("Failed", terminated=k.V1ContainerStateTerminated(exit_code=137, reason="OOMKilled")), "1Gi")
    assert oom.state is JobState.FAILED and "OOMKilled" in oom.message and oom.exit_code == 137
    crashed = pod_status(_pod("Failed", terminated=k.V1ContainerStateTerminated(exit_code=3, reason="Error")))
    assert crashed.state is JobState.FAILED and crashed.exit_code == 3 and "exit code 3" in crashed.message
    assert pod_status(_pod("Failed", reason="DeadlineExceeded")).state is JobState.TIMEOUT
    assert pod_status(_pod("Failed", reason="Evicted")).message == "pod failed: Evicted Evicted happened"
    pull = pod_status(_pod("Pending", waiting=k.V1ContainerStateWaiting(reason="InvalidImageName", message="bad")))
    assert pull.state is JobState.FAILED and "InvalidImageName: bad (image img:1)" in pull.message
    creating = pod_status(_pod("Pending", waiting=k.V1ContainerStateWaiting(reason="ContainerCreating")))
    assert creating.state is JobState.PENDING
    unschedulable = pod_status(_pod("Pending", conditions=[k.V1PodCondition(
        type="PodScheduled", status="False", reason="Unschedulable", message="0/1 nodes are available")]))
    assert unschedulable.state is JobState.PENDING and "Unschedulable: 0/1 nodes" in unschedulable.message
    assert pod_status(_pod("Running")).state is JobState.RUNNING
    assert pod_status(_pod("Succeeded", terminated=k.V1ContainerStateTerminated(exit_code=0))).state \
        is JobState.COMPLETED
    assert pod_status(_pod("Unknown")).state is JobState.UNKNOWN


@pytest.mark.parametrize("kwargs,field", [
    ({"max_mem": "lots"}, "max_mem"),
    ({"init_mem": "2Gi", "max_mem": "1Gi"}, "init_mem"),
    ({"init_cpu": 4, "max_cpu": "500m"}, "init_cpu"),
    ({"nodes_per_block": 2}, "nodes_per_block"),
    ({"host_path_volumes": ["relative:/x"]}, "host_path_volumes"),
    ({"host_path_volumes": ["/a:/b:rx"]}, "host_path_volumes"),
    ({"labels": {"parsl-lite-run": "mine"}}, "labels"),
    ({"labels": {"app": "not valid!"}}, "labels"),
    ({"persistent_volumes": [["claim-only"]]}, "persistent_volumes"),
    ({"image_pull_policy": "Sometimes"}, "image_pull_policy"),
    ({"max_blocks": 1, "min_blocks": 2, "init_blocks": 1}, "max_blocks"),
])
def test_bad_settings_are_refused_naming_the_field(kwargs, field):
    with pytest.raises(ConfigurationError) as info:
        KubernetesProvider("img:1", **{"init_blocks": 0, **kwargs})
    assert info.value.field == field


def test_without_the_kubernetes_package_construction_names_the_extra(monkeypatch):
    import parsl_lite.providers as providers

    assert providers.KubernetesProvider is KubernetesProvider  # lazily importable
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    kube_module._kube.cache_clear()
    try:
        with pytest.raises(OptionalModuleMissing, match=r"parsl_lite\[kubernetes\]"):
            KubernetesProvider("img:1")
    finally:
        kube_module._kube.cache_clear()


def test_the_shipped_toml_config_builds_a_kubernetes_provider():
    config = load_config(str(PROJECT / "configs" / "kubernetes.toml"))
    assert isinstance(config, Config)
    [executor] = config.executors
    provider = executor.provider
    assert isinstance(provider, KubernetesProvider) and provider.max_blocks == 4 and provider.labels == {"app": "parsl-lite"}
    assert executor.encrypted is False
