"""The same API on RabbitMQ (PARSL_LITE_BROKER_URL=amqp://...), against the real server of the test suite."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from parsl_lite import messaging as msg
from parsl_lite.messaging import paths

from .conftest import wait_for
from .htex_helpers import local_htex
from .test_messaging_apps import listener


@pytest.fixture
def amqp(rabbitmq, monkeypatch, tmp_path):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(paths.URL_ENV, rabbitmq["AMQP_URL"])
    monkeypatch.delenv(paths.TOKEN_ENV, raising=False)
    msg.reset_default_client()
    yield rabbitmq
    msg.reset_default_client()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_the_issue_lines_on_rabbitmq(amqp):
    msg.publish(unique("5"), {"x": 1})       # nobody listening: RabbitMQ drops it
    name = unique("front")
    q = msg.queue(name)
    q.put({"action": "forward", "doc": 7})
    m = q.get(timeout=5)
    assert m is not None and m.body == {"action": "forward", "doc": 7} and m.receive_count == 1
    assert m.ack() is True
    assert len(q) == 0
    msg.delete_queue(name)
    msg.delete_queue(name + ".dead")


def test_fifo_batches_and_a_bounded_get(amqp):
    q = msg.queue(unique("fifo"))
    q.put_many(list(range(5)))
    got = q.get_many(10, timeout=2)
    assert [m.body for m in got] == [0, 1, 2, 3, 4] and q.info().in_flight == 5
    assert q.ack_many(got) == 5
    start = time.monotonic()
    assert q.get(timeout=1.0) is None
    assert time.monotonic() - start < 2.0
    q.delete()


def test_subscribe_live_and_stop_by_id_and_by_topic(amqp):
    topic = unique("jobs")
    old = msg.subscribe(topic, listener_id="v1")
    msg.publish(topic, 0)
    new = msg.subscribe(topic, listener_id="v2")
    msg.publish(topic, 1)
    msg.stop(topic, listener_id="v1")
    msg.publish(topic, 2)
    msg.publish(topic, msg.STOP)
    assert list(old) == [0, 1] and list(new) == [1, 2]
    other = msg.subscribe(unique("a.b"))          # dots and wildcards in a topic are not AMQP patterns
    msg.publish("a.*", "no")
    assert other.get(timeout=0.5) is None
    other.close()


def test_oversized_deleted_queue_and_tables_are_clear_errors(amqp):
    name = unique("big")
    q = msg.queue(name)
    with pytest.raises(msg.MessageTooLarge, match="the limit is 1048576 bytes"):
        q.put(b"x" * (1 << 20))
    msg.delete_queue(name)
    with pytest.raises(msg.NoSuchQueue, match=name):
        q.get(timeout=1)
    with pytest.raises(msg.NoSuchQueue):
        q.put(1)
    with pytest.raises(msg.BrokerError, match="tables need the parsl_lite broker"):
        msg.table("t").put("k", 1)


def test_a_reader_that_dies_holding_a_message_and_max_receives(amqp):
    name = unique("work")
    q = msg.queue(name, max_receives=2, visibility_timeout_s=1)
    q.put("job-1")
    reader = textwrap.dedent(f"""
        import os
        from parsl_lite import messaging as msg
        m = msg.queue({name!r}).get(timeout=10)
        print(m.body, m.receive_count, flush=True)
        os._exit(0)            # dies holding it: its connection closes, RabbitMQ requeues it
    """)
    out = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["job-1", "1"], out.stderr
    again = q.get(timeout=10)
    assert again is not None and again.receive_count == 2
    dead_letters = msg.queue(q.dead_letter_queue)
    # not acked: once its visibility timeout passes, this client gives it back at its next call; that is
    # the 2nd return, over max_receives: dead-lettered
    dead = wait_for(lambda: dead_letters.get(timeout=0.5), 30, "the message in the dead-letter queue")
    assert dead.body == "job-1" and len(q) == 0
    dead.ack()
    msg.delete_queue(name)
    msg.delete_queue(name + ".dead")


def test_a_listener_app_on_htex_hears_the_script_through_rabbitmq(amqp, make_dfk):
    make_dfk(executors=[local_htex()])
    topic = unique("7")
    heard = listener(topic, "app")
    # no broker stats on RabbitMQ: publish until the app has heard one, then stop it
    deadline = time.monotonic() + 60
    while not heard.done() and time.monotonic() < deadline:
        msg.publish(topic, "ping")
        msg.stop(topic, listener_id="app")
        time.sleep(0.2)
    seen = heard.result(timeout=30)
    assert seen == ["ping"]


def test_the_interactive_example_runs_on_rabbitmq(amqp, tmp_path):
    from .test_messaging_examples import run_example
    lines = run_example("interactive.py", tmp_path)
    assert "app says: model loaded" in lines and lines[-1] == "served 21 requests"
