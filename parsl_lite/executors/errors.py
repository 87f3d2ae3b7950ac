"""Exceptions raised by executors."""
from __future__ import annotations

from parsl_lite.errors import ParslError


class ExecutorError(ParslError):
    """An executor cannot accept or finish work.

    Args:
        executor: the executor's label.
        reason: what went wrong.
    """

    def __init__(self, executor: str, reason: str) -> None:
        self.executor = executor
        self.reason = reason
        super().__init__(f"executor {executor!r}: {reason}")


class ExecutorShutdown(ExecutorError):
    """The executor was shut down; it takes no more tasks and failed what was pending."""
