"""The interchange's pure bookkeeping: events in, actions out. No process, socket or clock."""
from __future__ import annotations

import json
import math
import pickle
import signal

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.htex.errors import ManagerLost, MalformedMessage, WorkerLost
from parsl_lite.executors.htex.ledger import (
    AcceptManager, Dispatch, DropResults, FailTasks, ForgetManager, HeartbeatReceived, HoldManager, Ledger,
    LedgerConfig, ManagerDraining, ManagerRegistered, ResultsArrived, TasksArrived, Tick,
    WorkerConnected, WorkerDied,
)
from parsl_lite.executors.htex.messages import NO_TASK, PROTOCOL_VERSION, ManagerStatus, TaskMessage

BODY = {b"f": b"body-f", b"g": b"body-g"}


def task(tid, digest=b"f", body=False):
    return TaskMessage(tid, digest, BODY[digest] if body else None, b"args%d" % tid, {})


def tasks(ids, digest=b"f", first_with_body=True):
    return [task(tid, digest, first_with_body and i == 0) for i, tid in enumerate(ids)]


def make(workers=2, managers=(b"m1",), now=0.0, **config):
    ledger = Ledger(LedgerConfig(**config))
    for mid in managers:
        assert ledger.handle(ManagerRegistered(mid, "block-" + mid.decode(), "host-" + mid.decode(), workers,
                                               PROTOCOL_VERSION, now)) == [AcceptManager(mid)]
        for index in range(workers):
            ledger.handle(WorkerConnected(mid, index, now, pid=100 + index))
    return ledger


def dispatched(actions):
    return {(a.manager_id, a.worker_index): a.task_ids for a in actions if isinstance(a, Dispatch)}


def kinds(actions):
    return [type(a).__name__ for a in actions]


# ---------------------------------------------------------------- registration

def test_config_errors_name_the_field():
    with pytest.raises(ConfigurationError, match="max_batch"):
        LedgerConfig(max_batch=0)
    with pytest.raises(ConfigurationError, match="prefetch_capacity"):
        LedgerConfig(prefetch_capacity=-1)
    with pytest.raises(ConfigurationError, match="heartbeat_threshold"):
        LedgerConfig(heartbeat_threshold_s=0)


def test_a_pool_of_another_protocol_version_is_rejected_with_both_versions():
    ledger = Ledger()
    actions = ledger.handle(ManagerRegistered(b"m", "0", "node7", 2, PROTOCOL_VERSION + 1, 0.0))
    assert kinds(actions) == ["RejectManager"]
    reason = actions[0].reason
    assert f"version {PROTOCOL_VERSION + 1}" in reason and f"version {PROTOCOL_VERSION}" in reason
    assert "node7" in reason
    assert ledger.managers() == []
    assert ledger.handle(WorkerConnected(b"m", 0, 0.0)) == []  # its workers are not taken either


def test_tasks_wait_in_the_queue_until_a_worker_connects():
    ledger = Ledger()
    assert ledger.handle(TasksArrived(tasks([1, 2]))) == []
    assert ledger.pending_count == 2 and ledger.outstanding_count == 2
    ledger.handle(ManagerRegistered(b"m", "0", "h", 2, PROTOCOL_VERSION, 0.0))
    actions = ledger.handle(WorkerConnected(b"m", 0, 0.0))
    assert dispatched(actions) == {(b"m", 0): (1,)}  # ceil(2/1) = 2 < max_batch: 1 + prefetch = 1
    assert ledger.pending_count == 1 and ledger.outstanding_count == 2
    assert ledger.location(1) == (b"m", 0) and ledger.location(2) is None and ledger.location(99) is None
    actions = ledger.handle(WorkerConnected(b"m", 1, 0.0))  # the next worker finds the rest
    assert dispatched(actions) == {(b"m", 1): (2,)}
    assert ledger.pending_count == 0 and ledger.outstanding_count == 2


def test_registering_again_fails_what_the_previous_process_held():
    ledger = make(workers=1)
    ledger.handle(TasksArrived(tasks([1])))
    actions = ledger.handle(ManagerRegistered(b"m1", "0", "host-m1", 1, PROTOCOL_VERSION, 5.0))
    assert kinds(actions) == ["FailTasks", "AcceptManager"]
    assert actions[0].task_ids == (1,) and actions[0].reason == "manager_lost"
    assert ledger.connected_workers == 0 and ledger.outstanding_count == 0


