"""The queue path's wire and store, without a broker process where none is needed: the binary heads, the
stream framing, the broker's deferred writes, re-sent puts, receipts across a restart, a reader that goes away."""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import fields
from typing import get_args

import pytest

from parsl_lite import messaging as msg
from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.broker import Broker
from parsl_lite.messaging.client import BrokerClient
from parsl_lite.messaging.errors import MalformedMessage
from parsl_lite.messaging.store import Store

from .messaging_helpers import broker  # noqa: F401  (fixture)

TOKEN = "tok"


def sample(cls: type) -> object:
    """A message of ``cls`` with a value of each field's type (none of them zero or empty)."""
    values = {"int": 7, "float": 2.5, "bool": True, "str": "q-é", "bytes": b"\0body",
              "tuple[int, ...]": (1, -2, 3), "tuple[float, ...]": (0.5, 1e300), "tuple[str, ...]": ("a", "", "ü"),
              "dict": {"queues": {"q": {"length": 1}}}}
    return cls(**{f.name: values[str(f.type)] for f in fields(cls)})


@pytest.mark.parametrize("cls", [*get_args(p.Request), *get_args(p.Reply)], ids=lambda c: c.__name__)
def test_every_message_round_trips_and_a_head_cut_short_or_padded_is_refused(cls):
    message = sample(cls)
    frames = p.encode(message)
    assert p.decode(frames) == message
    with pytest.raises(MalformedMessage):
        p.decode([frames[0], frames[1][:-1], *frames[2:]])
    with pytest.raises(MalformedMessage):
        p.decode([frames[0], frames[1] + b"\0", *frames[2:]])
    with pytest.raises(MalformedMessage):
        p.decode([frames[0], frames[1], *frames[2:], b"extra"])


def test_an_empty_tuple_of_strings_is_not_one_empty_string_and_a_nul_in_one_is_refused():
    for ids in ((), ("",), ("", "")):
        put = p.PutMessages(1, TOKEN, "q", ids, tuple(0 for _ in ids), b"")
        assert p.decode(p.encode(put)).message_ids == ids
    with pytest.raises(ValueError, match="NUL"):
        p.encode(p.PutMessages(1, TOKEN, "q", ("a\0b",), (0,), b""))


def test_stream_framing_splits_what_arrives_in_pieces_and_refuses_a_head_none_of_ours_sends():
    one, two = p.encode(p.Done(1, 2)), p.encode(p.TableValue(3, True, b"x" * 70_000))
    stream = b"".join(p.stream_parts(one)) + b"".join(p.stream_parts(two))
    for cut in range(0, len(stream), 9_999):
        buffer = bytearray(stream[:cut])
        size = p.stream_size(buffer)
        assert size == 0 or size > len(buffer) or p.stream_frames(buffer, 0, size) == one
    first = p.stream_size(stream)
    assert p.stream_frames(stream, 0, first) == one
    assert p.stream_frames(stream, first, p.stream_size(stream, first)) == two
    with pytest.raises(MalformedMessage):
        p.stream_size(b"\xff\xff\xff\xff\x01\x00\x00\x00")                       # 4 GiB
    with pytest.raises(MalformedMessage):
        p.stream_size(b"\x10\x00\x00\x00\xff\x00\x00\x00")                       # 255 frames
    bad = bytearray(b"".join(p.stream_parts(one)))
    bad[8] += 1                                                                  # a frame length that does not add up
    with pytest.raises(MalformedMessage):
        p.stream_frames(bad, 0, p.stream_size(bad))


class Loop:
    """A broker without sockets: requests in, the turn's replies out, the store committed as ``serve`` does."""

    def __init__(self, path) -> None:
        self.path = path
        self.broker = Broker(Store(path), TOKEN, None)
        self.now = 1000.0

    def turn(self, *requests: tuple[object, object]) -> list:
        replies = [(who, self.broker.handle(who, p.encode(r), self.now)) for who, r in requests]
        replies = [(who, r) for who, r in replies if r is not None] + self.broker.tick(self.now)
        self.broker.store.commit()
        return replies

    def close(self) -> None:
        self.broker.store.close()


