"""The scaling strategy (pure: snapshots in, actions out) and the poller that runs it.

The poller tests use a small executor-like test double (the real high-throughput
executor does not exist yet) on top of the real LocalProvider.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsl_lite.jobs.job_status_poller import JobStatusPoller
from parsl_lite.jobs.strategy import (
    BlockExecutor, BlockSnapshot, ExecutorSnapshot, ScaleIn, ScaleOut, Strategy,
)
from parsl_lite.errors import ConfigurationError
from parsl_lite.executors import ThreadPoolExecutor
from parsl_lite.launchers import SimpleLauncher
from parsl_lite.providers import JobState, LocalProvider

from .conftest import wait_for

R, P, F, C = JobState.RUNNING, JobState.PENDING, JobState.FAILED, JobState.COMPLETED
NOW = 1000.0


def snap(outstanding=0, blocks=(), per_block=1, init=0, min_blocks=0, max_blocks=10, parallelism=1.0,
         label="htex", workers=0):
    return ExecutorSnapshot(label=label, outstanding=outstanding, connected_workers=workers,
                            workers_per_block=per_block, blocks=tuple(blocks), init_blocks=init,
                            min_blocks=min_blocks, max_blocks=max_blocks, parallelism=parallelism)


def block(block_id, state=R, idle_for=None):
    """A block that has been idle for ``idle_for`` seconds at NOW, or busy if None."""
    return BlockSnapshot(block_id, state, None if idle_for is None else NOW - idle_for)


def decide(snapshot, strategy="simple", max_idletime=60.0, rounds=1):
    """The actions of the last of ``rounds`` decisions on the same snapshot."""
    policy = Strategy(strategy=strategy, max_idletime=max_idletime)
    for _ in range(rounds):
        actions = policy.decide([snapshot], NOW)
    return actions


# --- first round: init_blocks ---

@pytest.mark.parametrize("strategy", [None, "none", "simple", "htex_auto_scale"])
def test_first_round_starts_init_blocks(strategy):
    (action,) = decide(snap(init=3, max_blocks=5), strategy)
    assert (type(action), action.label, action.blocks) == (ScaleOut, "htex", 3)


@pytest.mark.parametrize("strategy", [None, "none"])
def test_none_never_acts_after_the_first_round(strategy):
    busy = snap(outstanding=100, init=1, blocks=[block("0")])
    assert decide(busy, strategy) == []
    assert decide(snap(outstanding=100, init=1), strategy, rounds=2) == []
    assert decide(snap(init=0, blocks=[block("0", idle_for=1e6)]), strategy, max_idletime=0) == []


def test_init_blocks_count_existing_blocks_and_respect_min_blocks():
    assert [a.blocks for a in decide(snap(init=3, blocks=[block("0")]))] == [2]
    assert [a.blocks for a in decide(snap(init=1, min_blocks=2))] == [2]
    assert [a.blocks for a in decide(snap(init=5, blocks=[block("0")]), rounds=2)] == []  # init: first round only


def test_min_blocks_are_kept_on_later_rounds():
    actions = decide(snap(min_blocks=2, blocks=[block("0", F)]), rounds=2)
    assert [(type(a), a.blocks) for a in actions] == [(ScaleOut, 2)]


# --- scale out ---

@pytest.mark.parametrize("outstanding, per_block, parallelism, active, max_blocks, expected", [
    (10, 4, 1.0, 1, 10, 2),     # ceil(10/4) = 3 blocks needed
    (10, 4, 1.0, 0, 2, 2),      # capped by max_blocks
    (10, 4, 1.0, 3, 10, 0),     # enough
    (10, 1, 0.5, 1, 10, 4),     # ceil(10 * 0.5 / 1) = 5
    (10, 1, 0.0, 0, 10, 1),     # parallelism 0: one block while tasks wait
    (10, 1, 0.0, 1, 10, 0),
    (1, 8, 1.0, 0, 10, 1),
    (5, 1, 1.0, 0, 0, 0),       # max_blocks 0: nothing to do
])
def test_simple_scale_out(outstanding, per_block, parallelism, active, max_blocks, expected):
    blocks = [block(str(i)) for i in range(active)]
    s = snap(outstanding, blocks, per_block, max_blocks=max_blocks, parallelism=parallelism)
    for strategy in ("simple", "htex_auto_scale"):
        actions = decide(s, strategy, rounds=2)
        assert [a.blocks for a in actions if isinstance(a, ScaleOut)] == ([expected] if expected else [])


def test_pending_and_held_blocks_count_as_capacity_but_ended_ones_do_not():
    blocks = [block("0", P), block("1", JobState.HELD), block("2", F), block("3", C), block("4", JobState.SCALED_IN)]
    actions = decide(snap(outstanding=4, blocks=blocks), rounds=2)
    assert [a.blocks for a in actions] == [2]


def test_failed_blocks_are_replaced_while_tasks_wait():
    actions = decide(snap(outstanding=2, blocks=[block("0", F), block("1", F)], max_blocks=2), rounds=2)
    assert [a.blocks for a in actions] == [2]


# --- scale in ---

def test_simple_releases_blocks_idle_past_max_idletime_when_no_task_is_outstanding():
    blocks = [block("0", idle_for=30), block("1", idle_for=61), block("2", idle_for=200), block("3")]
    (action,) = decide(snap(blocks=blocks), max_idletime=60, rounds=2)
    assert action.block_ids == ("2", "1")  # longest idle first; busy "3" and recent "0" stay


def test_simple_never_releases_below_min_blocks():
    blocks = [block(str(i), idle_for=1000 + i) for i in range(4)]
    (action,) = decide(snap(blocks=blocks, min_blocks=3), rounds=2)
    assert action.block_ids == ("3",)  # the longest idle


def test_simple_does_not_release_while_tasks_are_outstanding():
    blocks = [block("0"), block("1", idle_for=1000), block("2", idle_for=1000)]
    assert decide(snap(outstanding=1, blocks=blocks), "simple", rounds=2) == []


def test_htex_auto_scale_releases_idle_blocks_while_tasks_run_elsewhere():
    blocks = [block("0"), block("1", idle_for=1000), block("2", idle_for=5)]
    (action,) = decide(snap(outstanding=1, blocks=blocks), "htex_auto_scale", rounds=2)
    assert action.block_ids == ("1",)  # "2" has not idled long enough yet


def test_htex_auto_scale_keeps_idle_blocks_the_load_needs():
    blocks = [block("0"), block("1", idle_for=1000)]
    assert decide(snap(outstanding=2, blocks=blocks), "htex_auto_scale", rounds=2) == []


def test_pending_blocks_are_released_first():
    blocks = [block("0", R, idle_for=500), block("1", P, idle_for=100)]
    (action,) = decide(snap(blocks=blocks), max_idletime=60, rounds=2)
    assert action.block_ids[0] == "1"


def test_max_idletime_zero_releases_idle_blocks_at_once():
    (action,) = decide(snap(blocks=[block("0", idle_for=0)]), max_idletime=0, rounds=2)
    assert action.block_ids == ("0",)


def test_each_executor_is_decided_on_its_own():
    policy = Strategy(strategy="simple", max_idletime=0)
    actions = policy.decide([snap(outstanding=2, label="a"), snap(blocks=[block("9", idle_for=1)], label="b")], NOW)
    assert [(type(a), a.label) for a in actions] == [(ScaleOut, "a"), (ScaleIn, "b")]


def test_bad_settings_are_refused():
    with pytest.raises(ConfigurationError, match="strategy"):
        Strategy(strategy="aggressive", max_idletime=1)
    with pytest.raises(ConfigurationError, match="max_idletime"):
        Strategy(strategy="simple", max_idletime=-1)


# --- invariants, for any snapshot ---

states = st.sampled_from(list(JobState))
blocks_strategy = st.lists(st.tuples(states, st.one_of(st.none(), st.floats(0, 2 * NOW))), max_size=12)


@st.composite
def snapshots(draw):
    min_blocks = draw(st.integers(0, 5))
    max_blocks = draw(st.integers(min_blocks, 8))
    blocks = tuple(BlockSnapshot(str(i), state, idle) for i, (state, idle) in enumerate(draw(blocks_strategy)))
    return snap(outstanding=draw(st.integers(0, 60)), blocks=blocks, per_block=draw(st.integers(1, 8)),
                init=draw(st.integers(min_blocks, max_blocks)), min_blocks=min_blocks, max_blocks=max_blocks,
                parallelism=draw(st.floats(0, 1)))


@settings(max_examples=400, deadline=None)
@given(s=snapshots(), strategy=st.sampled_from([None, "none", "simple", "htex_auto_scale"]),
       max_idletime=st.floats(0, 500), rounds=st.integers(1, 2))
def test_invariants(s, strategy, max_idletime, rounds):
    actions = decide(s, strategy, max_idletime, rounds)
    active = {b.block_id: b for b in s.blocks if not b.state.terminal}
    assert len(actions) <= 1
    for action in actions:
        assert action.label == s.label
        if isinstance(action, ScaleOut):
            assert action.blocks > 0
            assert len(active) + action.blocks <= s.max_blocks  # never above max_blocks
            continue
        assert strategy not in (None, "none")
        assert len(set(action.block_ids)) == len(action.block_ids) > 0
        assert set(action.block_ids) <= set(active)  # only live blocks
        assert len(active) - len(action.block_ids) >= s.min_blocks  # never below min_blocks
        for block_id in action.block_ids:
            idle_since = active[block_id].idle_since
            assert idle_since is not None  # never a block holding tasks
            assert NOW - idle_since >= max_idletime
        if strategy == "simple":
            assert s.outstanding == 0
    if strategy not in (None, "none"):
        wanted = max(s.min_blocks, 1 if s.outstanding else 0)
        if len(active) < min(wanted, s.max_blocks):  # liveness: tasks never wait on zero blocks
            assert actions and isinstance(actions[0], ScaleOut)


# --- the poller, with a real LocalProvider ---

class BlockExecutorDouble:
    """An executor with blocks, reduced to counters: the real HTEX does not exist yet."""

    def __init__(self, provider, label="double", workers_per_block=1):
        self.label = label
        self._provider = provider
        self.outstanding = 0
        self.connected_workers = 0
        self.workers_per_block = workers_per_block
        self.blocks: dict[str, str] = {}
        self.busy: set[str] = set()
        self.reports: list = []
        self._submitted: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def provider(self):
        return self._provider

    def block_idle_since(self, block_id):
        return None if block_id in self.busy else self._submitted[block_id]

    def scale_out(self, blocks):
        new = []
        for _ in range(blocks):
            block_id = str(len(self._submitted))
            self.blocks[block_id] = self._provider.submit("sleep 300", 1, f"parsl.{self.label}.block-{block_id}")
            self._submitted[block_id] = time.monotonic()
            new.append(block_id)
        return new

    def scale_in(self, block_ids):
        done = self._provider.cancel([self.blocks[b] for b in block_ids])
        return [b for b, ok in zip(block_ids, done) if ok]

    def handle_job_status(self, block_id, status):
        with self._lock:
            self.reports.append((block_id, status))

    def states(self):
        return dict(zip(self.blocks, (s.state for s in self._provider.status(list(self.blocks.values())))))

    def pids(self):
        return [job.process.pid for job in self._provider._jobs.values()]


def nothing_left(pids):
    def check():
        for process in psutil.process_iter(["status"]):
            try:
                if os.getpgid(process.pid) in pids and process.info["status"] != psutil.STATUS_ZOMBIE:
                    return False
            except OSError:
                pass
        return True
    return check


@pytest.fixture
def make_poller(tmp_path):
    pollers, doubles = [], []

    def _make(strategy="simple", max_idletime=0.0, period=0.05, **provider_kwargs):
        provider = LocalProvider(launcher=SimpleLauncher(), **provider_kwargs)
        provider.script_dir = str(tmp_path)
        double = BlockExecutorDouble(provider)
        poller = JobStatusPoller(strategy=strategy, max_idletime=max_idletime, strategy_period=period)
        pollers.append(poller)
        doubles.append(double)
        return poller, double

    yield _make
    for poller in pollers:
        poller.close()
    for double in doubles:
        wait_for(nothing_left(set(double.pids())))


def test_double_is_a_block_executor():
    assert isinstance(BlockExecutorDouble(LocalProvider()), BlockExecutor)


def test_poller_follows_the_load_out_and_back_in(make_poller, caplog):
    caplog.set_level(logging.INFO, logger="parsl_lite.jobs.job_status_poller")
    poller, double = make_poller(init_blocks=1, max_blocks=3, max_idletime=0.0)
    double.busy = {"0"}
    poller.add_executors([double, ThreadPoolExecutor()])
    assert list(double.blocks) == ["0"]  # initial blocks are submitted before add_executors returns
    double.outstanding = 3
    wait_for(lambda: len(double.blocks) == 3)
    assert "scaling out by 2 block(s): 3 outstanding tasks" in caplog.text
    wait_for(lambda: set(double.states().values()) == {R})
    double.busy = {"1"}  # block "1" still runs a task: it must stay
    double.outstanding = 0
    wait_for(lambda: {b for b, s in double.reports if s.state is JobState.SCALED_IN} == {"0", "2"})
    assert double.states()["1"] is R
    double.busy = set()
    wait_for(lambda: len([r for r in double.reports if r[1].state is JobState.SCALED_IN]) == 3)
    assert set(double.states().values()) == {JobState.CANCELLED}
    wait_for(nothing_left(set(double.pids())))


def test_poller_reports_a_block_killed_outside_and_replaces_it(make_poller):
    poller, double = make_poller(init_blocks=1, max_blocks=1)
    double.outstanding, double.busy = 1, {"0"}
    poller.add_executors([double])
    wait_for(lambda: double.states().get("0") is R)
    os.killpg(double._provider._jobs[double.blocks["0"]].process.pid, signal.SIGKILL)
    failed = wait_for(lambda: [s for b, s in double.reports if b == "0" and s.state is F])
    assert "SIGKILL" in failed[0].message
    wait_for(lambda: double.states().get("1") is R)  # a replacement, since a task still waits


def test_none_strategy_starts_init_blocks_only(make_poller):
    poller, double = make_poller(strategy="none", period=3600, init_blocks=2, max_blocks=5)
    double.outstanding = 50
    poller.add_executors([double])
    for _ in range(3):
        poller.poll()
    assert list(double.blocks) == ["0", "1"]


def test_provider_errors_do_not_stop_the_poller(tmp_path, caplog):
    provider = LocalProvider(launcher=SimpleLauncher(), init_blocks=1, max_blocks=2)
    provider.script_dir = str(tmp_path)
    double = BlockExecutorDouble(provider)
    clock = [time.monotonic()]  # advanced by hand past the provider's status_polling_interval
    poller = JobStatusPoller(strategy="simple", max_idletime=3600, strategy_period=3600, clock=lambda: clock[0])
    try:
        poller.add_executors([double])
        double.blocks["bogus"] = "not-a-job-id"  # the provider refuses the whole batch
        clock[0] += provider.status_polling_interval
        poller.poll()
        assert "could not report job states" in caplog.text
        del double.blocks["bogus"]
        double.outstanding, double.busy = 2, {"0"}
        clock[0] += provider.status_polling_interval
        poller.poll()
        assert len(double.blocks) == 2
    finally:
        poller.close()
    wait_for(nothing_left(set(double.pids())))


def test_close_stops_the_thread_at_once_and_releases_blocks(make_poller):
    poller, double = make_poller(init_blocks=2, max_blocks=2, period=0.05, max_idletime=3600)
    poller.add_executors([double])
    thread = poller._thread
    assert thread.is_alive() and thread.name.startswith("parsl_lite")
    poller.close()
    assert not thread.is_alive()
    assert set(double.states().values()) == {JobState.CANCELLED}
    poller.close()  # idempotent
    wait_for(nothing_left(set(double.pids())))


def test_executors_without_provider_start_no_thread():
    poller = JobStatusPoller(strategy="simple", max_idletime=1, strategy_period=0.05)
    poller.add_executors([ThreadPoolExecutor()])
    assert poller._thread is None
    poller.close()
