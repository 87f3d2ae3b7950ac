"""``parsl-lite service start|stop|status|add-user``: the local function service as a daemon.

``start`` runs ``python -m parsl_lite.faas.service.server`` detached (its
log in the service directory), waits for its ``service.json``, creates the
``admin`` user on first start and writes ``$PARSL_LITE_HOME/faas/client.json``
(0600) for it when that file is absent or names another service. A service
already running is left alone (its URL is printed).

Only argparse at import time: ``parsl-lite --help`` must stay fast.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from parsl_lite.daemons import if_running, runs_module, terminate

SERVICE_MODULE = "parsl_lite.faas.service"

ADMIN = "admin"
PORTS_FILE = "ports.json"
DEFAULT_ZMQ_PORT = 8766
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


def add_service_commands(commands: Any) -> None:
    service = commands.add_parser("service", help="the function service (start, stop, status, add-user)",
                                  description="Run and inspect the local function service.")
    sub = service.add_subparsers(dest="service_command", required=True)
    start = sub.add_parser("start", help="start the service as a daemon; prints its URL",
                           description="Start the service in the background (nothing happens if it runs "
                                       "already); prints its URL. On first start: creates the store, an admin "
                                       "user and $PARSL_LITE_HOME/faas/client.json (0600) with its token.")
    _dir_option(start)
    start.add_argument("--db", default="", help="store: an SQLite path, sqlite:///PATH or postgresql://... "
                                                "(default DIR/faas.db)")
    start.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    start.add_argument("--port", type=int, default=None,
                       help="HTTP port (default: the last run's, else 8765 if free, else any; 0: any)")
    start.add_argument("--endpoint-port", type=int, default=None,
                       help="ZMQ port endpoints connect to (default: the last run's, else 8766 if free, else any)")
    start.add_argument("--result-ttl", type=float, default=None, help="seconds a result is kept after its "
                                                                      "first fetch (default 7 days)")
    start.add_argument("--payload-limit", type=int, default=None, help="bytes of one payload or result "
                                                                       "(default 10 MB)")
    start.add_argument("--broker", action="store_true", help="also run the messaging broker (parsl_lite.messaging) "
                       "beside the service: its own port, the service's user tokens")
    start.add_argument("--broker-advertise", default="", metavar="HOST",
                       help="the host the broker's clients dial, when not --host")
    start.set_defaults(handler=_start)
    stop = sub.add_parser("stop", help="stop the service (SIGTERM) and wait until it has exited",
                          description="Stop the running service cleanly and wait for it to exit.")
    _dir_option(stop)
    stop.set_defaults(handler=_stop)
    status = sub.add_parser("status", help="URL, pid, tasks by state, endpoints online",
                            description="Say whether the service runs (exit 0) or not (exit 1), and what it holds.")
    _dir_option(status)
    status.add_argument("--db", default="", help="the store, when the service is not running (default DIR/faas.db)")
    status.set_defaults(handler=_status)
    add_user = sub.add_parser("add-user", help="create a user; prints its token",
                              description="Create a user of the service and print a token for it.")
    add_user.add_argument("name")
    add_user.add_argument("--admin", action="store_true", help="the user may create users")
    _dir_option(add_user)
    add_user.add_argument("--db", default="", help="the store, when the service is not running "
                                                   "(default DIR/faas.db)")
    add_user.set_defaults(handler=_add_user)


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=None,
                        help="the service's directory (default $PARSL_LITE_HOME/faas/service)")


def _service_dir(args: argparse.Namespace) -> Path:
    from parsl_lite.faas import paths
    return (args.dir or paths.service_dir()).resolve()


# ---------------------------------------------------------------- processes

def is_service_process(pid: int) -> bool:
    """``pid`` is alive and runs the service module (a pid reused by another program is not ours)."""
    return runs_module(pid, SERVICE_MODULE)


def running_service(directory: Path) -> Optional[dict[str, Any]]:
    """The ``service.json`` of the service running in ``directory``, or None (none, or a stale file)."""
    from parsl_lite.faas.service.server import read_service_file
    return if_running(read_service_file(directory), SERVICE_MODULE)


def server_command(directory: Path, options: dict[str, Any]) -> list[str]:
    """The server's command line: ``options`` keys are its long options with ``_`` for ``-``."""
    cmd = [sys.executable, "-m", "parsl_lite.faas.service.server", "--dir", str(directory)]
    for name, value in options.items():
        if value is True:                                  # a flag
            cmd.append(f"--{name.replace('_', '-')}")
        elif value is not None and value != "" and value is not False:
            cmd += [f"--{name.replace('_', '-')}", str(value)]
    return cmd


