"""The htex gives every block it launches the broker the script knows, whatever the provider: a 0600 file in
the run directory named on the pool's command line (never the token itself), read by the pool into its
workers' environment. No ``worker_init`` needed; a manual one still wins."""
from __future__ import annotations

import os
import stat

from parsl_lite import messaging as msg
from parsl_lite import python_app
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.launchers import SingleNodeLauncher
from parsl_lite.messaging import cli, paths

from .conftest import wait_for
from .messaging_helpers import broker  # noqa: F401  (fixture)
from .test_messaging_apps import listener
from .test_provider_slurm import provider  # noqa: F401  (fixture)


@python_app
def broker_env():
    import os
    return os.environ.get("SLURM_JOB_ID"), os.environ.get("PARSL_LITE_BROKER_URL"), \
        os.environ.get("PARSL_LITE_BROKER_TOKEN")


def _pool_logs(run_dir) -> str:
    text = ""
    for root, _, files in os.walk(run_dir):
        text += "".join(open(os.path.join(root, f), errors="replace").read() for f in files if f.endswith(".log"))
    return text


def test_a_listener_on_a_slurm_block_finds_the_broker_without_worker_init(broker, provider, make_dfk, run_dir):
    assert paths.URL_ENV not in os.environ                    # the script knows the broker from broker.json only
    p = provider(init_blocks=1, min_blocks=0, max_blocks=1, launcher=SingleNodeLauncher())
    executor = HighThroughputExecutor(label="htex_slurm_auto", max_workers_per_node=2, cores_per_worker=0.5,
                                      heartbeat_period=1, heartbeat_threshold=10, provider=p)
    make_dfk(executors=[executor], strategy="none")
    job_id, url, token = broker_env().result(timeout=60)
    assert job_id and url == broker.address and token == broker.token
    command = executor._launch_command("probe")
    assert "--broker-file" in command and broker.token not in command      # `ps` shows the path only
    broker_file = command.split("--broker-file ", 1)[1].split()[0]
    assert stat.S_IMODE(os.stat(broker_file).st_mode) == 0o600
    heard = listener("auto-5", "a1")
    wait_for(lambda: msg.stats()["topics"]["listeners"].get("auto-5") == 1, 60, "the app on Slurm subscribed")
    for i in range(5):
        msg.publish("auto-5", i)
    msg.stop("auto-5", listener_id="a1")
    assert heard.result(timeout=60) == [0, 1, 2, 3, 4]
    assert broker.token not in _pool_logs(run_dir)


def test_a_manual_worker_init_still_wins(broker, provider, make_dfk, monkeypatch):
    """A provider's ``worker_init`` that exports a broker is what the workers use (here: the same broker under
    another name for this host, ``localhost``), not the run directory's file."""
    init = msg.worker_init().replace("tcp://127.0.0.1:", "tcp://localhost:")
    assert "tcp://localhost:" in init
    p = provider(init_blocks=1, min_blocks=0, max_blocks=1, launcher=SingleNodeLauncher(), worker_init=init)
    for name in (paths.URL_ENV, paths.TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)              # msg.worker_init() exported them into the script
    make_dfk(executors=[HighThroughputExecutor(label="htex_slurm_init", max_workers_per_node=1, heartbeat_period=1,
                                               heartbeat_threshold=10, provider=p)], strategy="none")
    _, url, token = broker_env().result(timeout=60)
    assert url == broker.address.replace("127.0.0.1", "localhost") and token == broker.token


def test_no_broker_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))
    for name in (paths.URL_ENV, paths.TOKEN_ENV, "PARSL_LITE_FAAS_URL", "PARSL_LITE_FAAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert paths.write_worker_file(str(tmp_path)) is None
    assert not (tmp_path / paths.WORKER_FILE).exists()



def test_block_launches_ask_a_service_that_is_down_once_not_per_block(tmp_path, monkeypatch):
    """A client.json naming a service nobody runs: the first block launch finds no broker (and writes no file);
    the next ones reuse that answer instead of each waiting for a connection, while the client API asks afresh."""
    import socket

    from parsl_lite.messaging.errors import BrokerNotFound
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("PARSL_LITE_HOME", str(home))
    for name in (paths.URL_ENV, paths.TOKEN_ENV, "PARSL_LITE_FAAS_URL", "PARSL_LITE_FAAS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as s:   # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    from parsl_lite.faas import paths as faas_paths
    faas_paths.write_client_file(f"http://127.0.0.1:{port}", "t")
    monkeypatch.setattr(paths, "_SERVICE_ANSWERS", {})
    asked = []
    real_ask = paths._ask_service_for_broker
    monkeypatch.setattr(paths, "_ask_service_for_broker", lambda *a: asked.append(a) or real_ask(*a))
    assert paths.write_worker_file(str(tmp_path)) is None
    assert paths.write_worker_file(str(tmp_path)) is None
    assert len(asked) == 1 and not (tmp_path / paths.WORKER_FILE).exists()
    try:
        paths.locate()
    except BrokerNotFound as exc:
        assert f"127.0.0.1:{port}" in str(exc)
    else:
        raise AssertionError("locate() found a broker at a service nobody runs")
    assert len(asked) == 2

def test_broker_start_advertise_names_the_address_clients_dial(tmp_path, monkeypatch):
    """Bound to 127.0.0.1, advertised as ``localhost``: broker.json and the topic addresses say localhost, and a
    client that only knows that address publishes, subscribes and queues."""
    from .messaging_helpers import Broker
    home = tmp_path / "home"
    monkeypatch.setenv("PARSL_LITE_HOME", str(home))
    for name in (paths.URL_ENV, paths.TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)
    msg.reset_default_client()
    directory = home / "broker"
    proc = cli.launch(directory, "127.0.0.1", advertise="localhost")
    b = Broker(directory, proc, cli.wait_started(directory, proc))
    try:
        assert b.address.startswith("tcp://localhost:")
        assert b.info["publish_address"].startswith("tcp://localhost:")
        assert b.info["subscribe_address"].startswith("tcp://localhost:")
        sub = msg.subscribe("adv")
        msg.publish("adv", "hi")
        assert sub.get(timeout=10) == "hi"
        sub.close()
        q = msg.queue("adv-q")
        q.put(1)
        m = q.get(timeout=5)
        assert m is not None and m.body == 1
        m.ack()
    finally:
        msg.reset_default_client()
        assert b.stop() == 0


def test_a_listener_in_a_kubernetes_pod_finds_the_broker_without_worker_init(k8s, tmp_path, monkeypatch, make_dfk,
                                                                            run_dir):
    """The broker binds the address pods reach; the pod sees the run directory (a host path volume, as for the
    htex's secret) and so the broker file: no ``worker_init``."""
    from .test_messaging_clusters import pod_listener_hears
    pod_listener_hears(k8s, tmp_path, monkeypatch, make_dfk, run_dir, "auto", lambda: "")


def test_a_listener_on_an_ssh_host_finds_the_broker_without_worker_init(ssh_hosts, tmp_path, monkeypatch, make_dfk,
                                                                       run_dir):
    """h2 has its own network but the host's file system (not /home): it reads the run directory's file."""
    from .test_messaging_clusters import h2_listener_hears
    h2_listener_hears(ssh_hosts, tmp_path, monkeypatch, make_dfk, run_dir, lambda: "")
