"""The pure queue bookkeeping and the wire, without processes."""
from __future__ import annotations

import pytest

from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.book import DeadLetter, Delete, Deliver, QueueBook, QueueSettings, Requeue
from parsl_lite.messaging.errors import MalformedMessage, MessageTooLarge


def book(**settings) -> QueueBook:
    b = QueueBook("front", QueueSettings(**settings))
    for seq in (1, 2, 3):
        b.put(seq, f"m{seq}", 10, now=100.0 + seq)
    return b


def test_fifo_order_and_counts():
    b = book()
    got = b.receive(now=200.0, max_messages=2)
    assert [d.seq for d in got] == [1, 2] and all(d.receive_count == 1 for d in got)
    assert (b.length, b.in_flight) == (3, 2)
    assert b.oldest_age_s(now=201.0) == pytest.approx(100.0)
    assert [d.seq for d in b.receive(now=200.0, max_messages=5)] == [3]
    assert b.receive(now=200.0) == []


def test_ack_deletes_and_a_second_ack_does_nothing():
    b = book()
    d = b.receive(now=0.0)[0]
    assert b.settle(d.receipt, ack=True, now=1.0) == [Delete(1)]
    assert b.settle(d.receipt, ack=True, now=1.0) == []
    assert b.length == 2


def test_a_message_not_acked_comes_back_after_the_visibility_timeout_ahead_of_younger_ones():
    b = book(visibility_timeout_s=5.0)
    first = b.receive(now=0.0)[0]
    assert b.next_deadline() == 5.0
    assert b.expire(now=4.9) == []
    assert b.expire(now=5.0) == [Requeue(1)]
    again = b.receive(now=6.0)[0]
    assert (again.seq, again.receive_count) == (1, 2) and again.receipt != first.receipt
    assert b.settle(first.receipt, ack=True, now=6.0) == []   # the stale receipt: the new delivery holds it
    assert b.length == 3


def test_nack_gives_back_at_once():
    b = book()
    d = b.receive(now=0.0)[0]
    assert b.settle(d.receipt, ack=False, now=0.1) == [Requeue(1)]
    assert b.receive(now=0.2)[0].seq == 1


def test_max_receives_dead_letters():
    b = book(max_receives=2, dead_letter_queue="front.dead", visibility_timeout_s=1.0)
    b.settle(b.receive(now=0.0)[0].receipt, ack=False, now=0.0)
    b.receive(now=0.0)
    actions = b.expire(now=1.0)
    assert len(actions) == 1 and isinstance(actions[0], DeadLetter)
    assert actions[0].entry.seq == 1 and actions[0].dead_letter_queue == "front.dead"
    assert (b.length, b.dead_lettered) == (2, 1)
    assert b.receive(now=2.0)[0].seq == 2


def test_size_limit_names_size_and_limit():
    b = book(max_bytes=100)
    b.check_size(100)
    with pytest.raises(MessageTooLarge, match="101 bytes; the limit is 100 bytes"):
        b.check_size(101)


def test_settings_name_the_bad_field():
    with pytest.raises(ValueError, match="visibility_timeout_s"):
        QueueSettings(visibility_timeout_s=0)
    with pytest.raises(ValueError, match="max_receives"):
        QueueSettings(max_receives=-1)


def test_receive_after_expiry_of_deleted_entries_and_views():
    b = book(visibility_timeout_s=1.0)
    d = b.receive(now=0.0)[0]
    b.settle(d.receipt, ack=True, now=0.5)
    assert b.next_deadline() is None and b.expire(now=10.0) == []
    assert b.has_ready() and isinstance(b.receive(now=10.0)[0], Deliver)


def test_wire_round_trip_and_refusals():
    sizes, blob = p.join_bodies([b"ab", b"", b"cde"])
    msg = p.PutMessages(7, "tok", "front", ("a", "b", "c"), sizes, blob)
    back = p.decode(p.encode(msg))
    assert back == msg and p.split_bodies(back.sizes, back.blob) == [b"ab", b"", b"cde"]
    with pytest.raises(MalformedMessage, match="unknown message kind"):
        p.decode([b"nope", b"{}"])
    with pytest.raises(MalformedMessage, match="put_messages"):
        p.decode([b"put_messages", b'{"request_id": "x"}', b""])
    with pytest.raises(MalformedMessage, match="sizes add up"):
        p.split_bodies((5,), b"ab")
    with pytest.raises(ValueError, match="topic"):
        p.topic_key("a\0b")
    key = p.topic_key("5")
    frame = p.topic_frame(key, 3, 9, p.FLAG_STOP, b"body\0x")
    assert p.read_frame(frame) == (key, 3, 9, p.FLAG_STOP, b"body\0x") and p.key_topic(key) == "5"
    assert p.frame_key(frame) == key
    with pytest.raises(MalformedMessage):
        p.read_frame(b"t5\0short")
