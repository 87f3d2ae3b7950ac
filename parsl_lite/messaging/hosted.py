"""The broker hosted by another process (the function service): one address for users, the same tokens.

The service runs a :class:`~parsl_lite.messaging.broker.RunningBroker` in a
thread of its own, on its own ZMQ ports (kept across restarts in
``DIR/broker/ports.json``). Requests and topic sockets are accepted with the
broker's own token or with any token the service knows (``user_token``: the
service's check, e.g. its users' bearer tokens), so a ``FuncXClient``'s token
works for ``msg``. A token the service accepts is remembered (the service never
deletes tokens); a refusal is not, so a user added a moment ago works at once.
"""
from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from parsl_lite.messaging.broker import RunningBroker

logger = logging.getLogger(__name__)

_MAX_REMEMBERED = 10_000


class HostedBroker:
    """Start with :meth:`start`, stop with :meth:`stop` (from any thread but the one ``user_token`` needs)."""

    def __init__(self, directory: Path, host: str, user_token: Callable[[str], bool], advertise: str = "") -> None:
        self._user_token = user_token
        self._known: set[str] = set()
        self._lock = threading.Lock()
        self.running = RunningBroker(directory, host, advertise, accepts=self.accepts)
        self._thread = threading.Thread(target=self.running.serve, name="messaging-broker", daemon=True)

    @property
    def info(self) -> dict[str, Any]:
        return self.running.public_info

    def accepts(self, token: str) -> bool:
        """The broker's own token, or one the host accepts (called by the request loop and the ZAP thread)."""
        if not token:
            return False
        if self.running.broker.is_own_token(token):
            return True
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        with self._lock:
            if digest in self._known:
                return True
        try:
            ok = self._user_token(token)
        except Exception as exc:
            logger.warning("the service could not check a broker token: %r", exc)
            return False
        if ok:
            with self._lock:
                if len(self._known) >= _MAX_REMEMBERED:
                    self._known.clear()
                self._known.add(digest)
        return ok

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the request loop and wait for it (it closes its sockets and the store)."""
        self.running.stop_soon()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("the hosted broker did not stop within %g s", timeout_s)
