"""Exceptions of the high-throughput executor.

They cross processes (the interchange builds ``WorkerLost`` and ``ManagerLost``
and sends them pickled to the executor, which sets them on futures), so each
one pickles: those whose ``__init__`` takes several arguments define
``__reduce__``. Each message says what failed, where, and the likely cause.
"""
from __future__ import annotations

import signal
from typing import Any, Optional, Union

from parsl_lite.errors import ParslError

# A likely cause for each signal that kills workers in practice.
_SIGNAL_HINTS: dict[str, str] = {
    "SIGKILL": "out of memory (the kernel's OOM killer), or killed by the batch system or a user?",
    "SIGSEGV": "a crash in native code (segmentation fault)?",
    "SIGBUS": "a crash in native code, or a memory-mapped file changed or vanished?",
    "SIGABRT": "an abort in native code (failed assertion, heap corruption)?",
    "SIGFPE": "an arithmetic fault in native code?",
    "SIGILL": "native code built for another CPU?",
    "SIGTERM": "terminated by the batch system (walltime reached?) or by a user?",
    "SIGINT": "interrupted (Ctrl-C)?",
    "SIGHUP": "its terminal or session went away?",
    "SIGXCPU": "the CPU-time limit was reached?",
    "SIGPIPE": "it wrote to a closed pipe or socket?",
}


def describe_exit(exitcode: int) -> str:
    """Say how a process ended, with a likely cause.

    Args:
        exitcode: as :attr:`subprocess.Popen.returncode`: negative for the
            signal that killed the process; shells report a signal as 128 + n.

    Returns:
        For example ``"killed by SIGKILL — out of memory (...)?"`` or
        ``"exit code 1"``.
    """
    if exitcode < 0:
        return _describe_signal(-exitcode, "killed by")
    if 128 < exitcode < 128 + 65:
        return f"exit code {exitcode}, i.e. " + _describe_signal(exitcode - 128, "killed by")
    if exitcode == 0:
        return "exit code 0 while holding a task — the task called sys.exit() or os._exit()?"
    return (f"exit code {exitcode} — the task called sys.exit({exitcode}) or os._exit({exitcode}), or see the "
            f"worker's log for its last error")


def _describe_signal(number: int, verb: str) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"{verb} signal {number}"
    hint = _SIGNAL_HINTS.get(name)
    return f"{verb} {name}" + (f" — {hint}" if hint else "")


def _show_id(manager_id: Union[bytes, str]) -> str:
    return manager_id.hex() if isinstance(manager_id, bytes) else manager_id


class HighThroughputError(ParslError):
    """Base class of the high-throughput executor's own exceptions."""


class WorkerLost(HighThroughputError):
    """A worker process died while it held a task.

    Args:
        task_id: the executor's id of the task that was lost.
        host: the worker's host name.
        worker: the worker's index in its pool (or another name for it).
        exitcode_or_signal_text: the worker's exit code (negative: the signal
            that killed it), described with a likely cause, or a text that
            says already what happened.
    """

    def __init__(self, task_id: int, host: str, worker: Union[int, str],
                 exitcode_or_signal_text: Union[int, str]) -> None:
        self.task_id = task_id
        self.host = host
        self.worker = worker
        self.exitcode_or_signal_text = exitcode_or_signal_text
        cause = (describe_exit(exitcode_or_signal_text) if isinstance(exitcode_or_signal_text, int)
                 else exitcode_or_signal_text)
        self.cause = cause
        super().__init__(f"task {task_id} lost: worker {worker} on host {host!r} died ({cause})")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.task_id, self.host, self.worker, self.exitcode_or_signal_text)


class ManagerLost(HighThroughputError):
    """A worker pool (the "manager" of a node) was lost while its workers held a task.

    Args:
        task_id: the executor's id of the task that was lost.
        manager_id: the pool's id (bytes are shown in hex).
        host: the pool's host name.
        reason: how it was lost, e.g. ``"no heartbeat for 3.2 s (threshold 2 s)"``.
    """

    def __init__(self, task_id: int, manager_id: Union[bytes, str], host: str, reason: str) -> None:
        self.task_id = task_id
        self.manager_id = manager_id
        self.host = host
        self.reason = reason
        super().__init__(f"task {task_id} lost: worker pool {_show_id(manager_id)} on host {host!r} "
                         f"was lost: {reason} — the node crashed, its job ended, or the network failed?")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.task_id, self.manager_id, self.host, self.reason)


class InterchangeLost(HighThroughputError):
    """The interchange process died or stopped answering; tasks in flight cannot finish.

    Args:
        reason: what was observed, e.g. the exit code or the silence.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the interchange was lost: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason,)


class MalformedMessage(HighThroughputError):
    """Bytes received from a peer are not a valid message of this protocol.

    Args:
        kind: the message kind, when it could be read and is known; else None.
        reason: what is wrong with it.
    """

    def __init__(self, kind: Optional[str], reason: str) -> None:
        self.kind = kind
        self.reason = reason
        what = "message" if kind is None else f"{kind!r} message"
        super().__init__(f"malformed {what}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.kind, self.reason)


class VersionMismatch(MalformedMessage):
    """A peer speaks another version of the wire protocol.

    It is a :class:`MalformedMessage` because :func:`messages.decode` raises it
    when a hello (``Register``, ``WorkerHello``, ``ClientHello``) of another
    version cannot be read at all.

    Args:
        theirs: the peer's protocol version.
        ours: this side's protocol version.
        kind: the hello that carried it.
    """

    def __init__(self, theirs: int, ours: int, kind: str = "register") -> None:
        self.theirs = theirs
        self.ours = ours
        self.kind = kind
        self.reason = (f"protocol version mismatch: the peer speaks version {theirs}, this side speaks "
                       f"version {ours}; install the same parsl_lite version on both sides")
        HighThroughputError.__init__(self, self.reason)  # not "malformed ...": the message is fine, just foreign

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.theirs, self.ours, self.kind)


class NotAuthenticated(HighThroughputError):
    """A message to the interchange did not carry a valid proof of this run's secret.

    Args:
        reason: what was wrong (no proof frame, a wrong one).
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"refused a message that does not prove it belongs to this run: {reason} (a peer of "
                         f"another run, an old pool, or a stranger on the worker port?)")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.reason,)


class TaskTooLarge(HighThroughputError):
    """A task's serialized function and arguments exceed the size limit.

    Args:
        size: the task's size in bytes.
        limit: the largest size allowed, in bytes.
    """

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"task of {size} bytes exceeds the limit of {limit} bytes: pass large data as files "
                         f"or raise the limit")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.size, self.limit)


class ResultTooLarge(HighThroughputError):
    """A task's serialized result exceeds the executor's ``max_payload_bytes``.

    Args:
        task_id: the task whose result it is.
        size: the result's size in bytes.
        limit: the largest size allowed, in bytes.
    """

    def __init__(self, task_id: int, size: int, limit: int) -> None:
        self.task_id = task_id
        self.size = size
        self.limit = limit
        super().__init__(f"the result of task {task_id} is {size} bytes, over the limit of {limit} bytes "
                         f"(max_payload_bytes): return large data in files, or raise the limit")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.task_id, self.size, self.limit)


class TaskTimeout(HighThroughputError):
    """A task ran past its ``running_time_limit`` (resource specification) and was interrupted."""


class InvalidResourceSpecification(HighThroughputError, ValueError):
    """A ``parsl_resource_specification`` has keys or values this executor does not understand.

    Args:
        reason: which keys or values, and what is accepted.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))
