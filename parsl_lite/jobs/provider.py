"""The provider interface: what executors and the strategy may ask of a provider.

A provider gets blocks of resources from somewhere (this machine, SSH hosts,
Slurm, Kubernetes) and runs one command in each::

    executor ── submit(command, tasks_per_node, job_name) ──► job id
             ── status([job ids]) ──────────────────────────► [JobStatus]
             ── cancel([job ids]) ──────────────────────────► [bool]

It lives here, beside the job states, and not in ``providers/``, so that
executors and the scaling strategy know the interface without importing any
concrete provider (shared/DESIGN.md, rule 1). The block parameters
(``init_blocks``, ``min_blocks``, ``max_blocks``, ``nodes_per_block``,
``parallelism``, ``walltime``, ``worker_init``, ``launcher``) are plain
attributes, checked once in :meth:`ExecutionProvider.__init__`, which every
provider calls. ``parsl_lite.providers.base`` re-exports all of this, with
the helpers providers share to write their job scripts.
"""
from __future__ import annotations

import logging
import os
import re
import shlex
from abc import ABC, abstractmethod
from typing import NamedTuple, Optional, Sequence, Union

from typeguard import typechecked

from parsl_lite.errors import ConfigurationError
from parsl_lite.jobs.states import JobStatus
from parsl_lite.launchers.base import Launcher
from parsl_lite.representation import RepresentationMixin

logger = logging.getLogger(__name__)

__all__ = ["ExecutionProvider", "JobFiles", "walltime_to_seconds", "seconds_to_walltime"]


class JobFiles(NamedTuple):
    """Where one job's script and output go."""

    script: str
    stdout: str
    stderr: str


class ExecutionProvider(RepresentationMixin, ABC):
    """Gets blocks of resources and runs one command in each.

    Subclasses call this ``__init__`` with their block parameters, which it
    checks, and implement the five abstract members. They are called from the
    job status poller's thread and from the executor's, so they must be
    thread-safe.

    Attributes:
        script_dir: set by the executor to its run directory before the first
            :meth:`submit`; job scripts and job stdout/stderr go there.
        cores_per_node: cores each node of a block has, or None if unknown;
            exported to jobs as ``PARSL_CORES``.
        mem_per_node: memory of each node in GB, or None if unknown; exported
            to jobs as ``PARSL_MEMORY_GB``.

    Raises:
        TypeCheckError: a parameter of the wrong type (names the parameter).
        ConfigurationError: a value out of range (names the field).
    """

    script_dir: Optional[str] = None

    @typechecked
    def __init__(self, *, init_blocks: int, min_blocks: int, max_blocks: int, nodes_per_block: int,
                 parallelism: Union[int, float], walltime: Optional[str], worker_init: str,
                 launcher: Launcher, cores_per_node: Optional[int] = None,
                 mem_per_node: Optional[Union[int, float]] = None) -> None:
        _check_blocks(init_blocks, min_blocks, max_blocks, nodes_per_block)
        if not 0 <= parallelism <= 1:
            raise ConfigurationError("parallelism", f"must be between 0 and 1, got {parallelism}")
        if walltime is not None:
            try:
                walltime_to_seconds(walltime)
            except ValueError as exc:
                raise ConfigurationError("walltime", str(exc)) from None
        if cores_per_node is not None and cores_per_node < 1:
            raise ConfigurationError("cores_per_node", f"must be >= 1 or None, got {cores_per_node}")
        if mem_per_node is not None and mem_per_node <= 0:
            raise ConfigurationError("mem_per_node", f"must be > 0 (GB) or None, got {mem_per_node}")
        self.init_blocks = init_blocks
        self.min_blocks = min_blocks
        self.max_blocks = max_blocks
        self.nodes_per_block = nodes_per_block
        self.parallelism = parallelism
        self.walltime = walltime
        self.worker_init = worker_init
        self.launcher = launcher
        self.cores_per_node = cores_per_node
        self.mem_per_node = mem_per_node
        self.script_dir = None

    @abstractmethod
    def submit(self, command: str, tasks_per_node: int, job_name: str = "parsl_lite.auto") -> str:
        """Start one block that runs ``command`` (through the launcher).

        Args:
            command: the worker command of the executor.
            tasks_per_node: copies of it to start on each node.
            job_name: a readable name; the provider makes it unique.

        Returns:
            The job id, to pass to :meth:`status` and :meth:`cancel`.

        Raises:
            SubmitException: the job could not be started.
            ScriptWriteError: its script could not be written.
        """

    @abstractmethod
    def status(self, job_ids: Sequence[str]) -> list[JobStatus]:
        """Return the status of each job, in the order of ``job_ids``.

        Raises:
            ProviderError: the backend could not be asked (the caller keeps
                the previous statuses and asks again later).
        """

    @abstractmethod
    def cancel(self, job_ids: Sequence[str]) -> list[bool]:
        """Cancel jobs; for each, True if it is cancelled or had already ended.

        Must not block for long: a job is reported CANCELLED from then on,
        even while its processes are still being stopped.
        """

    @property
    @abstractmethod
    def label(self) -> str:
        """A short name of the provider kind (``local``, ``slurm``) for messages."""

    @property
    @abstractmethod
    def status_polling_interval(self) -> float:
        """Seconds to leave between two :meth:`status` calls (it may be costly)."""

    # --- shared helpers for subclasses ---

    def _job_files(self, job_name: str) -> JobFiles:
        """Paths of a new job's script and output files in :attr:`script_dir` (created)."""
        # Only concrete providers call this; imported here because providers/ imports this module.
        from parsl_lite.providers.errors import ScriptWriteError

        if not self.script_dir:
            raise ScriptWriteError(self.label, f"<script_dir>/{job_name}.sh",
                                   "script_dir is not set; the executor sets it to its run directory "
                                   "before submitting (set provider.script_dir to use a provider alone)")
        try:
            os.makedirs(self.script_dir, exist_ok=True)
        except OSError as exc:
            raise ScriptWriteError(self.label, self.script_dir, exc.strerror or str(exc)) from exc
        base = os.path.join(os.path.abspath(self.script_dir), _safe_name(job_name))
        return JobFiles(f"{base}.sh", f"{base}.out", f"{base}.err")

    def _job_script(self, command: str, tasks_per_node: int, job_name: str, header: str = "") -> str:
        """The text of a job script: ``header``, environment, ``worker_init``, launched command.

        Args:
            command: the worker command.
            tasks_per_node: copies per node, passed to the launcher.
            job_name: exported as ``JOBNAME`` (as Parsl does).
            header: lines that must come first, such as ``#SBATCH`` directives.
        """
        lines = ["#!/bin/bash"]
        if header:
            lines.append(header.rstrip("\n"))
        lines.append(f"# parsl_lite job {job_name}, written by the {self.label} provider")
        lines.append(f"export JOBNAME={shlex.quote(job_name)}")
        if self.cores_per_node is not None:
            lines.append(f"export PARSL_CORES={self.cores_per_node}")
        if self.mem_per_node is not None:
            lines.append(f"export PARSL_MEMORY_GB={self.mem_per_node}")
        if self.worker_init.strip():
            lines.append(self.worker_init.rstrip("\n"))
        lines.append(self.launcher(command, tasks_per_node, self.nodes_per_block).rstrip("\n"))
        return "\n".join(lines) + "\n"


