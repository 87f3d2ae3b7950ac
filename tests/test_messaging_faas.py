"""The issue's lines from functions running on a function-service endpoint (the endpoint's workers find the
broker through the environment they inherit: PARSL_LITE_HOME and the broker variables), on our broker and on
RabbitMQ."""
from __future__ import annotations

import uuid

import pytest

from parsl_lite import messaging as msg
from parsl_lite.faas import FuncXClient, FuncXExecutor

from .conftest import wait_for
from .faas_endpoint_helpers import faas_endpoints  # noqa: F401  (fixture)
from .faas_helpers import client_home_service
from .messaging_helpers import amqp, broker  # noqa: F401  (fixtures)
from .test_faas_sdk import user_functions

USER = user_functions("""
    def listener(topic, listener_id):
        from parsl_lite import messaging as msg
        seen = []
        for m in msg.subscribe(topic, listener_id=listener_id):   # ends on a "Stop" for its topic or its id
            seen.append(m)
        return seen

    def worker(queue_name):
        from parsl_lite import messaging as msg
        q = msg.queue(queue_name)
        m = q.get(timeout=30)
        msg.table(queue_name + "-results").put(str(m.body["doc"]), m.body["doc"] * 10)
        m.ack()
        return m.receive_count
""")


@pytest.mark.parametrize("backend", ["broker", "amqp"], ids=["our-broker", "rabbitmq"])
def test_listener_and_queue_functions_on_an_endpoint(backend, request, tmp_path, monkeypatch, faas_endpoints):
    request.getfixturevalue(backend)
    msg.stats()                      # the script's client exports the broker's URL and token to what it starts
    run = uuid.uuid4().hex[:6]
    topic, work = f"7-{run}", f"faas-work-{run}"
    with client_home_service(tmp_path, monkeypatch) as service:
        ep = faas_endpoints(service, "ep", service.admin_token, workers=2)
        with FuncXExecutor(FuncXClient(), endpoint_id=ep.endpoint_id, batch_interval=0.05) as fx:
            heard = fx.submit(USER["listener"], topic, "ep-listener")
            wait_for(lambda: msg.stats()["topics"]["listeners"].get(topic) == 1, 60, "the function subscribed")
            for i in range(5):
                msg.publish(topic, {"i": i})
            msg.stop(topic, listener_id="ep-listener")
            assert heard.result(timeout=60) == [{"i": i} for i in range(5)]
            msg.queue(work).put({"doc": 4})
            assert fx.submit(USER["worker"], work).result(timeout=60) == 1
            assert msg.table(work + "-results").get("4") == 40
    msg.delete_queue(work)
