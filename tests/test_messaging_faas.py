"""The issue's lines from functions running on a function-service endpoint (the endpoint's workers find the
broker through the environment they inherit: PARSL_LITE_HOME and the broker variables)."""
from __future__ import annotations

from parsl_lite import messaging as msg
from parsl_lite.faas import FuncXClient, FuncXExecutor

from .conftest import wait_for
from .faas_endpoint_helpers import faas_endpoints  # noqa: F401  (fixture)
from .faas_helpers import client_home_service
from .messaging_helpers import broker  # noqa: F401  (fixture)
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
        msg.table("faas-results").put(str(m.body["doc"]), m.body["doc"] * 10)
        m.ack()
        return m.receive_count
""")


def test_listener_and_queue_functions_on_an_endpoint(broker, tmp_path, monkeypatch, faas_endpoints):
    msg.stats()                      # the script's client exports the broker's URL and token to what it starts
    with client_home_service(tmp_path, monkeypatch) as service:
        ep = faas_endpoints(service, "ep", service.admin_token, workers=2)
        with FuncXExecutor(FuncXClient(), endpoint_id=ep.endpoint_id, batch_interval=0.05) as fx:
            heard = fx.submit(USER["listener"], "7", "ep-listener")
            wait_for(lambda: msg.stats()["topics"]["listeners"].get("7") == 1, 60, "the function subscribed")
            for i in range(5):
                msg.publish("7", {"i": i})
            msg.stop("7", listener_id="ep-listener")
            assert heard.result(timeout=60) == [{"i": i} for i in range(5)]
            msg.queue("faas-work").put({"doc": 4})
            assert fx.submit(USER["worker"], "faas-work").result(timeout=60) == 1
            assert msg.table("faas-results").get("4") == 40
