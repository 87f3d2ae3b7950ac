"""Task states, with Parsl's names and numbers."""
from __future__ import annotations

from enum import IntEnum


class States(IntEnum):
    """Where a task is in its life.

    ``pending``: waiting for its dependencies. ``launched``: handed to an
    executor. ``running``: the executor says it started. ``joining``: a join
    app's body returned and its inner futures are awaited. ``fail_retryable``:
    failed, about to be retried. Final: ``exec_done``, ``memo_done`` (result
    reused from the memo table or a checkpoint), ``failed``, ``dep_fail``.
    """

    unsched = -1
    pending = 0
    running = 2
    exec_done = 3
    failed = 4
    dep_fail = 5
    launched = 7
    fail_retryable = 8
    memo_done = 9
    joining = 10
    running_ended = 11


FINAL_STATES = frozenset({States.exec_done, States.memo_done, States.failed, States.dep_fail})
FINAL_FAILURE_STATES = frozenset({States.failed, States.dep_fail})