# ---------------------------------------------------------------- dispatch policy

def test_one_task_goes_to_one_worker_and_two_are_spread():
    ledger = make(workers=2)
    assert dispatched(ledger.handle(TasksArrived(tasks([1])))) == {(b"m1", 0): (1,)}
    assert dispatched(ledger.handle(TasksArrived(tasks([2], first_with_body=False)))) == {(b"m1", 1): (2,)}


def test_a_few_long_tasks_spread_and_the_tail_waits_for_a_free_worker():
    ledger = make(workers=2)
    actions = ledger.handle(TasksArrived(tasks(range(1, 6))))
    # ceil(5/2) = 3 < max_batch: no full batch for every worker, so one each; the rest stay queued
    assert dispatched(actions) == {(b"m1", 0): (1,), (b"m1", 1): (2,)}
    assert ledger.pending_count == 3
    actions = ledger.handle(ResultsArrived(b"m1", 1, [2], 1.0))
    assert dispatched(actions) == {(b"m1", 1): (3,)}      # whichever worker frees up first
    actions = ledger.handle(ResultsArrived(b"m1", 0, [1], 1.0))
    assert dispatched(actions) == {(b"m1", 0): (4,)}
    assert ledger.pending_count == 1
    # the tail of a run that started in batches goes one by one too
    ledger = make(workers=2, max_batch=2)
    actions = ledger.handle(TasksArrived(tasks(range(1, 6))))
    # ceil(5/2) = 3 >= 2: a batch; then ceil(3/2) = 2 >= 2: a batch; one stays queued
    assert dispatched(actions) == {(b"m1", 0): (1, 2), (b"m1", 1): (3, 4)}
    assert ledger.pending_count == 1
    actions = ledger.handle(ResultsArrived(b"m1", 1, [3, 4], 1.0))
    assert dispatched(actions) == {(b"m1", 1): (5,)}      # ceil(1/2) = 1 < 2: not a batch


def test_a_deep_queue_flows_in_batches_capped_at_max_batch():
    ledger = make(workers=2, max_batch=64)
    actions = ledger.handle(TasksArrived(tasks(range(1000))))
    assert [len(ids) for ids in dispatched(actions).values()] == [64, 64]
    assert ledger.pending_count == 1000 - 128
    actions = ledger.handle(ResultsArrived(b"m1", 0, list(range(10)), 1.0))  # partial results: topped up
    assert dispatched(actions) == {(b"m1", 0): tuple(range(128, 138))}


def test_more_tasks_top_up_a_busy_worker_when_the_queue_deepens():
    ledger = make(workers=1, max_batch=8)
    ledger.handle(TasksArrived(tasks([0])))
    actions = ledger.handle(TasksArrived(tasks(range(1, 20), first_with_body=False)))
    assert dispatched(actions) == {(b"m1", 0): tuple(range(1, 8))}  # up to max_batch in all


def test_prefetch_capacity_is_the_floor_of_what_a_worker_may_hold():
    ledger = make(workers=2, prefetch_capacity=3, max_batch=2)
    actions = ledger.handle(TasksArrived(tasks(range(4))))
    assert [len(ids) for ids in dispatched(actions).values()] == [4]  # 1 + 3 prefetched, on the first idle one
    ledger = make(workers=2, prefetch_capacity=0, max_batch=1)
    actions = ledger.handle(TasksArrived(tasks(range(10))))
    assert [len(ids) for ids in dispatched(actions).values()] == [1, 1]


def test_idle_workers_are_served_first():
    ledger = make(workers=3)
    ledger.handle(TasksArrived(tasks([1, 2])))                 # no full batch: w0 gets 1, w1 gets 1
    actions = ledger.handle(TasksArrived(tasks([3], first_with_body=False)))
    assert dispatched(actions) == {(b"m1", 2): (3,)}
    # a busy worker with room (w0) comes before the idle one (w1) in round-robin order; the idle one wins
    ledger = make(workers=2, max_batch=2)
    ledger.handle(TasksArrived(tasks([1, 2])))                 # ceil(2/2) = 1 < 2: w0 gets 1, w1 gets 2
    ledger.handle(ResultsArrived(b"m1", 1, [2], 1.0))          # w1 idle, w0 holds 1 of a possible 2
    actions = ledger.handle(TasksArrived(tasks(range(3, 7), first_with_body=False)))
    # ceil(4/2) = 2: a full batch to the idle w1; then ceil(2/2) = 1 < 2, and w0 already holds 1
    assert dispatched(actions) == {(b"m1", 1): (3, 4)}
    assert ledger.pending_count == 2


