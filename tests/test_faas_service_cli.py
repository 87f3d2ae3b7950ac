"""``parsl-lite service start|stop|status|add-user`` as a user runs them (subprocesses, a tmp PARSL_LITE_HOME)."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

import pytest

from parsl_lite.daemons import pid_alive
from parsl_lite.faas import paths
from parsl_lite.faas.service import cli
from parsl_lite.faas.service.server import read_service_file
from tests.faas_helpers import Service, call


def parsl_lite(*words, timeout=90):
    return subprocess.run([sys.executable, "-m", "parsl_lite.cli", *words], capture_output=True, text=True,
                          timeout=timeout, env=os.environ.copy())


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A PARSL_LITE_HOME of its own; any service left running in it is stopped by pid at the end."""
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(paths.URL_ENV, raising=False)
    monkeypatch.delenv(paths.TOKEN_ENV, raising=False)
    yield tmp_path / "home"
    info = read_service_file(paths.service_dir())
    if info and cli.is_service_process(info["pid"]):
        os.kill(info["pid"], signal.SIGTERM)
        from tests.conftest import wait_for
        wait_for(lambda: not pid_alive(info["pid"]), 20, "the service to exit")


def as_service(url, token):
    return Service(dir=paths.service_dir(), db_url="", options={}, proc=None, url=url, admin_token=token)


def test_start_status_add_user_stop(home):
    started = parsl_lite("service", "start", "--port", "0", "--endpoint-port", "0")
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert url.startswith("http://127.0.0.1:")
    client = paths.client_file()
    assert stat.S_IMODE(client.stat().st_mode) == 0o600
    creds = json.loads(client.read_text())
    assert creds["service_url"] == url
    status, me = call(as_service(url, creds["token"]), "GET", "/v1/whoami")
    assert status == 200 and me["username"] == "admin" and me["is_admin"]

    again = parsl_lite("service", "start")                        # already running: same URL, nothing new
    assert (again.returncode, again.stdout.strip()) == (0, url)
    assert json.loads(client.read_text()) == creds

    added = parsl_lite("service", "add-user", "alice")
    assert added.returncode == 0, added.stderr
    status, alice = call(as_service(url, added.stdout.strip()), "GET", "/v1/whoami")
    assert status == 200 and alice["username"] == "alice" and not alice["is_admin"]
    assert parsl_lite("service", "add-user", "alice").returncode == 1

    shown = parsl_lite("service", "status")
    assert shown.returncode == 0 and url in shown.stdout and "waiting-for-ep 0" in shown.stdout
    assert "endpoints: 0 online" in shown.stdout
    pid = read_service_file(paths.service_dir())["pid"]

    stopped = parsl_lite("service", "stop")
    assert stopped.returncode == 0 and str(pid) in stopped.stdout
    assert not pid_alive(pid) and read_service_file(paths.service_dir()) is None
    assert parsl_lite("service", "status").returncode == 1
    assert "no service running" in parsl_lite("service", "stop").stdout


def test_a_restart_keeps_its_ports_and_another_port_rewrites_client_json(home):
    first = parsl_lite("service", "start")
    assert first.returncode == 0, first.stderr
    info = read_service_file(paths.service_dir())
    creds = json.loads(paths.client_file().read_text())
    assert parsl_lite("service", "stop").returncode == 0
    again = parsl_lite("service", "start")           # registered endpoints keep dialling the same zmq_url
    assert again.stdout.strip() == info["url"]
    assert read_service_file(paths.service_dir())["zmq_url"] == info["zmq_url"]
    assert json.loads(paths.client_file().read_text()) == creds
    assert parsl_lite("service", "stop").returncode == 0
    moved = parsl_lite("service", "start", "--port", "0", "--endpoint-port", "0").stdout.strip()
    assert moved != info["url"]
    new = json.loads(paths.client_file().read_text())
    assert new["service_url"] == moved and new["token"] != creds["token"]
    for token in (creds["token"], new["token"]):               # the old admin token still works too
        assert call(as_service(moved, token), "GET", "/v1/whoami")[1]["username"] == "admin"


def test_a_stale_service_file_is_not_a_running_service(home):
    assert parsl_lite("service", "start", "--port", "0", "--endpoint-port", "0").returncode == 0
    info = read_service_file(paths.service_dir())
    os.kill(info["pid"], signal.SIGKILL)
    from tests.conftest import wait_for
    wait_for(lambda: not pid_alive(info["pid"]), 20, "the SIGKILLed service to be gone")
    assert read_service_file(paths.service_dir())["pid"] == info["pid"]     # left behind by the SIGKILL
    assert parsl_lite("service", "status").returncode == 1
    restarted = parsl_lite("service", "start", "--port", "0", "--endpoint-port", "0")
    assert restarted.returncode == 0 and restarted.stdout.strip().startswith("http://")
    assert read_service_file(paths.service_dir())["pid"] != info["pid"]


def test_help_of_each_command(home):
    for words in (["service"], ["service", "start"], ["service", "stop"], ["service", "status"],
                  ["service", "add-user"]):
        done = parsl_lite(*words, "--help")
        assert done.returncode == 0 and "usage:" in done.stdout, words
    assert "--db" in parsl_lite("service", "start", "--help").stdout


def test_a_service_that_cannot_start_says_why(home):
    done = parsl_lite("service", "start", "--db", "mysql://nowhere")
    assert done.returncode == 1 and "mysql://nowhere" in done.stderr
