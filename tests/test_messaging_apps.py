"""The issue's lines from apps on the local htex: workers find the broker through the inherited environment."""
from __future__ import annotations

from parsl_lite import python_app
from parsl_lite import messaging as msg

from .conftest import wait_for
from .htex_helpers import local_htex
from .messaging_helpers import broker  # noqa: F401  (fixture)


@python_app
def listener(topic, listener_id):
    from parsl_lite import messaging as msg
    seen = []
    for m in msg.subscribe(topic, listener_id=listener_id):   # ends on a "Stop" for its topic or its id
        seen.append(m)
    return seen


@python_app
def consumer(queue_name, results_table):
    """Pull until a None job, store each result in the table, ack; return how many it handled."""
    from parsl_lite import messaging as msg
    q, table, done = msg.queue(queue_name), msg.table(results_table), 0
    while True:
        m = q.get(timeout=20)
        if m is None or m.body is None:
            if m is not None:
                m.ack()
            return done
        table.put(f"doc-{m.body['doc']}", m.body["doc"] ** 2)
        m.ack()
        done += 1


def _listening(topic: str, n: int) -> bool:
    return msg.stats()["topics"]["listeners"].get(topic, 0) >= n


def test_listener_apps_on_htex_hear_the_script_and_end_on_stop(broker, make_dfk):
    make_dfk(executors=[local_htex()])
    a, b = listener("5", "a"), listener("5", "b")
    wait_for(lambda: _listening("5", 2), 40, "two listener apps subscribed")
    for i in range(10):
        msg.publish("5", {"x": i})
    msg.stop("5", listener_id="a")
    msg.publish("5", {"x": 10})
    assert a.result(timeout=30) == [{"x": i} for i in range(10)]
    msg.stop("5")                                          # every listener of the topic
    assert b.result(timeout=30) == [{"x": i} for i in range(11)]


def test_consumer_apps_on_htex_drain_a_queue_into_a_table(broker, make_dfk):
    make_dfk(executors=[local_htex()])
    q = msg.queue("front")
    q.put_many([{"action": "forward", "doc": d} for d in range(40)] + [None, None])
    futures = [consumer("front", "results") for _ in range(2)]
    assert sum(f.result(timeout=60) for f in futures) == 40
    assert msg.table("results").scan("doc-") == {f"doc-{d}": d * d for d in range(40)}
    assert len(q) == 0
