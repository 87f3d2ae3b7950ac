"""The ledger's vocabulary: events it takes, actions it returns, views it offers.

Kept apart from ``ledger.py`` (the state machine itself) so each file does one job.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional, Sequence, Union

from parsl_lite.executors.htex.errors import ManagerLost, MalformedMessage, WorkerLost
from parsl_lite.executors.htex.messages import ManagerId, TaskId, TaskMessage

FailReason = Literal["worker_lost", "manager_lost", "unknown_function"]


# ---------------------------------------------------------------- events (past tense)

@dataclass(frozen=True, slots=True)
class ManagerRegistered:
    manager_id: ManagerId
    block_id: str
    hostname: str
    worker_count: int
    protocol_version: int
    now: float


@dataclass(frozen=True, slots=True)
class WorkerConnected:
    """A worker said hello. ``pid`` (0: unknown) tells its process apart from the slot's earlier ones."""
    manager_id: ManagerId
    worker_index: int
    now: float
    pid: int = 0


@dataclass(frozen=True, slots=True)
class TasksArrived:
    """Tasks from the executor; a body comes with the first task of each digest."""
    tasks: Sequence[TaskMessage]


@dataclass(frozen=True, slots=True)
class ResultsArrived:
    """Results from a worker; ``busy_s`` is how long it ran them (None: not measured)."""
    manager_id: ManagerId
    worker_index: int
    task_ids: Sequence[TaskId]
    now: float
    busy_s: Optional[float] = None


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    manager_id: ManagerId
    now: float


@dataclass(frozen=True, slots=True)
class WorkerDied:
    """A pool reported a worker's exit (``exitcode`` < 0: killed by that signal).

    ``running_task``: the task it was running (``messages.NO_TASK``: none), or
    None if the pool could not tell (the oldest task it held is taken).
    """
    manager_id: ManagerId
    worker_index: int
    exitcode: int
    now: float
    pid: int = 0
    running_task: Optional[TaskId] = None


@dataclass(frozen=True, slots=True)
class ManagerDraining:
    """The pool takes no new tasks (it exits once idle)."""
    manager_id: ManagerId


@dataclass(frozen=True, slots=True)
class HoldManager:
    """The executor asked that the pool get no new tasks (before scaling its block in)."""
    manager_id: ManagerId


@dataclass(frozen=True, slots=True)
class ManagerGone:
    """Someone outside the ledger knows the pool is gone (its block's job ended): fail its tasks now."""
    manager_id: ManagerId
    details: str
    now: float


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: pools silent for longer than the threshold are lost."""
    now: float


@dataclass(frozen=True, slots=True)
class LoadChanged:
    """The interchange became saturated (messages wait for it) or free again.

    While it is saturated, the cost of a message is what limits throughput, so
    the ledger sends each worker its fair share of the queue in one batch;
    while it is free, a worker holds ``1 + prefetch_capacity`` tasks, the
    placement that finishes long tasks soonest.
    """
    saturated: bool


Event = Union[ManagerRegistered, WorkerConnected, TasksArrived, ResultsArrived, HeartbeatReceived, WorkerDied,
              ManagerDraining, HoldManager, ManagerGone, Tick, LoadChanged]


# ---------------------------------------------------------------- actions (imperative)

@dataclass(frozen=True, slots=True)
class AcceptManager:
    """Reply ``RegisterReply(accepted=True, ...)`` to the pool."""
    manager_id: ManagerId


@dataclass(frozen=True, slots=True)
class RejectManager:
    """Refuse the pool (``RegisterReply(accepted=False, reason)`` or ``Shutdown(reason)``)."""
    manager_id: ManagerId
    reason: str


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send ``TaskBatch(tasks)`` to that worker; bodies are already attached where needed."""
    manager_id: ManagerId
    worker_index: int
    tasks: tuple[TaskMessage, ...]

    @property
    def task_ids(self) -> tuple[TaskId, ...]:
        return tuple(task.task_id for task in self.tasks)

    @property
    def bodies_to_attach(self) -> dict[bytes, bytes]:
        """The function bodies this batch carries, by digest."""
        return {task.fn_digest: task.fn_body for task in self.tasks if task.fn_body is not None}


@dataclass(frozen=True, slots=True)
class FailTasks:
    """Fail these tasks on the executor's side (status ``"lost"``); the ledger has forgotten them.

    ``manager_id`` and ``hostname`` name the pool (empty for ``unknown_function``),
    ``worker_index`` and ``exitcode`` (negative: a signal) the worker that died
    (``worker_lost`` only; the exit code if known), ``details`` say it in words.
    """

    task_ids: tuple[TaskId, ...]
    reason: FailReason
    manager_id: ManagerId
    hostname: str
    worker_index: Optional[int]
    exitcode: Optional[int]
    details: str

    def exception_for(self, task_id: TaskId) -> Exception:
        """The exception to set on that task's future (``WorkerLost``, ``ManagerLost``, ...)."""
        return _EXCEPTIONS[self.reason](self, task_id)


_EXCEPTIONS: dict[str, Callable[[FailTasks, TaskId], Exception]] = {
    "worker_lost": lambda a, task_id: WorkerLost(task_id, a.hostname, a.worker_index if a.worker_index is not None
                                                 else "?", a.details if a.exitcode is None else a.exitcode),
    "manager_lost": lambda a, task_id: ManagerLost(task_id, a.manager_id, a.hostname, a.details),
    "unknown_function": lambda a, task_id: MalformedMessage("task_batch", f"task {task_id}: {a.details}"),
}


@dataclass(frozen=True, slots=True)
class ForgetManager:
    """Drop the pool's routing entries (and tell it ``Shutdown(reason)`` in case it still listens)."""
    manager_id: ManagerId
    reason: str


@dataclass(frozen=True, slots=True)
class DropResults:
    """Do not forward these results: their tasks are not (or no longer) on that worker."""
    manager_id: ManagerId
    worker_index: int
    task_ids: tuple[TaskId, ...]
    reason: str


Action = Union[AcceptManager, RejectManager, Dispatch, FailTasks, ForgetManager, DropResults]


# ---------------------------------------------------------------- read-only views

@dataclass(frozen=True, slots=True)
class IdleManager:
    manager_id: ManagerId
    block_id: str
    hostname: str
    idle_s: float
    held: bool


@dataclass(frozen=True, slots=True)
class ManagerInfo:
    """A snapshot of one pool, e.g. for the ``status`` command."""
    manager_id: ManagerId
    block_id: str
    hostname: str
    worker_count: int
    worker_tasks: dict[int, int]   # connected worker index -> tasks it holds
    held: bool
    draining: bool
    last_heartbeat: float
