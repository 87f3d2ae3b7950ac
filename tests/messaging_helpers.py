"""Shared fixture of the messaging tests: a real broker process in a temporary ``PARSL_LITE_HOME``.

    broker = start_broker(tmp_path)        # python -m parsl_lite.messaging.broker, as `parsl-lite broker start`
    broker.kill(); broker.restart()        # SIGKILL, then the same directory, store, token and ports

``amqp``: the same API on the test suite's RabbitMQ server instead (``PARSL_LITE_BROKER_URL=amqp://...``).
"""
from __future__ import annotations

import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from parsl_lite import messaging as msg
from parsl_lite.messaging import cli, paths

STOP_TIMEOUT_S = 20.0


@dataclass
class Broker:
    """A broker process started by a test (acted on by its pid only)."""
    dir: Path
    proc: subprocess.Popen
    info: dict[str, Any]

    @property
    def address(self) -> str:
        return self.info["address"]

    @property
    def token(self) -> str:
        return self.info["token"]

    def kill(self) -> None:
        """SIGKILL: nothing flushed or closed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        return self.proc.returncode

    def restart(self) -> None:
        self.proc = cli.launch(self.dir, self.info.get("address", "tcp://127.0.0.1:0").rsplit(":", 1)[0][6:])
        self.info = cli.wait_started(self.dir, self.proc)


def start_broker(home: Path, host: str = "127.0.0.1") -> Broker:
    directory = home / "broker"
    proc = cli.launch(directory, host)
    return Broker(directory, proc, cli.wait_started(directory, proc))


@pytest.fixture
def broker(tmp_path, monkeypatch) -> Iterator[Broker]:
    """A broker in ``tmp_path/home``; ``PARSL_LITE_HOME`` points there, so ``msg.*`` finds it."""
    home = tmp_path / "home"
    monkeypatch.setenv("PARSL_LITE_HOME", str(home))
    monkeypatch.delenv(paths.URL_ENV, raising=False)
    monkeypatch.delenv(paths.TOKEN_ENV, raising=False)
    msg.reset_default_client()
    b = start_broker(home)
    try:
        yield b
    finally:
        msg.reset_default_client()
        assert b.stop() == 0, (b.dir / "broker.out").read_text(errors="replace")[-2000:]


@pytest.fixture
def amqp(rabbitmq, monkeypatch, tmp_path) -> Iterator[dict[str, str]]:
    """``msg.*`` on the ``rabbitmq`` fixture's server (``PARSL_LITE_HOME`` in ``tmp_path/home``, no broker there)."""
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(paths.URL_ENV, rabbitmq["AMQP_URL"])
    monkeypatch.delenv(paths.TOKEN_ENV, raising=False)
    msg.reset_default_client()
    yield rabbitmq
    msg.reset_default_client()
