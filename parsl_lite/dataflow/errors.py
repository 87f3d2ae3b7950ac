"""Exceptions raised by the DataFlowKernel."""
from __future__ import annotations

from typing import Optional, Sequence

from parsl_lite.app.errors import AppException
from parsl_lite.errors import ParslError


class DataFlowException(ParslError):
    """Base class of the kernel's exceptions."""


class DependencyError(DataFlowException):
    """A task could not run because tasks it depends on failed.

    Args:
        dependent_exceptions_tids: ``(exception, task id or None)`` per failed
            dependency (``None`` for a plain future that is not an app's).
        task_id: the task that could not run.
    """

    def __init__(self, dependent_exceptions_tids: Sequence[tuple[BaseException, Optional[int]]], task_id: int) -> None:
        self.dependent_exceptions_tids = list(dependent_exceptions_tids)
        self.task_id = task_id
        failed = ", ".join(
            f"task {tid} ({type(exc).__name__}: {exc})" if tid is not None else f"a future ({type(exc).__name__}: {exc})"
            for exc, tid in self.dependent_exceptions_tids
        )
        super().__init__(f"task {task_id} could not run: its dependencies failed: {failed}")


class JoinError(DataFlowException):
    """Futures returned by a join app failed.

    Args:
        dependent_exceptions_tids: ``(exception, task id or None)`` per failed inner future.
        task_id: the join app's task.
    """

    def __init__(self, dependent_exceptions_tids: Sequence[tuple[BaseException, Optional[int]]], task_id: int) -> None:
        self.dependent_exceptions_tids = list(dependent_exceptions_tids)
        self.task_id = task_id
        failed = ", ".join(f"{type(exc).__name__}: {exc}" + (f" (task {tid})" if tid is not None else "")
                           for exc, tid in self.dependent_exceptions_tids)
        super().__init__(f"join app task {task_id}: inner futures failed: {failed}")


class KernelShutdown(DataFlowException):
    """The kernel was cleaned up before this task finished, or after it, when the app was called.

    Whatever the executor, a task not done when ``cleanup()`` begins fails
    with this (its dependants too); what the executor reported for it during
    the shutdown, if anything, is the ``__cause__``. No retries are made.
    """


class AppExit(AppException, DataFlowException):
    """The app raised ``SystemExit`` or ``KeyboardInterrupt`` itself (e.g. it called ``sys.exit(3)``).

    On executors that run apps inside the user's process (threads, join
    apps), such an exception must not end the user's script, so its future
    fails with this instead; the original is ``__cause__``, its exit code
    ``code``. (On htex the worker process exits and the task fails with ``WorkerLost``.)

    Args:
        task_id: the task.
        func_name: the app's name.
        raised: the ``SystemExit`` (or other ``BaseException``) it raised.
    """

    def __init__(self, task_id: int, func_name: str, raised: BaseException) -> None:
        self.task_id = task_id
        self.code = getattr(raised, "code", None)
        super().__init__(f"task {task_id} ({func_name}) raised {raised!r} "
                         f"(did it call sys.exit?); an app cannot end the script, so its future fails instead")
        self.__cause__ = raised


class BadCheckpoint(DataFlowException):
    """A checkpoint file cannot be read. Names the file and why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class InvalidTransition(DataFlowException):
    """The state machine was asked for a transition its table does not allow (a bug)."""

    def __init__(self, task_id: int, old: object, new: object) -> None:
        self.task_id, self.old, self.new = task_id, old, new
        super().__init__(f"task {task_id}: no transition from {getattr(old, 'name', old)} "
                         f"to {getattr(new, 'name', new)}")
