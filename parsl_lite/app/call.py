"""Preparing an app call for the kernel: ``stdout``/``stderr`` and ``outputs``.

The app layer checks what only apps have (stream specs, ``AUTO_LOGNAME``,
output ``File`` objects) so that the kernel knows nothing of ``app/``
(shared/DESIGN.md, rule 1). The kernel calls :func:`prepare_call` from
``submit`` (apps pass it as ``prepare=``) once the task has its id, since an
``AUTO_LOGNAME`` path names the task; whatever it raises fails the task's
future.
"""
from __future__ import annotations

import os
from typing import Any

from parsl_lite.app.errors import BadOutputs, BadStdStreamFile
from parsl_lite.data_provider.files import File
from parsl_lite.dataflow.futures import DataFuture

__all__ = ["AUTO_LOGNAME", "AutoLogname", "default_std_autopath", "prepare_call", "resolve_std_streams"]


class AutoLogname:
    """Sentinel for ``stdout=AUTO_LOGNAME``: a path under the run directory, chosen per task."""

    def __repr__(self) -> str:
        return "AUTO_LOGNAME"

    def __reduce__(self) -> str:
        return "AUTO_LOGNAME"  # unpickles as this module's singleton


AUTO_LOGNAME = AutoLogname()
_MODES = ("w", "a")


def default_std_autopath(record: Any, kw: str) -> str:
    """``<run_dir>/task_logs/0000/task_0007_name.stdout``: one folder per 10,000 tasks."""
    label = f"_{record.executor}" if record.executor else ""
    return os.path.join(record.kernel.run_dir, "task_logs", f"{record.id // 10000:04d}",
                        f"task_{record.id:04d}_{record.func_name}{label}.{kw}")


def resolve_std_streams(record: Any, std_autopath: Any = None) -> None:
    """Check ``stdout``/``stderr`` in ``record.kwargs``; replace ``AUTO_LOGNAME`` by a path.

    Raises:
        BadStdStreamFile: a stream is not a path, a ``(path, mode)`` pair with
            mode ``w`` or ``a``, or ``AUTO_LOGNAME``.
    """
    kwargs = record.kwargs
    for kw in ("stdout", "stderr"):
        spec = kwargs.get(kw)
        if spec is None:
            continue
        if spec is AUTO_LOGNAME:
            path = (std_autopath or default_std_autopath)(record, kw)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            kwargs[kw] = path
        elif isinstance(spec, tuple):
            if (len(spec) != 2 or not isinstance(spec[0], (str, os.PathLike)) or spec[1] not in _MODES):
                raise BadStdStreamFile(f"task {record.id}: {kw}={spec!r} must be (path, 'w' or 'a')")
        elif not isinstance(spec, (str, os.PathLike)):
            raise BadStdStreamFile(f"task {record.id}: {kw} must be a path, (path, mode) or AUTO_LOGNAME, "
                                   f"got {type(spec).__name__} {spec!r}")


def prepare_call(record: Any, app_fu: Any) -> None:
    """Resolve the call's streams and give its future one ``DataFuture`` per output ``File``.

    Args:
        record: the new task's record (``id``, ``kwargs``, ``kernel`` set).
        app_fu: its ``AppFuture``.

    Raises:
        BadStdStreamFile: a bad ``stdout``/``stderr``.
        BadOutputs: an ``outputs`` item that is not a ``File``.
    """
    resolve_std_streams(record, record.kernel.config.std_autopath)
    outputs = record.kwargs.get("outputs")
    if not outputs:
        return
    for index, item in enumerate(outputs):
        if not isinstance(item, File):
            raise BadOutputs(f"task {record.id} ({record.func_name}): outputs[{index}] must be a File, "
                             f"got {type(item).__name__} {item!r}")
    app_fu._outputs = [DataFuture(app_fu, f, record.id) for f in outputs]
