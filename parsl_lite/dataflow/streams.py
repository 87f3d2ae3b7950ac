"""``stdout``/``stderr`` arguments: checked at the call, ``AUTO_LOGNAME`` made concrete."""
from __future__ import annotations

import os
from typing import Any, Callable, Optional

from parsl_lite.app.errors import BadStdStreamFile


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


def resolve_std_streams(record: Any, run_dir: str, std_autopath: Optional[Callable] = None) -> None:
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
