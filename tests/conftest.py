"""Shared fixtures: a loaded kernel per test, in a run directory of its own; the test backends; ``wait_for``.

The Slurm, SSH and Kubernetes backends (``../shared/backends``) are started
before the first test, outside the 60 s per-test timeout: ``make test`` starts
them before pytest (each ``up`` under its own ``timeout``), and a plain pytest
run starts those its selected tests use in :func:`pytest_collection_finish`
(and stops them at the end). Their session fixtures only check ``status``.
A backend that cannot run here (not root, no script) skips its tests, except
under ``make test`` or CI (``PLITE_REQUIRE_BACKENDS=1`` or ``CI=true``), where
its tests fail.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, NoReturn, TypeVar

import pytest

import parsl_lite
from parsl_lite.config import Config
from parsl_lite.dataflow.loader import DataFlowKernelLoader
from parsl_lite.executors import ThreadPoolExecutor


T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float = 20.0, what: str = "a condition",
             interval_s: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises:
        AssertionError: naming ``what``, if ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


# ---------------------------------------------------------------- test backends

BACKENDS_DIR = Path(__file__).resolve().parents[2] / "shared" / "backends"
REQUIRE_BACKENDS = os.environ.get("PLITE_REQUIRE_BACKENDS") == "1" or os.environ.get("CI", "").lower() == "true"
BACKEND_UP_TIMEOUT_S = float(os.environ.get("PLITE_BACKEND_UP_TIMEOUT", "900"))  # a fresh machine installs packages


@dataclasses.dataclass(frozen=True)
class Backend:
    """A backend script and the environment its tests need it started with."""

    name: str
    env: dict[str, str]
    needs: str  # a fact that must be there (the mode the tests need)

    @property
    def script(self) -> Path:
        return BACKENDS_DIR / f"{self.name}.sh"

    def run(self, action: str, timeout_s: float) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(self.script), action], capture_output=True, text=True,
                              env={**os.environ, **self.env}, timeout=timeout_s)


# fixture name -> backend (Makefile's BACKEND_UPS starts the same ones with the same environment)
BACKENDS = {
    "slurm": Backend("slurm", {"PLITE_SLURM_CPUS": "8"}, "SLURM_PARTITION"),  # 8 CPUs: more 1-CPU blocks at once
    "ssh_hosts": Backend("ssh", {"WITH_H2": "1"}, "SSH_H2_HOST"),
    "k8s": Backend("k8s", {"WITH_NODE": "1"}, "K8S_IMAGE_HOST"),
    "postgres": Backend("postgres", {}, "PG_DSN"),
    "rabbitmq": Backend("rabbitmq", {}, "AMQP_URL"),
}
_started_here: list[Backend] = []


def backend_unavailable(message: str) -> NoReturn:
    """Skip a backend's tests; fail them under ``make test`` and CI, where every backend must run."""
    if REQUIRE_BACKENDS:
        pytest.fail(f"{message} (PLITE_REQUIRE_BACKENDS=1 or CI=true: a backend that cannot run fails its tests)",
                    pytrace=False)
    pytest.skip(message)


