"""Is a daemon of ours still running? (the service, the broker, an endpoint: each keeps its pid in a file).

A pid file outlives its process, and the number may be reused by another
program, so "running" means: the pid is alive, not a zombie, and its command
line names the module the daemon runs.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Optional


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    except OSError:  # /proc unreadable: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def runs_module(pid: int, module: str) -> bool:
    """``pid`` is alive and its command line names ``module`` (a pid reused by another program is not ours).

    When the command line cannot be read (another user's process), a live pid counts as ours.
    """
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return module.encode() in f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True


def if_running(info: Optional[dict[str, Any]], module: str) -> Optional[dict[str, Any]]:
    """A daemon's info file (``service.json``, ``broker.json``) if the ``pid`` it names still runs ``module``;
    None for no file or a stale one."""
    if info is None or not isinstance(info.get("pid"), int) or not runs_module(info["pid"], module):
        return None
    return info


def terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM ``pid`` and wait until it has ended (not just written its last file); False if it still runs
    after ``timeout_s`` (the caller says what then: report it, or SIGKILL)."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
