"""A lone result completed on the thread it arrived on (completion.InlineHost), and that thread's retirement."""
from __future__ import annotations

import threading
from concurrent.futures import Future

from parsl_lite import python_app
from parsl_lite.executors.htex.completion import Completer, InlineHost, host_inline

from .conftest import wait_for
from .htex_helpers import local_htex


def _completer(seen: list, stall_s: float = 0.05) -> Completer:
    completer = Completer("parsl_lite-test-completion", lambda item: (seen.append, item), stall_s=stall_s)
    completer.start()
    return completer


def _as_host(host: InlineHost, completer: Completer, items: list) -> None:
    """``put`` as the client's I/O thread does: declared a host, allowed for this one call."""
    host_inline(host)
    host.allowed = True
    try:
        completer.put(items)
    finally:
        host.allowed = False
        host_inline(None)


def test_a_lone_item_of_a_host_completes_in_its_thread_when_the_completer_is_idle():
    where: list = []
    completer = Completer("parsl_lite-test-completion", lambda item: (where.append, threading.current_thread().name))
    completer.start()
    try:
        _as_host(InlineHost(lambda: None), completer, [1])
        assert where == [threading.current_thread().name]
        _as_host(InlineHost(lambda: None), completer, [1, 2])  # a batch of two goes to the completion thread
        wait_for(lambda: len(where) == 3, what="the batch")
        assert where[1:] == ["parsl_lite-test-completion"] * 2
        completer.put([3])  # not a host: queued
        wait_for(lambda: len(where) == 4, what="the plain put")
        assert where[3] == "parsl_lite-test-completion"
    finally:
        completer.stop()


def test_a_lone_item_waits_its_turn_behind_queued_ones():
    seen: list = []
    release = threading.Event()
    completer = Completer("parsl_lite-test-completion",
                          lambda item: ((lambda v: (release.wait(30) if v == "slow" else None, seen.append(v))), item),
                          stall_s=60)  # no take-over: the leader stays busy with "slow"
    completer.start()
    try:
        completer.put(["slow", "queued"])
        wait_for(lambda: not completer._leader_idle, what="the leader to take the slow item")
        _as_host(InlineHost(lambda: None), completer, ["lone"])  # the leader is busy: not completed here
        assert seen == []
        release.set()
        wait_for(lambda: len(seen) == 3, what="all three")
        assert seen == ["slow", "queued", "lone"]
    finally:
        release.set()
        completer.stop()


def test_a_host_blocked_in_a_setter_is_retired_and_its_successor_queues_until_it_returns():
    seen: list = []
    release = threading.Event()
    stuck_calls: list = []
    completer = Completer("parsl_lite-test-completion",
                          lambda item: ((lambda v: (seen.append(v), release.wait(30) if v == "block" else None)), item),
                          stall_s=0.02)
    completer.start()
    host = InlineHost(lambda: stuck_calls.append(threading.current_thread().name))
    blocked = threading.Thread(target=_as_host, args=(host, completer, ["block"]))
    try:
        blocked.start()
        wait_for(lambda: stuck_calls, what="the standby to retire the blocked host")
        assert host.retired and stuck_calls == ["parsl_lite-test-completion-standby"]
        successor = InlineHost(lambda: None)
        _as_host(successor, completer, ["after"])  # a host is stuck: this one goes through the queue
        wait_for(lambda: "after" in seen, what="the successor's item")
        release.set()
        blocked.join(30)
        assert not blocked.is_alive() and seen == ["block", "after"]
        where: list = []
        completer._prepare = lambda item: (where.append, threading.current_thread().name)
        _as_host(successor, completer, ["inline again"])  # the stuck one returned: inline again
        assert where == [threading.current_thread().name]
    finally:
        release.set()
        completer.stop()


@python_app
def double(x):
    return 2 * x


def test_the_io_thread_blocked_in_a_lone_results_callback_is_replaced_and_exits_after(make_dfk):
    dfk = make_dfk(executors=[local_htex()], strategy="none")
    release = threading.Event()
    entered = threading.Event()
    gate: Future = Future()
    first = double(gate)
    first.add_done_callback(lambda fut: (entered.set(), release.wait(60)))
    gate.set_result(1)
    try:
        assert entered.wait(30)
        client = dfk.executors["htex"]._client
        wait_for(lambda: client._thread.name == "parsl_lite-htex-io" and client._retired == 1,
                 what="a new I/O thread")
        assert [double(i).result(timeout=20) for i in range(5)] == [0, 2, 4, 6, 8]
        blocked = [t for t in threading.enumerate() if t.name == "parsl_lite-htex-io-blocked-1"]
        assert len(blocked) == 1
        release.set()
        blocked[0].join(30)
        assert not blocked[0].is_alive()
        assert double(7).result(timeout=20) == 14
    finally:
        release.set()
