"""Topics through the broker's C proxy: the tally (a pure class) and the counts it gives against a real broker."""
from __future__ import annotations

import threading
import time

import zmq

from parsl_lite import messaging as msg
from parsl_lite.messaging import protocol as p
from parsl_lite.messaging.topic_tally import LISTEN, SYNCED, UNLISTEN, WELCOME, Tally, sync_key
from parsl_lite.messaging.topics import DRAIN_EVERY, _publisher

from .conftest import wait_for
from .messaging_helpers import broker  # noqa: F401  (fixture)


def frame(topic: str, body: bytes = b"x") -> bytes:
    return p.topic_frame(p.topic_key(topic), 1, 1, p.FLAG_DATA, body)


def test_the_tally_counts_only_what_no_listener_hears():
    tally, key = Tally(), p.topic_key("a")
    assert tally.see(frame("a")) is None and tally.dropped == 1
    assert tally.see(b"\x01" + key) == (LISTEN, key)        # the first listener: filter it out of the capture
    assert tally.see(b"\x01" + key) is None                 # the second
    assert tally.see(frame("a")) is None and tally.dropped == 1   # heard (the filter lagging): not counted
    assert tally.see(frame("b")) is None and tally.dropped == 2
    assert tally.topics() == {"a": 2}
    assert tally.see(b"\x00" + key) is None
    assert tally.see(b"\x00" + key) == (UNLISTEN, key)      # the last one gone
    assert tally.see(frame("a")) is None and tally.dropped == 3 and tally.topics() == {}


def test_the_tally_answers_welcome_keys_and_does_not_count_its_own_frames():
    tally, welcome = Tally(), p.welcome_key("sub-1")
    assert tally.see(b"\x01" + welcome) == (WELCOME, welcome)
    assert tally.see(p.topic_frame(welcome, 0, 0, p.FLAG_WELCOME, b"")) is None
    assert tally.see(b"\x00" + welcome) is None
    assert tally.see(p.topic_frame(welcome, 0, 0, p.FLAG_WELCOME, b"")) is None   # a late one: still ours
    assert tally.see(sync_key(7)) == (SYNCED, sync_key(7)) and tally.synced == 7
    assert tally.dropped == 0 and tally.topics() == {}


def through_the_proxy(marker_topic: str) -> None:
    """Return once what this thread published so far has passed the broker's proxy (its pipe is FIFO)."""
    with msg.subscribe(marker_topic) as marker:
        msg.publish(marker_topic, "m")
        assert marker.get(timeout=10) == "m"


def topic_counts() -> tuple[int, int, int]:
    stats = msg.stats()["topics"]
    return stats["dropped_no_listener"], stats["forwarded"], stats["published"]


def test_the_tally_takes_any_bytes_a_publisher_sends():
    tally = Tally()
    for junk in (b"", b"s\0", b"sx1\0", b"s12", b"no key at all", b"\x02t\0"):   # \x00, \x01: (un)subscriptions
        assert tally.see(junk) is None
    assert tally.dropped == 6 and tally.synced == 0
    assert tally.see(sync_key(3)) == (SYNCED, sync_key(3)) and tally.see(sync_key(2)) and tally.synced == 3


def test_counts_are_exact_before_during_and_after_a_listener(broker):
    for _ in range(3000):
        msg.publish("counted", b"x" * 1024)           # nobody listening
    through_the_proxy("marker-1")
    assert topic_counts() == (3000, 1, 3001)
    with msg.subscribe("counted") as sub:
        assert msg.stats()["topics"]["listeners"] == {"counted": 1}
        for i in range(2000):
            msg.publish("counted", i)
        assert [sub.get(timeout=10) for _ in range(2000)] == list(range(2000))
        assert topic_counts() == (3000, 2001, 5001)
    wait_for(lambda: msg.stats()["topics"]["listeners"] == {}, what="the listener gone")

    def counted_again() -> tuple[int, int, int]:   # the capture's filter lets the topic through again
        msg.publish("counted", b"late")
        through_the_proxy("marker-2")
        counts = topic_counts()
        return counts if counts[0] > 3000 else ()
    dropped, forwarded, published = wait_for(counted_again, what="drops of the topic counted again")
    for _ in range(500):
        msg.publish("counted", b"late")
    through_the_proxy("marker-3")
    assert topic_counts() == (dropped + 500, forwarded + 1, published + 501)


def test_many_subscribers_come_and_go_and_each_is_welcomed(broker):
    for round_ in range(20):
        subs = [msg.subscribe(f"churn-{i}") for i in range(5)]   # each returned: its welcome came
        msg.publish("churn-3", round_)
        assert subs[3].get(timeout=10) == round_
        for sub in subs:
            sub.close()
    wait_for(lambda: msg.stats()["topics"]["listeners"] == {}, what="all listeners gone")


def test_a_publisher_discards_the_subscription_notices_the_broker_passes_up(broker):
    msg.publish("notices", 0)
    pub = _publisher(None)
    for i in range(5):
        msg.subscribe(f"passing-{i}").close()
    wait_for(lambda: pub.sock.poll(0), what="notices at the publisher")

    def discarded() -> bool:
        for i in range(DRAIN_EVERY):
            msg.publish("notices", i)
        return not pub.sock.poll(0)
    wait_for(discarded, what="the notices discarded")


def test_get_waits_at_most_its_timeout_and_each_call_has_its_own(broker):
    with msg.subscribe("waits") as sub:
        assert sub.get(timeout=0) is None
        start = time.monotonic()
        assert sub.get(timeout=0.3) is None
        assert 0.25 <= time.monotonic() - start < 0.3 + 1.0     # the bound, with room for a loaded machine
        sender = threading.Timer(0.7, lambda: msg.publish("waits", "late"))   # after the 0.5 s wait chunk
        sender.start()
        assert sub.get(timeout=20) == "late"                # a longer wait than the call before
        sender.join()
        msg.publish("waits", "ready")
        assert wait_for(lambda: sub.get(timeout=0.05), what="a message already there") == "ready"


def test_an_idle_listener_reports_its_loss_while_it_waits_for_more(broker):
    sub = msg.subscribe("lossy", high_water_mark=100)
    for _ in range(20_000):
        msg.publish("lossy", b"x" * 1024)       # it reads none of them meanwhile: losses at the high-water marks
    through_the_proxy("lossy-marker")
    listener = threading.Thread(target=lambda: [None for _ in sub])   # get(timeout=None) until the stop
    listener.start()

    def tail_heard() -> int:          # a message after the drain shows the gap before it
        msg.publish("lossy", "tail")
        return sub.lost
    wait_for(tail_heard, what="the loss seen by the listener", interval_s=0.2)
    stats = wait_for(lambda: sub.lost and (s := msg.stats()["topics"])["lost_slow_subscriber"] == sub.lost and s,
                     what="the loss reported by the waiting listener")
    assert stats["lost_by_topic"] == {"lossy": sub.lost}
    msg.stop("lossy")
    listener.join(30)
    assert not listener.is_alive() and sub.stopped


def test_bytes_go_as_they_are_and_other_types_keep_theirs(broker):
    with msg.subscribe("kinds") as sub:
        sent = [b"raw \x00\x01 bytes", bytearray(b"an array"), "Stop?", {"x": b"in a dict"}, b""]
        for message in sent:
            msg.publish("kinds", message)
        got = [sub.get(timeout=10) for _ in sent]
    assert got == sent and [type(m) for m in got] == [type(m) for m in sent]