def test_a_function_body_goes_to_each_worker_once():
    ledger = make(workers=2, max_batch=2)
    actions = ledger.handle(TasksArrived(tasks([1, 2, 3])))  # ceil(3/2) = 2: a batch to w0, then 1 to w1
    sent = {a.worker_index: a for a in actions if isinstance(a, Dispatch)}
    assert [t.fn_body for t in sent[0].tasks] == [b"body-f", None]
    assert [t.fn_body for t in sent[1].tasks] == [b"body-f"]
    assert sent[0].bodies_to_attach == {b"f": b"body-f"} and sent[0].task_ids == (1, 2)
    ledger.handle(ResultsArrived(b"m1", 0, [1, 2], 1.0))
    ledger.handle(ResultsArrived(b"m1", 1, [3], 1.0))
    actions = ledger.handle(TasksArrived(tasks([4], first_with_body=False) + tasks([5], digest=b"g")))
    assert [(a.worker_index, [t.fn_body for t in a.tasks]) for a in actions] == [(0, [None]), (1, [b"body-g"])]
    # a replacement process knows nothing: it gets the body again
    ledger.handle(WorkerDied(b"m1", 0, 1, 2.0, pid=100))
    assert ledger.handle(WorkerConnected(b"m1", 0, 2.0, pid=200)) == []
    actions = ledger.handle(TasksArrived(tasks([6], first_with_body=False)))
    assert [(a.worker_index, [t.fn_body for t in a.tasks]) for a in actions] == [(0, [b"body-f"])]


def test_a_task_whose_function_never_arrived_fails_at_once():
    ledger = make(workers=1)
    actions = ledger.handle(TasksArrived([task(1, b"g")]))
    assert kinds(actions) == ["FailTasks"] and actions[0].reason == "unknown_function"
    exc = actions[0].exception_for(1)
    assert isinstance(exc, MalformedMessage) and "task 1" in str(exc)
    assert ledger.outstanding_count == 0


def test_a_duplicate_task_id_is_ignored():
    ledger = make(workers=1)
    ledger.handle(TasksArrived(tasks([1])))
    assert ledger.handle(TasksArrived(tasks([1]))) == []
    assert ledger.outstanding_count == 1


# ---------------------------------------------------------------- results

def test_results_free_room_and_unknown_results_are_dropped():
    ledger = make(workers=1)
    ledger.handle(TasksArrived(tasks([1, 2])))               # ceil(2/1) = 2 < max_batch: w0 gets 1, 2 waits
    actions = ledger.handle(ResultsArrived(b"m1", 0, [1, 2, 42], 1.0))  # 2 is still queued: not w0's
    assert actions == [DropResults(b"m1", 0, (2, 42), actions[0].reason), actions[1]]
    assert dispatched(actions) == {(b"m1", 0): (2,)}         # 1's result made room for 2
    assert ledger.handle(ResultsArrived(b"m1", 0, [2], 2.0)) == []
    assert ledger.outstanding_count == 0
    assert kinds(ledger.handle(ResultsArrived(b"nobody", 0, [7], 1.0))) == ["DropResults"]


def test_results_from_the_wrong_worker_are_dropped():
    ledger = make(workers=2)
    ledger.handle(TasksArrived(tasks([1, 2])))
    assert dispatched(ledger.handle(ResultsArrived(b"m1", 1, [1], 1.0))) == {}
    assert ledger.location(1) == (b"m1", 0)


# ---------------------------------------------------------------- worker deaths

def test_only_the_running_task_of_a_dead_worker_fails_the_others_go_back_to_the_front():
    ledger = make(workers=2, max_batch=3)
    ledger.handle(TasksArrived(tasks(range(1, 6))))  # ceil(5/2) = 3: w0 1,2,3; ceil(2/2) = 1: w1 4; queued: 5
    actions = ledger.handle(WorkerDied(b"m1", 0, -signal.SIGKILL, 1.0, pid=100, running_task=2))
    fail = actions[0]
    assert isinstance(fail, FailTasks) and fail.task_ids == (2,) and fail.reason == "worker_lost"
    exc = fail.exception_for(2)
    assert isinstance(exc, WorkerLost) and "SIGKILL" in str(exc) and "host-m1" in str(exc) and "task 2" in str(exc)
    assert pickle.loads(pickle.dumps(exc)).task_id == 2
    # 1 and 3 had not started: back in front of 5; ceil(3/1) = 3, so w1 may now hold a batch of 3
    assert dispatched(actions) == {(b"m1", 1): (1, 3)}
    assert ledger.connected_workers == 1 and ledger.pending_count == 1 and ledger.outstanding_count == 4
    assert dispatched(ledger.handle(ResultsArrived(b"m1", 1, [4, 1, 3], 2.0))) == {(b"m1", 1): (5,)}