def rows(path) -> list[tuple]:
    """The messages in the file (once no broker holds it: the broker locks it)."""
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT message_id, receive_count FROM messages ORDER BY seq").fetchall()
    finally:
        db.close()


def put(ids: tuple[str, ...]) -> p.PutMessages:
    return p.PutMessages(1, TOKEN, "q", ids, tuple(1 for _ in ids), b"x" * len(ids))


def test_acks_and_receive_counts_reach_the_file_with_a_commit_and_a_resent_put_is_stored_once(tmp_path):
    loop = Loop(tmp_path / "b.db")
    loop.turn(("c", p.DeclareQueue(1, TOKEN, "q", True, 0, 0, 0)))
    loop.turn(("c", put(("a", "b"))))
    assert loop.turn(("c", put(("a", "b", "c"))))[0][1] == p.Done(1, 3)        # the reply was lost: sent again
    [(_, got)] = loop.turn(("c", p.GetMessages(2, TOKEN, "q", 2, 0.0)))
    assert got.message_ids == ("a", "b") and got.blob == b"xx"
    loop.turn(("c", p.Settle(3, TOKEN, "q", got.receipts[:1], True)))
    loop.close()
    assert rows(tmp_path / "b.db") == [("b", 1), ("c", 0)]
    again = Loop(tmp_path / "b.db")
    again.turn(("c", put(("b", "c"))))                          # sent again to the restarted broker
    [(_, got)] = again.turn(("c", p.GetMessages(4, TOKEN, "q", 5, 0.0)))
    assert got.message_ids == ("b", "c") and got.receive_counts == (2, 1) and got.blob == b"xx"
    again.close()
    assert rows(tmp_path / "b.db") == [("b", 2), ("c", 1)]


def test_an_ack_of_a_delivery_made_before_a_restart_settles_nothing(tmp_path):
    loop = Loop(tmp_path / "b.db")
    loop.turn(("c", p.DeclareQueue(1, TOKEN, "q", True, 0, 0, 0)), ("c", put(("a", "b"))))
    [(_, before)] = loop.turn(("c", p.GetMessages(2, TOKEN, "q", 1, 0.0)))
    loop.close()
    again = Loop(tmp_path / "b.db")
    [(_, after)] = again.turn(("c", p.GetMessages(3, TOKEN, "q", 2, 0.0)))
    assert after.message_ids == ("a", "b")
    assert again.turn(("c", p.Settle(4, TOKEN, "q", before.receipts, True))) == [("c", p.Done(4, 0))]
    assert again.broker.books["q"].in_flight == 2
    again.close()


def test_a_reader_that_went_away_while_waiting_is_given_nothing(tmp_path):
    loop = Loop(tmp_path / "b.db")
    loop.turn(("c", p.DeclareQueue(1, TOKEN, "q", True, 0, 0, 0)))
    assert loop.turn(("gone", p.GetMessages(2, TOKEN, "q", 1, 30.0))) == []
    loop.broker.forget("gone")
    assert loop.turn(("c", put(("a",)))) == [("c", p.Done(1, 1))]
    [(who, got)] = loop.turn(("c", p.GetMessages(3, TOKEN, "q", 1, 0.0)))
    assert who == "c" and got.message_ids == ("a",)
    loop.close()


def test_batches_larger_than_a_socket_buffer_go_both_ways(broker):
    q = msg.queue("big")
    bodies = [bytes([i]) * 200_000 for i in range(30)]                  # 6 MB each way
    q.put_many(bodies)
    got = q.get_many(30, timeout=10)
    assert [m.body for m in got] == bodies and q.ack_many(got) == 30


def test_a_client_waits_for_a_broker_that_comes_back_on_its_port(broker):
    q = msg.queue("back")
    broker.kill()
    client = BrokerClient(broker.address, broker.token, "test", request_timeout_s=30)
    try:
        restarted = threading.Timer(0.5, broker.restart)
        restarted.start()
        assert q.put("after") and client.stats()["queues"]["back"]["length"] == 1
        restarted.join()
    finally:
        client.close()
    assert q.get(timeout=5).body == "after"
