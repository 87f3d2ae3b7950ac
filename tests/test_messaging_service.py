"""The broker hosted by the function service (``--broker``): one address, the service's user tokens.

No broker of its own and no broker variables anywhere: the script finds the service's broker through
``client.json`` (``GET /v1/broker``), and so does the endpoint, which hands it to its workers.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import pytest

from parsl_lite import messaging as msg
from parsl_lite.faas import FuncXClient, FuncXExecutor
from parsl_lite.faas import paths as faas_paths
from parsl_lite.messaging import paths

from .conftest import wait_for
from .faas_endpoint_helpers import faas_endpoints  # noqa: F401  (fixture)
from .faas_helpers import add_user, client_home_service
from .test_faas_sdk import user_functions

USER = user_functions("""
    def listener(topic, listener_id):
        import os
        from parsl_lite import messaging as msg
        seen = [m for m in msg.subscribe(topic, listener_id=listener_id)]
        return seen, os.environ.get("PARSL_LITE_BROKER_URL")

    def worker(queue_name):
        from parsl_lite import messaging as msg
        m = msg.queue(queue_name).get(timeout=30)
        msg.table("svc-results").put(str(m.body["doc"]), m.body["doc"] * 10)
        m.ack()
        return m.body["doc"]
""")


@pytest.fixture
def no_broker_env(monkeypatch):
    for name in (paths.URL_ENV, paths.TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)
    msg.reset_default_client()
    yield
    msg.reset_default_client()


def _get(url: str, token: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_an_endpoint_function_talks_to_the_services_broker_with_the_users_token(tmp_path, monkeypatch,
                                                                                no_broker_env, faas_endpoints):
    with client_home_service(tmp_path, monkeypatch, broker=True) as service:
        token = add_user(service, "alice")                       # a plain user, not the admin
        faas_paths.write_client_file(service.url, token)
        info = json.loads((service.dir / "service.json").read_text())["broker"]
        assert info["address"].startswith("tcp://127.0.0.1:") and "token" not in info
        ep = faas_endpoints(service, "ep", token, workers=2)      # before the script touches msg: nothing inherited
        assert paths.URL_ENV not in os.environ
        with FuncXExecutor(FuncXClient(), endpoint_id=ep.endpoint_id, batch_interval=0.05) as fx:
            heard = fx.submit(USER["listener"], "svc-7", "svc-listener")
            wait_for(lambda: msg.stats()["topics"]["listeners"].get("svc-7") == 1, 60, "the function subscribed")
            assert msg.default_client().url == info["address"] and msg.default_client().token == token
            for i in range(5):
                msg.publish("svc-7", {"i": i})
            msg.stop("svc-7", listener_id="svc-listener")
            seen, url = heard.result(timeout=60)
            assert seen == [{"i": i} for i in range(5)] and url == info["address"]
            msg.queue("svc-work").put({"doc": 4})
            assert fx.submit(USER["worker"], "svc-work").result(timeout=60) == 4
            assert msg.table("svc-results").get("4") == 40


def test_the_services_broker_refuses_a_wrong_token_and_anonymous_lookups(tmp_path, monkeypatch, no_broker_env):
    with client_home_service(tmp_path, monkeypatch, broker=True) as service:
        status, body = _get(service.url + "/v1/broker", "")
        assert status == 401, body
        status, info = _get(service.url + "/v1/broker", service.admin_token)
        assert status == 200 and info["address"].startswith("tcp://")
        monkeypatch.setenv(paths.URL_ENV, info["address"])
        monkeypatch.setenv(paths.TOKEN_ENV, "not-a-token-of-this-service")
        msg.reset_default_client()
        with pytest.raises(msg.BrokerAuthError):
            msg.queue("nope")
        with pytest.raises(msg.BrokerAuthError):
            msg.subscribe("nope")
        monkeypatch.setenv(paths.TOKEN_ENV, service.admin_token)   # the admin's token is a user's token too
        msg.reset_default_client()
        q = msg.queue("svc-admin")
        q.put("hello")
        m = q.get(timeout=5)
        assert m is not None and m.body == "hello"
        m.ack()


def test_a_service_without_broker_says_so(tmp_path, monkeypatch, no_broker_env):
    with client_home_service(tmp_path, monkeypatch) as service:
        status, body = _get(service.url + "/v1/broker", service.admin_token)
        assert status == 404 and body["error"] == "no_broker"
        assert "broker" not in json.loads((service.dir / "service.json").read_text())
        with pytest.raises(msg.BrokerNotFound, match="service start --broker"):
            msg.queue("nothing")


def test_queued_messages_survive_a_killed_service_and_its_broker_keeps_its_address(tmp_path, monkeypatch,
                                                                                    no_broker_env):
    import subprocess
    import sys
    with client_home_service(tmp_path, monkeypatch, broker=True) as service:
        q = msg.queue("svc-durable")
        for i in range(3):
            q.put(i)
        address = msg.default_client().url
        service.kill()                                              # SIGKILL: the broker thread dies with it
        service.restart()
        assert json.loads((service.dir / "service.json").read_text())["broker"]["address"] == address
        got = [q.get(timeout=10) for _ in range(3)]                 # the same client reconnects by itself
        assert [m.body for m in got] == [0, 1, 2]
        for m in got:
            m.ack()
        status = subprocess.run([sys.executable, "-m", "parsl_lite.cli", "service", "status", "--dir",
                                 str(service.dir)], capture_output=True, text=True, timeout=60)
        assert f"messaging broker: {address}" in status.stdout, status.stdout + status.stderr


def test_the_topic_sockets_zap_check_asks_the_hosts_token_check():
    """The topic sockets' PLAIN check (ZAP): user ``parsl_lite`` with a password the host accepts, nothing else."""
    import zmq

    from parsl_lite.messaging.broker import TokenAuthenticator
    context = zmq.Context()
    try:
        auth = TokenAuthenticator(context, lambda token: token == "users-token")
        assert auth._authenticate_plain("parsl_lite", "parsl_lite", "users-token")[0]
        assert not auth._authenticate_plain("parsl_lite", "parsl_lite", "wrong")[0]
        assert not auth._authenticate_plain("parsl_lite", "someone", "users-token")[0]
    finally:
        context.term()


