"""The interchange's pure bookkeeping: events in, actions out. No process, socket or clock."""
from __future__ import annotations

import pickle
import signal

import pytest

from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.htex.errors import ManagerLost, MalformedMessage, WorkerLost
from parsl_lite.executors.htex.ledger import (
    AcceptManager, Dispatch, DropResults, FailTasks, ForgetManager, HeartbeatReceived, HoldManager, Ledger,
    LedgerConfig, LoadChanged, ManagerDraining, ManagerRegistered, ResultsArrived, TasksArrived, Tick,
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


def test_a_saturated_interchange_sends_each_worker_its_fair_share_in_one_batch():
    # 4 workers, 10 tasks, max_batch 64: free, one each; saturated, each worker its share of what is left when
    # its turn comes: ceil(10/4) = 3, ceil(7/4) = 2, ceil(5/4) = 2, ceil(3/4) = 1
    free, busy = make(workers=4), make(workers=4)
    assert busy.handle(LoadChanged(True)) == []  # nothing queued yet: nothing to send
    assert [len(ids) for ids in dispatched(free.handle(TasksArrived(tasks(range(10))))).values()] == [1, 1, 1, 1]
    actions = busy.handle(TasksArrived(tasks(range(10))))
    assert dispatched(actions) == {(b"m1", 0): (0, 1, 2), (b"m1", 1): (3, 4), (b"m1", 2): (5, 6), (b"m1", 3): (7,)}
    assert busy.pending_count == 2
    # more tasks top the others up to their share: ceil(12/4) = 3 for w1 and w2, ceil(10/4) = 3 for w3
    actions = busy.handle(TasksArrived(tasks(range(10, 20), first_with_body=False)))
    assert dispatched(actions) == {(b"m1", 1): (8,), (b"m1", 2): (9,), (b"m1", 3): (10, 11)}
    # a worker that frees up takes its share of what is left: ceil(8/4) = 2
    assert dispatched(busy.handle(ResultsArrived(b"m1", 0, [0, 1, 2], 1.0))) == {(b"m1", 0): (12, 13)}


def test_a_lone_task_goes_out_at_once_when_saturated():
    ledger = make(workers=3)
    ledger.handle(LoadChanged(True))
    assert dispatched(ledger.handle(TasksArrived(tasks([1])))) == {(b"m1", 0): (1,)}


def test_becoming_saturated_tops_up_busy_workers_and_becoming_free_stops_batches():
    ledger = make(workers=2)
    ledger.handle(TasksArrived(tasks(range(8))))          # free: one each, 6 queued
    actions = ledger.handle(LoadChanged(True))            # now ceil(6/2) = 3 for w0, then ceil(4/2) = 2 for w1
    assert dispatched(actions) == {(b"m1", 0): (2, 3), (b"m1", 1): (4,)}
    assert ledger.handle(LoadChanged(True)) == []         # no change, nothing to do
    assert ledger.handle(LoadChanged(False)) == []
    actions = ledger.handle(ResultsArrived(b"m1", 0, [0, 2, 3], 1.0))
    assert dispatched(actions) == {(b"m1", 0): (5,)}      # free again: 1 + prefetch, though ceil(3/2) = 2
    assert dispatched(ledger.handle(ResultsArrived(b"m1", 1, [1, 4], 1.0))) == {(b"m1", 1): (6,)}
    assert ledger.pending_count == 1


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
