"""Exceptions raised by launchers."""
from __future__ import annotations

from parsl_lite.errors import ParslError


class LauncherError(ParslError):
    """A launcher was asked for something it cannot produce.

    Args:
        launcher: the launcher's class name.
        reason: what is wrong.
    """

    def __init__(self, launcher: str, reason: str) -> None:
        self.launcher = launcher
        self.reason = reason
        super().__init__(f"{launcher}: {reason}")


class BadLauncher(LauncherError, TypeError):
    """Something that is not a :class:`~parsl_lite.launchers.base.Launcher` was given as one.

    Kept under Parsl's name; provider constructors usually catch this earlier
    through their type checks.
    """

    def __init__(self, launcher: object) -> None:
        super().__init__(type(launcher).__name__,
                         f"{launcher!r} is not a parsl_lite.launchers.Launcher")