def test_a_requeued_task_gets_its_function_body_on_its_new_worker():
    ledger = make(workers=1, max_batch=2)
    ledger.handle(TasksArrived(tasks([1, 2])))  # w0: 1, 2, the body with 1
    ledger.handle(WorkerConnected(b"m1", 1, 0.5, pid=300))  # a second worker, that never saw the body
    [action] = [a for a in ledger.handle(WorkerDied(b"m1", 0, 3, 1.0, pid=100, running_task=1))
                if isinstance(a, Dispatch)]
    assert action.worker_index == 1 and action.task_ids == (2,) and action.tasks[0].fn_body == BODY[b"f"]


def test_a_worker_that_died_between_tasks_loses_none_and_an_unknown_one_the_oldest():
    ledger = make(workers=1, max_batch=3)
    ledger.handle(TasksArrived(tasks([1, 2, 3])))  # all three to w0 (ceil(3/1) = 3)
    assert kinds(ledger.handle(WorkerDied(b"m1", 0, -9, 1.0, pid=100, running_task=NO_TASK))) == []
    assert ledger.pending_count == 3
    actions = ledger.handle(WorkerConnected(b"m1", 0, 1.1, pid=200))
    assert dispatched(actions) == {(b"m1", 0): (1, 2, 3)}
    actions = ledger.handle(WorkerDied(b"m1", 0, -9, 1.2, pid=200))  # the pool could not tell: the oldest
    assert [a.task_ids for a in actions if isinstance(a, FailTasks)] == [(1,)] and ledger.pending_count == 2


def test_a_dead_worker_widens_the_share_of_the_others():
    ledger = make(workers=2, max_batch=2)
    ledger.handle(TasksArrived(tasks([0, 1])))     # one each
    assert ledger.handle(TasksArrived(tasks([2, 3], first_with_body=False))) == []  # ceil(2/2) = 1 < 2: no batch
    actions = ledger.handle(WorkerDied(b"m1", 0, 1, 1.0))
    # ceil(2/1) = 2 >= 2: now a full batch for the one worker left
    assert kinds(actions) == ["FailTasks", "Dispatch"] and actions[1].task_ids == (2,)
    assert ledger.pending_count == 1


def test_a_new_process_in_the_slot_before_the_death_report_is_handled_once():
    ledger = make(workers=1)
    ledger.handle(TasksArrived(tasks([1])))
    actions = ledger.handle(WorkerConnected(b"m1", 0, 1.0, pid=200))   # the replacement's hello came first
    assert kinds(actions) == ["FailTasks"] and actions[0].task_ids == (1,)
    ledger.handle(TasksArrived(tasks([2], first_with_body=False)))
    assert ledger.handle(WorkerDied(b"m1", 0, -9, 1.5, pid=100)) == []  # the old death: nothing more fails
    assert ledger.location(2) == (b"m1", 0)
    assert ledger.handle(WorkerConnected(b"m1", 0, 1.6, pid=200)) == []  # a repeated hello changes nothing


def test_a_death_reported_before_the_hello_keeps_the_dead_worker_out():
    ledger = make(workers=1)
    ledger.handle(WorkerDied(b"m1", 0, -9, 1.0, pid=100))
    assert ledger.handle(WorkerDied(b"m1", 0, -9, 1.1, pid=300)) == []   # died before saying hello
    assert ledger.handle(WorkerConnected(b"m1", 0, 1.2, pid=300)) == []  # its late hello is ignored
    assert ledger.connected_workers == 0
    assert ledger.handle(TasksArrived(tasks([1]))) == []


# ---------------------------------------------------------------- heartbeats, holds, drains

