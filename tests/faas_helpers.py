"""Shared fixture of the function service's tests: a real service process, its admin, plain HTTP calls.

    service = start_service(tmp_path, result_ttl=2)     # python -m parsl_lite.faas.service.server
    status, body = call(service, "GET", "/v1/whoami")   # as the admin (token=... for another user)
    token = add_user(service, "alice")
    service.kill(); service.restart()                    # SIGKILL, then the same dir, store and ports

``faas_service`` (a pytest fixture) also points ``PARSL_LITE_HOME`` at a
temporary directory and writes the admin's ``client.json`` there, so
``FuncXClient()`` finds the service by itself.
"""
from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

import pytest

from parsl_lite.daemons import pid_alive
from parsl_lite.faas import api, paths
from parsl_lite.faas.service import cli

STOP_TIMEOUT_S = 20.0


@dataclass
class Service:
    """A running service process started by a test (``kill``/``restart``/``stop`` act on it by pid)."""

    dir: Path
    db_url: str
    options: dict[str, Any]
    proc: subprocess.Popen
    url: str = ""
    zmq_url: str = ""
    service_id: str = ""
    admin_token: str = ""
    history: list[int] = field(default_factory=list)   # pids of every process this object started

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 0

    @property
    def endpoint_port(self) -> int:
        return int(self.zmq_url.rsplit(":", 1)[1]) if self.zmq_url else 0

    def _up(self) -> None:
        info = cli.wait_started(self.dir, self.proc)
        self.url, self.zmq_url, self.service_id = info["url"], info["zmq_url"], info["service_id"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: nothing is flushed or closed (what a crash does)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> int:
        """SIGTERM and wait (SIGKILL if it does not exit in time: the test then fails on the exit code)."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        return self.proc.returncode

    def restart(self, **changes: Any) -> "Service":
        """Stop it if it runs, then start it again on the same directory, store and ports."""
        self.stop()
        options = {**self.options, "port": self.port, "endpoint_port": self.endpoint_port or None, **changes}
        self.options = options
        self.proc = cli.launch(self.dir, {"db": self.db_url, **options}, detach=False)
        self.history.append(self.proc.pid)
        self._up()
        return self


def start_service(tmp_path: Path, db_url: Optional[str] = None, **options: Any) -> Service:
    """A service process in a directory of its own under ``tmp_path``, with its admin's token.

    Args:
        db_url: the store (default: an SQLite file in the service's directory).
        options: the server's options with ``_`` for ``-``: ``result_ttl``, ``payload_limit``,
            ``heartbeat_period``, ``host``, ``port``, ``endpoint_port``.
    """
    n = 0
    while (tmp_path / f"service{n}").exists():
        n += 1
    directory = (tmp_path / f"service{n}").resolve()
    db = db_url or str(directory / "faas.db")
    proc = cli.launch(directory, {"db": db, **options}, detach=False)
    service = Service(dir=directory, db_url=db, options=dict(options), proc=proc, history=[proc.pid])
    try:
        service._up()
        service.admin_token = cli.admin_token(db)
    except BaseException:
        service.kill()
        raise
    return service


def call(service: Service, method: str, path: str, body: Any = None, token: Optional[str] = None,
         raw: Optional[bytes] = None, headers: Optional[dict[str, str]] = None) -> tuple[int, Any]:
    """One HTTP request; ``(status, parsed JSON body)``. ``token=""`` sends no Authorization header."""
    token = service.admin_token if token is None else token
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(service.url + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        text = exc.read()
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text.decode(errors="replace")


def add_user(service: Service, name: str) -> str:
    """A new (non-admin) user of ``service``; returns its token."""
    status, body = call(service, "POST", "/v1/users", {"username": name})
    assert status == 200, (status, body)
    return body["token"]


def register_function(service: Service, token: Optional[str] = None, code: bytes = b"function body",
                      **fields: Any) -> str:
    """A function registered over HTTP (the body is opaque to the service); returns its id."""
    body = {"function_name": "double", "function_code": api.b64(code), **fields}
    status, reply = call(service, "POST", "/v1/functions", body, token=token)
    assert status == 200, (status, reply)
    return reply["function_id"]


def register_endpoint(service: Service, token: Optional[str] = None, name: str = "laptop", **fields: Any) -> dict:
    """``POST /v1/endpoints``'s reply (id, keys, zmq_url) for an endpoint that does not run."""
    status, reply = call(service, "POST", "/v1/endpoints", {"name": name, **fields}, token=token)
    assert status == 200, (status, reply)
    return reply


def submit(service: Service, function_id: str, endpoint_id: str, token: Optional[str] = None, n: int = 1,
           payload: bytes = b"args", **fields: Any) -> tuple[int, Any]:
    """``POST /v1/submit`` of ``n`` tasks of one function to one endpoint."""
    tasks = [{"function_id": function_id, "endpoint_id": endpoint_id, "payload": api.b64(payload)}] * n
    return call(service, "POST", "/v1/submit", {"tasks": tasks, "versions": "Python 3, parsl_lite 0", **fields},
                token=token)


def unique(name: str) -> str:
    """``name`` made unique (users and endpoint names of tests that share one service)."""
    import uuid
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def module_service(tmp_path_factory: pytest.TempPathFactory):
    """One service for a whole test module (tests that need no fresh store): its users must be ``unique``."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("faas")
        mp.setenv(paths.HOME_ENV, str(home / "home"))
        service = start_service(home)
        try:
            yield service
        finally:
            service.stop()
            assert not any(pid_alive(pid) for pid in service.history), "a service process was left running"


@contextlib.contextmanager
def client_home_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any) -> Iterator[Service]:
    """A service with ``PARSL_LITE_HOME`` in ``tmp_path`` and the admin's client.json there; stopped at the end."""
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(paths.URL_ENV, raising=False)
    monkeypatch.delenv(paths.TOKEN_ENV, raising=False)
    service = start_service(tmp_path, **options)
    try:
        paths.write_client_file(service.url, service.admin_token)
        yield service
    finally:
        service.stop()
        assert not any(pid_alive(pid) for pid in service.history), "a service process was left running"


@pytest.fixture
def faas_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A service for one test (:func:`client_home_service`)."""
    with client_home_service(tmp_path, monkeypatch) as service:
        yield service


__all__ = ["Service", "start_service", "call", "add_user", "register_function", "register_endpoint", "submit",
           "unique", "module_service", "faas_service", "client_home_service"]
