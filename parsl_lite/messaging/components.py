"""Components: N replicas of a consumer function, each an app pulling from one queue.

::

    script: c = msg.component("back", func, "back-in", replicas=3, executor="htex")
              │ launches 3 apps ──▶ replica i: loop { m = queue.get(); results.append(func(m.body)); m.ack() }
    c.scale(5)  ─ 2 more apps;  c.scale(2) ─ table row "retire:i" for the newest 3: each ends after its message
    c.stop()    ─ table row "state" = "drain": every replica ends once the queue is empty; returns their reports

The control state lives in a table of the broker (``component:NAME``), not
on a topic: a replica that has not started yet when the script scales or
stops it still reads it when it does. Each replica checks it between
messages, at most every :data:`CONTROL_PERIOD_S`.
"""
from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any, Callable, Optional, Sequence, Union

CONTROL_PERIOD_S = 0.5
POLL_S = 0.5


def run_replica(func: Callable[[Any], Any], queue_name: str, component: str, replica: int,
                poll_s: float = POLL_S) -> dict[str, Any]:
    """The loop of one replica (runs as an app): ``{"replica", "handled", "results"}`` when told to end.

    A message whose ``func`` raises is nacked (it comes back, then goes to the dead-letter queue after the
    queue's ``max_receives``); the error is counted in ``"failed"``.
    """
    from parsl_lite import messaging as msg
    q, control = msg.queue(queue_name), msg.table(f"component:{component}")
    results: list[Any] = []
    failed = 0
    checked, draining = 0.0, False
    while True:
        now = time.monotonic()
        if now - checked >= CONTROL_PERIOD_S:
            checked = now
            if control.get(f"retire:{replica}"):
                break
            draining = control.get("state") == "drain"
        m = q.get(timeout=0 if draining else poll_s)
        if m is None:
            if draining:
                break
            continue
        try:
            results.append(func(m.body))
        except Exception:
            failed += 1
            m.nack()
            continue
        m.ack()
    return {"replica": replica, "handled": len(results), "failed": failed, "results": results}


class Component:
    """Replicas of ``func`` consuming ``input_queue`` (see :func:`parsl_lite.messaging.component`)."""

    def __init__(self, name: str, func: Callable[[Any], Any], input_queue: str, replicas: int = 1,
                 executor: Union[str, Sequence[str]] = "all", poll_s: float = POLL_S) -> None:
        from parsl_lite import messaging as msg
        from parsl_lite.app.app import python_app
        if not callable(func):
            raise TypeError(f"func: need a callable, got {type(func).__name__}")
        _check_replicas(replicas)
        self.name, self.func, self.input_queue, self.poll_s = name, func, input_queue, poll_s
        executors = [executor] if isinstance(executor, str) and executor != "all" else executor
        self._app = python_app(run_replica, executors=executors)
        msg.queue(input_queue)                          # created if missing, before any replica runs
        self._control = msg.table(f"component:{name}")
        self._control.put("state", "run")
        for key in self._control.scan("retire:"):      # a previous component of this name
            self._control.put(key, False)
        self._futures: dict[int, Future] = {}
        self._live: list[int] = []
        self.scale(replicas)

    def __repr__(self) -> str:
        return f"Component({self.name!r}, replicas={len(self._live)}, input_queue={self.input_queue!r})"

    @property
    def replicas(self) -> int:
        """Replicas asked for now (retired ones may still be finishing their message)."""
        return len(self._live)

    def scale(self, replicas: int) -> None:
        """Run ``replicas`` copies: launch more, or retire the newest (each ends after its current message)."""
        _check_replicas(replicas)
        while len(self._live) < replicas:
            replica = len(self._futures)
            self._futures[replica] = self._app(self.func, self.input_queue, self.name, replica, self.poll_s)
            self._live.append(replica)
        while len(self._live) > replicas:
            self._control.put(f"retire:{self._live.pop()}", True)

    def stop(self, timeout: Optional[float] = None) -> list[dict[str, Any]]:
        """Drain: every replica ends once the input queue is empty. Their reports, by replica number."""
        self._control.put("state", "drain")
        self._live = []
        return [self._futures[r].result(timeout=timeout) for r in sorted(self._futures)]


def _check_replicas(replicas: Any) -> None:
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise ValueError(f"replicas: need an int >= 0, got {replicas!r}")
