"""Endpoints whose blocks are Kubernetes pods or Slurm jobs: their ``config.toml`` and a fixture that starts them.

    text = k8s_endpoint_config(service.url, k8s, "podded", workers=2, max_blocks=3)   # k8s: conftest's facts
    text = slurm_endpoint_config(service.url, slurm, "batch", max_blocks=2)           # slurm: conftest's facts
    ep = start_cluster_endpoint(service, "podded", token, text)   # a faas_endpoint_helpers.Endpoint, online
    ep = cluster_endpoints(service, "podded", token, text)        # the fixture: the same, cleaned up after
    endpoint_pods(k8s, "podded"), squeue_jobs("batch")            # what the backends hold for that endpoint

The builders write what a user writes in ``$PARSL_LITE_HOME/endpoints/NAME/config.toml``
(``README.md``, "Endpoints on Kubernetes and Slurm"), with short periods so that
tests are fast. Keyword options go where they belong: ``[endpoint]`` keys,
the Config's scaling keys (``strategy``, ``max_idletime``, ``strategy_period``),
any parameter of the provider's class (``init_blocks``, ``max_blocks``,
``max_mem``, ``partition``, ...), and anything else to the HighThroughputExecutor.

On Kubernetes, the pods run the ``plite-host`` image, into which this
machine's ``/usr``, Python prefixes and parsl_lite's source are mounted
read-only, and the endpoint's run directory read-write (the pools' CurveZMQ
keys and logs); they dial the interchange at ``K8S_HOST_ADDR_FROM_PODS``.
``PYTHONPATH`` in the pod holds the repository, so functions pickled by
reference (``tests.test_x.f``, ``examples.faas.y.g``) import there as they do
on a local endpoint. Slurm jobs inherit the daemon's environment (sbatch's
default), so the same holds there.
"""
from __future__ import annotations

import inspect
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from kubernetes import client as kube_client  # at import: the client takes seconds to import on a loaded machine,
from kubernetes import config as kube_config  # which a test's own time should not pay

from parsl_lite.faas import paths
from tests.faas_endpoint_helpers import _CONFIG_KEYS, _ENDPOINT_KEYS, Endpoint, _toml

REPO = Path(__file__).resolve().parents[1]


def _provider_keys(provider_type: str) -> set[str]:
    import parsl_lite.providers as providers

    cls = getattr(providers, provider_type)
    return set(inspect.signature(cls.__init__).parameters) - {"self"}


