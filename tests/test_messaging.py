"""parsl_lite.messaging against a real broker process: queues, tables, topics, the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from parsl_lite import messaging as msg

from .conftest import wait_for
from .messaging_helpers import broker  # noqa: F401  (fixture)


def test_the_issue_lines_as_written(broker):
    msg.publish("5", {"x": 1})               # never blocks; nobody listening: dropped, counted
    q = msg.queue("front")                   # created if missing; durable
    q.put({"action": "forward", "doc": 7})
    m = q.get(timeout=5)
    assert m is not None and m.body == {"action": "forward", "doc": 7} and m.receive_count == 1
    assert m.ack() is True
    assert len(q) == 0
    assert wait_for(lambda: msg.stats()["topics"]["dropped_no_listener"] >= 1, what="the drop counted")


def test_fifo_length_and_oldest_age(broker):
    q = msg.queue("fifo")
    q.put_many(list(range(5)))
    q.put("last")
    info = q.info()
    assert (info.length, info.in_flight) == (6, 0) and info.oldest_age_s >= 0.0
    got = q.get_many(10, timeout=1)
    assert [m.body for m in got] == [0, 1, 2, 3, 4, "last"]
    assert q.info().in_flight == 6
    assert q.ack_many(got) == 6
    assert len(q) == 0 and q.oldest_age_s == 0.0


def test_get_returns_none_after_at_most_its_timeout(broker):
    q = msg.queue("empty")
    start = time.monotonic()
    assert q.get(timeout=1.0) is None
    assert time.monotonic() - start < 1.0 + 1.0   # the bound, with room for a loaded machine


def test_a_waiting_reader_gets_a_message_put_while_it_waits(broker):
    q = msg.queue("wait")
    got = []
    reader = threading.Thread(target=lambda: got.append(msg.queue("wait").get(timeout=20)))
    reader.start()
    wait_for(lambda: msg.stats()["waiting_readers"] == 1, what="the reader waiting at the broker")
    q.put("hello")
    reader.join(30)
    assert got and got[0].body == "hello"
    got[0].ack()


def test_nack_gives_back_at_once_and_settings_are_kept(broker):
    q = msg.queue("nack", visibility_timeout_s=60, max_receives=5)
    assert (q.visibility_timeout_s, q.max_receives, q.dead_letter_queue) == (60.0, 5, "nack.dead")
    q.put("x")
    first = q.get(timeout=5)
    assert first.nack() is True
    again = q.get(timeout=5)
    assert again.body == "x" and again.receive_count == 2
    assert first.ack() is False           # that delivery is over: the later one holds the message
    assert again.ack() is True
    assert msg.queue("nack").visibility_timeout_s == 60.0   # a later msg.queue(name) keeps the settings


def test_tables_put_get_scan(broker):
    t = msg.table("results")
    t.put("doc-2", {"label": 1})
    t.put("doc-1", [1, 2])
    t.put("other", "z")
    t.put("doc-1", [3])                  # replaced
    assert t.get("doc-1") == [3] and t.get("missing") is None and t.get("missing", 0) == 0
    assert t.scan("doc-") == {"doc-1": [3], "doc-2": {"label": 1}}
    assert list(msg.table("results").scan()) == ["doc-1", "doc-2", "other"]


def test_bad_names_are_refused_before_anything_is_sent(broker):
    with pytest.raises(ValueError, match="queue name"):
        msg.queue("")
    with pytest.raises(ValueError, match="visibility_timeout_s"):
        msg.queue("q", visibility_timeout_s=-1)
    with pytest.raises(ValueError, match="topic"):
        msg.publish("", 1)
    with pytest.raises(ValueError, match="timeout"):
        msg.queue("q").get(timeout=-1)


def test_subscribe_is_live_when_it_returns_and_stop_ends_it(broker):
    for attempt in range(20):            # a slow joiner would lose the first message at least once in 20
        sub = msg.subscribe(f"live{attempt}")
        msg.publish(f"live{attempt}", attempt)
        assert sub.get(timeout=10) == attempt
        msg.stop(f"live{attempt}")
        assert list(sub) == [] and sub.stopped


def test_topics_are_exact_and_many_listeners_hear_each_publisher(broker):
    a1, a2, b = msg.subscribe("5"), msg.subscribe("5"), msg.subscribe("50")
    done = []

    def publisher(tag: str) -> None:
        for i in range(50):
            msg.publish("5", (tag, i))
        done.append(tag)

    threads = [threading.Thread(target=publisher, args=(t,)) for t in "pq"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    msg.publish("5", msg.STOP)            # the message "Stop" ends every listener of the topic
    for sub in (a1, a2):
        seen = list(sub)
        assert sorted(seen) == sorted((t, i) for t in "pq" for i in range(50))
        assert [i for t, i in seen if t == "p"] == list(range(50))   # in order per publisher
    assert b.get(timeout=0.2) is None
    b.close()


def test_stop_for_one_listener_id_lets_a_new_version_take_over_without_a_gap(broker):
    old = msg.subscribe("jobs", listener_id="v1")
    for i in range(5):
        msg.publish("jobs", i)
    new = msg.subscribe("jobs", listener_id="v2")
    for i in range(5, 10):
        msg.publish("jobs", i)
    msg.stop("jobs", listener_id="v1")
    for i in range(10, 15):
        msg.publish("jobs", i)
    msg.stop("jobs", listener_id="v2")
    seen_old, seen_new = list(old), list(new)
    assert seen_old == list(range(10)) and seen_new == list(range(5, 15))
    assert sorted(set(seen_old) | set(seen_new)) == list(range(15))


def test_worker_init_points_a_process_without_our_environment_at_the_broker(broker, tmp_path):
    msg.queue("for-remote").put("hello")
    script = "from parsl_lite import messaging as msg; print(msg.queue('for-remote').get(timeout=10).body)"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}       # no PARSL_LITE_* at all
    out = subprocess.run(["bash", "-c", f"{msg.worker_init()}; {sys.executable} -c \"{script}\""], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "hello", out.stderr


def test_the_broker_cli_start_status_stop(tmp_path):
    env = {**os.environ, "PARSL_LITE_HOME": str(tmp_path / "home")}
    env.pop("PARSL_LITE_BROKER_URL", None)
    cmd = [sys.executable, "-m", "parsl_lite.cli", "broker"]
    run = lambda *words: subprocess.run([*cmd, *words], env=env, capture_output=True, text=True, timeout=60)  # noqa: E731
    assert run("status").returncode == 1
    started = run("start")
    assert started.returncode == 0 and "broker started: tcp://127.0.0.1:" in started.stdout, started.stderr
    try:
        assert "already running" in run("start").stdout
        status = run("status")
        assert status.returncode == 0 and '"queues"' in status.stdout
        info = (tmp_path / "home" / "broker" / "broker.json")
        assert oct(info.stat().st_mode & 0o777) == "0o600"
    finally:
        stopped = run("stop")
    assert stopped.returncode == 0 and "broker stopped" in stopped.stdout
    assert not info.exists() and run("status").returncode == 1
