"""Finding the checkpoints of earlier runs, for ``BasicMemoizer(checkpoint_files=...)``.

Run directories are the numbered children of the ``run_dir`` a config names
(``runinfo/000``, ``runinfo/001``, ...); a run that checkpointed has a
``checkpoint`` directory inside its own. Runs are ordered by number (so
``1000`` comes after ``999``); other names sort before all numbers, by name.
"""
from __future__ import annotations

import os

from typeguard import typechecked

from parsl_lite.dataflow.checkpoints import CHECKPOINT_DIR

__all__ = ["get_all_checkpoints", "get_last_checkpoint"]


def _run_dirs(rundir: str) -> list[str]:
    """Child directories of ``rundir``, oldest run first."""
    if not os.path.isdir(rundir):
        return []
    names = [entry.name for entry in os.scandir(rundir) if entry.is_dir()]
    return sorted(names, key=_run_order)


def _run_order(name: str) -> tuple[bool, int, str]:
    numbered = name.isascii() and name.isdigit()
    return (numbered, int(name) if numbered else 0, name)


@typechecked
def get_all_checkpoints(rundir: str = "runinfo") -> list[str]:
    """Return the checkpoint directories of every run under ``rundir``, oldest first.

    Pass the result as ``checkpoint_files`` to reuse every result ever
    checkpointed; when runs computed the same call, the newest result wins.

    Args:
        rundir: the config's ``run_dir``.

    Returns:
        Absolute paths; empty if ``rundir`` does not exist.
    """
    paths = (os.path.abspath(os.path.join(rundir, name, CHECKPOINT_DIR)) for name in _run_dirs(rundir))
    return [path for path in paths if os.path.isdir(path)]


@typechecked
def get_last_checkpoint(rundir: str = "runinfo") -> list[str]:
    """Return the checkpoint directory of the latest numbered run under ``rundir`` that has one.

    As in Parsl 2026.10.26: runs that wrote no checkpoint (or crashed before
    their first) are stepped over, and names that are not run numbers never
    count. Checkpoints are incremental, so results the chosen run reused from
    earlier checkpoints are not in its own: :func:`get_all_checkpoints`
    covers every run.

    Args:
        rundir: the config's ``run_dir``.

    Returns:
        A list of zero or one absolute path.
    """
    numbered = [name for name in _run_dirs(rundir) if _run_order(name)[0]]
    for name in reversed(numbered):
        path = os.path.abspath(os.path.join(rundir, name, CHECKPOINT_DIR))
        if os.path.isdir(path):
            return [path]
    return []
