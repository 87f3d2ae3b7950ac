"""The service's options and what its handlers share: the store, the endpoint link, the watchers.

:class:`ServiceOptions` is the typed form of the server's command line
(``__post_init__`` names a bad field). :class:`ServiceContext` is built once
per process by ``server.py`` and read by every route module; it knows
nothing of HTTP.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Coroutine, Optional

from parsl_lite.errors import ConfigError
from parsl_lite.faas import api

logger = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_PERIOD_S = 5.0
MAX_PURGE_PERIOD_S = 60.0
MIN_PURGE_PERIOD_S = 0.2


@dataclasses.dataclass(frozen=True)
class ServiceOptions:
    """How one service process runs (``python -m parsl_lite.faas.service.server --help``)."""

    dir: Path
    db: str = ""                                    # "" = DIR/faas.db (SQLite)
    host: str = "127.0.0.1"
    port: int = 0                                   # 0: any free port
    endpoint_port: int = 0
    result_ttl_s: float = api.DEFAULT_RESULT_TTL_S
    payload_limit: int = api.DEFAULT_PAYLOAD_LIMIT
    heartbeat_period_s: float = DEFAULT_HEARTBEAT_PERIOD_S
    broker: bool = False                            # host a messaging broker (parsl_lite.messaging)
    broker_advertise: str = ""                      # the host its clients dial, when not ``host``

    def __post_init__(self) -> None:
        for name in ("port", "endpoint_port"):
            value = getattr(self, name)
            if not 0 <= value < 65536:
                raise ConfigError(name, f"need 0..65535 (0: any free port), got {value}")
        if not self.result_ttl_s > 0:
            raise ConfigError("result_ttl_s", f"need > 0 seconds, got {self.result_ttl_s}")
        if self.payload_limit < 1:
            raise ConfigError("payload_limit", f"need >= 1 byte, got {self.payload_limit}")
        if not self.heartbeat_period_s > 0:
            raise ConfigError("heartbeat_period_s", f"need > 0 seconds, got {self.heartbeat_period_s}")
        if not self.host:
            raise ConfigError("host", "empty")

    @property
    def db_url(self) -> str:
        return self.db or str(self.dir / "faas.db")

    @property
    def max_request_bytes(self) -> int:
        """A request body may hold one payload at the limit, base64-encoded, and 1 MiB of JSON around it."""
        return 4 * -(-self.payload_limit // 3) + 1024 * 1024

    @property
    def purge_period_s(self) -> float:
        return min(MAX_PURGE_PERIOD_S, max(MIN_PURGE_PERIOD_S, self.result_ttl_s / 4))


class ServiceContext:
    """What the routes share. ``link`` is the endpoint link (None: a service that runs no endpoints)."""

    def __init__(self, options: ServiceOptions, astore: Any, service_id: str) -> None:
        from parsl_lite.faas.service.auth import Authenticator
        from parsl_lite.faas.service.watchers import FinalNotifier, Watchers
        self.options = options
        self.astore = astore
        self.service_id = service_id
        self.link: Optional[Any] = None
        self.zmq_url: str = ""
        self.broker: Optional[Any] = None       # the hosted messaging broker (messaging.hosted.HostedBroker)
        self.auth = Authenticator(astore)
        self.watchers = Watchers()
        self.on_final = FinalNotifier(self)     # the link calls it after storing results; so do cancel, delete
        self.sockets: set[Any] = set()          # open WebSockets, closed at shutdown
        self._usernames: dict[str, str] = {}
        self.group_owners: dict[str, str] = {}  # task group -> owner id, once it holds tasks (never changes)
        self._background: set[asyncio.Task] = set()

    @staticmethod
    def now() -> float:
        return time.time()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference and logging what it raises."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background step failed", exc_info=task.exception())

    async def drain(self) -> None:
        """Wait for the background steps still running (at shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def username(self, user_id: str) -> str:
        """The name of a user (cached: users are never renamed or deleted)."""
        name = self._usernames.get(user_id)
        if name is None:
            user = await self.astore.get_user(user_id)
            name = user.username if user is not None else user_id
            self._usernames[user_id] = name
        return name
