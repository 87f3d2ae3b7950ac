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
from typing import Any, Optional

from parsl_lite.app.bash import check_std_stream
from parsl_lite.app.errors import BadOutputs
from parsl_lite.data_provider.files import File
from parsl_lite.dataflow.futures import DataFuture

__all__ = ["AUTO_LOGNAME", "default_std_autopath", "prepare_call", "resolve_std_streams"]


AUTO_LOGNAME = -1  # Parsl's value: stdout=AUTO_LOGNAME asks for a path under the run directory


def default_std_autopath(record: Any, kw: str) -> str:
    """Parsl's path: ``<run_dir>/task_logs/0000/task_0007_<func>[_<label>].stdout`` (10,000 per folder).

    ``label`` is the call's ``label=`` keyword argument, if it has one.
    """
    label = record.kwargs.get("label")
    return os.path.join(record.kernel.run_dir, "task_logs", str(record.id // 10000).zfill(4),
                        f"task_{str(record.id).zfill(4)}_{record.func_name}"
                        f"{'' if label is None else f'_{label}'}.{kw}")


def resolve_std_streams(record: Any, std_autopath: Any = None) -> Optional[list[File]]:
    """Check ``stdout``/``stderr`` in ``record.kwargs`` as Parsl's worker would; make ``AUTO_LOGNAME`` a path.

    An ``AUTO_LOGNAME`` stream is left out of the memo hash (Parsl adds it to
    ``ignore_for_cache``). Returns the streams given as ``File`` objects
    (``[stdout, stderr]``, None for each other kind), or None if there are none.

    Raises:
        TypeCheckError: a spec of the wrong type (a list, a 1- or 3-tuple, not a str).
        BadStdStreamFile: a mode ``open()`` would refuse.
    """
    kwargs = record.kwargs
    files: Optional[list] = None
    for index, kw in enumerate(("stdout", "stderr")):
        spec = kwargs.get(kw)
        if spec is None:
            continue
        if type(spec) is int and spec == AUTO_LOGNAME:
            path = (std_autopath or default_std_autopath)(record, kw)
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            kwargs[kw] = path
            if kw not in record.ignore_for_cache:
                record.ignore_for_cache = (*record.ignore_for_cache, kw)
            continue
        check_std_stream(kw, spec)
        if isinstance(spec, File):
            files = files or [None, None]
            files[index] = spec
    return files


def prepare_call(record: Any, app_fu: Any) -> None:
    """Resolve the call's streams and give its future one ``DataFuture`` per output ``File``.

    Args:
        record: the new task's record (``id``, ``kwargs``, ``kernel`` set).
        app_fu: its ``AppFuture``.

    Raises:
        TypeCheckError, BadStdStreamFile: a bad ``stdout``/``stderr``.
        BadOutputs: an ``outputs`` item that is not a ``File``.
    """
    files = resolve_std_streams(record, record.kernel.config.std_autopath)
    if files is not None:  # Parsl: a File as a stream makes the future's stdout/stderr a DataFuture
        stdout, stderr = files
        if stdout is not None:
            app_fu._stdout_future = DataFuture(app_fu, stdout, record.id)
        if stderr is not None:
            app_fu._stderr_future = DataFuture(app_fu, stderr, record.id)
    outputs = record.kwargs.get("outputs")
    if not outputs:
        return
    for index, item in enumerate(outputs):
        if not isinstance(item, File):
            raise BadOutputs(f"task {record.id} ({record.func_name}): outputs[{index}] must be a File, "
                             f"got {type(item).__name__} {item!r}")
    app_fu._outputs = [DataFuture(app_fu, f, record.id) for f in outputs]
