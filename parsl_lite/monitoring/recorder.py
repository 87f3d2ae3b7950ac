"""Turning a batch of kernel and executor events into store rows: the pure core of monitoring.

No threads, sockets or clocks: the writer thread feeds :meth:`Recorder.add`
with what the listener queued and calls :meth:`Recorder.flush`, which returns
the rows of each table for one transaction. Within a batch a task's events
merge into one ``task`` row and one ``try`` row per try (upserts: a later
batch fills in what an earlier one did not know), and every state change is
one ``status`` row.

Queued items (tuples, built on the kernel's hot path with no work):

- ``(t, StateChanged, try_id, depends)``: a task changed state at ``t`` (its try and dependencies then);
- ``(t, "error", record, exc_type, text)``: the error a task finally failed with;
- ``(t, ExecutorEvent, try_id)``: an executor's event (``task_placed``, ``endpoint_status``, ``block_status``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from parsl_lite.dataflow.states import States

_COMPLETED = frozenset({States.exec_done, States.memo_done})
_FAILED = frozenset({States.failed, States.dep_fail})
_FINAL = _COMPLETED | _FAILED
_RETURNED = _FINAL | {States.fail_retryable}

TASK_COLUMNS = ("task_id", "run_id", "task_depends", "task_func_name", "task_memoize", "task_hashsum",
                "task_time_invoked", "task_time_returned", "task_fail_count", "task_fail_cost")
TRY_COLUMNS = ("try_id", "task_id", "run_id", "task_executor", "task_try_time_launched",
               "task_try_time_running", "task_try_time_returned", "task_fail_history")
TRY_KEEP = ("task_try_time_launched", "task_try_time_running")
DETAIL_COLUMNS = ("run_id", "task_id", "try_id", "executor", "endpoint_id", "final_state", "error_type", "error")
STATUS_COLUMNS = ("task_id", "task_status_name", "timestamp", "run_id", "try_id")
ENDPOINT_COLUMNS = ("run_id", "executor_label", "endpoint_id", "timestamp", "status", "connected_workers",
                    "idle_workers", "pending_tasks", "last_seen")
BLOCK_COLUMNS = ("run_id", "executor_label", "block_id", "job_id", "timestamp", "status")


@dataclass
class Batch:
    """Rows for one transaction, per table (column order: the ``*_COLUMNS`` above)."""
    status: list = field(default_factory=list)
    task: list = field(default_factory=list)
    tries: list = field(default_factory=list)
    detail: list = field(default_factory=list)
    endpoint: list = field(default_factory=list)
    block: list = field(default_factory=list)
    completed: int = 0   # tasks that reached a final state in this batch
    failed: int = 0
    events: int = 0

    def __bool__(self) -> bool:
        return self.events > 0


class Recorder:
    """Events in, rows out (see the module docstring).

    Args:
        run_id: the workflow's id, in every row.
        db_time: epoch seconds -> the store's ``DATETIME`` parameter.
    """

    def __init__(self, run_id: str, db_time: Callable[[Optional[float]], Any]) -> None:
        self.run_id = run_id
        self.db_time = db_time
        self._last_us = 0            # status timestamps strictly increase: Parsl's key includes them
        self.completed = 0
        self.failed = 0
        self._reset()

    def _reset(self) -> None:
        self._batch = Batch()
        self._tasks: dict[int, list] = {}
        self._tries: dict[tuple[int, int], list] = {}
        self._details: dict[tuple[int, int], list] = {}

    def add(self, item: tuple) -> None:
        """One queued item (see the module docstring)."""
        self._batch.events += 1
        second = item[1]
        if second == "error":
            self._error(item[0], item[2], item[3], item[4])
        elif getattr(second, "kind", None) == "task_state":
            self._state(item[0], second, item[2], item[3])
        else:
            self._executor_event(item[0], second, item[2])

    def flush(self) -> Batch:
        """The rows of everything added since the last flush."""
        batch = self._batch
        batch.task = list(self._tasks.values())
        batch.tries = list(self._tries.values())
        batch.detail = list(self._details.values())
        self.completed += batch.completed
        self.failed += batch.failed
        self._reset()
        return batch

    # ------------------------------------------------------------ task states

    def _unique_time(self, t: float) -> Any:
        us = max(int(t * 1_000_000), self._last_us + 1)
        self._last_us = us
        return self.db_time(us / 1_000_000)

    def _state(self, t: float, change: Any, try_id: int, depends: Optional[list]) -> None:
        record, new, tid = change.record, change.new, change.task_id
        if new is States.fail_retryable:   # the graph counts the next try before the change is published
            try_id -= 1
        if new in (States.pending, States.dep_fail) and change.old in (States.unsched, States.pending):
            try_id = 0
        ts = self._unique_time(t)
        self._batch.status.append((tid, new.name, ts, self.run_id, try_id))
        self._task_row(record, new, ts, depends)
        if new in _COMPLETED:
            self._batch.completed += 1
        elif new in _FAILED:
            self._batch.failed += 1
        if new is States.pending or new is States.dep_fail or new is States.memo_done:
            return                          # no try: the task never reached an executor
        row = self._try_row(record, tid, try_id)
        if new is States.launched:
            row[4] = ts
        elif new is States.running:
            row[5] = ts
        if new in _RETURNED and record is not None:
            row[6] = ts
            if record.fail_history:
                row[7] = ",".join(record.fail_history[:try_id + 1])
        if new is States.fail_retryable or new in _FINAL:
            detail = self._detail_row(tid, try_id, record.executor if record is not None else None)
            detail[5] = new.name
            if new is States.fail_retryable and record is not None and record.fail_history \
                    and len(record.fail_history) > try_id:
                detail[7] = record.fail_history[try_id]

    def _task_row(self, record: Any, new: States, ts: Any, depends: Optional[list]) -> None:
        if record is None:
            return
        row = self._tasks.get(record.id)
        if row is None:
            row = self._tasks[record.id] = [
                record.id, self.run_id, None, record.func_name, str(bool(record.memoize)), None,
                self.db_time(record.time_invoked), None, 0, 0.0]
        row[5] = record.hashsum
        row[8] = record.fail_count
        row[9] = record.fail_cost
        if new in _FINAL:
            row[7] = ts
        if new is States.pending:
            row[2] = ",".join(str(d.tid) for d in depends or () if getattr(d, "tid", None) is not None)

    def _try_row(self, record: Any, tid: int, try_id: int) -> list:
        key = (tid, try_id)
        row = self._tries.get(key)
        if row is None:
            executor = record.executor if record is not None else ""
            row = self._tries[key] = [try_id, tid, self.run_id, executor or "", None, None, None, None]
        return row

    def _detail_row(self, tid: int, try_id: int, executor: Optional[str]) -> list:
        key = (tid, try_id)
        row = self._details.get(key)
        if row is None:
            row = self._details[key] = [self.run_id, tid, try_id, executor, None, None, None, None]
        elif executor and row[3] is None:
            row[3] = executor
        return row

    def _error(self, t: float, record: Any, exc_type: str, text: str) -> None:
        detail = self._detail_row(record.id, record.try_id, record.executor)
        detail[6] = exc_type
        detail[7] = text

    # ------------------------------------------------------------ executors

    def _executor_event(self, t: float, event: Any, try_id: int) -> None:
        what, detail = event.what, event.detail
        if what == "task_placed" and event.task_id is not None:
            row = self._detail_row(event.task_id, try_id, event.executor)
            row[4] = detail.get("endpoint_id")
        elif what == "endpoint_status":
            self._batch.endpoint.append((
                self.run_id, event.executor, str(detail.get("endpoint_id")), self._unique_time(t),
                str(detail.get("status")), detail.get("connected_workers"), detail.get("idle_workers"),
                detail.get("pending_tasks"), detail.get("last_seen")))
        elif what == "block_status":
            self._batch.block.append((
                self.run_id, event.executor, str(detail.get("block_id")), detail.get("job_id"),
                self._unique_time(t), str(detail.get("status"))))
