"""Exceptions raised by the DataFlowKernel."""
from __future__ import annotations

from typing import Sequence

from parsl_lite.errors import ParslError


class DataFlowException(ParslError):
    """Base class of the kernel's exceptions."""


class PropagatedException(DataFlowException):
    """A task failed because related tasks failed (base of ``DependencyError`` and ``JoinError``).

    As in Parsl, ``dependent_exceptions_tids`` pairs each failure with a short
    description: ``"task N"`` for an app of this kernel, ``"DataFuture from
    task N"`` for a file, else the future's ``repr``. ``__cause__`` is the
    first root cause found through nested propagated errors, and the message
    shows the path to it (``... via task 3 <- task 1``).

    Args:
        dependent_exceptions_tids: ``(exception, description)`` per failed future.
        task_id: the task that failed because of them.
        failure_description: what kind of failure (the message's start).
    """

    def __init__(self, dependent_exceptions_tids: Sequence[tuple[BaseException, str]], task_id: int,
                 *, failure_description: str) -> None:
        super().__init__()
        self.dependent_exceptions_tids = list(dependent_exceptions_tids)
        self.task_id = task_id
        self._failure_description = failure_description
        self.__cause__, self._cause_sequence = self._find_any_root_cause()

    def __str__(self) -> str:
        return (f"{self._failure_description} for task {self.task_id}. "
                f"The representative cause is via {' <- '.join(self._cause_sequence)}")

    def __reduce__(self) -> tuple:
        # Exception pickles its args, which we do not pass up: rebuild from the fields
        # instead, so a memoized failure can be checkpointed and sent over the wire.
        return (_rebuild, (type(self), self.dependent_exceptions_tids, self.task_id))

    def _find_any_root_cause(self) -> tuple[BaseException, list[str]]:
        """Follow the first failure down through nested propagated errors to one that is not."""
        exc: BaseException = self
        path: list[str] = []
        while isinstance(exc, PropagatedException) and exc.dependent_exceptions_tids:
            first_exc, description = exc.dependent_exceptions_tids[0]
            more = " (+ others)" if len(exc.dependent_exceptions_tids) > 1 else ""
            path.append(f"{description}{more}")
            exc = first_exc
        return exc, path


def _rebuild(cls: type, dependent_exceptions_tids: list, task_id: int) -> PropagatedException:
    return cls(dependent_exceptions_tids, task_id)


class DependencyError(PropagatedException):
    """A task could not run because futures it depends on failed.

    Args:
        dependent_exceptions_tids: ``(exception, description)`` per failed dependency.
        task_id: the task that could not run.
    """

    def __init__(self, dependent_exceptions_tids: Sequence[tuple[BaseException, str]], task_id: int) -> None:
        super().__init__(dependent_exceptions_tids, task_id, failure_description="Dependency failure")


class JoinError(PropagatedException):
    """Futures returned by a join app failed (never retried: the inner apps retry themselves).

    Args:
        dependent_exceptions_tids: ``(exception, description)`` per failed inner future.
        task_id: the join app's task.
    """

    def __init__(self, dependent_exceptions_tids: Sequence[tuple[BaseException, str]], task_id: int) -> None:
        super().__init__(dependent_exceptions_tids, task_id, failure_description="Join failure")


class KernelShutdown(DataFlowException):
    """The kernel was cleaned up before this task finished, or after it, when the app was called.

    Whatever the executor, a task not done when ``cleanup()`` begins fails
    with this (its dependants too); what the executor reported for it during
    the shutdown, if anything, is the ``__cause__``. No retries are made.
    """


class AppExit(DataFlowException):
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
