"""Shared fixture of the function service's tests: a real endpoint daemon, started as a user would.

    service = start_service(tmp_path)                     # tests/faas_helpers.py
    ep = start_endpoint(service, "laptop", token, workers=2, allowed_functions=[fid])
    ep.endpoint_id, ep.pid
    ep.kill()        # SIGKILL the daemon (its interchange and pools follow it)
    ep.restart()     # start it again: same directory, same id; waits until the service sees it online
    ep.stop()        # parsl-lite endpoint stop (SIGTERM): EndpointBye, exit 0

``start_endpoint`` writes ``$PARSL_LITE_HOME/endpoints/NAME/config.toml``
(heartbeats short, so tests are fast), runs ``parsl-lite endpoint start NAME``
with the user's token in ``$PARSL_LITE_FAAS_TOKEN``, and waits until
``GET /v1/endpoints/ID/status`` says online. Keyword options go where they
belong: ``[endpoint]`` keys (``allowed_functions``, ``max_retries_on_system_failure``,
``heartbeat_period``, ...), the Config's scaling keys (``strategy``,
``max_idletime``, ``strategy_period``), provider keys (``init_blocks``,
``min_blocks``, ``max_blocks``, ``parallelism``, ``walltime``), and anything
else to the HighThroughputExecutor. ``PARSL_LITE_HOME`` must point at a test
directory (the ``faas_service`` fixture does that).

The ``faas_endpoints`` fixture yields ``start_endpoint`` and, at teardown,
stops every endpoint it started and checks that none of their processes
(daemon, interchange, worker pools) is left.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import psutil
import pytest

from parsl_lite.faas import paths
from parsl_lite.faas.endpoint.config import EndpointSettings

START_TIMEOUT_S = 45.0
_REPO = Path(__file__).resolve().parents[1]
_CONFIG_KEYS = {"strategy", "max_idletime", "strategy_period"}
_PROVIDER_KEYS = {"init_blocks", "min_blocks", "max_blocks", "parallelism", "walltime", "nodes_per_block"}
_ENDPOINT_KEYS = {f.name for f in fields(EndpointSettings)}


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # numbers and strings (JSON strings are TOML basic strings)


def endpoint_config_text(service_url: str, workers: int = 1, **options: Any) -> str:
    """A config.toml for a test endpoint: fast heartbeats, one block of ``workers`` workers."""
    endpoint = {"service_url": service_url, "heartbeat_period": 0.5, "heartbeat_threshold": 3.0}
    top = {"strategy": "simple", "max_idletime": 60.0, "strategy_period": 0.5}
    provider = {"init_blocks": 1, "min_blocks": 0, "max_blocks": 1}
    executor = {"heartbeat_period": 1, "heartbeat_threshold": 4, "max_workers_per_node": workers}
    for key, value in options.items():
        target = (endpoint if key in _ENDPOINT_KEYS else top if key in _CONFIG_KEYS
                  else provider if key in _PROVIDER_KEYS else executor)
        target[key] = value
    lines = [f"{k} = {_toml(v)}" for k, v in top.items()]
    lines += ["", "[endpoint]"] + [f"{k} = {_toml(v)}" for k, v in endpoint.items() if v is not None]
    lines += ["", "[[executors]]", 'type = "HighThroughputExecutor"', 'label = "htex"']
    lines += [f"{k} = {_toml(v)}" for k, v in executor.items()]
    lines += ["  [executors.provider]", '  type = "LocalProvider"'] + [f"  {k} = {_toml(v)}" for k, v in provider.items()]
    return "\n".join(lines) + "\n"


def _http(service: Any, method: str, path: str, token: str) -> tuple[int, Any]:
    from tests.faas_helpers import call
    return call(service, method, path, token=token)


@dataclass
class Endpoint:
    """A running endpoint daemon started by a test (every process it ever had is remembered, by pid)."""

    service: Any
    name: str
    token: str
    directory: Path
    endpoint_id: str = ""
    pid: int = 0
    start_output: str = ""
    processes: list[psutil.Process] = field(default_factory=list)   # daemon + descendants seen

    def _cli(self, *words: str, timeout_s: float = 90.0) -> subprocess.CompletedProcess:
        # The tests' functions are pickled by reference (tests.test_...): the endpoint's workers import them
        # from the repository, as a user's endpoint imports the user's installed modules.
        python_path = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, paths.TOKEN_ENV: self.token, "PYTHONPATH": python_path,
               paths.HOME_ENV: str(self.directory.parent.parent)}  # its own home, whatever the test's is now
        return subprocess.run([sys.executable, "-m", "parsl_lite.cli", "endpoint", *words, self.name],
                              capture_output=True, text=True, env=env, timeout=timeout_s)

    def start(self) -> "Endpoint":
        """``parsl-lite endpoint start NAME``; then wait until the service says it is online."""
        done = self._cli("start", "--timeout", str(START_TIMEOUT_S))
        self.start_output = done.stdout + done.stderr
        if done.returncode != 0:
            raise AssertionError(f"endpoint {self.name} did not start (exit {done.returncode}): {self.start_output}")
        self.endpoint_id = done.stdout.strip().splitlines()[-1]
        self.pid = int((self.directory / "endpoint.pid").read_text())
        self._remember()
        self.wait_online()
        return self

    def online(self) -> bool:
        status, body = _http(self.service, "GET", f"/v1/endpoints/{self.endpoint_id}/status", self.token)
        return status == 200 and body.get("status") == "online"

    def wait_online(self, timeout_s: float = START_TIMEOUT_S) -> None:
        from tests.conftest import wait_for
        wait_for(self.online, timeout_s, f"endpoint {self.endpoint_id} online at the service", interval_s=0.05)

    def alive(self) -> bool:
        return bool(self.pid) and psutil.pid_exists(self.pid) and any(
            p.pid == self.pid and _alive(p) for p in self.processes)

    def _remember(self) -> None:
        """Note the daemon and its descendants now (after a SIGKILL they are no longer its children)."""
        try:
            daemon = psutil.Process(self.pid)
            found = [daemon] + daemon.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        known = {(p.pid, p.create_time()) for p in self.processes if _alive(p)}
        for proc in found:
            try:
                if (proc.pid, proc.create_time()) not in known:
                    self.processes.append(proc)
            except psutil.NoSuchProcess:
                pass

    def status_file(self) -> dict:
        try:
            return json.loads((self.directory / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def kill(self) -> None:
        """SIGKILL the daemon, as a crash would; its executor's processes notice and follow."""
        self._remember()
        if self.pid and psutil.pid_exists(self.pid):
            os.kill(self.pid, signal.SIGKILL)
            _wait_gone([p for p in self.processes if p.pid == self.pid], 20)

    def restart(self) -> "Endpoint":
        """Start it again (same directory, same id): ``stop`` first if it still runs."""
        if self.alive():
            self.stop()
        return self.start()

    def stop(self) -> int:
        """``parsl-lite endpoint stop NAME``; returns its exit status once the daemon is gone."""
        self._remember()
        done = self._cli("stop")
        _wait_gone([p for p in self.processes if p.pid == self.pid], 30)
        return done.returncode

    def cleanup(self) -> list[str]:
        """Stop it and end whatever of its processes is left (by pid); return what had to be killed."""
        if self.alive():
            self.stop()
        leftovers = [p for p in self.processes if _alive(p)]
        try:
            _wait_gone(leftovers, 15)   # pools exit once their interchange is gone (heartbeat threshold)
        except AssertionError:
            pass
        stray = [p for p in leftovers if _alive(p)]
        for proc in stray:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        return [f"{p.pid}" for p in stray]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(procs: list[psutil.Process], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while any(_alive(p) for p in procs):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes still running after {timeout_s} s: {[p.pid for p in procs if _alive(p)]}")
        time.sleep(0.05)


def start_endpoint(service: Any, name: str, token: str, workers: int = 1, **config: Any) -> Endpoint:
    """Configure and start endpoint ``name`` of ``service`` for the user of ``token``; wait until online."""
    directory = paths.endpoint_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.toml").write_text(endpoint_config_text(service.url, workers, **config))
    return Endpoint(service, name, token, directory).start()


@pytest.fixture
def faas_endpoints():
    """``start_endpoint``; at teardown every endpoint started through it is stopped and leaves no process."""
    started: list[Endpoint] = []

    def start(service: Any, name: str, token: str, workers: int = 1, **config: Any) -> Endpoint:
        directory = paths.endpoint_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.toml").write_text(endpoint_config_text(service.url, workers, **config))
        endpoint = Endpoint(service, name, token, directory)
        started.append(endpoint)
        return endpoint.start()

    yield start
    stray = [pid for endpoint in started for pid in endpoint.cleanup()]
    assert not stray, f"endpoint processes left running (killed now): {stray}"


__all__ = ["Endpoint", "start_endpoint", "endpoint_config_text", "faas_endpoints"]
