"""The issue's listener from apps on Slurm blocks (the test backend's one-node cluster): the workers find the
broker through the provider's ``worker_init`` (``msg.worker_init()``), not through our environment."""
from __future__ import annotations

import os

from parsl_lite import messaging as msg
from parsl_lite import python_app
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.launchers import SingleNodeLauncher

from .conftest import wait_for
from .messaging_helpers import broker  # noqa: F401  (fixture)
from .test_messaging_apps import listener
from .test_provider_slurm import provider  # noqa: F401  (fixture)


@python_app
def where_am_i():
    import os
    return os.environ.get("SLURM_JOB_ID"), os.environ.get("PARSL_LITE_BROKER_URL")


def test_a_listener_app_on_a_slurm_block_hears_the_script(broker, provider, make_dfk, monkeypatch):
    init = msg.worker_init()                                  # export PARSL_LITE_BROKER_URL=...; ..._TOKEN=...
    for name in ("PARSL_LITE_BROKER_URL", "PARSL_LITE_BROKER_TOKEN"):
        monkeypatch.delenv(name, raising=False)               # so only worker_init can give them to the job
    assert "PARSL_LITE_BROKER_URL" not in os.environ
    p = provider(init_blocks=1, min_blocks=0, max_blocks=1, launcher=SingleNodeLauncher(), worker_init=init)
    make_dfk(executors=[HighThroughputExecutor(label="htex_slurm", max_workers_per_node=2, cores_per_worker=0.5,
                                               heartbeat_period=1, heartbeat_threshold=10, provider=p)],
             strategy="none")
    job_id, url = where_am_i().result(timeout=60)
    assert job_id and url == broker.address
    heard = listener("slurm-5", "s1")
    wait_for(lambda: msg.stats()["topics"]["listeners"].get("slurm-5") == 1, 60, "the app on Slurm subscribed")
    for i in range(5):
        msg.publish("slurm-5", i)
    msg.stop("slurm-5", listener_id="s1")
    assert heard.result(timeout=60) == [0, 1, 2, 3, 4]


