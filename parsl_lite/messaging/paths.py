"""Where the broker keeps its files, and how a client finds it.

    $PARSL_LITE_HOME/broker/broker.json   address, topic addresses, token, pid (0600) while it runs
    $PARSL_LITE_HOME/broker/token         the token, kept across restarts (0600)
    $PARSL_LITE_HOME/broker/ports.json    the ports of the last run: a restarted broker keeps them
    $PARSL_LITE_HOME/broker/broker.db     queues and tables (SQLite, WAL)
    $PARSL_LITE_HOME/broker/broker.log    its log; broker.out its stdout and stderr

A client takes ``PARSL_LITE_BROKER_URL`` and ``PARSL_LITE_BROKER_TOKEN`` from
the environment when set, else ``broker.json``, else the broker hosted by the
user's function service (its URL and token from ``PARSL_LITE_FAAS_URL``/``_TOKEN``
or ``client.json``; ``GET /v1/broker`` says where it listens). The htex writes what the script found into its run
directory (``broker.env.json``, 0600: :func:`write_worker_file`) and every
pool it launches, on any provider, reads it (:func:`apply_worker_file`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

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


def locate(cached: bool = False) -> tuple[str, str, str]:
    """``(url, token, where)``: the broker this process should use, and where that came from.

    ``cached``: the function service's answer may be one it gave in the last ``SERVICE_ANSWER_TTL_S``.

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
    if info is not None and isinstance(info.get("address"), str) and isinstance(info.get("token"), str):
        return info["address"], info["token"], str(broker_dir() / INFO_FILE)
    hosted = service_broker(cached)
    if hosted is not None:
        return hosted
    raise BrokerNotFound(f"no broker: set {URL_ENV} and {TOKEN_ENV}, or start one with "
                         f"`parsl-lite broker start` (it writes {broker_dir() / INFO_FILE}) or "
                         f"`parsl-lite service start --broker`")


def service_broker(cached: bool = False) -> Optional[tuple[str, str, str]]:
    """The broker hosted by the user's function service (``parsl-lite service start --broker``), with the
    user's token: the service URL and token of ``PARSL_LITE_FAAS_URL``/``_TOKEN``, else ``client.json``'s
    (as an endpoint registers);
    the service says where its broker listens (``GET /v1/broker``). None: no service, or no broker there.

    Raises:
        BrokerNotFound: the service refuses the token or cannot be reached (with ``cached``, an
            answer or a failure of the last ``SERVICE_ANSWER_TTL_S`` is given again).
    """
    from parsl_lite.faas import paths as faas_paths
    try:
        client = faas_paths.read_client_file() or {}
    except (OSError, ValueError):
        client = {}
    url = os.environ.get(faas_paths.URL_ENV) or client.get("service_url")
    token = os.environ.get(faas_paths.TOKEN_ENV) or client.get("token")
    if not (url and token):
        return None
    key = (url, token)
    known = _SERVICE_ANSWERS.get(key) if cached else None
    if known is not None and time.monotonic() - known[0] < SERVICE_ANSWER_TTL_S:
        if isinstance(known[1], BrokerNotFound):
            raise known[1]
        return known[1]
    try:
        answer: Any = _ask_service_for_broker(url, token)
    except BrokerNotFound as exc:
        answer = exc
    _SERVICE_ANSWERS[key] = (time.monotonic(), answer)
    if isinstance(answer, BrokerNotFound):
        raise answer
    return answer


# The service's last answer per (url, token), for block launches (``cached``): every htex block launch asks
# where the broker is, and a user whose client.json names a service that is down must not wait a timeout per
# block. The client API asks afresh each time (a script may start the service, then use it).
SERVICE_ANSWER_TTL_S = 60.0
SERVICE_TIMEOUT_S = 3.0
_SERVICE_ANSWERS: dict[tuple[str, str], tuple[float, Any]] = {}


def _ask_service_for_broker(url: str, token: str) -> Optional[tuple[str, str, str]]:
    """``GET /v1/broker`` of the service at ``url`` (see :func:`service_broker`)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url.rstrip("/") + "/v1/broker", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=SERVICE_TIMEOUT_S) as response:
            info = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None      # an older service, or one started without --broker
        raise BrokerNotFound(f"the function service at {url} refused GET /v1/broker: {exc.code} {exc.reason}")
    except (OSError, ValueError) as exc:
        raise BrokerNotFound(f"the function service at {url} did not say where its broker is: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("address"), str):
        return None
    return info["address"], token, f"the function service's broker ({url}, the user's token)"


WORKER_FILE = "broker.env.json"


def write_worker_file(directory: str) -> Optional[str]:
    """Write the broker this process would use into ``directory`` (0600) for workers launched elsewhere.

    Returns the path, or None when this process knows no broker (workers then get nothing).
    """
    try:
        url, token, where = locate(cached=True)
    except BrokerNotFound:
        return None
    path = Path(directory) / WORKER_FILE
    write_private(path, json.dumps({URL_ENV: url, TOKEN_ENV: token, "from": where}))
    return str(path)


def apply_worker_file(path: str) -> bool:
    """Put the file's broker variables into ``os.environ`` unless a broker is already set there
    (a provider's ``worker_init`` exporting them wins). False when the file cannot be read."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    if not os.environ.get(URL_ENV) and isinstance(data, dict):
        for name in (URL_ENV, TOKEN_ENV):
            if isinstance(data.get(name), str) and data[name]:
                os.environ[name] = data[name]
    return True
