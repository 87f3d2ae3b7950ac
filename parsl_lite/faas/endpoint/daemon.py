"""The endpoint daemon: ``python -m parsl_lite.faas.endpoint.daemon NAME`` (``parsl-lite endpoint start`` runs it).

One process per endpoint, everything in its directory::

    $PARSL_LITE_HOME/endpoints/NAME/
        config.toml        the [endpoint] table and its executor (config.py)
        endpoint.json      id and CurveZMQ keys from the registration (0600)
        endpoint.pid       this process, while it runs
        endpoint.log       its log
        status.json        Starting / Running / Disconnected / Stopped / Failed, workers, queue
        unacked_results/   results the service has not acknowledged yet (spool.py)
        runinfo/           the executor's run dir (interchange and worker pool logs)

Start: load the config (a bad field: exit 2), register if there is no
``endpoint.json`` (refused or unreachable: exit 1), start the executor and the
job status poller that scales its blocks (as the DataFlowKernel does) and the
report watch (a status report at once when blocks or workers change), then
run the session (``session.py``) until SIGTERM: ``EndpointBye``, stop the
poller and the executor, spool what completed meanwhile, exit 0. A hello the service refuses: exit 1.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from parsl_lite.daemons import runs_module
from parsl_lite.faas import paths
from parsl_lite.faas.endpoint import status as st

if TYPE_CHECKING:
    from parsl_lite.faas.endpoint.config import EndpointConfig

logger = logging.getLogger("parsl_lite.faas.endpoint")

PID_FILE = "endpoint.pid"
LOG_FILE = "endpoint.log"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
_DAEMON_MODULE = "parsl_lite.faas.endpoint.daemon"
REPORT_WATCH_PERIOD_S = 0.25


class ReportWatch:
    """Has the session report at once when blocks, workers or queues change, not at its next heartbeat.

    With the service's default heartbeat (5 s), ``endpoint status`` and
    ``get_endpoint_status`` would otherwise show a block PENDING with no worker
    for seconds after its pool connected and ran tasks. One thread, one
    interchange status query per period; reports only on a change.
    """

    def __init__(self, executor: object, session: object, period_s: float = REPORT_WATCH_PERIOD_S) -> None:
        self._executor, self._session, self._period_s = executor, session, period_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="parsl_lite-endpoint-report-watch", daemon=True)
        self._last: Optional[tuple] = None

    def start(self) -> "ReportWatch":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def _run(self) -> None:
        clock = st.BlockClock()
        while not self._stop.wait(self._period_s):
            try:
                changes = (st.report_changes(st.executor_report(self._executor, clock, time.time())),
                           getattr(getattr(self._session, "book", None), "outstanding", None))  # `list`'s QUEUE
            except Exception:  # the executor is stopping or restarting its interchange: try again
                logger.debug("report watch: no report this time", exc_info=True)
                continue
            if changes != self._last:
                if self._last is not None:
                    logger.debug("blocks, workers or queues changed: reporting now %s", changes)
                    self._session.report_soon()  # type: ignore[attr-defined]
                self._last = changes


def running_pid(directory: Path) -> Optional[int]:
    """The pid in the pid file if that process is alive and is an endpoint daemon; else None."""
    try:
        pid = int((Path(directory) / PID_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    # a stale pid file's number may even belong to someone else now
    return pid if runs_module(pid, _DAEMON_MODULE) else None


_pid_lock: Optional[int] = None  # the pid file's descriptor, locked for as long as this daemon runs


def _claim_pid_file(directory: Path) -> bool:
    """Write our pid, unless another daemon holds the file (an exclusive ``flock``: two starts at once
    cannot both win)."""
    global _pid_lock
    import fcntl

    fd = os.open(directory / PID_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _pid_lock = fd
    return True


def _release_pid_file(directory: Path) -> None:
    global _pid_lock
    path = directory / PID_FILE
    try:
        if int(path.read_text().strip()) == os.getpid():
            path.unlink()
    except (FileNotFoundError, ValueError):
        pass
    if _pid_lock is not None:
        os.close(_pid_lock)
        _pid_lock = None


def run(name: str) -> int:
    """Run endpoint ``name`` until SIGTERM; return the exit status."""
    from parsl_lite.log_utils import set_file_logger

    directory = paths.endpoint_dir(name)
    directory.mkdir(parents=True, exist_ok=True)
    set_file_logger(str(directory / LOG_FILE))
    if not _claim_pid_file(directory):
        other = running_pid(directory)
        message = f"endpoint {name} is already running" + (f" (pid {other})" if other else "")
        logger.error("%s", message)
        print(message, file=sys.stderr)
        return EXIT_FAILED
    logger.info("endpoint %s starting, pid %d, directory %s", name, os.getpid(), directory)
    st.write_status(directory, st.STARTING)
    try:
        return _run_claimed(name, directory)
    finally:
        _release_pid_file(directory)


def _failed(directory: Path, reason: str, code: int, endpoint_id: str = "") -> int:
    logger.error("endpoint failed: %s", reason)
    st.write_status(directory, st.FAILED, reason=reason, endpoint_id=endpoint_id)
    return code


def _run_claimed(name: str, directory: Path) -> int:
    from parsl_lite.errors import ConfigurationError
    from parsl_lite.faas.endpoint.config import CONFIG_FILE, load_endpoint_config
    from parsl_lite.faas.endpoint.registration import ensure_registered
    from parsl_lite.faas.errors import ServiceError

    try:
        loaded = load_endpoint_config(directory / CONFIG_FILE)
    except ConfigurationError as exc:
        return _failed(directory, f"configuration error: {exc}", EXIT_CONFIG)
    try:
        identity = ensure_registered(directory, name, loaded.settings)
    except (ServiceError, ValueError) as exc:
        return _failed(directory, f"registration failed: {exc}", EXIT_FAILED)
    endpoint_id = identity["endpoint_id"]
    logger.info("endpoint %s has id %s", name, endpoint_id)
    # the service it registered with is where its workers' messaging broker is found (a service started
    # with --broker; parsl_lite.messaging.paths.service_broker), also when only config.toml names it
    os.environ[paths.URL_ENV] = identity["service_url"]
    try:
        return _serve(loaded, identity, directory)
    except Exception as exc:
        logger.exception("endpoint %s crashed", endpoint_id)
        return _failed(directory, f"{type(exc).__name__}: {exc}", EXIT_FAILED, endpoint_id)


def _serve(loaded: "EndpointConfig", identity: dict, directory: Path) -> int:
    """Start the executor and its scaling, run the session until told to stop, then stop everything."""
    from parsl_lite.faas.endpoint.session import Session
    from parsl_lite.jobs.job_status_poller import JobStatusPoller

    config, executor = loaded.config, loaded.executor
    executor.set_run_dir(config.run_dir)
    poller = JobStatusPoller(strategy=config.strategy, max_idletime=config.max_idletime,
                             strategy_period=config.strategy_period)
    session: Optional[Session] = None
    watch: Optional[ReportWatch] = None
    stop_reason: list[str] = []

    def on_signal(signum: int, frame: object) -> None:
        stop_reason.append(f"stopped by {signal.Signals(signum).name}")
        if session is not None:
            session.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        executor.start()
        poller.add_executors([executor])  # starts the initial blocks now, then scales them
        session = Session(identity, loaded.settings, executor, directory)
        if stop_reason:  # a signal while the executor was starting
            session.stop()
        watch = ReportWatch(executor, session).start()
        session.run()
    finally:
        if watch is not None:
            watch.stop()  # before the session closes its wake pipe
        reason = stop_reason[0] if stop_reason else "stopped"
        logger.info("endpoint %s stopping: %s", identity["endpoint_id"], reason)
        if session is not None:
            session.say_bye(reason)
        poller.close()
        executor.shutdown()
        if session is not None:
            session.finish()
    if session.refused is not None:
        return _failed(directory, f"the service refused this endpoint: {session.refused}", EXIT_FAILED,
                       identity["endpoint_id"])
    st.write_status(directory, st.STOPPED, endpoint_id=identity["endpoint_id"], reason=reason)
    logger.info("endpoint %s stopped", identity["endpoint_id"])
    return EXIT_OK


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {_DAEMON_MODULE}",
                                     description="run an endpoint of the function service in the foreground")
    parser.add_argument("name", help="the endpoint's name (its directory under $PARSL_LITE_HOME/endpoints)")
    args = parser.parse_args(argv)
    return run(args.name)


if __name__ == "__main__":
    sys.exit(main())
