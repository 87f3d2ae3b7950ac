"""The provider interface, job states, and what every provider shares.

The interface (:class:`ExecutionProvider`) and the job states live in
:mod:`parsl_lite.jobs` so that executors and the scaling strategy need no
provider import; they are re-exported here, Parsl's import path. The helpers
below (job script files, reading the tail of a job's output) are here so that
each provider writes its jobs the same way.
"""
from __future__ import annotations

import os
import tempfile

from parsl_lite.jobs.provider import (  # noqa: F401  (re-exported: Parsl's import path)
    ExecutionProvider, JobFiles, _check_blocks, _safe_name, seconds_to_walltime, walltime_to_seconds,
)
from parsl_lite.jobs.states import TERMINAL_STATES, JobState, JobStatus, read_tail  # noqa: F401
from parsl_lite.providers.errors import ScriptWriteError

__all__ = ["ExecutionProvider", "JobFiles", "JobState", "JobStatus", "TERMINAL_STATES", "read_tail",
           "seconds_to_walltime", "walltime_to_seconds", "write_job_script"]


def write_job_script(path: str, text: str, provider: str) -> None:
    """Write a job script atomically (temporary file, then rename), executable by its owner.

    Atomic so that a scheduler or a concurrent reader never sees half a script.

    Raises:
        ScriptWriteError: the directory is missing or not writable, the disk is full, ...
    """
    directory = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".sh")
        try:
            with os.fdopen(fd, "w") as stream:
                stream.write(text)
            os.chmod(tmp, 0o750)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise ScriptWriteError(provider, path, exc.strerror or str(exc)) from exc
