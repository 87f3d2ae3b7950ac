"""The worker side of a bash app: build the command, run it in a shell, check the outcome."""
from __future__ import annotations

import os
import signal
import subprocess
from contextlib import ExitStack
from typing import IO, Any, Callable, Optional, Tuple, Union

import typeguard

from parsl_lite.app.errors import (
    AppBadFormatting, AppTimeout, BadStdStreamFile, BashAppNoReturn, BashExitFailure, MissingOutputs,
)
from parsl_lite.app.signature import SPECIAL_KWARGS, accepted_specials
from parsl_lite.data_provider.files import File


StdSpec = Union[os.PathLike, str, Tuple[str, str], Tuple[os.PathLike, str]]

_OPEN_KINDS = frozenset("rwxa")


@typeguard.typechecked
def get_std_fname_mode(fdname: str, stdfspec: StdSpec) -> Tuple[str, str]:
    """``(path, mode)`` of a ``stdout``/``stderr`` spec: a path (appended to, ``'a+'``) or ``(path, mode)``.

    As Parsl's: a spec of the wrong type (a list, a 1- or 3-tuple, a non-str
    mode or path) raises typeguard's ``TypeCheckError``; a mode ``open()`` would
    refuse raises :class:`BadStdStreamFile`.
    """
    if isinstance(stdfspec, tuple):
        fname, mode = stdfspec
    else:
        fname, mode = stdfspec, "a+"
    path = os.fspath(fname)
    if not valid_open_mode(mode):
        raise BadStdStreamFile(str(path), ValueError(f"invalid {fdname} mode {mode!r}"))
    return path, mode


def check_std_stream(kw: str, spec: Any) -> None:
    """Refuse a bad ``stdout``/``stderr`` spec when the app is called, as the worker would.

    Raises:
        TypeCheckError: not a path, a ``File`` or a ``(path, mode)`` pair of strings.
        BadStdStreamFile: a mode ``open()`` refuses, or one that cannot write (``'r'``).
    """
    if isinstance(spec, File):
        return
    path, mode = get_std_fname_mode(kw, spec)
    if "r" in mode and "+" not in mode:
        raise BadStdStreamFile(path, ValueError(f"{kw} mode {mode!r} cannot write"))


def valid_open_mode(mode: str) -> bool:
    """Whether ``open(path, mode)`` accepts ``mode`` (checked without opening anything)."""
    chars = set(mode)
    return (len(chars) == len(mode) and chars <= set("rwxabt+") and len(chars & _OPEN_KINDS) == 1
            and not {"b", "t"} <= chars)


def _open_stream(stack: ExitStack, spec: Any, kw: str, opened: dict) -> Optional[IO]:
    if spec is None:
        return None
    if isinstance(spec, File):  # Parsl truncates a File it is given as a stream
        path, mode = os.fspath(spec), "w"
    else:
        path, mode = get_std_fname_mode(kw, spec)
    if path in opened:  # stdout and stderr to one file share one descriptor, as `>f 2>&1` would
        return opened[path]
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        stream = stack.enter_context(open(path, mode))
    except (OSError, ValueError) as exc:
        raise BadStdStreamFile(path, exc) from exc
    opened[path] = stream
    return stream


class BashRunner:
    """Callable made once per bash app; calling it runs one invocation.

    The user's function is called with the call's arguments (special keywords
    only if it declares them) and must return the command line as a ``str``.
    The command runs under ``/bin/bash`` in its own process group, so a
    walltime overrun kills the command and everything it started.
    """

    def __init__(self, func: Callable) -> None:
        self.func = func
        self.__name__ = getattr(func, "__name__", "bash_app")
        self._accepted = accepted_specials(func)

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        command = self._build_command(args, kwargs)
        walltime = kwargs.get("walltime")
        with ExitStack() as stack:
            opened: dict = {}
            stdout = _open_stream(stack, kwargs.get("stdout"), "stdout", opened)
            stderr = _open_stream(stack, kwargs.get("stderr"), "stderr", opened)
            if stderr is not None:  # Parsl heads the stderr file with the command it runs
                print(f"--> executable follows <--\n{command}\n--> end executable <--", file=stderr, flush=True)
            proc = subprocess.Popen(command, shell=True, executable="/bin/bash", stdout=stdout, stderr=stderr,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                returncode = proc.wait(timeout=walltime)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                raise AppTimeout(f"bash app {self.__name__} exceeded its walltime of {walltime} s") from None
            except BaseException:
                _kill_group(proc)  # interrupted (e.g. AppTimeout from a wrapper): leave nothing running
                raise
        if returncode != 0:
            raise BashExitFailure(self.__name__, returncode)
        missing = [f for f in kwargs.get("outputs") or () if isinstance(f, File) and not os.path.exists(f.filepath)]
        if missing:
            raise MissingOutputs(f"bash app {self.__name__} exited 0 but did not write its outputs", missing)
        return returncode

    def _build_command(self, args: tuple, kwargs: dict) -> str:
        call_kwargs = {k: v for k, v in kwargs.items() if k not in SPECIAL_KWARGS or k in self._accepted}
        try:
            command = self.func(*args, **call_kwargs)
        except Exception as exc:
            raise AppBadFormatting(f"bash app {self.__name__}: building the command raised "
                                   f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(command, str):
            raise BashAppNoReturn(f"bash app {self.__name__} must return the command line as a str, "
                                  f"got {type(command).__name__}: {command!r}")
        return command


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
