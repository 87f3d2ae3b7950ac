"""Registering an endpoint with the service (``POST /v1/endpoints``) and keeping its identity in ``endpoint.json``.

``endpoint.json`` (mode 0600, in the endpoint's directory) holds the id and the
CurveZMQ keys the service issued; an endpoint that has one never registers
again unless its ``allowed_functions`` changed (then it re-registers under the
same id). Plain ``urllib``: one request at start needs no event loop.
"""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

from parsl_lite.faas import paths
from parsl_lite.faas.api import API_PREFIX
from parsl_lite.faas.errors import ServiceError

IDENTITY_FILE = "endpoint.json"
_KEYS = ("endpoint_id", "name", "zmq_url", "service_public_key", "endpoint_public_key", "endpoint_secret_key")


def credentials(service_url: Optional[str] = None) -> tuple[str, str]:
    """The service URL and the user's token: ``service_url`` (the config's) or ``$PARSL_LITE_FAAS_URL`` or
    client.json's; ``$PARSL_LITE_FAAS_TOKEN`` or client.json's.

    Raises:
        ServiceError: neither is known (no client.json: the service was never started here).
    """
    client = paths.read_client_file() or {}
    url = service_url or os.environ.get(paths.URL_ENV) or client.get("service_url")
    token = os.environ.get(paths.TOKEN_ENV) or client.get("token")
    if not url or not token:
        raise ServiceError(0, f"no service URL or token: set service_url in the endpoint's config.toml and "
                              f"${paths.TOKEN_ENV}, or start the service here (it writes {paths.client_file()})",
                           "no_credentials")
    return url.rstrip("/"), token


def call(method: str, url: str, token: str, body: Optional[dict] = None, timeout_s: float = 30.0) -> Any:
    """One JSON request to the service; its error body becomes a :class:`ServiceError`.

    Raises:
        ServiceError: an HTTP error (status and the body's reason), or the service cannot be reached
            (status 0).
    """
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())
            reason, code = error.get("reason", str(exc)), error.get("error", "error")
        except Exception:
            reason, code = str(exc), "error"
        raise ServiceError(exc.code, f"{method} {url}: {reason}", code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServiceError(0, f"{method} {url}: cannot reach the service ({reason})", "unreachable") from None


def read_identity(directory: Path) -> Optional[dict]:
    """The saved registration, or None."""
    try:
        with open(directory / IDENTITY_FILE) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), str) for k in _KEYS):
        raise ValueError(f"{directory / IDENTITY_FILE}: expected a JSON object with {', '.join(_KEYS)}")
    return data


def write_identity(directory: Path, identity: dict) -> None:
    """Save it with mode 0600 from the start (the secret key is in it), atomically."""
    path = directory / IDENTITY_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(identity, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def ensure_registered(directory: Path, name: str, settings: Any) -> dict:
    """The endpoint's identity: the saved one, or a new registration (saved before it is returned).

    Re-registers under the saved id when the config's ``allowed_functions``, ``public`` or
    ``shared_with`` differ from what was registered (the service enforces them too); registers
    anew when the config's ``service_url`` names another service than the one it registered with.

    Raises:
        ServiceError: registration was refused (reason from the service) or the service is unreachable.
    """
    saved = read_identity(directory)
    wanted = {"allowed_functions": list(settings.allowed_functions), "public": settings.public,
              "shared_with": list(settings.shared_with)}
    moved = (saved is not None and settings.service_url is not None
             and saved.get("service_url") != settings.service_url.rstrip("/"))
    if saved is not None and not moved and all(saved.get(k) == v for k, v in wanted.items()):
        return saved
    url, token = credentials(settings.service_url)
    body: dict[str, Any] = {"name": name, **wanted}
    if saved is not None and not moved:
        body["endpoint_id"] = saved["endpoint_id"]
    reply = call("POST", f"{url}{API_PREFIX}/endpoints", token, body)
    if not isinstance(reply, dict) or any(not isinstance(reply.get(k), str) for k in _KEYS):
        raise ServiceError(200, f"POST {url}{API_PREFIX}/endpoints: unexpected reply {str(reply)[:200]}",
                           "bad_reply")
    identity = {**{k: reply[k] for k in _KEYS}, **wanted, "service_url": url}
    write_identity(directory, identity)
    return identity


def unregister(directory: Path, service_url: Optional[str] = None) -> Optional[str]:
    """``DELETE /v1/endpoints/ID`` for the saved identity; returns the id, or None if never registered.

    Raises:
        ServiceError: the service refused (an unknown id, 404, is not an error: it is gone already).
    """
    saved = read_identity(directory)
    if saved is None:
        return None
    url, token = credentials(service_url or saved.get("service_url"))
    try:
        call("DELETE", f"{url}{API_PREFIX}/endpoints/{saved['endpoint_id']}", token)
    except ServiceError as exc:
        if exc.http_status != 404:
            raise
    return saved["endpoint_id"]