def test_a_silent_pool_is_lost_with_its_tasks_and_forgotten():
    ledger = make(workers=2, managers=(b"m1", b"m2"), heartbeat_threshold_s=2.0)
    ledger.handle(TasksArrived(tasks(range(1, 5))))
    assert ledger.handle(HeartbeatReceived(b"m2", 2.5)) == []
    assert ledger.handle(Tick(1.9)) == []
    actions = ledger.handle(Tick(3.2))
    assert kinds(actions) == ["FailTasks", "ForgetManager"]
    fail = actions[0]
    assert fail.reason == "manager_lost" and fail.manager_id == b"m1" and set(fail.task_ids) <= {1, 2, 3, 4}
    exc = fail.exception_for(fail.task_ids[0])
    assert isinstance(exc, ManagerLost) and "no heartbeat for 3.2 s (threshold 2 s)" in str(exc)
    assert [info.manager_id for info in ledger.managers()] == [b"m2"]
    assert kinds(ledger.handle(HeartbeatReceived(b"m1", 3.3))) == ["RejectManager"]
    assert ledger.handle(WorkerConnected(b"m1", 0, 3.3)) == []


def test_a_lost_idle_pool_is_forgotten_without_failures():
    ledger = make(workers=1, heartbeat_threshold_s=1.0)
    assert ledger.handle(Tick(5.0)) == [ForgetManager(b"m1", "no heartbeat for 5.0 s (threshold 1 s)")]


@pytest.mark.parametrize("event", [HoldManager, ManagerDraining])
def test_a_held_or_draining_pool_gets_no_new_tasks_but_finishes_its_own(event):
    ledger = make(workers=1, managers=(b"m1", b"m2"), max_batch=2)
    ledger.handle(TasksArrived(tasks([1, 2])))
    assert ledger.handle(event(b"m1")) == []
    actions = ledger.handle(TasksArrived(tasks([3, 4], first_with_body=False)))
    assert dispatched(actions) == {(b"m2", 0): (3,)}  # only m2 counts: ceil(2/1) = 2, a batch of 2 in all
    actions = ledger.handle(ResultsArrived(b"m1", 0, [1], 1.0))
    assert dispatched(actions) == {} and ledger.outstanding_count == 3
    assert ledger.handle(event(b"unknown")) == []
    # a drained pool (nothing left on it) is let go; a held one waits for its block to be cancelled
    assert kinds(actions) == (["ForgetManager"] if event is ManagerDraining else [])
    assert [info.manager_id for info in ledger.managers()] == ([b"m2"] if event is ManagerDraining else [b"m1", b"m2"])


def test_an_idle_pool_that_drains_is_let_go_at_once_and_its_queue_goes_elsewhere():
    ledger = make(workers=1, managers=(b"m1", b"m2"))
    actions = ledger.handle(ManagerDraining(b"m1"))
    assert [a for a in actions if isinstance(a, ForgetManager)][0].reason.startswith("drained")
    assert dispatched(ledger.handle(TasksArrived(tasks([1])))) == {(b"m2", 0): (1,)}
    assert ledger.handle(WorkerConnected(b"m1", 0, 1.0, pid=500)) == []  # a late hello of the drained pool


def test_a_draining_pools_dead_worker_hands_its_unstarted_tasks_to_others():
    ledger = make(workers=1, managers=(b"m1", b"m2"), max_batch=2)
    ledger.handle(TasksArrived(tasks([1, 2, 3, 4])))   # m1/0: 1, 2 (a batch: ceil(4/2) = 2); m2/0: 3; queued: 4
    ledger.handle(ManagerDraining(b"m1"))
    actions = ledger.handle(WorkerDied(b"m1", 0, -9, 1.0, pid=100, running_task=1))
    # 1 is lost, 2 goes back in front of 4; m1 holds nothing now: let go; m2 may hold a batch of 2 (ceil(2/1))
    assert kinds(actions) == ["FailTasks", "ForgetManager", "Dispatch"] and ledger.pending_count == 1
    assert dispatched(actions) == {(b"m2", 0): (2,)}
    assert dispatched(ledger.handle(ResultsArrived(b"m2", 0, [3, 2], 2.0))) == {(b"m2", 0): (4,)}


