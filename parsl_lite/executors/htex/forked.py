"""Workers forked from their pool, instead of a fresh ``python -m ...worker`` each.

A fresh interpreter per worker costs its start and its imports (zmq, dill, the
messages) again, one after the other behind the pool's own: at start-up that
was a third of the time to the first task. The pool imports the worker module
once and forks; the child runs :func:`parsl_lite.executors.htex.worker.main`
with the same arguments the command line had, so the worker is the same
program (its parent-death signal, its slot in the slot file, its secret from
the environment, its own ZMQ context: the pool's is never touched in the child).

:class:`ForkedWorker` gives the pool the part of ``subprocess.Popen`` it uses
(``pid``, ``poll``, ``wait``, ``terminate``, ``kill``, ``returncode`` as Popen
reports it: negative for a signal). The child's command line in ``ps`` reads
``... -m parsl_lite.executors.htex.worker --index N ...`` (rewritten in place,
Linux only), so operators and tools still see which process is which.
"""
from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Optional

logger = logging.getLogger(__name__)


class ForkedWorker:
    """Popen's interface over a child we forked (we are its parent, so we reap it)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: Optional[int] = None

    def poll(self) -> Optional[int]:
        """The exit code if it has exited (reaped now), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, code unknown
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the exit (only at shutdown); ``subprocess.TimeoutExpired`` after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout or 0.0)
            time.sleep(0.005)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def fork_worker(argv: list[str], env: dict[str, str]) -> ForkedWorker:
    """Fork a worker running ``worker.main(argv)`` with ``env`` added to its environment.

    The worker module is imported here, in the pool, so each child starts with
    it loaded. The child never returns: it leaves through ``os._exit`` with the
    worker's exit code (a task's ``sys.exit(n)`` gives ``n``, as before).
    """
    from parsl_lite.executors.htex import worker

    pid = os.fork()
    if pid:
        return ForkedWorker(pid)
    code = 1
    try:
        _become_worker(argv, env)
        code = worker.main(argv)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # the worker's own errors are logged by it; this is the last word
        import traceback

        traceback.print_exc()
    finally:
        try:
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    raise AssertionError("unreachable")  # pragma: no cover


def _become_worker(argv: list[str], env: dict[str, str]) -> None:
    """In the child: drop what was the pool's (signal handler, log handlers), name the process."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the pool's handler exits cleanly; a worker just ends
    pool_logger = logging.getLogger("parsl_lite")
    for handler in list(pool_logger.handlers):  # the pool's log file is the pool's; the worker opens its own
        pool_logger.removeHandler(handler)
    os.environ.update(env)
    set_command_line([sys.executable, "-m", "parsl_lite.executors.htex.worker", *argv])


def set_command_line(args: list[str]) -> None:
    """Rewrite this process's command line as ``ps`` shows it (Linux; truncated to the space it has).

    The kernel reads ``/proc/<pid>/cmdline`` from the process's own argument
    area (``arg_start``..``arg_end`` in ``/proc/self/stat``); writing there is
    what ``setproctitle`` does. Anywhere else, or if that fails, nothing changes.
    """
    try:
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # fields 48 and 49 of proc(5)
    except (OSError, IndexError, ValueError):
        return
    size = end - start
    if size <= 1:
        return
    title = "\0".join(args).encode(errors="replace")[:size - 1]
    ctypes.memmove(start, title.ljust(size, b"\0"), size)


def _exit_code(code: object) -> int:
    """``SystemExit.code`` as the interpreter would turn it into an exit status."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1
