"""The interchange's bookkeeping under random event sequences (hypothesis): every action checked against a model."""
from __future__ import annotations

import math

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from parsl_lite.executors.htex.ledger import (
    Dispatch, DropResults, FailTasks, ForgetManager, HeartbeatReceived, HoldManager, Ledger,
    LedgerConfig, LoadChanged, ManagerDraining, ManagerRegistered, ResultsArrived, TasksArrived, Tick,
    WorkerConnected, WorkerDied,
)
from parsl_lite.executors.htex.messages import NO_TASK, PROTOCOL_VERSION, TaskMessage

from .test_htex_ledger import BODY, kinds, task

MIDS = [b"a", b"b"]


class LedgerMachine(RuleBasedStateMachine):
    """Drives the ledger with random events; checks each action against a small model."""

    @initialize(prefetch=st.integers(0, 2), max_batch=st.integers(1, 6))
    def setup(self, prefetch, max_batch):
        self.config = LedgerConfig(prefetch_capacity=prefetch, max_batch=max_batch, heartbeat_threshold_s=10.0)
        self.ledger = Ledger(self.config)
        self.base, self.cap = 1 + prefetch, max(1 + prefetch, max_batch)
        self.now = 0.0
        self.saturated = False
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
        """What a worker may hold: a full batch while the queue holds one for every eligible worker; its share
        while the interchange is saturated; else 1 + prefetch."""
        share = math.ceil(pending / len(self.eligible_slots()))
        if share >= self.config.max_batch:
            return self.cap
        return max(self.base, share) if self.saturated else self.base

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
        reported = ids + junk + elsewhere
        holds = self.ledger.holds(mid, index, reported)  # the interchange's "forward before the books" check
        actions = self.ledger.handle(ResultsArrived(mid, index, reported, self.now))
        assert holds == (not any(type(a) is DropResults for a in actions)), (holds, actions)
        self.apply(actions, expect_dropped=junk + elsewhere)
        if ids:
            self.release_if_drained(mid, actions)

    @rule(saturated=st.booleans())
    def load(self, saturated):
        self.saturated = saturated
        self.apply(self.ledger.handle(LoadChanged(saturated)))

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