def test_idle_pools_and_task_counts_per_block():
    ledger = make(workers=1, managers=(b"a", b"b"), now=1.0)
    ledger.handle(TasksArrived(tasks([1])))
    assert ledger.block_task_counts() == {"block-a": 1, "block-b": 0}
    idle = ledger.idle_managers(4.0)
    assert [(i.manager_id, i.block_id, i.idle_s) for i in idle] == [(b"b", "block-b", 3.0)]
    ledger.handle(ResultsArrived(b"a", 0, [1], 6.0))
    assert sorted((i.manager_id, i.idle_s) for i in ledger.idle_managers(10.0)) == [(b"a", 4.0), (b"b", 9.0)]
    ledger.handle(HoldManager(b"a"))
    assert [i.held for i in ledger.idle_managers(10.0)] == [True, False]


def test_manager_statuses_are_what_the_status_reply_carries():
    ledger = make(workers=2, managers=(b"\x01",), max_batch=2)
    ledger.handle(TasksArrived(tasks([1, 2, 3, 4])))   # ceil(4/2) = 2: a batch to w0; ceil(2/2) = 1: 1 to w1; 1 queued
    assert ledger.pending_count == 1 and ledger.outstanding_count == 4 and ledger.connected_workers == 2
    assert ledger.manager_statuses() == (ManagerStatus("01", "block-\x01", "host-\x01", 2, 2, 3, False, False),)
    assert [info.worker_tasks for info in ledger.managers()] == [{0: 2, 1: 1}]
    assert ledger.manager_ids() == [b"\x01"]


