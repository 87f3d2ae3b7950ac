"""Job states and statuses: what a provider says about a block, what the strategy reads.

Neutral ground between the layers (Parsl's ``parsl.jobs.states``): providers
report these, executors and the scaling strategy read them, and none of them
needs to import the others for it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum
from typing import Optional

__all__ = ["JobState", "JobStatus", "TERMINAL_STATES", "read_tail"]


class JobState(IntEnum):
    """Where a job is in its life. Values are Parsl's, so they compare across logs."""

    UNKNOWN = 0    #: the backend cannot say (yet)
    PENDING = 1    #: queued, not started
    RUNNING = 2
    CANCELLED = 3  #: cancelled through the provider
    COMPLETED = 4  #: ended with exit code 0
    FAILED = 5     #: ended with a non-zero exit code, a signal, or never started
    TIMEOUT = 6    #: ended at its walltime; expected for pilot jobs, not a failure
    HELD = 7       #: held or suspended by the backend
    MISSING = 8    #: ended without its workers ever connecting (set by executors)
    SCALED_IN = 9  #: released on purpose by the scaling strategy

    @property
    def terminal(self) -> bool:
        """True if a job in this state can never run again."""
        return self in TERMINAL_STATES

    def __str__(self) -> str:
        return f"JobState.{self.name}"


TERMINAL_STATES: frozenset[JobState] = frozenset({
    JobState.CANCELLED, JobState.COMPLETED, JobState.FAILED,
    JobState.TIMEOUT, JobState.MISSING, JobState.SCALED_IN,
})

_SUMMARY_BYTES = 2048


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's state with what is known about why it is in it.

    Args:
        state: the job's state.
        message: a human-readable explanation (why it failed, which signal).
        exit_code: the job's exit code, once it ended by itself.
        stdout_path: the file holding the job's stdout, if there is one.
        stderr_path: the file holding the job's stderr, if there is one.
    """

    state: JobState
    message: Optional[str] = None
    exit_code: Optional[int] = None
    stdout_path: Optional[str] = None
    stderr_path: Optional[str] = None

    @property
    def terminal(self) -> bool:
        """True if the job has ended for good."""
        return self.state in TERMINAL_STATES

    @property
    def status_name(self) -> str:
        """The state's name, as Parsl's monitoring records it."""
        return self.state.name

    @property
    def stdout_summary(self) -> Optional[str]:
        """The last ~2 KB of the job's stdout, or None if there is none."""
        return read_tail(self.stdout_path)

    @property
    def stderr_summary(self) -> Optional[str]:
        """The last ~2 KB of the job's stderr, or None if there is none."""
        return read_tail(self.stderr_path)

    def __str__(self) -> str:
        return f"{self.state}" + (f" ({self.message})" if self.message else "")


def read_tail(path: Optional[str], max_bytes: int = _SUMMARY_BYTES) -> Optional[str]:
    """The last ``max_bytes`` of a file as text, or None if it is missing or empty.

    Used to put the end of a failed job's stderr into its status message.
    """
    if not path:
        return None
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - max_bytes))
            data = stream.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace")
    if size > max_bytes:
        text = "..." + text
    return text or None
