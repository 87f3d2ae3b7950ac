"""The kernel's pure core: events in, actions out. No threads, no executors."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsl_lite.dataflow.errors import InvalidTransition
from parsl_lite.dataflow.graph import (
    AwaitJoin, CheckMemo, DependencyDone, ExecFailed, ExecStarted, ExecSucceeded, Finish, JoinStarted, Launch,
    LaunchFailed, MemoChecked, StateChanged, TaskAbandoned, TaskGraph, TaskId, TaskRecord, TaskRejected,
    TaskSubmitted,
)
from parsl_lite.dataflow.states import FINAL_STATES, States


def record(tid: int, memoize: bool = False, join: bool = False) -> TaskRecord:
    return TaskRecord(TaskId(tid), f"f{tid}", memoize, join)


def kinds(actions):
    return [type(a).__name__ for a in actions]


def test_task_without_dependencies_launches_at_once():
    graph = TaskGraph()
    r = record(0)
    actions = graph.handle(TaskSubmitted(r, 0))
    assert actions == [Launch(r)]
    assert r.state is States.launched


def test_task_launches_when_last_dependency_is_done():
    graph = TaskGraph()
    r = record(1)
    assert graph.handle(TaskSubmitted(r, 2)) == []
    assert graph.handle(DependencyDone(r.id, failed=False)) == []
    assert graph.handle(DependencyDone(r.id, failed=False)) == [Launch(r)]


def test_failed_dependency_fails_the_task_after_all_dependencies_report():
    graph = TaskGraph()
    r = record(1)
    graph.handle(TaskSubmitted(r, 2))
    assert graph.handle(DependencyDone(r.id, failed=True)) == []
    actions = graph.handle(DependencyDone(r.id, failed=False))
    assert actions == [Finish(r, States.dep_fail)]
    assert r.id not in graph.tasks


def test_success_finishes_and_forgets_the_task():
    graph = TaskGraph()
    r = record(0)
    graph.handle(TaskSubmitted(r, 0))
    assert graph.handle(ExecSucceeded(r.id)) == [Finish(r, States.exec_done)]
    assert len(graph) == 0


def test_retries_relaunch_until_the_cost_exceeds_the_budget():
    graph = TaskGraph(retries=2)
    r = record(0)
    graph.handle(TaskSubmitted(r, 0))
    assert graph.handle(ExecFailed(r.id, 1.0)) == [Launch(r)]
    assert graph.handle(ExecFailed(r.id, 1.0)) == [Launch(r)]
    assert graph.handle(ExecFailed(r.id, 1.0)) == [Finish(r, States.failed)]
    assert (r.fail_count, r.fail_cost, r.try_id) == (3, 3.0, 2)


def test_retry_handler_cost_can_stop_retries_early():
    graph = TaskGraph(retries=5)
    r = record(0)
    graph.handle(TaskSubmitted(r, 0))
    assert graph.handle(ExecFailed(r.id, 10.0)) == [Finish(r, States.failed)]


def test_memoized_task_asks_the_memo_table_first():
    graph = TaskGraph()
    hit, miss = record(0, memoize=True), record(1, memoize=True)
    assert graph.handle(TaskSubmitted(hit, 0)) == [CheckMemo(hit)]
    assert hit.state is States.pending
    assert graph.handle(MemoChecked(hit.id, hit=True)) == [Finish(hit, States.memo_done)]
    graph.handle(TaskSubmitted(miss, 0))
    assert graph.handle(MemoChecked(miss.id, hit=False)) == [Launch(miss)]
    assert miss.state is States.launched


def test_join_app_waits_for_its_inner_futures():
    graph = TaskGraph()
    r = record(0, join=True)
    graph.handle(TaskSubmitted(r, 0))
    assert graph.handle(JoinStarted(r.id)) == [AwaitJoin(r)]
    assert r.state is States.joining
    assert graph.handle(ExecSucceeded(r.id)) == [Finish(r, States.exec_done)]


def test_launch_failure_is_final_even_with_retries():
    graph = TaskGraph(retries=3)
    r = record(0)
    graph.handle(TaskSubmitted(r, 0))
    assert graph.handle(LaunchFailed(r.id)) == [Finish(r, States.failed)]


def test_rejected_task_fails_without_launching():
    graph = TaskGraph()
    r = record(0)
    assert graph.handle(TaskRejected(r)) == [Finish(r, States.failed)]
    assert len(graph) == 0


def test_running_is_reported_only_from_launched():
    graph = TaskGraph()
    r = record(0)
    graph.handle(TaskSubmitted(r, 0))
    graph.handle(ExecStarted(r.id))
    assert r.state is States.running
    assert graph.handle(ExecStarted(r.id)) == []  # a duplicate report changes nothing


def test_late_reports_for_finished_tasks_are_ignored():
    graph = TaskGraph()
    r = record(0)
    graph.handle(TaskSubmitted(r, 0))
    graph.handle(TaskAbandoned(r.id))
    assert graph.handle(ExecSucceeded(r.id)) == []
    assert graph.handle(ExecFailed(r.id, 1.0)) == []
    assert r.state is States.failed


def test_illegal_transition_raises_naming_task_and_states():
    graph = TaskGraph()
    r = record(7)
    graph.handle(TaskSubmitted(r, 1))  # pending
    with pytest.raises(InvalidTransition, match="task 7: no transition from pending to joining"):
        graph.handle(JoinStarted(r.id))


def test_observed_graph_publishes_every_transition():
    graph = TaskGraph(retries=1)
    graph.observed = True
    r = record(0)
    actions = graph.handle(TaskSubmitted(r, 0)) + graph.handle(ExecFailed(r.id, 1)) + graph.handle(ExecSucceeded(r.id))
    changes = [(a.old.name, a.new.name) for a in actions if isinstance(a, StateChanged)]
    assert changes == [("unsched", "pending"), ("pending", "launched"), ("launched", "fail_retryable"),
                       ("fail_retryable", "launched"), ("launched", "exec_done")]


def test_unobserved_graph_emits_no_state_events():
    graph = TaskGraph()
    r = record(0)
    assert kinds(graph.handle(TaskSubmitted(r, 0))) == ["Launch"]


# ---------------------------------------------------------------- property: exactly one final state

@st.composite
def scenarios(draw):
    n_deps = draw(st.integers(0, 4))
    dep_failures = draw(st.lists(st.booleans(), min_size=n_deps, max_size=n_deps))
    outcomes = draw(st.lists(st.sampled_from(["ok", "fail", "start", "abandon"]), min_size=1, max_size=8))
    return n_deps, dep_failures, outcomes, draw(st.integers(0, 3)), draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_task_reaches_exactly_one_final_state(scenario):
    n_deps, dep_failures, outcomes, retries, memoize = scenario
    graph = TaskGraph(retries=retries)
    r = record(0, memoize=memoize)
    finishes = []

    def feed(event):
        actions = graph.handle(event)
        finishes.extend(a for a in actions if isinstance(a, Finish))
        return actions

    actions = feed(TaskSubmitted(r, n_deps))
    for failed in dep_failures:
        actions += feed(DependencyDone(r.id, failed))
    if any(isinstance(a, CheckMemo) for a in actions):
        feed(MemoChecked(r.id, hit=False))
    for outcome in outcomes:
        if r.state in FINAL_STATES:
            break
        if r.state is States.pending:  # waiting on nothing more: only abandonment can end it here
            feed(TaskAbandoned(r.id))
        elif outcome == "ok":
            feed(ExecSucceeded(r.id))
        elif outcome == "fail":
            feed(ExecFailed(r.id, 1.0))
        elif outcome == "start":
            feed(ExecStarted(r.id))
        else:
            feed(TaskAbandoned(r.id))
    feed(TaskAbandoned(r.id))  # shutdown: whatever is left ends now
    assert len(finishes) == 1
    assert finishes[0].state is r.state
    assert r.state in FINAL_STATES
    assert len(graph) == 0
    if any(dep_failures):
        assert r.state in (States.dep_fail,)


@given(st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_the_one_call_paths_do_what_handle_does_or_nothing(memoize, join, observed, abandon):
    """launch_at_once / succeed_at_once: the same end state as TaskSubmitted / ExecSucceeded, or untouched."""
    fast, slow = TaskGraph(), TaskGraph()
    fast.observed = slow.observed = observed
    a, b = record(0, memoize, join), record(0, memoize, join)
    if fast.launch_at_once(a):
        assert slow.handle(TaskSubmitted(b, 0)) == [Launch(b)]
    else:
        assert (a.state, len(fast)) == (States.pending, 0)
        slow.handle(TaskSubmitted(b, 0))
        fast.handle(TaskSubmitted(a, 0))
    assert (a.state, len(fast)) == (b.state, len(slow))
    if b.state is not States.launched:
        return
    if abandon:  # a late success of a task already failed at shutdown changes nothing
        fast.handle(TaskAbandoned(a.id))
        slow.handle(TaskAbandoned(b.id))
    before = (a.state, len(fast))
    if fast.succeed_at_once(a):
        assert slow.handle(ExecSucceeded(b.id)) == [Finish(b, States.exec_done)]
    else:
        assert observed or join or abandon  # the common case always takes the one call
        assert (a.state, len(fast)) == before
        slow.handle(JoinStarted(b.id) if join else ExecSucceeded(b.id))
        fast.handle(JoinStarted(a.id) if join else ExecSucceeded(a.id))
    assert (a.state, len(fast)) == (b.state, len(slow))