def launch(directory: Path, options: dict[str, Any], detach: bool = True) -> subprocess.Popen:
    """Start the server with its stdout and stderr in ``DIR/service.out``; a stale service.json goes first."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "service.json").unlink(missing_ok=True)
    with open(directory / "service.out", "ab") as out:
        return subprocess.Popen(server_command(directory, options), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=detach, close_fds=True)


def wait_started(directory: Path, proc: subprocess.Popen, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    """The service.json of ``proc`` once it is up.

    Raises:
        RuntimeError: the server exited first, or ``timeout_s`` passed; with the tail of its output.
    """
    from parsl_lite.faas.service.server import read_service_file
    deadline = time.monotonic() + timeout_s
    while True:
        info = read_service_file(directory)
        if info is not None and info.get("pid") == proc.pid:
            return info
        code = proc.poll()
        if code is not None or time.monotonic() > deadline:
            why = f"exited with code {code}" if code is not None else f"not up after {timeout_s:g} s"
            raise RuntimeError(f"the service in {directory} {why}:\n{_tail(directory)}")
        time.sleep(0.02)


def _tail(directory: Path, lines: int = 20) -> str:
    text = ""
    for name in ("service.out", "service.log"):
        try:
            text += (directory / name).read_text(errors="replace")
        except OSError:
            pass
    return "\n".join(text.splitlines()[-lines:])


def port_free(host: str, port: int) -> bool:
    """Whether a listener could bind ``host:port`` now (with SO_REUSEADDR, as the service's listeners do)."""
    import socket
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_ports(directory: Path, host: str, port: Optional[int], endpoint_port: Optional[int]) -> tuple[int, int]:
    """The HTTP and ZMQ ports: those asked for, else the last run's (endpoints and client.json know them),
    else 8765 and 8766 when free, else 0 (any free port)."""
    from parsl_lite.faas import api
    try:
        last = json.loads((directory / PORTS_FILE).read_text())
    except (OSError, ValueError):
        last = {}
    chosen = []
    for asked, key, default in ((port, "port", api.DEFAULT_PORT), (endpoint_port, "endpoint_port", DEFAULT_ZMQ_PORT)):
        if asked is not None:
            chosen.append(asked)
            continue
        previous = last.get(key) if isinstance(last, dict) else None
        candidates = ([previous] if isinstance(previous, int) and previous > 0 else []) + [default]
        chosen.append(next((p for p in candidates if port_free(host, p)), 0))
    return chosen[0], chosen[1]


def remember_ports(directory: Path, info: dict[str, Any]) -> None:
    """Keep the ports of this run for the next ``start``: a registered endpoint keeps dialling its zmq_url."""
    from urllib.parse import urlsplit
    ports = {"port": urlsplit(info["url"]).port,
             "endpoint_port": int(info["zmq_url"].rsplit(":", 1)[1]) if info.get("zmq_url") else None}
    (directory / PORTS_FILE).write_text(json.dumps(ports))


# ---------------------------------------------------------------- users and tokens

def create_user_token(db_url: str, username: str, is_admin: bool = False, create: bool = True) -> str:
    """A new token for ``username`` (created first if ``create`` and absent), written to the store directly.

    Raises:
        ValueError: ``create`` is False and there is no such user, or it is True and the user exists.
    """
    from parsl_lite.faas.service.auth import hash_token, new_token
    from parsl_lite.faas.service.store import open_store
    store = open_store(db_url)
    try:
        user = store.user_by_name(username)
        if create:
            if user is not None:
                raise ValueError(f"a user named {username!r} exists")
            user = store.create_user(username, is_admin)
        elif user is None:
            raise ValueError(f"no user named {username!r}")
        token = new_token()
        store.add_token(user.user_id, hash_token(token), "parsl-lite service")
        return token
    finally:
        store.close()


def admin_token(db_url: str) -> str:
    """A token of the admin user, creating that user on first start."""
    try:
        return create_user_token(db_url, ADMIN, is_admin=True, create=True)
    except ValueError:
        return create_user_token(db_url, ADMIN, create=False)


def ensure_client_file(url: str, db_url: str) -> Optional[Path]:
    """Write client.json for the admin if it is absent or names another service (returns it if written)."""
    from parsl_lite.faas import paths
    try:
        current = paths.read_client_file()
    except ValueError:
        current = None
    if current is not None and current["service_url"] == url:
        return None
    return paths.write_client_file(url, admin_token(db_url))


# ---------------------------------------------------------------- commands

def _start(args: argparse.Namespace) -> int:
    directory = _service_dir(args)
    info = running_service(directory)
    if info is None:
        port, endpoint_port = choose_ports(directory, args.host, args.port, args.endpoint_port)
        options = {"db": args.db, "host": args.host, "port": port, "endpoint_port": endpoint_port,
                   "result_ttl": args.result_ttl, "payload_limit": args.payload_limit,
                   "broker": args.broker, "broker_advertise": args.broker_advertise}
        try:
            info = wait_started(directory, launch(directory, options))
        except RuntimeError as exc:
            print(f"parsl-lite service start: {exc}", file=sys.stderr)
            return 1
        remember_ports(directory, info)
    written = ensure_client_file(info["url"], info["db"])
    print(info["url"])
    if written is not None:
        print(f"credentials of user {ADMIN!r} written to {written}", file=sys.stderr)
    return 0


def _stop(args: argparse.Namespace) -> int:
    directory = _service_dir(args)
    info = running_service(directory)
    if info is None:
        print(f"no service running in {directory}")
        return 0
    pid = info["pid"]
    if not terminate(pid, STOP_TIMEOUT_S):
        print(f"parsl-lite service stop: pid {pid} still runs {STOP_TIMEOUT_S:g} s after SIGTERM; "
              f"see {directory / 'service.log'}", file=sys.stderr)
        return 1
    print(f"stopped the service at {info['url']} (pid {pid})")
    return 0


def _status(args: argparse.Namespace) -> int:
    from parsl_lite.faas.service.store import open_store
    directory = _service_dir(args)
    info = running_service(directory)
    db = (info or {}).get("db") or args.db or str(directory / "faas.db")
    if info is None:
        print(f"service: not running (directory {directory})")
    else:
        print(f"service: running at {info['url']} (pid {info['pid']}), endpoints connect to {info['zmq_url']}")
        if isinstance(info.get("broker"), dict):
            print(f"messaging broker: {info['broker'].get('address')} (the users' tokens)")
    if db.startswith(("postgresql://", "postgres://")) or Path(db).exists():
        store = open_store(db)
        try:
            counts = store.count_tasks()
            endpoints = store.list_endpoints()
        finally:
            store.close()
        online = [e for e in endpoints if e.connected]
        print("tasks: " + ", ".join(f"{state} {n}" for state, n in counts.items()))
        print(f"endpoints: {len(online)} online of {len(endpoints)}"
              + "".join(f"\n  {e.name} {e.endpoint_id}" for e in online))
    return 0 if info is not None else 1


def _add_user(args: argparse.Namespace) -> int:
    directory = _service_dir(args)
    info = running_service(directory)
    db = (info or {}).get("db") or args.db or str(directory / "faas.db")
    try:
        token = create_user_token(db, args.name, is_admin=args.admin)
    except ValueError as exc:
        print(f"parsl-lite service add-user: {exc}", file=sys.stderr)
        return 1
    print(token)
    return 0
