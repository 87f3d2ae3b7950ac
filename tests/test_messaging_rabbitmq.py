"""The same API on RabbitMQ (PARSL_LITE_BROKER_URL=amqp://...), against the real server of the test suite."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

from parsl_lite import messaging as msg
from parsl_lite.messaging import protocol as p

from .conftest import wait_for
from .htex_helpers import local_htex
from .messaging_helpers import amqp  # noqa: F401  (fixture)
from .test_messaging_apps import consumer, listener


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
    for _ in range(3):                                  # batches: each message delivered once, none given back
        ids = q.put_many(list(range(100)))
        got = q.get_many(100, timeout=5)
        assert [m.message_id for m in got] == ids and {m.receive_count for m in got} == {1}
        assert q.ack_many(got) == 100 and len(q) == 0
    q.put_many([1, 2])
    got = q.get_many(10, timeout=5)                     # fewer ready than asked for
    assert [m.body for m in got] == [1, 2] and q.ack_many(got) == 2
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


def test_oversized_and_deleted_queue_are_clear_errors(amqp):
    name = unique("big")
    q = msg.queue(name)
    with pytest.raises(msg.MessageTooLarge, match="the limit is 1048576 bytes"):
        q.put(b"x" * (1 << 20))
    msg.delete_queue(name)
    with pytest.raises(msg.NoSuchQueue, match=name):
        q.get(timeout=1)
    with pytest.raises(msg.NoSuchQueue, match=name):
        q.put(1)
    with pytest.raises(msg.NoSuchQueue, match=name):
        q.put_many([1, 2])


def test_a_reader_waiting_on_a_queue_gets_a_message_put_meanwhile_and_hears_a_deletion(amqp):
    name = unique("wait")
    got = []
    reader = threading.Thread(target=lambda: got.append(msg.queue(name).get(timeout=20)))
    q = msg.queue(name)
    reader.start()
    time.sleep(0.3)                                     # not a timing assertion: let the reader start waiting
    q.put("hello")
    reader.join(30)
    assert got and got[0] is not None and got[0].body == "hello" and got[0].receive_count == 1
    errors = []

    def wait_on_deleted():
        try:
            q.get(timeout=20)       # q, not msg.queue(name): that would make the queue again if it ran late
        except msg.NoSuchQueue as exc:
            errors.append(exc)
    waiter = threading.Thread(target=wait_on_deleted)
    waiter.start()
    time.sleep(0.3)                 # the deletion may come before, in, or after the wait begins: each must raise
    msg.delete_queue(name)
    waiter.join(30)
    assert errors and name in str(errors[0])
    msg.delete_queue(name + ".dead")


def test_tables_put_get_scan_last_write_wins_seen_by_another_process(amqp):
    t = msg.table(unique("results"))
    t.put("doc-1", {"v": 1})
    t.put("doc-2", [2])
    t.put("doc-1", {"v": 10})                          # last write wins
    t.put("other", 3)
    assert t.get("doc-1") == {"v": 10} and t.get("missing", "none") == "none"
    assert t.scan("doc-") == {"doc-1": {"v": 10}, "doc-2": [2]}
    reader = textwrap.dedent(f"""
        from parsl_lite import messaging as msg
        t = msg.table({t.name!r})
        print(sorted(t.scan().items()))
        t.put("doc-3", "from the child")
    """)
    out = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[('doc-1', {'v': 10}), ('doc-2', [2]), ('other', 3)]", out.stderr
    assert t.get("doc-3") == "from the child"          # this client's cached fold reads on from its offset
    assert msg.table(unique("empty")).scan() == {}


def test_stats_count_drops_listeners_queues_and_slow_subscriber_loss(amqp):
    before = msg.stats()["topics"]
    topic = unique("nobody")
    for i in range(5):
        msg.publish(topic, i)
    wait_for(lambda: msg.stats()["topics"]["dropped_no_listener"] >= before["dropped_no_listener"] + 5, 30,
             "the drops counted")
    # the publisher's count goes into the counters within a few seconds, with no further publish
    wait_for(lambda: msg.stats()["topics"]["published"] >= before["published"] + 5, 30, "the publishes counted")
    heard = unique("heard")
    sub = msg.subscribe(heard, high_water_mark=10)
    assert msg.stats()["topics"]["listeners"].get(heard) == 1
    for i in range(200):                                # the subscriber reads nothing meanwhile: its queue drops
        msg.publish(heard, i)
    time.sleep(0.5)                                     # let RabbitMQ route them (then the queue holds 10)
    msg.stop(heard)
    seen = list(sub)                                    # what was prefetched, then the newest the queue kept
    assert seen == sorted(seen) and seen[-1] == 199 and len(seen) <= 20 and sub.lost == 200 - len(seen)
    stats = wait_for(lambda: (st := msg.stats()["topics"])["lost_by_topic"].get(heard) and st, 30, "the loss")
    assert stats["lost_by_topic"][heard] == 200 - len(seen) and stats["lost_slow_subscriber"] >= 180
    assert heard not in stats["listeners"]              # closed: its queue went away
    name = unique("counted")
    q = msg.queue(name)
    q.put_many([1, 2, 3])
    m = q.get(timeout=5)
    queues = msg.stats()["queues"]
    assert queues[name]["length"] == 3 and queues[name]["in_flight"] == 1
    m.ack()
    q.delete()
    assert name not in msg.stats()["queues"]
    msg.delete_queue(name + ".dead")


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
    wait_for(lambda: msg.stats()["topics"]["listeners"].get(topic) == 1, 60, "the app subscribed")
    for i in range(5):
        msg.publish(topic, {"i": i})
    msg.stop(topic, listener_id="app")
    assert heard.result(timeout=30) == [{"i": i} for i in range(5)]


def test_consumer_apps_on_htex_drain_a_rabbitmq_queue_into_a_table(amqp, make_dfk):
    make_dfk(executors=[local_htex()])
    name, results = unique("front"), unique("results")
    q = msg.queue(name)
    q.put_many([{"action": "forward", "doc": d} for d in range(40)] + [None, None])
    futures = [consumer(name, results) for _ in range(2)]
    assert sum(f.result(timeout=60) for f in futures) == 40
    assert msg.table(results).scan("doc-") == {f"doc-{d}": d * d for d in range(40)}
    assert len(q) == 0
    q.delete()
    msg.delete_queue(name + ".dead")


def test_a_silent_holder_keeps_its_delivery_past_the_heartbeat_and_loses_it_at_its_visibility_timeout(amqp):
    """The holder's thread makes no call meanwhile (a long handler): the keeper thread answers heartbeats and
    gives the message back when the visibility timeout passes."""
    from parsl_lite.messaging.amqp import AmqpClient
    from parsl_lite.messaging.queues import Queue
    name = unique("silent")
    client = AmqpClient(amqp["AMQP_URL"] + "?heartbeat=1", "test")
    holder = Queue(name, visibility_timeout_s=600, client=client)
    holder.put("long job")
    held = holder.get(timeout=5)
    other = msg.queue(name)
    assert other.get(timeout=4) is None                 # 4 heartbeat periods: RabbitMQ would have closed it
    assert held.ack() is True
    short = Queue(name, visibility_timeout_s=2, client=client)
    short.put("short job")
    held = short.get(timeout=5)
    again = wait_for(lambda: other.get(timeout=1), 30, "the message given back at its visibility timeout")
    assert again.body == "short job" and again.receive_count == 2
    assert held.ack() is False and again.ack() is True
    client.close()
    other.delete()
    msg.delete_queue(name + ".dead")


def test_a_held_message_survives_the_requests_that_fail_on_the_server_meanwhile(amqp):
    name = unique("held")
    q = msg.queue(name)
    q.put("keep me")
    m = q.get(timeout=5)
    msg.queue(unique("new"))                            # declared: looked up first (a 404 on the server)
    with pytest.raises(msg.NoSuchQueue):
        msg.default_client().request(lambda rid, tok: p.QueueStatsRequest(rid, tok, unique("missing")))
    msg.stats()
    assert m.ack() is True and len(q) == 0             # still held on its channel: acked, not requeued
    q.delete()
    msg.delete_queue(name + ".dead")


def test_a_message_is_acked_from_another_thread(amqp):
    name = unique("threads")
    q = msg.queue(name)
    q.put_many(["a", "b"])
    got = q.get_many(2, timeout=5)
    results = []
    acker = threading.Thread(target=lambda: results.append((got[0].ack(), got[1].nack())))
    acker.start()
    acker.join(30)
    assert results == [(True, True)]
    again = q.get(timeout=5)                            # the nacked one, back
    assert again.body == "b" and again.receive_count == 2 and again.ack() and len(q) == 0
    q.delete()
    msg.delete_queue(name + ".dead")


def test_a_message_stays_held_after_the_thread_that_got_it_ends(amqp):
    name = unique("ended")
    q = msg.queue(name)
    q.put("a")
    got = []
    reader = threading.Thread(target=lambda: got.append(msg.queue(name).get(timeout=5)))
    reader.start()
    reader.join(30)
    del reader
    gc.collect()                                        # the ended thread's state, if nothing else kept it
    assert got[0].body == "a"
    assert q.get(timeout=0.5) is None                   # not given back with the ended thread's connection
    assert got[0].ack() and len(q) == 0                 # and still ours to ack, from this thread
    q.delete()
    msg.delete_queue(name + ".dead")


def test_broker_status_reports_rabbitmq_from_the_environment(amqp):
    name = unique("status")
    msg.queue(name).put("x")
    out = subprocess.run([sys.executable, "-m", "parsl_lite.cli", "broker", "status"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    headline, _, stats = out.stdout.partition("\n")
    assert headline == "RabbitMQ at amqp://plite:***@127.0.0.1:5673/%2F (PARSL_LITE_BROKER_URL)"
    assert '"backend": "rabbitmq"' in stats and "plite:plite" not in out.stdout
    msg.delete_queue(name)
    msg.delete_queue(name + ".dead")
    nowhere = {**os.environ, "PARSL_LITE_BROKER_URL": "amqp://x:y@127.0.0.1:9/%2F"}
    down = subprocess.run([sys.executable, "-m", "parsl_lite.cli", "broker", "status"], capture_output=True,
                          text=True, timeout=60, env=nowhere)
    assert down.returncode == 1 and "does not answer" in down.stderr


def test_the_stream_fold_is_last_write_wins_or_a_sum_and_skips_what_it_applied():
    """The pure part of tables and counters on RabbitMQ (amqp_streams.StreamFold): no server."""
    from parsl_lite.messaging.amqp_streams import StreamFold
    table = StreamFold("last")
    for offset, headers, body in [(0, {"key": "a"}, b"1"), (1, {"key": "b"}, b"2"), (2, {"marker": "m1"}, b""),
                                  (3, {"key": "a"}, b"3"), (4, {"key": "b", "deleted": True}, b""),
                                  (1, {"key": "b"}, b"old")]:          # a record read again: skipped
        table.apply(offset, headers, body)
    assert table.state == {"a": b"3"} and table.next_offset == 5
    counters = StreamFold("sum")
    for offset, key, n in [(0, "published", b"5"), (1, "lost\0t", b"2"), (2, "published", b"7")]:
        counters.apply(offset, {"key": key}, n)
    assert counters.state == {"published": 12, "lost\0t": 2}
    with pytest.raises(ValueError, match="fold mode"):
        StreamFold("max")


