"""The issue's bad input and faults, each against a real broker process."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import psutil
import pytest

from parsl_lite import messaging as msg
from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.client import BrokerClient

from .conftest import wait_for
from .messaging_helpers import broker  # noqa: F401  (fixture)

MiB = 1024 * 1024


def test_an_oversized_message_is_refused_at_put_naming_size_and_limit(broker):
    q = msg.queue("big")
    with pytest.raises(msg.MessageTooLarge, match=r"queue 'big' is \d+ bytes; the limit is 1048576 bytes"):
        q.put(b"x" * MiB)
    small = msg.queue("small", max_bytes=100)
    with pytest.raises(msg.MessageTooLarge, match="the limit is 100 bytes"):
        small.put("y" * 200)
    with pytest.raises(msg.MessageTooLarge, match="topic 't'"):
        msg.publish("t", b"z" * (MiB + 1))
    assert len(q) == 0 and len(small) == 0
    # the broker checks too (a client that skips the check)
    client = BrokerClient(broker.address, broker.token, "test")
    try:
        with pytest.raises(msg.BrokerError, match="too_large.*the limit is 100 bytes"):
            client.request(lambda rid, tok: p.PutMessages(rid, tok, "small", ("a",), (200,), b"y" * 200))
    finally:
        client.close()


def test_a_wrong_token_gets_a_clear_error(broker, monkeypatch):
    client = BrokerClient(broker.address, "not-the-token", "a test")
    try:
        with pytest.raises(msg.BrokerAuthError, match=r"refused this client: wrong token.*\(token from a test\)"):
            client.stats()
    finally:
        client.close()
    monkeypatch.setenv("PARSL_LITE_BROKER_URL", broker.address)
    monkeypatch.setenv("PARSL_LITE_BROKER_TOKEN", "wrong")
    msg.reset_default_client()
    with pytest.raises(msg.BrokerAuthError, match="PARSL_LITE_BROKER_TOKEN"):
        msg.queue("q")
    with pytest.raises(msg.BrokerAuthError, match="wrong token"):
        msg.subscribe("t")
    monkeypatch.delenv("PARSL_LITE_BROKER_TOKEN")
    msg.reset_default_client()
    with pytest.raises(msg.BrokerNotFound, match="PARSL_LITE_BROKER_TOKEN is not"):
        msg.queue("q")


def through_the_forwarder(marker_topic: str) -> int:
    """Return once what this thread published so far has passed the broker's forwarder: a marker on
    another topic, heard by a subscriber, came after it (the publisher's pipe is FIFO). Markers
    dropped at this publisher's high-water mark are sent again; how many were published."""
    sent = 0
    with msg.subscribe(marker_topic) as markers:
        def heard() -> bool:
            nonlocal sent
            msg.publish(marker_topic, "marker")
            sent += 1
            return markers.get(timeout=0.5) == "marker"
        wait_for(heard, 60, "a marker through the forwarder", interval_s=0)
    return sent


def test_a_topic_nobody_hears_raises_nothing_and_grows_no_memory(broker):
    proc = psutil.Process(broker.proc.pid)
    body = b"x" * 1024

    def burst(n: int) -> None:
        for _ in range(n):
            msg.publish("nobody", body)

    burst(20_000)
    through_the_forwarder("marker-1")
    before = proc.memory_info().rss
    burst(100_000)
    markers = through_the_forwarder("marker-2")
    stats = msg.stats()["topics"]
    assert stats["forwarded"] <= markers + 1 and stats["dropped_no_listener"] > 0   # all but markers dropped
    assert stats["dropped_no_listener"] == stats["published"] - stats["forwarded"]
    assert proc.memory_info().rss - before < 20 * MiB


def test_a_reader_that_dies_holding_a_message_lets_it_come_back_after_the_visibility_timeout(broker):
    q = msg.queue("work", visibility_timeout_s=1.5)
    q.put("job-1")
    reader = textwrap.dedent("""
        import os
        from parsl_lite import messaging as msg
        m = msg.queue("work").get(timeout=10)
        print(m.body, m.receive_count, flush=True)
        os._exit(0)            # dies holding it: no ack
    """)
    out = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["job-1", "1"], out.stderr
    assert q.info().in_flight == 1
    again = q.get(timeout=30)
    assert again is not None and again.body == "job-1" and again.receive_count == 2
    assert again.ack()


def test_a_message_failing_max_receives_times_is_dead_lettered(broker):
    q = msg.queue("flaky", max_receives=3, visibility_timeout_s=0.5)
    q.put("poison")
    q.put("fine")
    for attempt in (1, 2):
        m = q.get(timeout=5)
        assert (m.body, m.receive_count) == ("poison", attempt)
        m.nack()
    assert q.get(timeout=5).body == "poison"   # the third receive: not acked, it times out
    fine = q.get(timeout=5)
    assert fine.body == "fine" and fine.ack()
    dead = msg.queue(q.dead_letter_queue)
    m = dead.get(timeout=30)
    assert m is not None and m.body == "poison" and q.dead_letter_queue == "flaky.dead"
    m.ack()
    assert msg.stats()["queues"]["flaky"]["dead_lettered"] == 1 and len(q) == 0


def test_the_broker_killed_and_restarted_loses_no_queued_message_and_clients_reconnect(broker):
    q = msg.queue("durable", visibility_timeout_s=60)
    sent = set(q.put_many(list(range(150))))
    sent |= {q.put(("single", i)) for i in range(50)}
    held = q.get_many(20, timeout=5)                    # in flight when the broker dies
    assert len(held) == 20
    msg.table("t").put("k", "v")
    broker.kill()
    broker.restart()
    got = {}
    while len(got) < 200:
        batch = q.get_many(50, timeout=10)              # the same client and sockets: reconnected
        assert batch, f"only {len(got)} of 200 after the restart"
        got.update((m.message_id, m) for m in batch)
        assert q.ack_many(batch) == len(batch)
    assert set(got) == sent
    assert sorted(m.receive_count for m in got.values())[-20:] == [2] * 20   # the held ones: a second receive
    assert msg.table("t").get("k") == "v"
    q.put("after")                                      # puts work again too
    assert q.get(timeout=5).body == "after"


def test_get_on_a_deleted_queue_is_a_clear_error(broker):
    q = msg.queue("gone")
    q.put(1)
    waiting = []
    reader = threading.Thread(target=lambda: _catch(waiting, lambda: msg.queue("gone").get(timeout=30)))
    q.get(timeout=5)                                    # now empty: the next reader waits
    reader.start()
    wait_for(lambda: msg.stats()["waiting_readers"] == 1, what="a reader waiting on the queue")
    assert msg.delete_queue("gone") == 1
    reader.join(30)
    assert len(waiting) == 1 and isinstance(waiting[0], msg.NoSuchQueue)
    with pytest.raises(msg.NoSuchQueue, match=r"queue 'gone' does not exist \(deleted"):
        q.get(timeout=1)
    with pytest.raises(msg.NoSuchQueue):
        q.put(2)
    with pytest.raises(msg.NoSuchQueue):
        msg.delete_queue("gone")


def _catch(out: list, fn) -> None:
    try:
        out.append(fn())
    except Exception as exc:
        out.append(exc)


def test_a_slow_subscriber_loses_at_the_high_water_mark_and_the_loss_is_counted(broker):
    sub = msg.subscribe("firehose", high_water_mark=100)
    total = 50_000
    body = b"x" * 1024
    for _ in range(total):
        msg.publish("firehose", body)                   # the subscriber reads none of them meanwhile
    through_the_forwarder("firehose-marker")
    while sub.get(timeout=1) is not None:
        pass
    msg.publish("firehose", "end")                      # its sequence number shows any loss at the tail
    wait_for(lambda: sub.get(timeout=1) == "end", 30, "the end marker", interval_s=0)
    assert sub.lost > 0 and sub.received + sub.lost == total + 1   # lost: at any high-water mark on the way
    sub.close()                                         # reports what is not reported yet
    stats = wait_for(lambda: (s := msg.stats()["topics"])["lost_slow_subscriber"] == sub.lost and s,
                     what="the loss in the broker's stats")
    assert stats["lost_by_topic"] == {"firehose": sub.lost}
