"""The FaaS executor's routing policies and loss decisions: pure, no processes (STYLE 1)."""
from __future__ import annotations

import pytest

from parsl_lite.executors.faas.policies import (
    EndpointStatus, LossTracker, RoundRobin, candidates, choose, least_loaded, resolve_policy, status_from_report,
)

A, B, C = "ep-a", "ep-b", "ep-c"


def spec(*endpoints: str) -> dict:
    return {"endpoints": list(endpoints), "function_name": "f", "resource_specification": {}}


def test_round_robin_cycles_through_the_candidates():
    policy = resolve_policy("round_robin")
    statuses = {e: EndpointStatus(e) for e in (A, B, C)}
    assert [choose(policy, spec(A, B, C), statuses) for _ in range(6)] == [A, B, C, A, B, C]


def test_round_robin_skips_an_endpoint_that_stopped_reporting():
    statuses = {A: EndpointStatus(A), B: EndpointStatus(B, reporting=False), C: EndpointStatus(C, online=False)}
    assert {choose(RoundRobin(), spec(A, B, C), statuses) for _ in range(5)} == {A}


def test_least_loaded_sends_by_tasks_per_worker():
    statuses = {A: EndpointStatus(A, connected_workers=1, in_flight=1),
                B: EndpointStatus(B, connected_workers=4, in_flight=3)}
    assert least_loaded(spec(A, B), statuses) == B          # 1/1 > 3/4
    statuses[B] = EndpointStatus(B, connected_workers=4, in_flight=5, queue=5)
    assert least_loaded(spec(A, B), statuses) == A          # 5/4 > 1/1


def test_least_loaded_spreads_a_burst_in_proportion_to_workers():
    workers = {A: 1, B: 4}
    in_flight = {A: 0, B: 0}
    for _ in range(200):
        statuses = {e: EndpointStatus(e, connected_workers=workers[e], in_flight=in_flight[e]) for e in workers}
        in_flight[choose(least_loaded, spec(A, B), statuses)] += 1
    assert in_flight == {A: 40, B: 160}


def test_least_loaded_ties_go_to_most_idle_then_first():
    statuses = {A: EndpointStatus(A, idle_workers=0), B: EndpointStatus(B, idle_workers=2)}
    assert least_loaded(spec(A, B), statuses) == B
    assert least_loaded(spec(A, B), {A: EndpointStatus(A), B: EndpointStatus(B)}) == A


def test_an_endpoint_that_stopped_reporting_gets_no_new_task():
    statuses = {A: EndpointStatus(A, connected_workers=8, reporting=False), B: EndpointStatus(B, in_flight=50)}
    assert choose(least_loaded, spec(A, B), statuses) == B


def test_candidates_when_none_is_usable_avoid_the_just_lost():
    statuses = {A: EndpointStatus(A, online=False, recently_lost=True), B: EndpointStatus(B, online=False)}
    assert candidates([A, B], statuses) == [B]          # the task waits for B at the service
    statuses[B] = EndpointStatus(B, online=False, recently_lost=True)
    assert candidates([A, B], statuses) == [A, B]       # nothing better: all allowed
    assert candidates([A], {}) == [A]                   # no report yet: usable by default


def test_a_retry_avoids_the_endpoint_that_just_lost_the_task():
    statuses = {A: EndpointStatus(A, recently_lost=True), B: EndpointStatus(B, in_flight=10)}
    assert {choose(RoundRobin(), spec(A, B), statuses) for _ in range(4)} == {B}
    assert choose(least_loaded, spec(A, B), statuses) == B


def test_a_callable_policy_is_asked_and_checked():
    seen = []

    def last(task_spec, statuses):
        seen.append((task_spec["endpoints"], sorted(statuses)))
        return task_spec["endpoints"][-1]
    assert choose(resolve_policy(last), spec(A, B), {}) == B
    assert seen == [([A, B], [A, B])]
    with pytest.raises(ValueError, match="chose endpoint 'elsewhere'"):
        choose(lambda s, st: "elsewhere", spec(A, B), {})


def test_unknown_policy_name_lists_the_known():
    with pytest.raises(ValueError, match="least_loaded"):
        resolve_policy("fastest")


def test_status_from_report_reads_the_endpoint_report():
    reply = {"status": "online", "last_seen": 100.0,
             "details": {"connected_workers": 4, "idle_workers": 3, "pending_tasks": 2, "outstanding_tasks": 1}}
    s = status_from_report(A, reply, in_flight=7, now=101.0, stale_after_s=5.0)
    assert (s.online, s.reporting, s.connected_workers, s.idle_workers, s.queue, s.in_flight) == \
        (True, True, 4, 3, 3, 7)
    assert not status_from_report(A, reply, 0, now=200.0, stale_after_s=5.0).usable      # silent too long
    assert not status_from_report(A, {**reply, "status": "offline"}, 0, 101.0, 5.0).usable
    stopped = {**reply, "details": {**reply["details"], "alive": False}}
    assert not status_from_report(A, stopped, 0, 101.0, 5.0).online
    # tasks of ours that finished since the report left its queue: a drained endpoint is not "busy" for 5 s
    assert status_from_report(A, reply, 0, 101.0, 5.0, finished_since=2).queue == 1
    assert status_from_report(A, reply, 0, 101.0, 5.0, finished_since=9).queue == 0


def test_loss_tracker_reports_an_endpoint_once_per_offline_spell():
    tracker = LossTracker(after_s=2.0, avoid_s=10.0)
    tracker.observe(A, False, now=0.0)
    assert tracker.newly_lost(1.9) == []
    assert tracker.newly_lost(2.0) == [A]
    assert tracker.newly_lost(3.0) == []                 # once
    assert tracker.recently_lost(A, 5.0) and not tracker.recently_lost(A, 12.5)
    tracker.observe(A, True, now=4.0)
    tracker.observe(A, False, now=5.0)
    assert tracker.newly_lost(7.0) == [A]                # a new spell
    assert LossTracker(after_s=None).newly_lost(1e9) == []


def test_a_task_sent_to_an_endpoint_already_offline_also_waits_the_limit():
    tracker = LossTracker(after_s=2.0)
    tracker.observe(A, False, now=0.0)
    assert tracker.gives_up(A, submitted_at=0.5, now=2.5)        # both waited 2 s
    assert not tracker.gives_up(A, submitted_at=10.0, now=11.0)  # sent late: waits its own 2 s
    assert tracker.gives_up(A, submitted_at=10.0, now=12.0)
    tracker.observe(A, True, now=12.5)
    assert not tracker.gives_up(A, submitted_at=0.0, now=13.0)   # back online: the task waits for it
    assert not LossTracker(after_s=None).gives_up(A, 0.0, 1e9)
