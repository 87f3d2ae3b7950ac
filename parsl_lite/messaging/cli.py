"""``parsl-lite broker start|stop|status``: the messaging broker as a daemon.

``start`` runs ``python -m parsl_lite.messaging.broker`` detached (stdout and
stderr in ``broker.out``, its log in ``broker.log``, both in
``$PARSL_LITE_HOME/broker/`` or ``--dir``), waits for its ``broker.json`` and
prints its address. A broker already running is left alone. A restarted
broker keeps its token and its ports, so clients reconnect by themselves.

Only argparse at import time: ``parsl-lite --help`` must stay fast.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from parsl_lite.daemons import if_running, runs_module, terminate

BROKER_MODULE = "parsl_lite.messaging.broker"

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
STATUS_TIMEOUT_S = 10.0


def add_broker_commands(commands: Any) -> None:
    broker = commands.add_parser("broker", help="the messaging broker (start, stop, status)",
                                 description="Run and inspect the messaging broker (topics, queues, tables).")
    sub = broker.add_subparsers(dest="broker_command", required=True)
    start = sub.add_parser("start", help="start the broker as a daemon; prints its address")
    _dir_option(start)
    start.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    start.add_argument("--advertise", default="", metavar="HOST",
                       help="the host clients and workers on other machines dial, when it is not --host "
                            "(e.g. --host 0.0.0.0 --advertise node01)")
    start.add_argument("--port", type=int, default=0, help="request port (default: the last run's, else any)")
    start.set_defaults(handler=_start)
    stop = sub.add_parser("stop", help="stop the broker (SIGTERM) and wait until it has exited")
    _dir_option(stop)
    stop.set_defaults(handler=_stop)
    status = sub.add_parser("status", help="address, pid, queues, topic counters (exit 1 if not running); "
                                           "without --dir also the broker the function service hosts")
    _dir_option(status)
    status.add_argument("--service-dir", type=Path, default=None,
                        help="the function service's directory, for the broker it hosts "
                             "(default $PARSL_LITE_HOME/faas/service)")
    status.set_defaults(handler=_status)


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=None, help="the broker's directory "
                                                               "(default $PARSL_LITE_HOME/broker)")


def _directory(args: argparse.Namespace) -> Path:
    from parsl_lite.messaging.paths import broker_dir
    return (args.dir or broker_dir()).resolve()


def is_broker_process(pid: int) -> bool:
    """``pid`` is alive and runs the broker module (a reused pid is not ours)."""
    return runs_module(pid, BROKER_MODULE)


def running_broker(directory: Path) -> Optional[dict[str, Any]]:
    """The ``broker.json`` of the broker running in ``directory``, or None (none, or a stale file)."""
    from parsl_lite.messaging.paths import read_info
    return if_running(read_info(directory), BROKER_MODULE)


def launch(directory: Path, host: str = "127.0.0.1", port: int = 0, advertise: str = "") -> subprocess.Popen:
    """Start the broker detached (a stale broker.json removed first)."""
    from parsl_lite.messaging.paths import INFO_FILE
    directory.mkdir(parents=True, exist_ok=True)
    (directory / INFO_FILE).unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "parsl_lite.messaging.broker", "--dir", str(directory), "--host", host]
    if port:
        cmd += ["--port", str(port)]
    if advertise:
        cmd += ["--advertise", advertise]
    with open(directory / "broker.out", "ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)


def wait_started(directory: Path, proc: subprocess.Popen, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    """The broker.json of ``proc`` once it is up.

    Raises:
        RuntimeError: the broker exited first or ``timeout_s`` passed; with the tail of its output.
    """
    from parsl_lite.messaging.paths import read_info
    deadline = time.monotonic() + timeout_s
    while True:
        info = read_info(directory)
        if info is not None and info.get("pid") == proc.pid:
            return info
        code = proc.poll()
        if code is not None or time.monotonic() > deadline:
            why = f"exited with code {code}" if code is not None else f"not up after {timeout_s:g} s"
            tail = ""
            for name in ("broker.out", "broker.log"):
                try:
                    tail += (directory / name).read_text(errors="replace")
                except OSError:
                    pass
            raise RuntimeError(f"the broker in {directory} {why}:\n" + "\n".join(tail.splitlines()[-20:]))
        time.sleep(0.02)


def _start(args: argparse.Namespace) -> int:
    directory = _directory(args)
    info = running_broker(directory)
    if info is None:
        try:
            info = wait_started(directory, launch(directory, args.host, args.port, args.advertise))
        except RuntimeError as exc:
            print(f"parsl-lite broker start: error: {exc}", file=sys.stderr)
            return 1
        print(f"broker started: {info['address']} (pid {info['pid']}, {directory})")
    else:
        print(f"broker already running: {info['address']} (pid {info['pid']})")
    return 0


def _stop(args: argparse.Namespace) -> int:
    directory = _directory(args)
    info = running_broker(directory)
    if info is None:
        print(f"no broker running in {directory}")
        return 0
    if not terminate(info["pid"], STOP_TIMEOUT_S):
        print(f"parsl-lite broker stop: pid {info['pid']} still running after {STOP_TIMEOUT_S:g} s",
              file=sys.stderr)
        return 1
    print(f"broker stopped (pid {info['pid']})")
    return 0


def _status(args: argparse.Namespace) -> int:
    """RabbitMQ when ``PARSL_LITE_BROKER_URL`` names one (and no ``--dir``); else the broker of ``--dir`` (or
    the default directory); else (with no ``--dir``, or with ``--service-dir``) the one the function service
    hosts (``parsl-lite service start --broker``). Exit 0 when one runs and answers, 1 otherwise."""
    from parsl_lite.messaging.paths import URL_ENV
    directory = _directory(args)
    url = os.environ.get(URL_ENV, "")
    if not args.dir and url.startswith(("amqp://", "amqps://")):
        from parsl_lite.messaging.amqp import without_password
        return _print_stats(f"RabbitMQ at {without_password(url)} ({URL_ENV})", url, "", directory)
    info = running_broker(directory)
    if info is not None:
        return _print_stats(f"broker running: {info['address']} (pid {info['pid']}, {directory})",
                            info["address"], info["token"], directory)
    hosted = hosted_broker(args.service_dir) if args.service_dir or not args.dir else None
    if hosted is None:
        print(f"no broker running in {directory}" + (", and no function service" if not args.dir else ""))
        return 1
    service, broker_info, token = hosted
    if broker_info is None:
        print(f"no broker running in {directory}, and the function service at {service['url']} hosts none "
              f"(start it with `parsl-lite service start --broker`)")
        return 1
    return _print_stats(f"broker running: {broker_info['address']} (hosted by the function service at "
                        f"{service['url']}, pid {service['pid']})", broker_info["address"], token, directory)


def hosted_broker(service_dir: Optional[Path] = None) -> Optional[tuple[dict[str, Any], Optional[dict], str]]:
    """``(service.json, its "broker" or None, the broker's token)`` of the function service running in
    ``service_dir`` (default: this user's), or None when no service runs there."""
    from parsl_lite.faas import paths as faas_paths
    from parsl_lite.faas.service.cli import running_service
    directory = (service_dir or faas_paths.service_dir()).resolve()
    service = running_service(directory)
    if service is None:
        return None
    broker_info = service.get("broker") if isinstance(service.get("broker"), dict) else None
    try:
        token = (directory / "broker" / "token").read_text().strip()
    except OSError:
        token = ""
    return service, broker_info, token


def _print_stats(headline: str, address: str, token: str, directory: Path) -> int:
    from parsl_lite.messaging.errors import MessagingError
    client: Any
    if address.startswith(("amqp://", "amqps://")):
        from parsl_lite.messaging.amqp import AmqpClient
        client = AmqpClient(address, "PARSL_LITE_BROKER_URL")
    else:
        from parsl_lite.messaging.client import BrokerClient
        client = BrokerClient(address, token, str(directory), request_timeout_s=STATUS_TIMEOUT_S)
    try:
        stats = client.stats()
    except MessagingError as exc:
        print(f"{headline}\nparsl-lite broker status: it does not answer: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(headline)
    print(json.dumps(stats, indent=2, sort_keys=True))
    return 0