def cluster_endpoint_config(service_url: str, provider_type: str, provider: dict, executor: dict,
                            **options: Any) -> str:
    """A config.toml: fast heartbeats and scaling, the given provider table, ``options`` routed by key."""
    top = {"strategy": "simple", "max_idletime": 2.0, "strategy_period": 0.5}
    endpoint = {"service_url": service_url, "heartbeat_period": 0.5, "heartbeat_threshold": 5.0}
    provider = {"init_blocks": 0, "min_blocks": 0, "max_blocks": 2, **provider}
    executor = {"heartbeat_period": 1, "heartbeat_threshold": 10, **executor}
    provider_keys = _provider_keys(provider_type)
    for key, value in options.items():
        target = (endpoint if key in _ENDPOINT_KEYS else top if key in _CONFIG_KEYS
                  else provider if key in provider_keys else executor)
        target[key] = value
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    lines += ["", "[endpoint]"] + [f"{k} = {_toml(v)}" for k, v in endpoint.items() if v is not None]
    lines += ["", "[[executors]]", 'type = "HighThroughputExecutor"']
    lines += [f"{k} = {_toml(v)}" for k, v in executor.items()]
    lines += ["  [executors.provider]", f"  type = {_toml(provider_type)}"]
    lines += [f"  {k} = {_toml(v)}" for k, v in provider.items() if not isinstance(v, dict)]
    for key, table in ((k, v) for k, v in provider.items() if isinstance(v, dict)):  # e.g. launcher
        lines += [f"    [executors.provider.{key}]"] + [f"    {k} = {_toml(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def executor_label(name: str) -> str:
    """The executor label the builders give endpoint ``name``: ``htex_NAME_<hash of its directory>``.

    Pods and jobs are found by it, so two tests with an endpoint of the same
    name (each in its own ``PARSL_LITE_HOME``) never see each other's.
    """
    import hashlib

    digest = hashlib.blake2b(str(paths.endpoint_dir(name)).encode(), digest_size=3).hexdigest()
    return "htex_" + "".join(c if c.isalnum() else "_" for c in name) + "_" + digest


def endpoint_run_dir(name: str) -> Path:
    """The run directory an endpoint's config names (made now: a pod mounts it as a hostPath)."""
    run_dir = paths.endpoint_dir(name) / "runinfo"
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def k8s_endpoint_config(service_url: str, k8s: dict[str, str], name: str, workers: int = 1, **options: Any) -> str:
    """The config.toml of endpoint ``name`` whose blocks are pods of the test backend (``k8s``: its facts).

    Each pod asks for 0.1 CPU (so several fit on the backend's 2-CPU node) and
    may use ``max_cpu`` (default 1) and ``max_mem`` (default 1Gi). Pods are polled every second.
    """
    from parsl_lite.providers.kubernetes import host_python_mounts

    run_dir = endpoint_run_dir(name)
    provider = {"image": k8s["K8S_IMAGE_HOST"], "namespace": k8s["K8S_NAMESPACE"], "kubeconfig": k8s["KUBECONFIG"],
                "init_cpu": "100m", "max_cpu": 1, "init_mem": "100Mi", "max_mem": "1Gi",
                "host_path_volumes": host_python_mounts() + [f"{run_dir}:{run_dir}"],
                "worker_init": f"export PYTHONPATH={REPO}", "status_poll_interval_s": 1.0}
    executor = {"label": executor_label(name), "address": k8s["K8S_HOST_ADDR_FROM_PODS"],
                "max_workers_per_node": workers}
    return f"run_dir = {_toml(str(run_dir))}\n" + cluster_endpoint_config(
        service_url, "KubernetesProvider", provider, executor, **options)


def slurm_endpoint_config(service_url: str, slurm: dict[str, str], name: str, workers: int = 1,
                          **options: Any) -> str:
    """The config.toml of endpoint ``name`` whose blocks are Slurm jobs of the test backend (``slurm``: its facts).

    Each block is a 1-CPU job (``cores_per_node = 1``, not exclusive), walltime 5 minutes, polled every second.
    """
    run_dir = endpoint_run_dir(name)
    provider = {"partition": slurm["SLURM_PARTITION"], "exclusive": False, "cores_per_node": 1,
                "walltime": "00:05:00", "status_poll_interval_s": 1.0}
    executor = {"label": executor_label(name), "max_workers_per_node": workers}
    return f"run_dir = {_toml(str(run_dir))}\n" + cluster_endpoint_config(
        service_url, "SlurmProvider", provider, executor, **options)


def configured_endpoint(service: Any, name: str, token: str, config_text: str) -> Endpoint:
    """Endpoint ``name`` with ``config_text`` as its config.toml, not started yet."""
    directory = paths.endpoint_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.toml").write_text(config_text)
    return Endpoint(service, name, token, directory)


def start_cluster_endpoint(service: Any, name: str, token: str, config_text: str) -> Endpoint:
    """Write ``config_text`` as endpoint ``name``'s config.toml and start it; wait until the service sees it."""
    return configured_endpoint(service, name, token, config_text).start()


# ---------------------------------------------------------------- what the backends hold


def _pods(k8s: dict[str, str], name: str) -> list[Any]:
    from parsl_lite.providers.kubernetes import LABEL_EXECUTOR

    api = kube_client.CoreV1Api(kube_config.new_client_from_config(config_file=k8s["KUBECONFIG"]))
    try:
        return api.list_namespaced_pod(k8s["K8S_NAMESPACE"],
                                       label_selector=f"{LABEL_EXECUTOR}={executor_label(name)}").items
    finally:
        api.api_client.close()


def endpoint_pods(k8s: dict[str, str], name: str) -> set[str]:
    """Names of endpoint ``name``'s pods that are not being deleted (what the API server lists)."""
    return {p.metadata.name for p in _pods(k8s, name) if not p.metadata.deletion_timestamp}


def all_endpoint_pods(k8s: dict[str, str], name: str) -> set[str]:
    """Names of every pod of endpoint ``name``, those being deleted included."""
    return {p.metadata.name for p in _pods(k8s, name)}


def squeue_jobs(name: str) -> dict[str, str]:
    """Endpoint ``name``'s Slurm jobs that squeue lists: job id -> state (PENDING, RUNNING, COMPLETING, ...)."""
    prefix = f"parsl_lite.{executor_label(name)}.block-"
    out = subprocess.run(["squeue", "--noheader", "--format=%i %j %T"], check=True, capture_output=True,
                         text=True, timeout=10).stdout
    return {job: state for job, job_name, state in (line.split() for line in out.splitlines() if line.strip())
            if job_name.startswith(prefix)}


@pytest.fixture
def cluster_endpoints() -> Iterator[Any]:
    """``start_cluster_endpoint``; at teardown each endpoint is stopped and leaves no process behind."""
    started: list[Endpoint] = []

    def start(service: Any, name: str, token: str, config_text: str) -> Endpoint:
        endpoint = configured_endpoint(service, name, token, config_text)
        started.append(endpoint)
        return endpoint.start()

    yield start
    stray = [pid for endpoint in started for pid in endpoint.cleanup()]
    assert not stray, f"endpoint processes left running (killed now): {stray}"


__all__ = ["cluster_endpoint_config", "configured_endpoint", "k8s_endpoint_config", "slurm_endpoint_config",
           "start_cluster_endpoint", "cluster_endpoints", "endpoint_pods", "all_endpoint_pods", "squeue_jobs",
           "endpoint_run_dir", "executor_label"]
