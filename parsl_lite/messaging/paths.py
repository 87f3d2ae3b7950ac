"""Where the broker keeps its files, and how a client finds it.

    $PARSL_LITE_HOME/broker/broker.json   address, topic addresses, token, pid (0600) while it runs
    $PARSL_LITE_HOME/broker/token         the token, kept across restarts (0600)
    $PARSL_LITE_HOME/broker/ports.json    the ports of the last run: a restarted broker keeps them
    $PARSL_LITE_HOME/broker/broker.db     queues and tables (SQLite, WAL)
    $PARSL_LITE_HOME/broker/broker.log    its log; broker.out its stdout and stderr

A client takes ``PARSL_LITE_BROKER_URL`` and ``PARSL_LITE_BROKER_TOKEN`` from
the environment when set, else ``broker.json``. Apps on the local htex
inherit the script's environment (and ``PARSL_LITE_HOME``), so they find the
same broker.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from parsl_lite.faas.paths import home
from parsl_lite.messaging.errors import BrokerNotFound

URL_ENV = "PARSL_LITE_BROKER_URL"
TOKEN_ENV = "PARSL_LITE_BROKER_TOKEN"
INFO_FILE = "broker.json"


def broker_dir() -> Path:
    return home() / "broker"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` with mode 0600 from the start, atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def read_info(directory: Optional[Path] = None) -> Optional[dict]:
    """The ``broker.json`` of ``directory`` (default :func:`broker_dir`), or None."""
    path = (directory or broker_dir()) / INFO_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def locate() -> tuple[str, str, str]:
    """``(url, token, where)``: the broker this process should use, and where that came from.

    Raises:
        BrokerNotFound: nothing names a broker.
    """
    url, token = os.environ.get(URL_ENV), os.environ.get(TOKEN_ENV)
    if url:
        if url.startswith(("amqp://", "amqps://")):
            return url, "", f"the environment ({URL_ENV}: RabbitMQ)"
        if not token:
            raise BrokerNotFound(f"{URL_ENV}={url} is set but {TOKEN_ENV} is not")
        return url, token, f"the environment ({URL_ENV}, {TOKEN_ENV})"
    info = read_info()
    if info is None or not isinstance(info.get("address"), str) or not isinstance(info.get("token"), str):
        raise BrokerNotFound(f"no broker: set {URL_ENV} and {TOKEN_ENV}, or start one with "
                             f"`parsl-lite broker start` (it writes {broker_dir() / INFO_FILE})")
    return info["address"], info["token"], str(broker_dir() / INFO_FILE)
