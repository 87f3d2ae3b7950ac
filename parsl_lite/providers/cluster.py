"""Running a scheduler's command-line tools (``sbatch``, ``squeue``, ``kubectl``...) with a timeout.

Batch-system providers talk to their scheduler through short-lived commands.
Each runs here, in a session of its own, with a deadline::

    run_command(["squeue", ...], timeout_s=10, provider="slurm")
        ├─ exit 0          ──► CommandResult(stdout, stderr, 0)
        ├─ exit n (checked) ─► SchedulerCommandFailed(command, n, stderr)
        ├─ past timeout_s  ──► SIGKILL to the whole group ─► SchedulerCommandTimeout(command, timeout_s)
        └─ not on PATH     ──► SchedulerCommandFailed(command, None, "not found on PATH ...")

The whole process group is killed on a timeout because a hung command is
often a wrapper script whose children keep our pipes open: killing only the
wrapper (what ``subprocess.run`` does) would leave us waiting on them.
"""
from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from parsl_lite.providers.errors import SchedulerCommandFailed, SchedulerCommandTimeout  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

_DRAIN_AFTER_KILL_S = 2.0  # reading what a killed group left in the pipes never takes longer


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a finished command printed, and its exit code."""

    stdout: str
    stderr: str
    returncode: int
    duration_s: float


def run_command(argv: Sequence[str], *, timeout_s: float, provider: str, check: bool = True,
                cwd: Optional[str] = None) -> CommandResult:
    """Run ``argv`` (no shell) and return its output, within ``timeout_s`` seconds.

    The command inherits this process's environment, so ``PATH`` decides which
    ``sbatch`` runs, as it would in the user's shell.

    Args:
        argv: the program and its arguments.
        timeout_s: seconds before the command's whole process group is killed.
        provider: the provider's label, for error messages.
        check: raise :class:`SchedulerCommandFailed` on a non-zero exit code.
        cwd: directory to run it in (default: ours).

    Raises:
        SchedulerCommandFailed: the program is missing, or exited non-zero with ``check``.
        SchedulerCommandTimeout: it ran past ``timeout_s``.
    """
    command = shlex.join(argv)
    started = time.monotonic()
    try:
        process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, errors="replace", cwd=cwd,
                                   start_new_session=True, close_fds=True)
    except FileNotFoundError as exc:
        raise SchedulerCommandFailed(provider, command, None,
                                     f"{argv[0]} not found on PATH; is the scheduler's client installed "
                                     "on this machine?") from exc
    except OSError as exc:
        raise SchedulerCommandFailed(provider, command, None, exc.strerror or str(exc)) from exc
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        _kill_group(process)
        logger.warning("%s: `%s` timed out after %.1fs; killed it", provider, command, timeout_s)
        raise SchedulerCommandTimeout(provider, command, timeout_s) from exc
    duration = time.monotonic() - started
    if check and process.returncode != 0:
        raise SchedulerCommandFailed(provider, command, process.returncode, stderr, stdout)
    return CommandResult(stdout, stderr, process.returncode, duration)


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the command's process group, then reap it without waiting on stray pipe holders."""
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its own session leader: the group id is its pid
    except (ProcessLookupError, PermissionError):
        process.kill()
    try:
        process.communicate(timeout=_DRAIN_AFTER_KILL_S)
    except subprocess.TimeoutExpired:
        # Something escaped the group (setsid) and holds the pipes; give up on them, but reap.
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
        process.wait()