def test_unknown_event_type_is_an_error():
    with pytest.raises(KeyError):
        Ledger().handle(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------- random event sequences

MIDS = [b"a", b"b"]


class LedgerMachine(RuleBasedStateMachine):
    """Drives the ledger with random events; checks each action against a small model."""

    @initialize(prefetch=st.integers(0, 2), max_batch=st.integers(1, 6))
    def setup(self, prefetch, max_batch):
        self.config = LedgerConfig(prefetch_capacity=prefetch, max_batch=max_batch, heartbeat_threshold_s=10.0)
        self.ledger = Ledger(self.config)
        self.base, self.cap = 1 + prefetch, max(1 + prefetch, max_batch)
        self.now = 0.0
        self.managers: dict[bytes, dict] = {}   # mid -> {"beat", "closed", "draining", "slots": {i: pid}, "known"}
        self.pids = iter(range(1000, 10**6))
        self.old_pids: dict[tuple[bytes, int], list[int]] = {}
        self.tids = iter(range(10**6))
        self.bodies_sent: set[bytes] = set()
        self.queued: list[int] = []
        self.on: dict[int, tuple[bytes, int]] = {}
        self.done: set[int] = set()
        self.failed: set[int] = set()
        self.arrived: set[int] = set()
        self.held_ever: set[bytes] = set()
        self.died_unseen: dict[tuple[bytes, int], list[int]] = {}  # pids that died before their hello
        for mid in MIDS:  # start from a busy-able state; the rules change it from there
            self.register(mid, 2)
            for index in (0, 1):
                self.connect(mid, index, late=False)

    # -------------------------------------------------------- applying actions

    def apply(self, actions, expect_failed=(), expect_dropped=()):
        failed, dropped = set(), set()
        for action in actions:
            if isinstance(action, Dispatch):
                self.check_dispatch(action)
            elif isinstance(action, FailTasks):
                for tid in action.task_ids:
                    assert tid not in self.failed and tid not in self.done
                    if action.reason == "unknown_function":
                        assert tid not in self.on and tid not in self.queued
                    else:
                        assert self.on.pop(tid)[0] == action.manager_id
                    self.failed.add(tid)
                    failed.add(tid)
            elif isinstance(action, DropResults):
                dropped.update(action.task_ids)
        assert failed == set(expect_failed)
        assert dropped == set(expect_dropped)

    def eligible_slots(self):
        return [(mid, i) for mid, m in self.managers.items() if not m["closed"]
                for i, pid in m["slots"].items() if pid is not None]

    def limit(self, pending):
        """What a worker may hold: a full batch only while the queue holds one for every eligible worker."""
        share = math.ceil(pending / len(self.eligible_slots()))
        return self.cap if share >= self.config.max_batch else self.base

    def check_dispatch(self, action):
        mid, index = action.manager_id, action.worker_index
        manager = self.managers[mid]
        assert not manager["closed"] and mid not in self.held_ever
        assert manager["slots"].get(index) is not None
        ids = list(action.task_ids)
        limit = self.limit(len(self.queued))                        # pending is re-read before each worker
        assert 0 < len(ids) and ids == self.queued[:len(ids)]       # FIFO, each task once
        del self.queued[:len(ids)]
        load = sum(1 for where in self.on.values() if where == (mid, index))
        assert load + len(ids) <= limit <= self.cap
        known = manager["known"].setdefault(index, set())
        for t in action.tasks:
            if t.fn_digest in known:
                assert t.fn_body is None
            else:
                assert t.fn_body == BODY[t.fn_digest]
                known.add(t.fn_digest)
            self.on[t.task_id] = (mid, index)

    def tasks_on(self, mid, index=None):
        return {tid for tid, (m, i) in self.on.items() if m == mid and (index is None or i == index)}

    def lose_slot(self, mid, index, running=None):
        """The slot's process is gone: the task it ran is lost, the others go back to the front of the queue."""
        manager = self.managers[mid]
        self.old_pids.setdefault((mid, index), []).append(manager["slots"][index])
        manager["slots"][index] = None
        manager["known"][index] = set()
        held = [tid for tid, where in self.on.items() if where == (mid, index)]  # in the order sent
        if running is None:
            running = held[0] if held else NO_TASK
        again = [tid for tid in held if tid != running]
        for tid in again:
            del self.on[tid]
        self.queued[:0] = again
        return {running} & set(held)

    def release_if_drained(self, mid, actions):
        manager = self.managers.get(mid)
        if manager is not None and manager["draining"] and not self.tasks_on(mid):
            del self.managers[mid]
            assert any(isinstance(a, ForgetManager) and a.manager_id == mid for a in actions)

    # -------------------------------------------------------- rules

    @rule(mid=st.sampled_from(MIDS), workers=st.integers(1, 3))
    def register(self, mid, workers):
        lost = self.tasks_on(mid) if mid in self.managers else set()
        self.managers[mid] = {"beat": self.now, "closed": False, "draining": False, "slots": {}, "known": {}}
        for index in (0, 1):
            self.died_unseen.pop((mid, index), None)
        self.held_ever.discard(mid)
        self.apply(self.ledger.handle(ManagerRegistered(mid, "blk-" + mid.decode(), "h", workers,
                                                        PROTOCOL_VERSION, self.now)), expect_failed=lost)

    @rule(mid=st.sampled_from(MIDS))
    def register_other_version(self, mid):
        actions = self.ledger.handle(ManagerRegistered(mid, "0", "h", 1, PROTOCOL_VERSION + 1, self.now))
        assert kinds(actions) == ["RejectManager"]

    @rule(mid=st.sampled_from(MIDS), index=st.integers(0, 1), late=st.booleans())
    def connect(self, mid, index, late):
        if late and self.died_unseen.get((mid, index)):  # the hello of a process whose death came first
            pid = self.died_unseen[(mid, index)].pop()
            assert self.ledger.handle(WorkerConnected(mid, index, self.now, pid)) == []
            return
        pid = next(self.pids)
        lost: set[int] = set()
        if mid in self.managers:
            manager = self.managers[mid]
            if manager["slots"].get(index) is not None:
                lost = self.lose_slot(mid, index)  # its death is not known yet: the oldest is taken as running
            manager["slots"][index] = pid
            manager["known"][index] = set()
        actions = self.ledger.handle(WorkerConnected(mid, index, self.now, pid))
        self.apply(actions, expect_failed=lost)
        if lost:
            self.release_if_drained(mid, actions)

    @rule(mid=st.sampled_from(MIDS), index=st.integers(0, 1), exitcode=st.integers(-15, 3), stale=st.booleans(),
          data=st.data())
    def die(self, mid, index, exitcode, stale, data):
        manager = self.managers.get(mid)
        pid, lost, running = next(self.pids), set(), None
        if manager is not None and stale and self.old_pids.get((mid, index)):
            pid = self.old_pids[(mid, index)][-1]            # an earlier process: already handled
        elif manager is not None and manager["slots"].get(index) is not None:
            held = sorted(self.tasks_on(mid, index))
            running = data.draw(st.sampled_from([None, NO_TASK, *held]))  # None: the pool could not tell
            pid, lost = manager["slots"][index], self.lose_slot(mid, index, running)
        elif manager is not None:
            self.died_unseen.setdefault((mid, index), []).append(pid)
        actions = self.ledger.handle(WorkerDied(mid, index, exitcode, self.now, pid, running))
        self.apply(actions, expect_failed=lost)
        self.release_if_drained(mid, actions)

    @rule(n=st.integers(1, 12), digest=st.sampled_from([b"f", b"g"]), orphan=st.booleans())
    def submit(self, n, digest, orphan):
        batch = []
        for _ in range(n):
            tid = next(self.tids)
            batch.append(task(tid, digest, body=digest not in self.bodies_sent))
            self.bodies_sent.add(digest)
        orphans = set()
        if orphan:  # a digest whose body never came
            tid = next(self.tids)
            batch.append(TaskMessage(tid, b"nobody-knows", None, b"", {}))
            orphans.add(tid)
        self.arrived.update(t.task_id for t in batch)
        self.queued.extend(t.task_id for t in batch if t.task_id not in orphans)
        self.apply(self.ledger.handle(TasksArrived(batch)), expect_failed=orphans)

    @rule(mid=st.sampled_from(MIDS), index=st.integers(0, 1), data=st.data(), bogus=st.booleans())
    def results(self, mid, index, data, bogus):
        held = sorted(self.tasks_on(mid, index))
        ids = data.draw(st.lists(st.sampled_from(held), unique=True)) if held else []
        junk = [next(self.tids) + 10**7] if bogus else []
        elsewhere = sorted(set(self.on) - set(held))[:1] if bogus else []
        for tid in ids:
            del self.on[tid]
            self.done.add(tid)
        actions = self.ledger.handle(ResultsArrived(mid, index, ids + junk + elsewhere, self.now))
        self.apply(actions, expect_dropped=junk + elsewhere)
        if ids:
            self.release_if_drained(mid, actions)

    @rule(mid=st.sampled_from(MIDS))
    def heartbeat(self, mid):
        actions = self.ledger.handle(HeartbeatReceived(mid, self.now))
        if mid in self.managers:
            self.managers[mid]["beat"] = self.now
            assert actions == []
        else:
            assert kinds(actions) == ["RejectManager"]

    @rule(step=st.floats(0, 6))
    def tick(self, step):
        self.now += step
        lost_managers = [mid for mid, m in self.managers.items() if self.now - m["beat"] > 10.0]
        lost = set().union(*(self.tasks_on(mid) for mid in lost_managers))
        for mid in lost_managers:
            del self.managers[mid]
        actions = self.ledger.handle(Tick(self.now))
        assert {a.manager_id for a in actions if isinstance(a, ForgetManager)} == set(lost_managers)
        self.apply(actions, expect_failed=lost)

    @precondition(lambda self: self.managers)
    @rule(data=st.data(), hold=st.booleans())
    def close(self, data, hold):
        mid = data.draw(st.sampled_from(sorted(self.managers)))
        manager = self.managers[mid]
        manager["closed"] = True
        manager["draining"] = manager["draining"] or not hold
        self.held_ever.add(mid)
        actions = self.ledger.handle(HoldManager(mid) if hold else ManagerDraining(mid))
        self.apply(actions)
        self.release_if_drained(mid, actions)

    # -------------------------------------------------------- invariants

    @invariant()
    def every_task_is_in_exactly_one_place(self):
        places = [set(self.queued), set(self.on), self.done, self.failed]
        assert sum(map(len, places)) == len(self.arrived) == len(set().union(*places))
        assert self.ledger.pending_count == len(self.queued)
        assert self.ledger.outstanding_count == len(self.queued) + len(self.on)
        for tid, where in self.on.items():
            assert self.ledger.location(tid) == where

    @invariant()
    def the_ledger_sees_the_same_pools_and_loads(self):
        infos = {info.manager_id: info for info in self.ledger.managers()}
        assert set(infos) == set(self.managers)
        for mid, manager in self.managers.items():
            connected = {i for i, pid in manager["slots"].items() if pid is not None}
            loads = {i: len(self.tasks_on(mid, i)) for i in connected}
            assert infos[mid].worker_tasks == loads
            assert all(0 <= load <= self.cap for load in loads.values())
            assert infos[mid].held or infos[mid].draining or not manager["closed"]

    @invariant()
    def no_eligible_worker_has_room_while_tasks_wait(self):
        if not self.queued:
            return
        slots = self.eligible_slots()
        if not slots:
            return
        limit = self.limit(len(self.queued))
        for mid, index in slots:
            assert len(self.tasks_on(mid, index)) >= limit


LedgerMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestLedgerMachine = LedgerMachine.TestCase
