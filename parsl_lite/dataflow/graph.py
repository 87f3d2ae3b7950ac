"""Task states and dependency counts: the kernel's pure core.

No threads, clocks, futures or executors here. The kernel feeds events (a
dependency finished, an execution failed with a cost) under its lock and
carries out the actions returned (launch this task, finish that one) after
releasing it. Legal transitions live in one table; anything else raises
:class:`InvalidTransition`.

    TaskSubmitted(record, n_deps=0)  -> [Launch]         pending -> launched
    TaskSubmitted(record, n_deps=2)  -> []               pending
    DependencyDone(id, failed=False) -> [] / [Launch]    (last one launches)
    ExecFailed(id, cost)             -> [Launch] (retry) / [Finish(failed)]

Events and actions are read, never changed. They are plain slotted
dataclasses, not frozen ones: a frozen dataclass's ``__init__`` sets each
field through ``object.__setattr__`` (0.31 against 0.12 µs for two fields),
and every task makes four of them (submitted, launch, succeeded, finish).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, NewType, Optional, Union

from parsl_lite.dataflow.errors import InvalidTransition
from parsl_lite.dataflow.states import FINAL_STATES, States

TaskId = NewType("TaskId", int)

S = States
_ALLOWED: frozenset[tuple[States, States]] = frozenset({
    (S.pending, S.launched), (S.pending, S.memo_done), (S.pending, S.dep_fail), (S.pending, S.failed),
    (S.launched, S.running), (S.launched, S.exec_done), (S.launched, S.failed),
    (S.launched, S.fail_retryable), (S.launched, S.joining),
    (S.running, S.exec_done), (S.running, S.failed), (S.running, S.fail_retryable), (S.running, S.joining),
    (S.running, S.running_ended), (S.running_ended, S.exec_done), (S.running_ended, S.failed),
    (S.running_ended, S.fail_retryable), (S.running_ended, S.joining),
    (S.joining, S.exec_done), (S.joining, S.failed), (S.joining, S.fail_retryable),
    (S.fail_retryable, S.launched), (S.fail_retryable, S.pending), (S.fail_retryable, S.failed),
    (S.running_ended, S.failed), (S.joining, S.failed),
})


@dataclass(slots=True, eq=False)
class TaskRecord:
    """Everything known about one task.

    The graph owns ``state`` and the counters; the kernel fills in the rest
    once, at submission, and reads it when launching and finishing.
    """

    id: TaskId
    func_name: str
    memoize: bool = False
    join: bool = False
    # Filled in by the kernel at submission (in this order: it passes them positionally).
    executor: str = ""
    func: Optional[Callable] = None
    exec_func: Optional[Callable] = None
    args: tuple = ()
    kwargs: dict = None  # type: ignore[assignment]  # always set by the kernel at submission
    resource_specification: dict = None  # type: ignore[assignment]
    ignore_for_cache: tuple = ()
    time_invoked: float = 0.0
    kernel: Any = None
    # The graph's.
    state: States = States.pending
    unresolved: int = 0
    failed_deps: int = 0
    fail_count: int = 0
    fail_cost: float = 0.0
    try_id: int = 0
    # Set while the task runs and when it ends.
    depends: Optional[list] = None
    app_fu: Any = None
    exec_fu: Any = None
    hashsum: Optional[str] = None
    from_memo: bool = False
    fail_history: Optional[list] = None
    time_returned: Optional[float] = None

    def __getitem__(self, key: str) -> Any:
        """Parsl's task records are dicts; scripts that index them keep working."""
        if key == "status":
            return self.state
        if key == "func_name" or key == "fn_hash":
            return self.func_name
        return getattr(self, key)


# ---------------------------------------------------------------- events (past tense)

@dataclass(slots=True)
class TaskSubmitted:
    record: TaskRecord
    n_deps: int


@dataclass(slots=True)
class TaskRejected:
    """The call's arguments were refused at the edge (e.g. ``outputs`` not Files): fail at once."""
    record: TaskRecord


@dataclass(slots=True)
class DependencyDone:
    task_id: TaskId
    failed: bool


@dataclass(slots=True)
class MemoChecked:
    """The memo table was asked about a ready, cacheable task (``failed``: it memoized an exception)."""
    task_id: TaskId
    hit: bool
    failed: bool = False


@dataclass(slots=True)
class LaunchFailed:
    """Handing the task to its executor raised (bad argument, broken executor). Not retried."""
    task_id: TaskId


