"""The ledger's short-task rule: tasks measured short go in batches beyond the fair share, long ones never do.

With many idle workers and a shallow queue the fair share is one task a
worker, so one task a message; the workers' measured run time per task
(``ResultsArrived.busy_s``) tells the ledger when a bigger batch to one
worker costs nothing. Pure: no process, socket or clock.
"""
from __future__ import annotations

import pytest

from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.htex.ledger import LedgerConfig, ResultsArrived, TasksArrived
from tests.test_htex_ledger import dispatched, make, tasks


def measured(ledger, worker_index, ids, busy_s, manager=b"m1"):
    """The worker returns ``ids`` having spent ``busy_s`` running them."""
    return ledger.handle(ResultsArrived(manager, worker_index, ids, 1.0, busy_s))


def test_unmeasured_tasks_are_spread_one_a_worker():
    ledger = make(workers=8)
    out = dispatched(ledger.handle(TasksArrived(tasks(range(1, 5)))))
    assert sorted(len(ids) for ids in out.values()) == [1, 1, 1, 1]  # run time unknown: the fair share


def test_known_short_tasks_go_to_one_worker_in_one_batch():
    ledger = make(workers=8)
    ledger.handle(TasksArrived(tasks([1])))
    measured(ledger, 0, [1], busy_s=0.00001)              # 10 us a task: 50 of them fit in 0.5 ms
    out = dispatched(ledger.handle(TasksArrived(tasks(range(2, 12), first_with_body=False))))
    assert list(out.values()) == [tuple(range(2, 12))]      # one message, not ten


def test_the_batch_is_what_fits_in_short_batch_s_and_at_most_max_batch():
    ledger = make(workers=8, short_batch_s=0.001, max_batch=64)
    ledger.handle(TasksArrived(tasks([1])))
    measured(ledger, 0, [1], busy_s=0.00025)              # 4 such tasks fit in 1 ms
    out = dispatched(ledger.handle(TasksArrived(tasks(range(2, 12), first_with_body=False))))
    assert sorted(len(ids) for ids in out.values()) == [2, 4, 4]
    instant = make(workers=8, max_batch=5)
    instant.handle(TasksArrived(tasks([1])))
    measured(instant, 0, [1], busy_s=0.0)                 # a simulated worker: no time at all
    out = dispatched(instant.handle(TasksArrived(tasks(range(2, 12), first_with_body=False))))
    assert sorted(len(ids) for ids in out.values()) == [5, 5]


def test_a_lone_short_task_still_goes_out_at_once():
    ledger = make(workers=4)
    ledger.handle(TasksArrived(tasks([1])))
    measured(ledger, 0, [1], busy_s=0.00001)
    assert list(dispatched(ledger.handle(TasksArrived(tasks([2], first_with_body=False)))).values()) == [(2,)]


def test_long_tasks_are_never_concentrated():
    ledger = make(workers=8)
    ledger.handle(TasksArrived(tasks([1])))
    measured(ledger, 0, [1], busy_s=2.0)
    out = dispatched(ledger.handle(TasksArrived(tasks(range(2, 6), first_with_body=False))))
    assert sorted(len(ids) for ids in out.values()) == [1, 1, 1, 1]


def test_one_long_result_stops_the_concentration_at_once_and_short_ones_bring_it_back_slowly():
    ledger = make(workers=8)
    ledger.handle(TasksArrived(tasks([1, 2])))
    measured(ledger, 0, [1], busy_s=0.00001)
    measured(ledger, 1, [2], busy_s=1.0)                  # a long one among them: the estimate jumps up
    out = dispatched(ledger.handle(TasksArrived(tasks(range(3, 7), first_with_body=False))))
    assert sorted(len(ids) for ids in out.values()) == [1, 1, 1, 1]
    for worker, tid in zip(range(4), range(3, 7)):        # short again, but 1/8 of the way per result
        measured(ledger, worker, [tid], busy_s=0.00001)
    out = dispatched(ledger.handle(TasksArrived(tasks(range(7, 11), first_with_body=False))))
    assert sorted(len(ids) for ids in out.values()) == [1, 1, 1, 1]  # 1.0 s * (7/8)^4 is still long


def test_a_function_measured_short_does_not_make_another_one_short():
    ledger = make(workers=2)
    ledger.handle(TasksArrived(tasks([1])))
    measured(ledger, 0, [1], busy_s=0.00001)              # probes of f: tiny
    out = dispatched(ledger.handle(TasksArrived(tasks(range(2, 102), digest=b"g"))))  # 100 of g, never measured
    assert sorted(len(ids) for ids in out.values()) == [1, 1]  # not 64 piled on one worker while the other idles
    out = dispatched(ledger.handle(TasksArrived(tasks(range(102, 112), first_with_body=False))))
    assert out == {}                                       # f is short, but both workers still hold their g


def test_a_mixed_result_batch_teaches_each_of_its_functions():
    ledger = make(workers=8, prefetch_capacity=1)         # room for two: f's task and g's go to one worker
    ((where, batch),) = dispatched(ledger.handle(TasksArrived(tasks([1]) + tasks([2], digest=b"g")))).items()
    assert batch == (1, 2)
    measured(ledger, where[1], [1, 2], busy_s=0.00002, manager=where[0])
    for digest, ids in ((b"g", range(3, 13)), (b"f", range(13, 23))):
        out = dispatched(ledger.handle(TasksArrived(tasks(ids, digest=digest, first_with_body=False))))
        assert list(out.values()) == [tuple(ids)]          # each known short: one message


def test_a_result_batch_counts_as_its_tasks():
    ledger = make(workers=8)
    ledger.handle(TasksArrived(tasks([1])))
    measured(ledger, 0, [1], busy_s=0.00001)
    ((where, batch),) = dispatched(ledger.handle(TasksArrived(tasks(range(2, 12), first_with_body=False)))).items()
    measured(ledger, where[1], list(batch), busy_s=0.0001)  # 10 tasks in 100 us: 10 us each, still short
    out = dispatched(ledger.handle(TasksArrived(tasks(range(12, 22), first_with_body=False))))
    assert list(out.values()) == [tuple(range(12, 22))]


def test_short_batch_s_zero_turns_the_rule_off_and_a_negative_one_is_refused():
    ledger = make(workers=8, short_batch_s=0.0)
    ledger.handle(TasksArrived(tasks([1])))
    measured(ledger, 0, [1], busy_s=0.0)
    out = dispatched(ledger.handle(TasksArrived(tasks(range(2, 6), first_with_body=False))))
    assert sorted(len(ids) for ids in out.values()) == [1, 1, 1, 1]
    with pytest.raises(ConfigurationError, match="short_batch_s"):
        LedgerConfig(short_batch_s=-1.0)
