"""The SDK's one HTTP stack: an aiohttp session to the service, its errors, and where credentials come from.

A :class:`ServiceSession` lives on the client's private loop
(``loop_thread.py``): created there on first use, keep-alive connections
reused, so a round trip costs about a millisecond on loopback. Every error
body of the service (``{"error", "reason"}``, see ``api.py``) becomes a
:class:`~parsl_lite.faas.errors.ServiceError` with the HTTP status; no
connection at all is :class:`~parsl_lite.faas.errors.ServiceUnreachable`.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any, Optional

import aiohttp

from parsl_lite.faas import api, paths
from parsl_lite.faas.errors import CredentialsNotFound, ServiceError, ServiceUnreachable

logger = logging.getLogger(__name__)

_IDEMPOTENT = ("GET", "DELETE")
WS_HEARTBEAT_S = 10.0
"""The client pings the results WebSocket this often; no pong within half of it drops (and reopens) it,
so a service host that vanished without closing the connection is noticed."""
_JSON = json.JSONEncoder(separators=(",", ":"))


def resolve_credentials(service_url: Optional[str], token: Optional[str]) -> tuple[str, str]:
    """The service URL and token: the arguments, else the environment, else the credentials file.

    Raises:
        CredentialsNotFound: none of them gives both, saying how to get them.
    """
    url = service_url or os.environ.get(paths.URL_ENV) or None
    tok = token or os.environ.get(paths.TOKEN_ENV) or None
    if url is None or tok is None:
        path = paths.client_file()
        try:
            data = paths.read_client_file(path)
        except (ValueError, OSError) as exc:
            raise CredentialsNotFound(f"cannot read the credentials file {path}: {exc}") from exc
        if data is not None:
            same_service = url is None or url.rstrip("/") == data["service_url"].rstrip("/")
            url = url or data["service_url"]
            if same_service:   # the file's token belongs to the file's service only
                tok = tok or data["token"]
    if url is None or tok is None:
        missing = " and ".join(n for n, v in (("service URL", url), ("token", tok)) if v is None)
        raise CredentialsNotFound(
            f"no function service {missing}: pass FuncXClient(service_url=..., token=...), set "
            f"{paths.URL_ENV} and {paths.TOKEN_ENV}, or run `parsl-lite service start`, which writes "
            f"{paths.client_file()} for you")
    return url.rstrip("/"), tok


def service_error(status: int, http_reason: str, body: bytes) -> ServiceError:
    """The ``ServiceError`` of an error response (the service's JSON reason, or the raw text)."""
    try:
        data = json.loads(body)
        reason, code = str(data["reason"]), str(data.get("error", "error"))
    except Exception:
        text = body.decode("utf-8", "replace").strip()[:500]
        reason, code = text or http_reason or "no reason given", "error"
    return ServiceError(status, reason, code)


class ServiceSession:
    """HTTP calls and WebSocket connections to one service, with one token.

    Args:
        url: the service's base URL (``http://127.0.0.1:8765``).
        token: the user's bearer token.
        timeout_s: how long one request may wait for its answer.
    """

    def __init__(self, url: str, token: str, timeout_s: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._timeout = aiohttp.ClientTimeout(total=None, connect=30.0, sock_read=timeout_s)
        self._session: Optional[aiohttp.ClientSession] = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=32, keepalive_timeout=60.0)
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout,
                                                  connector=connector)
        return self._session

    async def call(self, method: str, path: str, body: Any = None, idempotent: bool = False) -> Any:
        """``method`` ``/v1{path}`` with a JSON ``body``; the JSON answer.

        A GET (or an ``idempotent`` POST) whose keep-alive connection the service closed meanwhile (a
        restart) is sent once more; a submission is not (it might have been stored already).

        Raises:
            ServiceError: the service answered with an error status.
            ServiceUnreachable: no connection, or no answer within the timeout.
        """
        data = None if body is None else _JSON.encode(body).encode()
        attempts = 2 if idempotent or method in _IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                return await self._once(method, path, data)
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if attempt + 1 < attempts:
                    continue
                raise ServiceUnreachable(self.url, f"{method} {path}: {exc!r}") from exc
            except aiohttp.ClientConnectionError as exc:
                raise ServiceUnreachable(self.url, f"{method} {path}: {exc}") from exc
            except asyncio.TimeoutError as exc:
                raise ServiceUnreachable(self.url, f"{method} {path}: no answer in time") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, method: str, path: str, data: Optional[bytes]) -> Any:
        headers = {"Content-Type": "application/json"} if data is not None else None
        async with self._client().request(method, self.url + api.API_PREFIX + path, data=data,
                                          headers=headers) as response:
            raw = await response.read()
            if response.status >= 400:
                raise service_error(response.status, response.reason or "", raw)
            return json.loads(raw) if raw else {}

    async def ws_connect(self) -> aiohttp.ClientWebSocketResponse:
        """The results WebSocket (``/v1/ws``); answers the service's pings and sends its own.

        Raises:
            ServiceError: the service refused the upgrade (401, 403, ...).
            aiohttp.ClientError, OSError: no connection (the caller retries).
        """
        try:
            # ?batch=2: many lean TASKs per {"tasks": [...]} message (the watchers need only the outcome; a
            # service that does not know it sends one full TASK each)
            return await self._client().ws_connect(self.url + api.API_PREFIX + "/ws?batch=2", max_msg_size=0,
                                                   autoping=True, heartbeat=WS_HEARTBEAT_S)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (401, 403, 404):
                raise ServiceError(exc.status, f"WebSocket {api.API_PREFIX}/ws refused: {exc.message}",
                                   "ws_refused") from exc
            raise

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