def _check_blocks(init_blocks: int, min_blocks: int, max_blocks: int, nodes_per_block: int) -> None:
    """Refuse block counts that contradict each other; warn about ones that are only odd."""
    for name, value in (("init_blocks", init_blocks), ("min_blocks", min_blocks), ("max_blocks", max_blocks)):
        if value < 0:
            raise ConfigurationError(name, f"must be >= 0, got {value}")
    if nodes_per_block < 1:
        raise ConfigurationError("nodes_per_block", f"must be >= 1, got {nodes_per_block}")
    if max_blocks < min_blocks:
        raise ConfigurationError("max_blocks", f"max_blocks ({max_blocks}) is below min_blocks ({min_blocks})")
    if init_blocks > max_blocks:
        raise ConfigurationError("init_blocks", f"init_blocks ({init_blocks}) is above max_blocks ({max_blocks}); "
                                                "the strategy could never keep that many blocks")
    if init_blocks < min_blocks:
        # Parsl accepts this; so do we, since the strategy starts min_blocks at once anyway.
        logger.warning("init_blocks (%d) is below min_blocks (%d): %d blocks will be started at once",
                       init_blocks, min_blocks, min_blocks)


_WALLTIME = re.compile(r"(\d+):(\d{1,2}):(\d{1,2})")


def walltime_to_seconds(walltime: str) -> int:
    """Parse an ``HH:MM:SS`` walltime (hours may exceed 24) into seconds.

    Raises:
        ValueError: not ``HH:MM:SS``, minutes or seconds above 59, or zero.
    """
    match = _WALLTIME.fullmatch(walltime.strip())
    if match is None:
        raise ValueError(f"expected HH:MM:SS (e.g. '01:30:00'), got {walltime!r}")
    hours, minutes, seconds = (int(part) for part in match.groups())
    if minutes > 59 or seconds > 59:
        raise ValueError(f"minutes and seconds must be below 60 in {walltime!r}")
    total = hours * 3600 + minutes * 60 + seconds
    if total == 0:
        raise ValueError(f"must be longer than zero, got {walltime!r}")
    return total


def seconds_to_walltime(seconds: float) -> str:
    """Format seconds as ``HH:MM:SS`` (rounded up to whole seconds), for schedulers."""
    whole = max(0, int(-(-seconds // 1)))
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _safe_name(job_name: str) -> str:
    """A job name usable as a file name: no slashes or spaces."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", job_name) or "job"
