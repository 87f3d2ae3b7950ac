"""Turning a batch of kernel and executor events into store rows: the pure core of monitoring.

No threads, sockets or clocks: the writer process feeds :meth:`Recorder.add`
with the items the kernel's listener made and calls :meth:`Recorder.flush`,
which returns the rows of each table for one transaction. Within a batch a
task's events merge into one ``task`` row and one ``try`` row per try
(upserts: a later batch fills in what an earlier one did not know), and every
state change is one ``status`` row.

Items are plain tuples (they cross a pipe), ``(t, task_id, code, try_id, *extra)``:

- ``code`` >= 0, a state's value (``States``): the task entered it at ``t``;
  ``extra`` for ``pending``: ``(func_name, executor, memoize, time_invoked, depends)``
  (``depends``: task ids joined by commas); for ``launched``: ``(executor,)``;
  for a final state or ``fail_retryable``: ``(fail_count, fail_cost, hashsum, fail_history, ran)``,
  ``ran`` None or what ``RAN`` carries (where and when the try ran, taken with the change that followed);
- ``ERROR``: ``(exc_type, text)``, the error the task finally failed with;
- ``RAN`` (``t``: when the app's function returned): ``(start, hostname, worker, block_id)``;
- ``EXECUTOR``: ``(executor, what, detail)``, an executor's event
  (``task_placed``, ``endpoint_status``, ``block_status``; ``task_id`` -1 when about no task).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from parsl_lite.dataflow.states import States

ERROR = -100
EXECUTOR = -101
RAN = -102
_PENDING, _LAUNCHED, _RUNNING = States.pending.value, States.launched.value, States.running.value
_RETRYABLE, _EXEC_DONE = States.fail_retryable.value, States.exec_done.value
_NAMES = {s.value: s.name for s in States}
_COMPLETED_CODES = frozenset({States.exec_done.value, States.memo_done.value})
_FAILED_CODES = frozenset({States.failed.value, States.dep_fail.value})
_NO_TRY = frozenset({States.dep_fail.value, States.memo_done.value})
_JOINING = States.joining.value


TASK_COLUMNS = ("task_id", "run_id", "task_depends", "task_func_name", "task_memoize", "task_hashsum",
                "task_time_invoked", "task_time_returned", "task_fail_count", "task_fail_cost")
TRY_COLUMNS = ("try_id", "task_id", "run_id", "task_executor", "task_try_time_launched",
               "task_try_time_running", "task_try_time_returned", "task_fail_history", "hostname", "block_id")
TRY_KEEP = ("task_try_time_launched", "task_try_time_running")
TASK_UPDATE = ('UPDATE "task" SET task_hashsum = COALESCE(?, task_hashsum), '
               'task_time_returned = COALESCE(?, task_time_returned), task_fail_count = ?, task_fail_cost = ? '
               'WHERE task_id = ? AND run_id = ?')
TRY_UPDATE = ('UPDATE "try" SET task_try_time_running = COALESCE(task_try_time_running, ?), '
              'task_try_time_returned = COALESCE(?, task_try_time_returned), '
              'task_fail_history = COALESCE(?, task_fail_history), hostname = COALESCE(?, hostname), '
              'block_id = COALESCE(?, block_id) WHERE try_id = ? AND task_id = ? AND run_id = ?')
DETAIL_COLUMNS = ("run_id", "task_id", "try_id", "executor", "endpoint_id", "worker", "final_state", "error_type",
                  "error")
STATUS_COLUMNS = ("task_id", "task_status_name", "timestamp", "run_id", "try_id")
ENDPOINT_COLUMNS = ("run_id", "executor_label", "endpoint_id", "timestamp", "status", "connected_workers",
                    "idle_workers", "pending_tasks", "last_seen")
BLOCK_COLUMNS = ("run_id", "executor_label", "block_id", "job_id", "timestamp", "status")


@dataclass
class Batch:
    """Rows for one transaction, per table (column order: the ``*_COLUMNS`` above)."""
    status: list = field(default_factory=list)
    task: list = field(default_factory=list)
    task_updates: list = field(default_factory=list)   # TASK_UPDATE order: tasks inserted by an earlier batch
    tries: list = field(default_factory=list)
    try_updates: list = field(default_factory=list)    # TRY_UPDATE order
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
        db_time_us: integer microseconds since the epoch -> the store's ``DATETIME`` parameter.
    """

    def __init__(self, run_id: str, db_time_us: Callable[[int], Any]) -> None:
        self.run_id = run_id
        self.db_time_us = db_time_us
        self._last_us = 0            # status timestamps strictly increase: Parsl's key includes them
        self.completed = 0
        self.failed = 0
        self._reset()

    def _reset(self) -> None:
        self._batch = Batch()
        self._tasks: dict[int, list] = {}
        self._tries: dict[tuple[int, int], list] = {}
        self._details: dict[tuple[int, int], list] = {}
        self._partial_tasks: set[int] = set()              # rows that only update columns of an earlier batch
        self._partial_tries: set[tuple[int, int]] = set()

    def add(self, item: tuple) -> None:
        """One item (see the module docstring)."""
        self._batch.events += 1
        code = item[2]
        if code >= 0:
            self._state(item)
        elif code == ERROR:
            detail = self._detail_row(item[1], item[3], None)
            detail[7], detail[8] = item[4], item[5]
        elif code == RAN:
            self._ran(item)
        elif code == EXECUTOR:
            self._executor_event(item)

    def add_many(self, items: list) -> None:
        """``add`` of each item, with the four changes of a plain task's life inlined (the writer's hot loop).

        Same rows as ``add`` one by one (tests/test_monitoring_recorder.py checks it); a task's
        ``exec_done`` whose rows came in an earlier batch, and every other item, go through ``add``.
        """
        status, tasks, tries, details = self._batch.status, self._tasks, self._tries, self._details
        run_id, db_time_us, names, slow = self.run_id, self.db_time_us, _NAMES, self.add
        last_us = self._last_us
        done = fast = 0
        for item in items:
            code = item[2]
            if code == _PENDING or code == _LAUNCHED or code == _EXEC_DONE:
                us = int(item[0] * 1_000_000)
                if us <= last_us:
                    us = last_us + 1
                tid, try_id = item[1], item[3]
                key = (tid, try_id)
                if code == _EXEC_DONE:
                    task, attempt = tasks.get(tid), tries.get(key)
                    if task is None or attempt is None or key in self._partial_tries or item[7] \
                            or key in details or len(item) < 9:
                        self._last_us = last_us
                        slow(item)
                        last_us = self._last_us
                        continue
                    ts = db_time_us(us)
                    task[5], task[7], task[8], task[9] = item[6], ts, item[4], item[5]
                    attempt[6] = ts
                    ran = item[8]
                    if ran is not None:
                        attempt[5], attempt[8], attempt[9] = db_time_us(int(ran[0] * 1_000_000)), ran[1], ran[3]
                        details[key] = [run_id, tid, try_id, None, None, ran[2], "exec_done", None, None]
                    done += 1
                elif code == _LAUNCHED:
                    ts = db_time_us(us)
                    attempt = tries.get(key)
                    if attempt is None:
                        tries[key] = [try_id, tid, run_id, item[4], ts, None, None, None, None, None]
                    else:
                        if attempt[3] is None:
                            attempt[3] = item[4]
                            self._partial_tries.discard(key)
                        if attempt[4] is None:
                            attempt[4] = ts
                else:
                    ts = db_time_us(us)
                    tasks[tid] = [tid, run_id, item[8], item[4], "True" if item[6] else "False", None,
                                  db_time_us(int(item[7] * 1_000_000)), None, 0, 0.0]
                last_us = us
                fast += 1
                status.append((tid, names[code], ts, run_id, try_id))
            else:
                self._last_us = last_us
                slow(item)
                last_us = self._last_us
        self._last_us = last_us
        self._batch.events += fast
        self._batch.completed += done

    def _ran(self, item: tuple) -> None:
        self._where(item[1], item[3], item[4:8])

    def _where(self, tid: int, try_id: int, ran: tuple) -> None:
        """``ran`` = (start, hostname, worker, block_id): the try's running time, host and block, its worker."""
        row = self._tries.get((tid, try_id)) or self._try_row(tid, try_id, None)
        row[5] = self.db_time_us(int(ran[0] * 1_000_000))
        row[8], row[9] = ran[1], ran[3]
        self._detail_row(tid, try_id, None)[5] = ran[2]

    def flush(self) -> Batch:
        """The rows of everything added since the last flush."""
        batch = self._batch
        partial_tasks, partial_tries = self._partial_tasks, self._partial_tries
        for tid, row in self._tasks.items():
            if tid in partial_tasks:
                batch.task_updates.append((row[5], row[7], row[8], row[9], tid, self.run_id))
            else:
                batch.task.append(row)
        for key, row in self._tries.items():
            if key in partial_tries:
                batch.try_updates.append((row[5], row[6], row[7], row[8], row[9], row[0], row[1], self.run_id))
            else:
                batch.tries.append(row)
        batch.detail = list(self._details.values())
        self.completed += batch.completed
        self.failed += batch.failed
        self._reset()
        return batch

    # ------------------------------------------------------------ task states

    def _unique_time(self, t: float) -> Any:
        us = int(t * 1_000_000)
        if us <= self._last_us:
            us = self._last_us + 1
        self._last_us = us
        return self.db_time_us(us)

    def _state(self, item: tuple) -> None:
        """One ``status`` row; the task's and the try's rows get what this change tells (the hot loop)."""
        t, tid, code, try_id = item[0], item[1], item[2], item[3]
        ts = self._unique_time(t)
        self._batch.status.append((tid, _NAMES[code], ts, self.run_id, try_id))
        if code == _LAUNCHED:
            row = self._tries.get((tid, try_id)) or self._try_row(tid, try_id, item[4])
            if row[4] is None:
                row[4] = ts
            return
        if code == _PENDING:
            self._tasks[tid] = [tid, self.run_id, item[8], item[4], "True" if item[6] else "False", None,
                                self.db_time_us(int(item[7] * 1_000_000)), None, 0, 0.0]
            return
        if code == _RUNNING:
            self._try_row(tid, try_id, None)[5] = ts
            return
        if code == _JOINING:
            return
        fail_count, fail_cost, hashsum, history = item[4], item[5], item[6], item[7]
        if len(item) > 8 and item[8] is not None:
            self._where(tid, try_id, item[8])
        row = self._tasks.get(tid)
        if row is None:   # pending was in an earlier batch: NOT NULL columns get values the upsert keeps
            row = self._tasks[tid] = [tid, self.run_id, None, "", "False", None, None, None, 0, 0.0]
            self._partial_tasks.add(tid)
        row[5], row[8], row[9] = hashsum, fail_count, fail_cost
        if code != _RETRYABLE:
            row[7] = ts
            if code in _COMPLETED_CODES:
                self._batch.completed += 1
            elif code in _FAILED_CODES:
                self._batch.failed += 1
        if code in _NO_TRY:
            return                          # no try returned: the task never reached an executor (or not yet)
        row = self._tries.get((tid, try_id)) or self._try_row(tid, try_id, None)
        row[6] = ts
        if history:
            row[7] = ",".join(history[:try_id + 1])
        if code != _EXEC_DONE or (tid, try_id) in self._details:
            detail = self._detail_row(tid, try_id, None)
            detail[6] = _NAMES[code]
            if code == _RETRYABLE and history and len(history) > try_id:
                detail[8] = history[try_id]

    def _try_row(self, tid: int, try_id: int, executor: Any) -> list:
        key = (tid, try_id)
        row = self._tries.get(key)
        if row is None:
            row = self._tries[key] = [try_id, tid, self.run_id, executor, None, None, None, None, None, None]
            if executor is None:
                self._partial_tries.add(key)
        elif executor is not None and row[3] is None:
            row[3] = executor
            self._partial_tries.discard(key)
        return row

    def _detail_row(self, tid: int, try_id: int, executor: Optional[str]) -> list:
        key = (tid, try_id)
        row = self._details.get(key)
        if row is None:
            row = self._details[key] = [self.run_id, tid, try_id, executor, None, None, None, None, None]
        elif executor and row[3] is None:
            row[3] = executor
        return row

    # ------------------------------------------------------------ executors

    def _executor_event(self, item: tuple) -> None:
        t, tid, try_id, executor, what, detail = item[0], item[1], item[3], item[4], item[5], item[6]
        if what == "task_placed" and tid >= 0:
            row = self._detail_row(tid, try_id, executor)
            row[4] = detail.get("endpoint_id")
        elif what == "endpoint_status":
            self._batch.endpoint.append((
                self.run_id, executor, str(detail.get("endpoint_id")), self._unique_time(t),
                str(detail.get("status")), detail.get("connected_workers"), detail.get("idle_workers"),
                detail.get("pending_tasks"), detail.get("last_seen")))
        elif what == "block_status":
            self._batch.block.append((
                self.run_id, executor, str(detail.get("block_id")), detail.get("job_id"),
                self._unique_time(t), str(detail.get("status"))))
