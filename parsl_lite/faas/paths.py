"""Where the function service keeps its files on a user's machine, and the client's credentials file.

Everything lives under ``$PARSL_LITE_HOME`` (default ``~/.parsl_lite``), so a
test (or a second installation) relocates all of it with one variable:

    $PARSL_LITE_HOME/faas/client.json        service URL + token of this user (0600)
    $PARSL_LITE_HOME/faas/service/           the local service: store, keys, pid file, log
    $PARSL_LITE_HOME/endpoints/NAME/         one endpoint: config.toml, keys, pid file, log, spool
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

HOME_ENV = "PARSL_LITE_HOME"
URL_ENV = "PARSL_LITE_FAAS_URL"
TOKEN_ENV = "PARSL_LITE_FAAS_TOKEN"


def home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".parsl_lite")


def service_dir() -> Path:
    return home() / "faas" / "service"


def client_file() -> Path:
    return home() / "faas" / "client.json"


def endpoints_dir() -> Path:
    return home() / "endpoints"


def endpoint_dir(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"endpoint name {name!r}: use letters, digits, '-' and '_'")
    return endpoints_dir() / name


def write_client_file(service_url: str, token: str, path: Optional[Path] = None) -> Path:
    """Write the credentials file with mode 0600 from the start (never world-readable, even briefly)."""
    path = path or client_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"service_url": service_url, "token": token}, f)
    os.chmod(path, 0o600)
    return path


def read_client_file(path: Optional[Path] = None) -> Optional[dict]:
    """The ``{"service_url", "token"}`` of the credentials file, or None if there is none."""
    path = path or client_file()
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("service_url"), str) \
            or not isinstance(data.get("token"), str):
        raise ValueError(f"{path}: expected a JSON object with string fields 'service_url' and 'token'")
    return data
