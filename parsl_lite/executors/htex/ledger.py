"""The interchange's bookkeeping: a pure state machine, events in, actions out.

No sockets, threads or clocks: the interchange turns what it receives into
events (with the time in them) and carries out the actions returned, in order::

    TasksArrived(tasks)                        -> [Dispatch(m, 0, tasks[:k]), ...]
    ResultsArrived(m, 0, ids, now)             -> [Dispatch(m, 0, more)] or []
    WorkerDied(m, 0, -9, now, running_task=7)  -> [FailTasks((7,), "worker_lost", ...), Dispatch(...)]
    Tick(now), a pool silent past the threshold -> [FailTasks(ids, "manager_lost", ...), ForgetManager(m)]

It knows the worker pools ("managers"), their workers (connected or not, the
tasks and function digests each holds), the FIFO queue of pending tasks and
where every task is. It never retries what ran: the task a dead worker was
running, and the tasks of a lost pool, fail (:class:`FailTasks`) and the
executor decides about retries. The other tasks a dead worker held had not
started (a worker runs its tasks in the order it got them): they go back to
the front of the queue, in order, and run elsewhere. Which one was running the
pool reads from the worker's slot file (``WorkerDied.running_task``); when that
is not known, it is the oldest one not yet returned.

A draining pool (``ManagerDraining``: its ``drain_period`` is over) gets no new
task; once its workers hold none it is forgotten and told to shut down
(``ForgetManager``), and its block's job ends.

Dispatch policy (it decides our throughput). Let ``pending`` be the queue
length and ``eligible`` the number of connected workers on pools that are
neither held nor draining. A worker may hold up to::

    share = ceil(pending / eligible)
    limit = max(1 + prefetch, max_batch)   if share >= max_batch
    limit = max(1 + prefetch, share, short) if the interchange is saturated (LoadChanged)
    limit = max(1 + prefetch, short)       otherwise

    short = min(max_batch, floor(short_batch_s / task_s))   (task_s: of the queue head's function; 1 if unknown)

tasks. ``1 + prefetch_capacity`` is Parsl's meaning (one running, the rest
prefetched); the batch lets a deep queue of short tasks flow in bulk. Full
batches are sent only while the queue holds a full batch for every worker, so
a few long tasks (or the tail of a long run) still go one by one to whichever
worker frees up first, and a block that joins later still finds work. With
thousands of workers the queue never holds ``max_batch`` for each, and one task
a message would make the interchange's cost per task grow with the workers: so
while the interchange is saturated (messages wait for it, which long tasks never
cause) each worker may hold its fair share of the queue, and a lone task still
goes out at once. And when tasks are known to be short, a worker may hold
``short`` of them, beyond its share: ``task_s`` is the run time per task of
each function (by digest), as the workers measure it (``ResultsArrived.busy_s``
over its tasks), taken at once when it rises and followed slowly (1/8 of the
way) when it falls. Per function, because a run's first tasks are often tiny
probes of another function: learnt from those, a burst of long tasks would be
piled on one worker while the others idle. So a batch sent
to one worker is expected to run within ``short_batch_s`` (an interchange
message costs more than that many short tasks) and a long result stops the
concentration with the next dispatch; other workers stay idle meanwhile,
which costs nothing while tasks are that short. ``pending`` is
re-read before each worker is served. Idle workers are served first, then the others in
round-robin order. Dispatch happens on every event that adds room or tasks;
after every event the queue is empty or no eligible worker has room.

A function body is sent to a worker only once: with the first task of that
digest the worker receives after it (re)connected. The ledger keeps every body
it was given, because the executor sends each body only once.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.htex.errors import VersionMismatch, describe_exit
from parsl_lite.executors.htex.messages import NO_TASK, PROTOCOL_VERSION, ManagerId, ManagerStatus, TaskId, TaskMessage
from parsl_lite.executors.htex.ledger_events import (  # noqa: F401  (re-exported)
    AcceptManager, Action, Dispatch, DropResults, Event, FailReason, FailTasks, ForgetManager, HeartbeatReceived,
    HoldManager, IdleManager, ManagerDraining, ManagerGone, ManagerInfo, ManagerRegistered, RejectManager,
    LoadChanged, ResultsArrived, TasksArrived, Tick, WorkerConnected, WorkerDied,
)



@dataclass(frozen=True, slots=True)
class LedgerConfig:
    """How the ledger dispatches and when it gives up on a silent pool.

    Attributes:
        prefetch_capacity: tasks a worker may hold beyond the one it runs.
        max_batch: most tasks a worker may hold when the queue is deep.
        heartbeat_threshold_s: silence after which a pool is declared lost.
        short_batch_s: how long a batch of short tasks given to one worker beyond its
            fair share may be expected to run (0: never beyond the share).
    """

    prefetch_capacity: int = 0
    max_batch: int = 64
    heartbeat_threshold_s: float = 120.0
    short_batch_s: float = 0.0005

    def __post_init__(self) -> None:
        if self.prefetch_capacity < 0:
            raise ConfigurationError("prefetch_capacity", f"must be >= 0, got {self.prefetch_capacity}")
        if self.max_batch < 1:
            raise ConfigurationError("max_batch", f"must be >= 1, got {self.max_batch}")
        if not self.heartbeat_threshold_s > 0:
            raise ConfigurationError("heartbeat_threshold", f"must be > 0, got {self.heartbeat_threshold_s}")
        if not self.short_batch_s >= 0:
            raise ConfigurationError("short_batch_s", f"must be >= 0, got {self.short_batch_s}")


# ---------------------------------------------------------------- internal records

@dataclass(slots=True, eq=False)
class _Manager:
    manager_id: ManagerId
    block_id: str
    hostname: str
    worker_count: int
    last_heartbeat: float
    idle_since: float
    held: bool = False
    draining: bool = False
    busy: int = 0                                   # tasks held by its workers
    workers: dict[int, "_Worker"] = field(default_factory=dict)

    @property
    def eligible(self) -> bool:
        return not (self.held or self.draining)

    def connected(self) -> int:
        return sum(w.connected for w in self.workers.values())


@dataclass(slots=True, eq=False)                    # eq=False: hashed by identity, used as dict keys
class _Worker:
    manager: _Manager
    index: int
    connected: bool = False
    pid: int = 0
    tasks: dict[TaskId, TaskMessage] = field(default_factory=dict)  # in the order sent, bodies stripped
    known_digests: set[bytes] = field(default_factory=set)
    dead_pids: set[int] = field(default_factory=set)  # died before their hello was seen


class Ledger:
    """Who has what: pools, workers, queued and dispatched tasks, heartbeats.

    Args:
        config: dispatch and heartbeat settings.
    """

    def __init__(self, config: Optional[LedgerConfig] = None) -> None:
        self.config = config or LedgerConfig()
        self._base = 1 + self.config.prefetch_capacity
        self._cap = max(self._base, self.config.max_batch)
        self._managers: dict[ManagerId, _Manager] = {}
        self._queue: deque[TaskMessage] = deque()
        self._where: dict[TaskId, Optional[_Worker]] = {}   # None: queued
        self._bodies: dict[bytes, bytes] = {}
        self._hungry: dict[_Worker, None] = {}    # eligible, holding < 1 + prefetch_capacity (ordered set)
        self._ready: dict[_Worker, None] = {}     # eligible, holding < the most any limit allows
        self._eligible = 0                        # connected workers of pools neither held nor draining
        self._saturated = False                   # the interchange has a backlog: batch by fair share
        self._task_s: dict[bytes, float] = {}     # run time per task of each function digest, as workers measure it
        self._short: dict[bytes, int] = {}        # what a worker may hold of that function's tasks (absent: base)
        self._on: dict[type, Callable[[Any], list[Action]]] = {
            ManagerRegistered: self._registered,
            WorkerConnected: self._worker_connected,
            TasksArrived: self._tasks_arrived,
            ResultsArrived: self._results_arrived,
            HeartbeatReceived: self._heartbeat,
            WorkerDied: self._worker_died,
            ManagerDraining: lambda event: self._close(event.manager_id, held=False),
            HoldManager: lambda event: self._close(event.manager_id, held=True),
            Tick: self._tick,
            LoadChanged: self._load_changed,
            ManagerGone: self._gone,
        }

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; return what the interchange must do, in order."""
        return self._on[type(event)](event)

    # ------------------------------------------------------------ queries

    @property
    def outstanding_count(self) -> int:
        """Tasks not yet finished: queued or on a worker."""
        return len(self._where)

    @property
    def pending_count(self) -> int:
        """Tasks queued, not yet sent to any worker."""
        return len(self._queue)

    @property
    def connected_workers(self) -> int:
        return sum(m.connected() for m in self._managers.values())

    def location(self, task_id: TaskId) -> Optional[tuple[ManagerId, int]]:
        """Where the task is: (pool, worker index), or None if queued or unknown."""
        worker = self._where.get(task_id)
        return None if worker is None else (worker.manager.manager_id, worker.index)

    def holds(self, manager_id: ManagerId, worker_index: int, task_ids: Sequence[TaskId]) -> bool:
        """Whether that worker holds every one of these tasks: ``ResultsArrived`` for them drops none."""
        manager = self._managers.get(manager_id)
        worker = manager.workers.get(worker_index) if manager is not None else None
        if worker is None:
            return not task_ids
        where = self._where
        for task_id in task_ids:
            if where.get(task_id) is not worker:
                return False
        return True

    def idle_managers(self, now: float) -> list[IdleManager]:
        """Pools whose workers hold no task, with how long they have been idle."""
        return [IdleManager(m.manager_id, m.block_id, m.hostname, now - m.idle_since, m.held)
                for m in self._managers.values() if m.busy == 0]

    def block_task_counts(self) -> dict[str, int]:
        """Tasks on the workers of each block (blocks with registered pools only)."""
        counts: dict[str, int] = {}
        for m in self._managers.values():
            counts[m.block_id] = counts.get(m.block_id, 0) + m.busy
        return counts

    def manager_ids(self) -> list[ManagerId]:
        return list(self._managers)

    def managers(self) -> list[ManagerInfo]:
        return [ManagerInfo(m.manager_id, m.block_id, m.hostname, m.worker_count,
                            {w.index: len(w.tasks) for w in m.workers.values() if w.connected},
                            m.held, m.draining, m.last_heartbeat) for m in self._managers.values()]

    def manager_statuses(self) -> tuple[ManagerStatus, ...]:
        """Every pool, as the wire's ``StatusReply`` carries it."""
        return tuple(ManagerStatus(m.manager_id.hex(), m.block_id, m.hostname, m.worker_count, m.connected(), m.busy,
                                   m.held, m.draining) for m in self._managers.values())

    # ------------------------------------------------------------ pools

    def _registered(self, event: ManagerRegistered) -> list[Action]:
        if event.protocol_version != PROTOCOL_VERSION:
            mismatch = VersionMismatch(event.protocol_version, PROTOCOL_VERSION)
            return [RejectManager(event.manager_id, f"worker pool on host {event.hostname!r} "
                                                    f"(block {event.block_id!r}): {mismatch}")]
        actions: list[Action] = []
        old = self._managers.get(event.manager_id)
        if old is not None:
            self._remove(old, event.now, "it registered again: its previous process is gone", actions)
        self._managers[event.manager_id] = _Manager(event.manager_id, event.block_id, event.hostname,
                                                    event.worker_count, event.now, event.now)
        actions.append(AcceptManager(event.manager_id))
        if old is not None:
            self._fill_all(actions)
        return actions

    def _heartbeat(self, event: HeartbeatReceived) -> list[Action]:
        manager = self._managers.get(event.manager_id)
        if manager is None:
            return [RejectManager(event.manager_id, "this worker pool is not registered (declared lost after "
                                                    "missing heartbeats, or never registered)")]
        manager.last_heartbeat = max(manager.last_heartbeat, event.now)
        return []

    def _close(self, manager_id: ManagerId, held: bool) -> list[Action]:
        """Stop sending the pool new tasks; those it holds finish normally."""
        manager = self._managers.get(manager_id)
        if manager is None:
            return []
        if manager.eligible:
            self._eligible -= manager.connected()
            for worker in manager.workers.values():
                self._unlist(worker)
        manager.held, manager.draining = manager.held or held, manager.draining or not held
        actions: list[Action] = []
        self._release_if_drained(manager, actions)
        self._fill_all(actions)  # fewer eligible workers: a bigger share for each of the others
        return actions

    def _release_if_drained(self, manager: _Manager, actions: list[Action]) -> None:
        """A draining pool whose workers hold nothing is done: forget it and let it exit."""
        if manager.draining and manager.busy == 0 and manager.manager_id in self._managers:
            del self._managers[manager.manager_id]
            for worker in manager.workers.values():
                worker.connected = False
                self._unlist(worker)
            actions.append(ForgetManager(manager.manager_id, "drained: its drain_period is over and its workers "
                                                             "finished their tasks"))

    def _load_changed(self, event: LoadChanged) -> list[Action]:
        """Saturated: shares bigger than ``1 + prefetch`` are allowed now, so workers may take more."""
        actions: list[Action] = []
        if event.saturated != self._saturated:
            self._saturated = event.saturated
            if event.saturated:
                self._fill_all(actions)
        return actions

    def _tick(self, event: Tick) -> list[Action]:
        threshold = self.config.heartbeat_threshold_s
        actions: list[Action] = []
        for manager in [m for m in self._managers.values() if event.now - m.last_heartbeat > threshold]:
            details = f"no heartbeat for {event.now - manager.last_heartbeat:.1f} s (threshold {threshold:g} s)"
            self._remove(manager, event.now, details, actions)
            actions.append(ForgetManager(manager.manager_id, details))
        if actions:
            self._fill_all(actions)
        return actions

    def _gone(self, event: ManagerGone) -> list[Action]:
        manager = self._managers.get(event.manager_id)
        actions: list[Action] = []
        if manager is not None:
            self._remove(manager, event.now, event.details, actions)
            actions.append(ForgetManager(manager.manager_id, event.details))
            self._fill_all(actions)
        return actions

    def _remove(self, manager: _Manager, now: float, details: str, actions: list[Action]) -> None:
        """Forget the pool; its workers' tasks fail with ``manager_lost``."""
        if manager.eligible:
            self._eligible -= manager.connected()
        lost: list[TaskId] = []
        for worker in manager.workers.values():
            lost += self._unplace(worker, now)
            worker.connected = False
            self._unlist(worker)
        del self._managers[manager.manager_id]
        if lost:
            actions.append(FailTasks(tuple(sorted(lost)), "manager_lost", manager.manager_id, manager.hostname,
                                     None, None, details))

    # ------------------------------------------------------------ workers

    def _worker_connected(self, event: WorkerConnected) -> list[Action]:
        manager = self._managers.get(event.manager_id)
        if manager is None:  # pools start workers only once registered; this one is stale
            return []
        worker = self._slot(manager, event.worker_index)
        if event.pid and event.pid in worker.dead_pids:
            worker.dead_pids.discard(event.pid)   # its death was reported first: ignore the late hello
            return []
        if worker.connected and event.pid and event.pid == worker.pid:
            return []  # the same process said hello twice
        actions: list[Action] = []
        replaced = worker.connected
        if replaced:  # the slot's previous process is gone, whether or not its death was reported
            self._disconnect(worker, event.now, None, "another process connected in its slot", actions)
            self._release_if_drained(manager, actions)
            if manager.manager_id not in self._managers:  # drained and let go: the newcomer is not needed
                self._fill_all(actions)
                return actions
        worker.connected = True
        worker.pid = event.pid
        if manager.eligible:
            self._eligible += 1
        self._refresh(worker)
        if replaced:  # its unstarted tasks went back to the queue: anyone may take them
            self._fill_all(actions)
        else:
            self._fill((worker,), actions)  # one more worker only shrinks the others' share
        return actions

    def _worker_died(self, event: WorkerDied) -> list[Action]:
        manager = self._managers.get(event.manager_id)
        if manager is None:
            return []
        worker = self._slot(manager, event.worker_index)
        if not worker.connected or (event.pid and worker.pid and event.pid != worker.pid):
            # Not the connected process: an earlier one, already replaced, or one whose hello is still
            # on its way (the pool's and the worker's messages travel on different connections).
            if event.pid and event.pid != worker.pid:
                if len(worker.dead_pids) > 16:
                    worker.dead_pids.clear()
                worker.dead_pids.add(event.pid)
            return []
        actions: list[Action] = []
        self._disconnect(worker, event.now, event.exitcode, describe_exit(event.exitcode), actions,
                         event.running_task)
        self._release_if_drained(manager, actions)
        self._fill_all(actions)
        return actions

    @staticmethod
    def _slot(manager: _Manager, index: int) -> _Worker:
        worker = manager.workers.get(index)
        if worker is None:
            worker = manager.workers[index] = _Worker(manager, index)
        return worker

    def _disconnect(self, worker: _Worker, now: float, exitcode: Optional[int], details: str,
                    actions: list[Action], running: Optional[TaskId] = None) -> None:
        """The worker's process is gone: the task it ran fails with ``worker_lost``, the others are queued again.

        ``running`` is the task it was running (``NO_TASK``: none); None if
        unknown, and then it is the oldest one not yet returned.
        """
        worker.connected = False
        worker.known_digests.clear()
        if worker.manager.eligible:
            self._eligible -= 1
        self._unlist(worker)
        if running is None:
            running = next(iter(worker.tasks), NO_TASK)
        held = worker.tasks
        again = [task for task_id, task in held.items() if task_id != running]
        lost = self._unplace(worker, now)
        if again:
            where = self._where
            for task in again:
                where[task.task_id] = None
            self._queue.extendleft(reversed(again))
        if running in lost:
            manager = worker.manager
            actions.append(FailTasks((running,), "worker_lost", manager.manager_id, manager.hostname,
                                     worker.index, exitcode, details))

    def _unplace(self, worker: _Worker, now: float) -> list[TaskId]:
        lost = list(worker.tasks)
        for task_id in lost:
            del self._where[task_id]
        worker.tasks = {}
        self._count(worker.manager, -len(lost), now)
        return lost

    def _count(self, manager: _Manager, delta: int, now: float) -> None:
        manager.busy += delta
        if delta and manager.busy == 0:
            manager.idle_since = now

    # ------------------------------------------------------------ tasks

    def _tasks_arrived(self, event: TasksArrived) -> list[Action]:
        where, queue, bodies = self._where, self._queue, self._bodies
        unknown: list[TaskId] = []
        for task in event.tasks:
            if task.task_id in where:
                continue  # a duplicate id: the first one stands
            if task.fn_body is not None:
                bodies[task.fn_digest] = task.fn_body
                task = task._replace(fn_body=None)  # re-attached per worker at dispatch
            elif task.fn_digest not in bodies:
                unknown.append(task.task_id)
                continue
            where[task.task_id] = None
            queue.append(task)
        actions: list[Action] = []
        if unknown:
            actions.append(FailTasks(tuple(dict.fromkeys(unknown)), "unknown_function", ManagerId(b""), "", None,
                                     None, "its function was never sent to this interchange (was the interchange "
                                           "restarted while the executor ran?)"))
        self._fill_all(actions)
        return actions

    def _results_arrived(self, event: ResultsArrived) -> list[Action]:
        manager = self._managers.get(event.manager_id)
        worker = manager.workers.get(event.worker_index) if manager is not None else None
        where = self._where
        dropped: list[TaskId] = []
        accepted = 0
        digest: Optional[bytes] = None
        other_digests: Optional[set[bytes]] = None          # a mixed batch's other functions (rare)
        for task_id in event.task_ids:
            if worker is not None and where.get(task_id) is worker:
                del where[task_id]
                fn = worker.tasks.pop(task_id).fn_digest
                if digest is None:
                    digest = fn
                elif fn != digest:
                    if other_digests is None:
                        other_digests = set()
                    other_digests.add(fn)
                accepted += 1
            else:
                dropped.append(task_id)
        actions: list[Action] = []
        if dropped:  # first of the actions: the interchange looks for it there only
            actions.append(DropResults(event.manager_id, event.worker_index, tuple(dropped),
                                       "not on this worker (failed as lost already, or never sent to it)"))
        if event.busy_s is not None and digest is not None:
            for fn in (digest, *(other_digests or ())):   # a mixed batch: its mean time for each function
                self._learn_task_time(fn, event.busy_s / len(event.task_ids))
        if worker is not None and accepted:
            self._count(worker.manager, -accepted, event.now)
            if worker.manager.draining:
                self._release_if_drained(worker.manager, actions)
                return actions
            self._refresh(worker)
            self._fill((worker,), actions)  # only this worker gained room (see the module docstring)
        return actions

    def _learn_task_time(self, digest: bytes, task_s: float) -> None:
        """Follow a function's run time per task: up at once (never over-commit long tasks), down slowly."""
        old = self._task_s.get(digest)
        task_s = self._task_s[digest] = task_s if old is None or task_s > old else old + (task_s - old) / 8
        budget = self.config.short_batch_s
        if budget <= 0:
            short = self._base
        else:
            short = self._cap if task_s * self._cap <= budget else int(budget / task_s)
        self._short[digest] = max(self._base, short)

    # ------------------------------------------------------------ dispatch

    def _fill_all(self, actions: list[Action]) -> None:
        """Serve every eligible worker with room: idle ones first, then the others round-robin."""
        if not self._queue or not self._eligible:
            return
        self._fill(list(self._hungry), actions)
        if self._queue and self._limit(len(self._queue)) > self._base:
            self._fill(list(self._ready), actions)

    def _fill(self, workers: Iterable[_Worker], actions: list[Action]) -> None:
        queue = self._queue
        for worker in workers:
            if not queue:
                return
            if not (worker.connected and worker.manager.eligible):
                continue
            room = self._limit(len(queue)) - len(worker.tasks)
            if room > 0:
                self._dispatch(worker, min(room, len(queue)), actions)

    def _limit(self, pending: int) -> int:
        """How many tasks a worker may hold now (see the module docstring): its share, if that is a full batch
        or the interchange is saturated; else ``1 + prefetch``; at least ``short`` (the head's function is
        known to be short). ``pending`` is the queue's length, and more than 0."""
        share = -(-pending // self._eligible)
        if share >= self._cap:
            return self._cap
        limit = share if self._saturated and share > self._base else self._base
        short = self._short.get(self._queue[0].fn_digest, limit)
        return limit if limit >= short else short

    def _dispatch(self, worker: _Worker, count: int, actions: list[Action]) -> None:
        popleft = self._queue.popleft
        batch = [popleft() for _ in range(count)]
        where, held, known = self._where, worker.tasks, worker.known_digests
        for i, task in enumerate(batch):
            held[task.task_id] = task
            if task.fn_digest not in known:
                known.add(task.fn_digest)
                batch[i] = task._replace(fn_body=self._bodies[task.fn_digest])
            where[task.task_id] = worker
        worker.manager.busy += count
        self._refresh(worker, rotate=True)
        actions.append(Dispatch(worker.manager.manager_id, worker.index, tuple(batch)))

    def _refresh(self, worker: _Worker, rotate: bool = False) -> None:
        """Keep the worker's place in the idle and has-room sets; ``rotate`` sends it to the back."""
        usable = worker.connected and worker.manager.eligible
        for group, most in ((self._hungry, self._base), (self._ready, self._cap)):
            if rotate or not (usable and len(worker.tasks) < most):
                group.pop(worker, None)
            if usable and len(worker.tasks) < most:
                group[worker] = None

    def _unlist(self, worker: _Worker) -> None:
        self._hungry.pop(worker, None)
        self._ready.pop(worker, None)
