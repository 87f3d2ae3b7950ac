"""``parsl-lite endpoint ...``: configure, start, stop and list endpoints of the function service.

Only argparse at import time: ``parsl-lite --help`` must stay fast.

Exit statuses scripts can rely on: 0 done (``start``: connected; ``stop``:
stopped or was not running); 1 failed (the reason is printed: refused,
unreachable, already running, unknown endpoint); 2 a configuration error (a
missing or invalid ``config.toml``, naming the field); 3 ``start`` timed out
before the endpoint connected (it keeps running and retrying: see its log).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

from parsl_lite.daemons import terminate

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_NOT_CONNECTED = 0, 1, 2, 3


def add_endpoint_commands(commands: Any) -> None:
    endpoint = commands.add_parser("endpoint", help="endpoints of the function service "
                                                    "(configure, start, stop, restart, list, status, delete)",
                                   description=__doc__.split("\n\n", 1)[0] + "\n\n" + __doc__.split("\n\n")[2],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = endpoint.add_subparsers(dest="endpoint_command", required=True)

    def command(name: str, handler: Any, help_text: str, needs_name: bool = True) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        if needs_name:
            parser.add_argument("name", help="the endpoint's name (a directory under $PARSL_LITE_HOME/endpoints)")
        parser.set_defaults(handler=_in_its_directory(handler) if needs_name else handler)
        return parser

    configure = command("configure", _configure, "write a default config.toml (an htex on a LocalProvider)")
    configure.add_argument("--force", action="store_true", help="overwrite an existing config.toml")
    start = command("start", _start, "start the endpoint as a daemon; print its id once it is connected")
    start.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the connection (60)")
    stop = command("stop", _stop, "stop the daemon (SIGTERM: it says goodbye and stops its workers)")
    stop.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (30)")
    restart = command("restart", _restart, "stop, then start again (e.g. after editing config.toml)")
    restart.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the connection (60)")
    command("list", _list, "name, id, state (Running / Stopped / Disconnected), workers, queue", needs_name=False)
    status = command("status", _status, "the endpoint's last status report, blocks included")
    status.add_argument("--json", action="store_true", help="print status.json as JSON")
    delete = command("delete", _delete, "stop it, delete it from the service, remove its directory")
    delete.add_argument("--force", action="store_true",
                        help="remove the directory even if the service cannot be told")


def _directory(name: str) -> Path:
    from parsl_lite.faas import paths
    return paths.endpoint_dir(name)


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def _in_its_directory(handler: Any) -> Any:
    """Run ``handler`` with ``args.directory`` set from ``args.name``; a bad name fails here, once."""
    def run(args: argparse.Namespace) -> int:
        try:
            args.directory = _directory(args.name)
        except ValueError as exc:
            _err(str(exc))
            return EXIT_FAILED
        return handler(args)
    return run


# ---------------------------------------------------------------- configure


def _configure(args: argparse.Namespace) -> int:
    from parsl_lite.faas.endpoint.config import CONFIG_FILE, default_config_text

    directory = args.directory
    path = directory / CONFIG_FILE
    if path.exists() and not args.force:
        _err(f"{path} exists already (--force to overwrite it)")
        return EXIT_FAILED
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(default_config_text(args.name))
    print(f"wrote {path}")
    return EXIT_OK


# ---------------------------------------------------------------- start / stop


def _start(args: argparse.Namespace) -> int:
    from parsl_lite.faas.endpoint.config import CONFIG_FILE
    from parsl_lite.faas.endpoint.daemon import LOG_FILE, running_pid
    from parsl_lite.faas.endpoint.status import STATUS_FILE

    directory = args.directory
    if not (directory / CONFIG_FILE).is_file():
        _err(f"endpoint {args.name} has no {directory / CONFIG_FILE} (run `parsl-lite endpoint configure "
             f"{args.name}` first)")
        return EXIT_CONFIG
    pid = running_pid(directory)
    if pid is not None:
        _err(f"endpoint {args.name} is already running (pid {pid})")
        return EXIT_FAILED
    (directory / STATUS_FILE).unlink(missing_ok=True)
    with open(directory / "daemon.out", "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "parsl_lite.faas.endpoint.daemon", args.name],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                   close_fds=True)
    return _wait_connected(args.name, directory, process, args.timeout, directory / LOG_FILE)


def _wait_connected(name: str, directory: Path, process: subprocess.Popen, timeout_s: float, log: Path) -> int:
    from parsl_lite.faas.endpoint.status import FAILED, RUNNING, read_status

    deadline = time.monotonic() + timeout_s
    while True:
        status = read_status(directory) or {}
        code = process.poll()
        if status.get("pid") == process.pid and status.get("state") == RUNNING:
            print(status.get("endpoint_id", ""))
            return EXIT_OK
        if code is not None or (status.get("pid") == process.pid and status.get("state") == FAILED):
            if code is None:
                code = process.wait(30)
            reason = status.get("reason") if status.get("pid") == process.pid else None
            _err(f"endpoint {name} failed to start: {reason or _log_tail(log, directory)}")
            return EXIT_CONFIG if code == EXIT_CONFIG else EXIT_FAILED
        if time.monotonic() > deadline:
            state = status.get("state", "Starting")
            _err(f"endpoint {name} (pid {process.pid}) is not connected after {timeout_s:g} s (state {state}); "
                 f"it keeps trying: see {log}")
            return EXIT_NOT_CONNECTED
        time.sleep(0.05)


def _log_tail(log: Path, directory: Path, lines: int = 5) -> str:
    """The last ERROR lines of the log (or of daemon.out), for a failed start."""
    for path in (log, directory / "daemon.out"):
        try:
            text = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            continue
        errors = [line for line in text if " ERROR: " in line] or text
        if errors:
            return "\n".join(errors[-lines:])
    return "no log written (see the daemon's output)"


def _stop_daemon(name: str, directory: Path, timeout_s: float) -> bool:
    """SIGTERM, wait; SIGKILL after ``timeout_s``. True if it was running."""
    from parsl_lite.faas.endpoint.daemon import running_pid

    pid = running_pid(directory)
    if pid is None:
        return False
    if not terminate(pid, timeout_s):
        print(f"endpoint {name} (pid {pid}) did not stop within {timeout_s:g} s: SIGKILL", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)
        (directory / "endpoint.pid").unlink(missing_ok=True)
    return True


def _stop(args: argparse.Namespace) -> int:
    directory = args.directory
    if not directory.is_dir():
        _err(f"no endpoint {args.name} (no {directory})")
        return EXIT_FAILED
    print(f"endpoint {args.name} " + ("stopped" if _stop_daemon(args.name, directory, args.timeout)
                                       else "was not running"))
    return EXIT_OK


def _restart(args: argparse.Namespace) -> int:
    directory = args.directory
    _stop_daemon(args.name, directory, 30.0)
    return _start(args)


# ---------------------------------------------------------------- list / status / delete


def _describe(directory: Path) -> dict:
    """name, id, state, workers, queue of one endpoint directory."""
    from parsl_lite.faas.endpoint.daemon import running_pid
    from parsl_lite.faas.endpoint.registration import read_identity
    from parsl_lite.faas.endpoint.status import STOPPED, read_status

    status = read_status(directory) or {}
    try:
        identity = read_identity(directory) or {}
    except ValueError:
        identity = {}
    pid = running_pid(directory)
    alive = pid is not None and status.get("pid") == pid
    return {"name": directory.name, "endpoint_id": identity.get("endpoint_id") or status.get("endpoint_id") or "-",
            "state": status.get("state", "Starting") if alive else STOPPED, "pid": pid,
            "workers": status.get("workers", 0) if alive else 0, "queue": status.get("queue", 0) if alive else 0,
            "status": status}


def _list(args: argparse.Namespace) -> int:
    from parsl_lite.faas import paths
    from parsl_lite.faas.endpoint.config import CONFIG_FILE

    root = paths.endpoints_dir()
    rows = [_describe(d) for d in sorted(root.iterdir()) if (d / CONFIG_FILE).is_file()] if root.is_dir() else []
    if not rows:
        print(f"no endpoints (configure one: parsl-lite endpoint configure NAME; they live in {root})")
        return EXIT_OK
    header = ("NAME", "ID", "STATE", "WORKERS", "QUEUE")
    table = [header] + [(r["name"], r["endpoint_id"], r["state"], str(r["workers"]), str(r["queue"]))
                        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    return EXIT_OK


def _status(args: argparse.Namespace) -> int:
    directory = args.directory
    if not directory.is_dir():
        _err(f"no endpoint {args.name} (no {directory})")
        return EXIT_FAILED
    row = _describe(directory)
    if args.json:
        print(json.dumps({k: v for k, v in row.items()}, indent=1, default=str))
        return EXIT_OK
    report = row["status"].get("report") or {}
    print(f"endpoint {row['name']}  id {row['endpoint_id']}  state {row['state']}"
          + (f"  pid {row['pid']}" if row["pid"] else ""))
    if row["status"].get("reason"):
        print(f"reason: {row['status']['reason']}")
    if row["status"].get("zmq_url"):
        heard = row["status"].get("last_heard")
        ago = f", last heard {time.time() - heard:.1f} s ago" if heard else ", never heard from"
        print(f"  service: {row['status']['zmq_url']}{ago}")
    if report.get("executor_error"):
        print(f"  executor failed (every task sent here fails): {report['executor_error']}")
    for key in ("managers", "connected_workers", "idle_workers", "pending_tasks", "outstanding_tasks",
                "spooled_results", "provider_type", "walltime_left_s"):
        if key in report:
            print(f"  {key}: {report[key]}")
    if report.get("timestamp"):
        print(f"  report: {max(0.0, time.time() - report['timestamp']):.1f} s old")
    blocks = report.get("blocks") or {}
    print("  blocks: " + (", ".join(f"{b} {s}" for b, s in sorted(blocks.items(), key=_block_order)) or "none"))
    _print_blocks(report)
    return EXIT_OK


def _block_order(item: tuple) -> tuple:
    return (len(item[0]), item[0])  # "2" before "10"


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _print_blocks(report: dict) -> None:
    """The live blocks (state, the provider's job id, workers, tasks) and the last ended ones, as a table."""
    live = sorted((report.get("block_details") or {}).items(), key=_block_order)
    ended = sorted((report.get("ended_blocks") or {}).items(), key=_block_order)
    rows = [(b, d.get("state", "?"), d.get("job_id") or "-", str(d.get("workers", 0)), str(d.get("tasks", 0)),
             _short(d.get("message") or "")) for b, d in live]
    rows += [(b, d.get("state", "?"), d.get("job_id") or "-", "-", "-", _short(f"ended: {d.get('message') or ''}"))
             for b, d in ended]
    if not rows:
        return
    table = [("BLOCK", "STATE", "JOB", "WORKERS", "TASKS", "")] + rows
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print(("    " + "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths)) + "  " + row[5]).rstrip())


def _delete(args: argparse.Namespace) -> int:
    import shutil

    from parsl_lite.faas.endpoint.registration import unregister
    from parsl_lite.faas.errors import ServiceError

    directory = args.directory
    if not directory.is_dir():
        _err(f"no endpoint {args.name} (no {directory})")
        return EXIT_FAILED
    _stop_daemon(args.name, directory, 30.0)
    endpoint_id: Optional[str] = None
    try:
        endpoint_id = unregister(directory)
    except (ServiceError, ValueError) as exc:
        if not args.force:
            _err(f"cannot delete endpoint {args.name} from the service: {exc} (--force removes the directory "
                 f"anyway)")
            return EXIT_FAILED
        print(f"warning: the service was not told: {exc}", file=sys.stderr)
    shutil.rmtree(directory)
    print(f"deleted endpoint {args.name}" + (f" ({endpoint_id})" if endpoint_id else ""))
    return EXIT_OK