def _facts(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def _cannot_run(backend: Backend) -> str:
    if os.geteuid() != 0:
        return f"the {backend.name} test backend needs root (it starts daemons and network namespaces)"
    if not backend.script.is_file():
        return f"the {backend.name} test backend script is missing: {backend.script}"
    return ""


def backend_status(backend: Backend, settle_s: float = 0.0) -> tuple[bool, dict[str, str], str]:
    """``(up, facts, why not)`` from the script's ``status``.

    ``settle_s``: keep asking that long while it is up but unwell (a busy
    slurmctld misses a ping); "not up" is final at once.
    """
    deadline = time.monotonic() + settle_s
    while True:
        done = backend.run("status", 60)
        facts = _facts(done.stdout)
        if done.returncode == 0 and backend.needs in facts:
            return True, facts, ""
        why = (done.stderr.strip() or f"no {backend.needs} in its facts")[-2000:]
        if "not up" in why or time.monotonic() > deadline:
            return False, facts, why
        time.sleep(0.5)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the backends the selected tests use (not under make test, which did), before any test runs."""
    if REQUIRE_BACKENDS or session.config.option.collectonly:
        return
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ()) if name in BACKENDS}
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    say = reporter.write_line if reporter is not None else print
    for name in sorted(wanted):
        backend = BACKENDS[name]
        if _cannot_run(backend) or backend_status(backend, settle_s=5)[0]:
            continue
        say(f"starting the {backend.name} test backend ({backend.script} up)")
        started = time.monotonic()
        try:
            done = backend.run("up", BACKEND_UP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            say(f"{backend.name}.sh up took over {BACKEND_UP_TIMEOUT_S:.0f} s; its tests will fail")
            continue
        if done.returncode == 0:
            _started_here.append(backend)
            say(f"{backend.name} test backend up in {time.monotonic() - started:.0f} s")
        else:
            say(f"{backend.name}.sh up failed; its tests will fail:\n{done.stderr[-3000:]}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop what :func:`pytest_collection_finish` started (not what was up before)."""
    while _started_here:
        backend = _started_here.pop()
        backend.run("down", 120)


def use_backend(fixture_name: str) -> dict[str, str]:
    """The facts of a running backend, for its session fixture: checks ``status``, never starts it."""
    backend = BACKENDS[fixture_name]
    reason = _cannot_run(backend)
    if reason:
        backend_unavailable(reason)
    up, facts, why = backend_status(backend, settle_s=10)
    if not up:
        pytest.fail(f"the {backend.name} test backend is not up ({backend.script} status: {why}); "
                    f"make test starts it before pytest, as does a plain pytest run that selects its tests",
                    pytrace=False)
    return facts


@pytest.fixture(scope="session")
def slurm() -> dict[str, str]:
    """Slurm's facts (``SLURM_PARTITION``, ``SLURM_CPUS``...)."""
    return use_backend("slurm")


@pytest.fixture(scope="session")
def ssh_hosts() -> dict[str, str]:
    """The SSH backend's facts (``SSH_HOST``, ``SSH_H2_HOST``...)."""
    return use_backend("ssh_hosts")


@pytest.fixture(scope="session")
def k8s() -> dict[str, str]:
    """The Kubernetes backend's facts (``KUBECONFIG``, ``K8S_IMAGE_HOST``, ...); a node is running."""
    return use_backend("k8s")


@pytest.fixture(scope="session")
def postgres() -> dict[str, str]:
    """The PostgreSQL backend's facts (``PG_DSN``, ``PG_HOST``, ``PG_PORT``, ...)."""
    return use_backend("postgres")


@pytest.fixture(scope="session")
def rabbitmq() -> dict[str, str]:
    """The RabbitMQ backend's facts (``AMQP_URL``, ``AMQP_HOST``, ``AMQP_PORT``, ...)."""
    return use_backend("rabbitmq")


# ---------------------------------------------------------------- kernels


@pytest.fixture
def run_dir(tmp_path):
    return str(tmp_path / "runinfo")


@pytest.fixture
def make_dfk(run_dir):
    """Load a config (threads by default) and clean it up after the test."""
    loaded = []

    def _make(config: Config | None = None, **config_kwargs):
        if config is None:
            executors = config_kwargs.pop("executors", None) or [ThreadPoolExecutor(max_threads=4)]
            config = Config(executors=executors, run_dir=run_dir, **config_kwargs)
        dfk = parsl_lite.load(config)
        loaded.append(dfk)
        return dfk

    yield _make
    for dfk in loaded:
        dfk.cleanup()
    DataFlowKernelLoader.clear()


@pytest.fixture
def dfk(make_dfk):
    return make_dfk()


@pytest.fixture(autouse=True)
def no_kernel_left_behind():
    """Every test starts and ends without a loaded kernel or stray worker threads."""
    DataFlowKernelLoader.clear()
    before = {t.ident for t in threading.enumerate()}
    yield
    DataFlowKernelLoader.clear()

    def leaked() -> list[str]:
        return [t.name for t in threading.enumerate()
                if t.ident not in before and t.is_alive() and t.name.startswith("parsl_lite")]

    try:
        wait_for(lambda: not leaked(), 10, "threads of ours to end", interval_s=0.02)
    except AssertionError:
        raise AssertionError(f"threads left running: {leaked()}") from None
