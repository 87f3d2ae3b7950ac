"""The function service's processes for a benchmark, started as a user starts them.

    stack = FaasStack(run_dir)                 # PARSL_LITE_HOME = run_dir/home (never the real home)
    stack.start_service()                      # python -m parsl_lite.faas.service.server (cli.launch)
    token = stack.add_user("bench")            # POST /v1/users with the admin's token
    ep_id = stack.start_endpoint("bench", token, workers=2)   # parsl-lite endpoint configure + start
    stack.kill_service(); stack.restart_service()             # SIGKILL, then the same dir, store, ports
    stack.stop()                               # endpoints (parsl-lite endpoint stop), then the service

Everything it starts it ends, by pid. The benchmark child's session is
killed by the runner afterwards anyway, so a failed measurement leaves
nothing behind either.
"""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 30.0
START_TIMEOUT_S = 60.0


class FaasStack:
    """One service (and the endpoint daemons of a benchmark) under one temporary ``PARSL_LITE_HOME``.

    Args:
        root: a fresh directory; the home and the service's directory go under it.
        options: the server's options (``result_ttl``, ``heartbeat_period``, ...; ``_`` for ``-``).
    """

    def __init__(self, root: Path, **options: Any) -> None:
        from parsl_lite.faas import paths
        self.root = root
        self.home = root / "home"
        os.environ[paths.HOME_ENV] = str(self.home)
        os.environ.pop(paths.URL_ENV, None)
        os.environ.pop(paths.TOKEN_ENV, None)
        self.dir = root / "service"
        self.db = str(self.dir / "faas.db")
        self.options = dict(options)
        self.proc: Optional[subprocess.Popen] = None
        self.url = ""
        self.zmq_url = ""
        self.admin_token = ""
        self.endpoints: dict[str, str] = {}   # name -> token, of endpoint daemons started here

    # ------------------------------------------------------------ the service
    def start_service(self) -> None:
        """Start the server, wait for service.json, create the admin (and client.json for it)."""
        from parsl_lite.faas import paths
        from parsl_lite.faas.service import cli
        self._launch(self.options)
        self.admin_token = cli.admin_token(self.db)
        paths.write_client_file(self.url, self.admin_token)

    def _launch(self, options: dict[str, Any]) -> None:
        from parsl_lite.faas.service import cli
        self.proc = cli.launch(self.dir, {"db": self.db, **options}, detach=False)
        try:
            info = cli.wait_started(self.dir, self.proc)
        except BaseException:
            self.kill_service()
            raise
        self.url, self.zmq_url = info["url"], info["zmq_url"]

    @property
    def pid(self) -> int:
        """The service process's pid (0 before it started)."""
        return self.proc.pid if self.proc is not None else 0

    def kill_service(self) -> None:
        """SIGKILL the service, as a crash would, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)

    def restart_service(self) -> None:
        """Start the service again on the same directory, store and both ports (endpoints reconnect)."""
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        endpoint_port = int(self.zmq_url.rsplit(":", 1)[1])
        self._launch({**self.options, "port": port, "endpoint_port": endpoint_port})

    def stop_service(self) -> None:
        """SIGTERM and wait (SIGKILL if it does not exit in time)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("service %d ignored SIGTERM for %g s: SIGKILL", self.proc.pid, STOP_TIMEOUT_S)
            self.kill_service()

    # ------------------------------------------------------------ HTTP
    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = None) -> Any:
        """One API call (``/v1`` prefixed here); the JSON reply.

        Raises:
            RuntimeError: a non-2xx answer, with its status and body.
        """
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/v1{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {token or self.admin_token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} /v1{path}: {exc.code} {exc.read()[:500]!r}") from None

    def add_user(self, name: str) -> str:
        """A new user of the service; its token."""
        return self.call("POST", "/users", {"username": name})["token"]

    # ------------------------------------------------------------ endpoint daemons
    def _cli(self, token: str, *words: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
        from parsl_lite.faas import paths
        env = {**os.environ, paths.TOKEN_ENV: token}
        return subprocess.run([sys.executable, "-m", "parsl_lite.cli", "endpoint", *words],
                              capture_output=True, text=True, env=env, timeout=timeout_s)

    def start_endpoint(self, name: str, token: str, workers: int, cores_per_worker: Optional[float] = None) -> str:
        """``parsl-lite endpoint configure NAME`` (W workers on one local block), then ``start``; its id.

        ``cores_per_worker`` below 1 lets W exceed the machine's cores (the htex caps workers at
        cores / cores_per_worker).

        Raises:
            RuntimeError: either command failed, with its output.
        """
        from parsl_lite.faas import paths
        done = self._cli(token, "configure", name)
        if done.returncode != 0:
            raise RuntimeError(f"endpoint configure {name}: {done.stdout}{done.stderr}")
        config = paths.endpoint_dir(name) / "config.toml"
        line = f"max_workers_per_node = {workers}"
        if cores_per_worker is not None:
            line += f"\ncores_per_worker = {cores_per_worker}"
        text = re.sub(r"(?m)^max_workers_per_node = \d+", line, config.read_text())
        config.write_text(text)
        self.endpoints[name] = token
        done = self._cli(token, "start", name, "--timeout", str(START_TIMEOUT_S))
        if done.returncode != 0:
            raise RuntimeError(f"endpoint start {name} (exit {done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout.strip().splitlines()[-1]

    def endpoint_pid(self, name: str) -> int:
        """The daemon's pid from its pid file (0 if absent)."""
        from parsl_lite.faas import paths
        try:
            return int((paths.endpoint_dir(name) / "endpoint.pid").read_text())
        except (OSError, ValueError):
            return 0

    def wait_online(self, endpoint_id: str, token: str, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until the service says the endpoint is online."""
        deadline = time.monotonic() + timeout_s
        while self.call("GET", f"/endpoints/{endpoint_id}/status", token=token).get("status") != "online":
            if time.monotonic() > deadline:
                raise TimeoutError(f"endpoint {endpoint_id} not online after {timeout_s:g} s")
            time.sleep(0.02)

    # ------------------------------------------------------------ teardown
    def stop(self) -> None:
        """Stop every endpoint started here (SIGKILL by pid if ``stop`` fails), then the service."""
        for name, token in list(self.endpoints.items()):
            pid = self.endpoint_pid(name)
            try:
                done = self._cli(token, "stop", name, timeout_s=STOP_TIMEOUT_S + 10)
                if done.returncode != 0:
                    logger.warning("endpoint stop %s: %s%s", name, done.stdout, done.stderr)
            except subprocess.TimeoutExpired:
                logger.warning("endpoint stop %s timed out", name)
            if pid and _alive(pid):
                os.kill(pid, signal.SIGKILL)
            del self.endpoints[name]
        self.stop_service()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