def test_an_endpoint_with_only_its_config_and_token_hands_the_broker_to_its_workers(tmp_path, monkeypatch,
                                                                                    no_broker_env, faas_endpoints):
    """The endpoint lives in a home of its own with no client.json: config.toml's service_url and
    $PARSL_LITE_FAAS_TOKEN are all it has (as on another machine); its workers still find the broker."""
    with client_home_service(tmp_path, monkeypatch, broker=True) as service:
        token = add_user(service, "bob")
        faas_paths.write_client_file(service.url, token)
        script_home = os.environ["PARSL_LITE_HOME"]
        monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "endpoint-home"))
        ep = faas_endpoints(service, "far", token, workers=1)
        assert not (tmp_path / "endpoint-home" / "faas" / "client.json").exists()
        monkeypatch.setenv("PARSL_LITE_HOME", script_home)
        with FuncXExecutor(FuncXClient(), endpoint_id=ep.endpoint_id, batch_interval=0.05) as fx:
            msg.queue("far-work").put({"doc": 9})
            assert fx.submit(USER["worker"], "far-work").result(timeout=60) == 9
            assert msg.table("svc-results").get("9") == 90


def test_broker_status_reports_the_broker_the_service_hosts(tmp_path, monkeypatch, no_broker_env):
    import subprocess
    import sys

    def status(*options):
        return subprocess.run([sys.executable, "-m", "parsl_lite.cli", "broker", "status", *options],
                              capture_output=True, text=True, timeout=60)
    with client_home_service(tmp_path, monkeypatch, broker=True) as service:
        msg.queue("svc-status").put("x")
        address = msg.default_client().url
        out = status("--service-dir", str(service.dir))
        assert out.returncode == 0, out.stdout + out.stderr
        headline, _, stats = out.stdout.partition("\n")
        assert headline.startswith(f"broker running: {address} (hosted by the function service at {service.url}")
        assert json.loads(stats)["queues"]["svc-status"]["length"] == 1
        other = tmp_path / "nothing"
        assert status("--dir", str(other)).returncode == 1            # --dir alone: only that directory
    with client_home_service(tmp_path / "plain", monkeypatch) as service:
        out = status("--service-dir", str(service.dir))
        assert out.returncode == 1 and "hosts none" in out.stdout, out.stdout + out.stderr
    out = status("--service-dir", str(tmp_path / "none"))
    assert out.returncode == 1 and "no broker running" in out.stdout
