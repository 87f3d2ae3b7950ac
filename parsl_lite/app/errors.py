"""Exceptions raised by apps, on the worker or at the call."""
from __future__ import annotations

from typing import Optional, Sequence

from parsl_lite.errors import ParslError
from parsl_lite.serialize.remote_error import RemoteExceptionWrapper

__all__ = ["AppException", "AppBadFormatting", "AppTimeout", "BadStdStreamFile", "BashAppNoReturn",
           "BashExitFailure", "MissingOutputs", "BadOutputs", "RemoteExceptionWrapper"]


class AppException(ParslError):
    """Base class of errors raised by an app's execution."""


class AppBadFormatting(AppException):
    """A bash app's command could not be built from its arguments."""


class BashAppNoReturn(AppException):
    """A bash app's function returned something other than a command string."""


class BashExitFailure(AppException):
    """A bash app's command exited with a non-zero code.

    Args:
        app_name: the app's function name.
        exitcode: the command's exit code (negative: killed by that signal).
    """

    def __init__(self, app_name: str, exitcode: int) -> None:
        self.app_name = app_name
        self.exitcode = exitcode
        super().__init__(f"bash app {app_name} failed with unix exit code {exitcode}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.app_name, self.exitcode))


class AppTimeout(AppException):
    """The app ran longer than its ``walltime``."""


class MissingOutputs(AppException):
    """The app finished but files it declared in ``outputs`` do not exist.

    Args:
        reason: what happened.
        outputs: the missing files.
    """

    def __init__(self, reason: str, outputs: Sequence[object]) -> None:
        self.reason = reason
        self.outputs = list(outputs)
        super().__init__(f"{reason}: missing {', '.join(map(str, self.outputs))}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.reason, self.outputs))


class BadStdStreamFile(AppException):
    """A ``stdout``/``stderr`` file cannot be opened (a bad mode, a bad directory). Parsl's message.

    Args:
        reason: the file's path, or what is wrong.
        exception: what ``open()`` (or the mode check) raised, if anything.
    """

    def __init__(self, reason: str, exception: Optional[BaseException] = None) -> None:
        self.reason = reason
        self.exception = exception
        super().__init__(f"Bad Stream File: {reason}" + ("" if exception is None else f" ({exception})"))

    def __reduce__(self) -> tuple:
        return (type(self), (self.reason, self.exception))


class BadOutputs(AppException, TypeError):
    """``outputs`` holds something that is not a ``File``."""