@dataclass(slots=True)
class ExecStarted:
    task_id: TaskId


@dataclass(slots=True)
class ExecSucceeded:
    task_id: TaskId


@dataclass(slots=True)
class ExecFailed:
    """The task's execution (or a join app's inner futures) failed; ``cost`` counts toward retries."""
    task_id: TaskId
    cost: float


@dataclass(slots=True)
class JoinStarted:
    task_id: TaskId


@dataclass(slots=True)
class TaskAbandoned:
    """The kernel is shutting down with this task unfinished: fail it, whatever its state."""
    task_id: TaskId


Event = Union[TaskSubmitted, TaskRejected, DependencyDone, MemoChecked, LaunchFailed, ExecStarted,
              ExecSucceeded, ExecFailed, JoinStarted, TaskAbandoned]


# ---------------------------------------------------------------- actions (imperative)

@dataclass(slots=True)
class Launch:
    """Hand the task to its executor (its state is already ``launched``)."""
    record: TaskRecord


@dataclass(slots=True)
class CheckMemo:
    """Ask the memo table; answer with :class:`MemoChecked`."""
    record: TaskRecord


@dataclass(slots=True)
class AwaitJoin:
    """Wait for the futures a join app returned."""
    record: TaskRecord


@dataclass(slots=True)
class Finish:
    """The task reached a final state: resolve its future and forget it."""
    record: TaskRecord
    state: States


@dataclass(slots=True)
class StateChanged:
    """Published to observers (monitoring, progress views); emitted only while observed. Read it, never change it.

    ``record`` is the task's record (monitoring reads its executor and try number at publication).
    """
    kind: ClassVar[str] = "task_state"
    task_id: TaskId
    func_name: str
    old: States
    new: States
    record: Optional[TaskRecord] = field(default=None, compare=False, repr=False)


Action = Union[Launch, CheckMemo, AwaitJoin, Finish, StateChanged]