def broker_on(address: str, tmp_path, monkeypatch):
    """A broker bound to ``address`` in a fresh PARSL_LITE_HOME, with no broker variables in our environment."""
    from .messaging_helpers import start_broker
    home = tmp_path / "home"
    monkeypatch.setenv("PARSL_LITE_HOME", str(home))
    for name in ("PARSL_LITE_BROKER_URL", "PARSL_LITE_BROKER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    msg.reset_default_client()
    return start_broker(home, host=address)


@python_app
def hostname_and_heard(topic, listener_id):
    import socket

    from parsl_lite import messaging as msg
    seen = [m for m in msg.subscribe(topic, listener_id=listener_id)]
    return socket.gethostname(), seen


def test_a_listener_app_on_an_ssh_host_with_its_own_network_hears_the_script(ssh_hosts, tmp_path, monkeypatch,
                                                                             make_dfk, run_dir):
    """h2 reaches this machine only as SSH_HOST_ADDR_FROM_H2: the broker binds that address, and the worker
    learns the broker's URL and token from worker_init alone (nothing is inherited over SSH)."""
    h2_listener_hears(ssh_hosts, tmp_path, monkeypatch, make_dfk, run_dir, lambda: msg.worker_init())


def h2_listener_hears(ssh_hosts, tmp_path, monkeypatch, make_dfk, run_dir, worker_init) -> None:
    """A broker on the address h2 reaches, a listener app on h2 (``worker_init()``: the provider's, called
    once the broker runs), three messages heard."""
    from parsl_lite.config import Config
    from parsl_lite.providers import SSHProvider

    address = ssh_hosts["SSH_HOST_ADDR_FROM_H2"]
    b = broker_on(address, tmp_path, monkeypatch)
    try:
        assert b.address.startswith(f"tcp://{address}:")
        provider = SSHProvider([f"{ssh_hosts['SSH_H2_HOST']}:{ssh_hosts['SSH_H2_PORT']}"],
                               username=ssh_hosts["SSH_USER"], key_filename=ssh_hosts["SSH_KEY"],
                               known_hosts=ssh_hosts["SSH_KNOWN_HOSTS"], remote_script_dir=str(tmp_path / "remote"),
                               worker_init=worker_init(), init_blocks=1, min_blocks=1, max_blocks=1)
        provider.script_dir = str(tmp_path / "local")
        executor = HighThroughputExecutor(label="htex_ssh", provider=provider, max_workers_per_node=1,
                                          heartbeat_period=1, heartbeat_threshold=4, address=address)
        dfk = make_dfk(Config(executors=[executor], run_dir=run_dir, strategy_period=0.5))
        heard = hostname_and_heard("h2-topic", "h2-listener")
        wait_for(lambda: msg.stats()["topics"]["listeners"].get("h2-topic") == 1, 60, "the app on h2 subscribed")
        for i in range(3):
            msg.publish("h2-topic", i)
        msg.stop("h2-topic", listener_id="h2-listener")
        assert heard.result(timeout=60) == ("h2", [0, 1, 2])
        dfk.cleanup()
    finally:
        msg.reset_default_client()
        assert b.stop() == 0


def test_a_listener_app_in_a_kubernetes_pod_hears_the_script(k8s, tmp_path, monkeypatch, make_dfk, run_dir):
    """Pods reach this machine as K8S_HOST_ADDR_FROM_PODS: the broker binds it; the pod gets the broker's URL
    and token from worker_init alone."""
    pod_listener_hears(k8s, tmp_path, monkeypatch, make_dfk, run_dir, "pod", lambda: msg.worker_init())


@python_app
def pod_listener(topic, listener_id):
    import socket

    from parsl_lite import messaging as msg
    return socket.gethostname(), [m for m in msg.subscribe(topic, listener_id=listener_id)]


def pod_listener_hears(k8s, tmp_path, monkeypatch, make_dfk, run_dir, name: str, worker_init) -> None:
    """A broker on the address pods reach, a listener app in a pod (``worker_init()``: the provider's, called
    once the broker runs), three messages heard, the pod deleted."""
    from parsl_lite.providers import KubernetesProvider
    from parsl_lite.providers.kubernetes import LABEL_RUN, host_python_mounts

    address = k8s["K8S_HOST_ADDR_FROM_PODS"]
    b = broker_on(address, tmp_path, monkeypatch)
    provider = None
    try:
        os.makedirs(run_dir, exist_ok=True)
        provider = KubernetesProvider(image=k8s["K8S_IMAGE_HOST"], kubeconfig=k8s["KUBECONFIG"],
                                      namespace=k8s["K8S_NAMESPACE"], init_blocks=1, min_blocks=0, max_blocks=1,
                                      max_cpu=1, max_mem="1Gi", worker_init=worker_init(),
                                      host_path_volumes=host_python_mounts() + [f"{run_dir}:{run_dir}"])
        provider.status_poll_interval_s = 0.3
        executor = HighThroughputExecutor(label=f"htex_k8s_{name}", address=address, max_workers_per_node=1,
                                          heartbeat_period=2, heartbeat_threshold=60, provider=provider)
        make_dfk(executors=[executor], strategy="none")
        heard = pod_listener(f"{name}-topic", f"{name}-1")
        wait_for(lambda: msg.stats()["topics"]["listeners"].get(f"{name}-topic") == 1, 90,
                 "the app in a pod subscribed")
        for i in range(3):
            msg.publish(f"{name}-topic", i)
        msg.stop(f"{name}-topic", listener_id=f"{name}-1")
        host, seen = heard.result(timeout=60)
        assert seen == [0, 1, 2] and host in executor.blocks.values()   # the pod's name is its job id
    finally:
        msg.reset_default_client()
        assert b.stop() == 0
        if provider is not None:
            provider._api().delete_collection_namespaced_pod(
                provider.namespace, label_selector=f"{LABEL_RUN}={provider.run_id}", grace_period_seconds=0)