class TaskGraph:
    """Task states, dependency counts and retry decisions.

    Args:
        retries: how much failure cost a task may accumulate and still be
            retried (Parsl's ``Config.retries``).
    """

    def __init__(self, retries: int = 0) -> None:
        self.retries = retries
        self.observed = False
        self._tasks: dict[TaskId, TaskRecord] = {}
        self._on: dict[type, Callable[[Any], list]] = {
            TaskSubmitted: self._submitted,
            TaskRejected: self._rejected,
            DependencyDone: self._dependency_done,
            MemoChecked: self._memo_checked,
            LaunchFailed: self._launch_failed,
            ExecStarted: self._exec_started,
            ExecSucceeded: self._exec_succeeded,
            ExecFailed: self._exec_failed,
            JoinStarted: self._join_started,
            TaskAbandoned: self._abandoned,
        }

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; return what the kernel must do, in order."""
        return self._on[type(event)](event)

    # The two commonest events, when nothing but the state changes, without the event and action
    # objects: a task with no dependencies is submitted, a launched task succeeds. Each does what
    # ``handle`` would do, or nothing and returns False (then the kernel calls ``handle``).

    def launch_at_once(self, record: TaskRecord) -> bool:
        """``TaskSubmitted(record, 0)`` when its only action is ``Launch(record)``: register it, launched."""
        if record.memoize or self.observed or record.state is not States.pending:
            return False
        self._tasks[record.id] = record
        record.state = States.launched
        return True

    def succeed_at_once(self, record: TaskRecord) -> bool:
        """``ExecSucceeded(record.id)`` when its only action is ``Finish(record, exec_done)``: drop it, done."""
        if self.observed or record.state is not States.launched or record.join \
                or self._tasks.get(record.id) is not record:
            return False
        record.state = States.exec_done
        del self._tasks[record.id]
        return True

    @property
    def tasks(self) -> dict[TaskId, TaskRecord]:
        """Tasks not yet final (read-only view for the kernel)."""
        return self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    # ------------------------------------------------------------ handlers

    def _submitted(self, event: TaskSubmitted) -> list[Action]:
        record = event.record
        self._tasks[record.id] = record
        record.unresolved = event.n_deps
        if not (event.n_deps or record.memoize or self.observed) and record.state is States.pending:
            record.state = States.launched  # the common case in one step: pending -> launched is in the table
            return [Launch(record)]
        actions: list[Action] = []
        if self.observed:
            actions.append(StateChanged(record.id, record.func_name, States.unsched, States.pending, record))
        if event.n_deps == 0:
            self._ready(record, actions)
        return actions

    def _rejected(self, event: TaskRejected) -> list[Action]:
        record = event.record
        self._tasks[record.id] = record
        actions: list[Action] = []
        if self.observed:
            actions.append(StateChanged(record.id, record.func_name, States.unsched, States.pending, record))
        self._finish(record, States.failed, actions)
        return actions

    def _dependency_done(self, event: DependencyDone) -> list[Action]:
        record = self._tasks.get(event.task_id)
        if record is None:  # already final (abandoned at shutdown): a late report
            return []
        record.unresolved -= 1
        if event.failed:
            record.failed_deps += 1
        actions: list[Action] = []
        if record.unresolved == 0:
            if record.failed_deps:
                self._finish(record, States.dep_fail, actions)
            else:
                self._ready(record, actions)
        return actions

    def _memo_checked(self, event: MemoChecked) -> list[Action]:
        record = self._tasks.get(event.task_id)
        if record is None:  # already final (abandoned at shutdown): a late report
            return []
        actions: list[Action] = []
        if event.hit:  # a memoized failure fails again, not retried: a retry would hit the same memo
            self._finish(record, States.failed if event.failed else States.memo_done, actions)
        else:
            self._move(record, States.launched, actions)
            actions.append(Launch(record))
        return actions

    def _launch_failed(self, event: LaunchFailed) -> list[Action]:
        record = self._tasks.get(event.task_id)
        actions: list[Action] = []
        if record is not None:
            self._finish(record, States.failed, actions)
        return actions

    def _exec_started(self, event: ExecStarted) -> list[Action]:
        record = self._tasks.get(event.task_id)
        actions: list[Action] = []
        if record is not None and record.state is States.launched:  # a late report after a retry is ignored
            self._move(record, States.running, actions)
        return actions

    def _exec_succeeded(self, event: ExecSucceeded) -> list[Action]:
        record = self._tasks.get(event.task_id)
        if record is not None and record.state is States.launched and not self.observed:
            record.state = States.exec_done  # the common case in one step: launched -> exec_done is in the table
            del self._tasks[record.id]
            return [Finish(record, States.exec_done)]
        actions: list[Action] = []
        if record is not None:
            self._finish(record, States.exec_done, actions)
        return actions

    def _exec_failed(self, event: ExecFailed) -> list[Action]:
        record = self._tasks.get(event.task_id)
        if record is None:  # already final (abandoned at shutdown): a late report
            return []
        record.fail_count += 1
        record.fail_cost += event.cost
        actions: list[Action] = []
        if record.fail_cost <= self.retries:
            self._move(record, States.fail_retryable, actions)
            record.try_id += 1
            self._move(record, States.launched, actions)
            actions.append(Launch(record))
        else:
            self._finish(record, States.failed, actions)
        return actions

    def _join_started(self, event: JoinStarted) -> list[Action]:
        record = self._tasks.get(event.task_id)
        if record is None:  # already final (abandoned at shutdown): a late report
            return []
        actions: list[Action] = []
        self._move(record, States.joining, actions)
        actions.append(AwaitJoin(record))
        return actions

    def _abandoned(self, event: TaskAbandoned) -> list[Action]:
        record = self._tasks.get(event.task_id)
        actions: list[Action] = []
        if record is not None:
            self._finish(record, States.failed, actions)
        return actions

    # ------------------------------------------------------------ steps

    def _ready(self, record: TaskRecord, actions: list[Action]) -> None:
        if record.memoize:
            actions.append(CheckMemo(record))
        else:
            self._move(record, States.launched, actions)
            actions.append(Launch(record))

    def _finish(self, record: TaskRecord, state: States, actions: list[Action]) -> None:
        self._move(record, state, actions)
        del self._tasks[record.id]
        actions.append(Finish(record, state))

    def _move(self, record: TaskRecord, new: States, actions: list[Action]) -> None:
        old = record.state
        if (old, new) not in _ALLOWED:
            raise InvalidTransition(record.id, old, new)
        record.state = new
        if self.observed:
            actions.append(StateChanged(record.id, record.func_name, old, new, record))


def is_final(state: States) -> bool:
    """True for states a task never leaves."""
    return state in FINAL_STATES
