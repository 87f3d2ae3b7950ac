"""Blocks as process groups on this machine.

Each block is a job script run by ``/bin/bash`` in a session of its own
(``start_new_session=True``), so the whole block, workers and whatever they
started, is one process group that can be signalled at once::

    submit ─► <script_dir>/<job>.sh ─► Popen(bash job.sh) ─► pgid = pid
                                         stdout ─► <job>.out, stderr ─► <job>.err
    status ─► Popen.poll(): running / exit 0 / exit n / killed by signal
    cancel ─► SIGTERM to the group ─► (reaper thread) SIGKILL after a grace period

The provider is this process's parent of every job, so it reaps them itself
(no zombies) and reads exit codes directly, without Parsl's exit-code files.
As a batch system does, it also stops whatever a job left running when the job
ended, and at interpreter exit it SIGKILLs groups it was still stopping.
"""
from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import psutil
from typeguard import typechecked

from parsl_lite.launchers.base import Launcher
from parsl_lite.launchers.launchers import SingleNodeLauncher
from parsl_lite.providers.base import (
    ExecutionProvider, JobFiles, JobState, JobStatus, read_tail, walltime_to_seconds, write_job_script,
)
from parsl_lite.providers.errors import SubmitException, UnknownJob

logger = logging.getLogger(__name__)

_job_numbers = itertools.count()  # process-wide, so two providers sharing a script_dir never collide
_MESSAGE_TAIL_BYTES = 600
_REAP_INTERVAL_S = 0.05
_live_providers: "weakref.WeakSet[LocalProvider]" = weakref.WeakSet()


@dataclass(slots=True, eq=False)
class _Job:
    """One submitted block. ``final`` is set once, when the job is known to have ended."""

    job_id: str
    process: subprocess.Popen
    files: JobFiles
    deadline: Optional[float]  # monotonic time its walltime ends, if it has one
    final: Optional[JobStatus] = None


class LocalProvider(ExecutionProvider):
    """Runs each block as a group of processes on this machine.

    Args:
        nodes_per_block: passed to the launcher; each "node" is this machine.
        launcher: starts the copies of the worker command (default: one copy
            per task slot, in the background, with ``SingleNodeLauncher``).
        init_blocks: blocks started when the executor starts.
        min_blocks: blocks kept even when idle.
        max_blocks: blocks never exceeded.
        worker_init: shell lines run in the job before the workers start
            (``source venv/bin/activate``, ``module load ...``).
        cmd_timeout: accepted for Parsl compatibility; jobs start without a
            helper command, so there is nothing to time out.
        parallelism: ratio of task slots to outstanding tasks the strategy
            aims for, between 0 (as few blocks as possible) and 1 (a slot per task).
        walltime: ``HH:MM:SS`` after which a block is stopped and reported as
            TIMEOUT (checked at each status poll); None for no limit.
        channel: accepted for older Parsl configs and ignored: jobs always
            run on this machine.
        move_files: accepted for older Parsl configs and ignored.

    Attributes:
        cancel_grace_s: seconds a cancelled job gets between SIGTERM and SIGKILL.
    """

    cancel_grace_s: float = 2.0

    @typechecked
    def __init__(self, nodes_per_block: int = 1, launcher: Launcher = SingleNodeLauncher(),
                 init_blocks: int = 1, min_blocks: int = 0, max_blocks: int = 1, worker_init: str = "",
                 cmd_timeout: Union[int, float] = 30, parallelism: Union[int, float] = 1,
                 walltime: Optional[str] = None, channel: Any = None, move_files: Optional[bool] = None) -> None:
        super().__init__(init_blocks=init_blocks, min_blocks=min_blocks, max_blocks=max_blocks,
                         nodes_per_block=nodes_per_block, parallelism=parallelism, walltime=walltime,
                         worker_init=worker_init, launcher=launcher)
        self.cmd_timeout = cmd_timeout
        self.channel = channel
        self.move_files = move_files
        if channel is not None or move_files is not None:
            logger.info("LocalProvider ignores channel= and move_files=: jobs run on this machine")
        self._walltime_s = walltime_to_seconds(walltime) if walltime is not None else None
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        # Process groups being stopped: pgid -> (job, time to send SIGKILL). Guarded by _lock.
        self._stopping: dict[int, tuple[_Job, float]] = {}
        self._reaper: Optional[threading.Thread] = None
        _live_providers.add(self)

    @property
    def label(self) -> str:
        return "local"

    @property
    def status_polling_interval(self) -> float:
        # Asking a child process is a waitpid: cheap, so poll often.
        return 1.0

    def submit(self, command: str, tasks_per_node: int, job_name: str = "parsl_lite.auto") -> str:
        """Write the job script and start it in a new session.

        Raises:
            ScriptWriteError: ``script_dir`` is unset or not writable.
            SubmitException: ``/bin/bash`` could not be started.
            LauncherError: ``tasks_per_node`` below 1 or an empty command.
        """
        number = next(_job_numbers)
        files = self._job_files(f"{job_name}.{number}")
        write_job_script(files.script, self._job_script(command, tasks_per_node, job_name), self.label)
        try:
            with open(files.stdout, "wb") as out, open(files.stderr, "wb") as err:
                process = subprocess.Popen(["/bin/bash", files.script], stdin=subprocess.DEVNULL,
                                           stdout=out, stderr=err, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise SubmitException(self.label, f"cannot start /bin/bash {files.script}: {exc.strerror or exc}",
                                  job_name=job_name) from exc
        job_id = f"local-{number}-pid{process.pid}"
        deadline = time.monotonic() + self._walltime_s if self._walltime_s is not None else None
        with self._lock:
            self._jobs[job_id] = _Job(job_id, process, files, deadline)
        logger.debug("started job %s (%s) with pid %d", job_id, files.script, process.pid)
        return job_id

    def status(self, job_ids: Sequence[str]) -> list[JobStatus]:
        """Each job's status; also stops jobs past their walltime and leftovers of ended ones.

        Raises:
            UnknownJob: an id this provider did not issue.
        """
        now = time.monotonic()
        with self._lock:
            return [self._current_status(self._job(job_id), now) for job_id in job_ids]

    def cancel(self, job_ids: Sequence[str]) -> list[bool]:
        """SIGTERM each job's process group; SIGKILL follows after ``cancel_grace_s``.

        Returns at once. A job that had already ended keeps its own final
        status; any other is CANCELLED from now on. Unknown ids give False.
        """
        results = []
        with self._lock:
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None:
                    logger.warning("cannot cancel unknown job %s", job_id)
                    results.append(False)
                    continue
                if job.final is None:
                    code = job.process.poll()
                    job.final = (_ended_status(code, job.files) if code is not None else
                                 JobStatus(JobState.CANCELLED, "cancelled by parsl_lite",
                                           stdout_path=job.files.stdout, stderr_path=job.files.stderr))
                self._stop_group(job)
                results.append(True)
        return results

    # --- internals; callers hold self._lock ---

    def _job(self, job_id: str) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise UnknownJob(self.label, job_id) from None

    def _current_status(self, job: _Job, now: float) -> JobStatus:
        if job.final is not None:
            return job.final
        code = job.process.poll()
        if code is not None:
            job.final = _ended_status(code, job.files)
            logger.debug("job %s ended: %s", job.job_id, job.final)
            self._stop_group(job)  # a job's leftovers would outlive the block: stop them, as a batch system does
            return job.final
        if job.deadline is not None and now >= job.deadline:
            job.final = JobStatus(JobState.TIMEOUT, f"walltime {self.walltime} reached; stopped",
                                  stdout_path=job.files.stdout, stderr_path=job.files.stderr)
            logger.info("job %s reached its walltime %s; stopping it", job.job_id, self.walltime)
            self._stop_group(job)
            return job.final
        return JobStatus(JobState.RUNNING, stdout_path=job.files.stdout, stderr_path=job.files.stderr)

    def _stop_group(self, job: _Job) -> None:
        """SIGTERM the job's process group (if any member is left) and schedule the SIGKILL."""
        pgid = job.process.pid  # its own session leader, so the group id is its pid
        if pgid in self._stopping:
            return
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            return  # nothing left of the group
        except PermissionError:
            logger.warning("not allowed to signal process group %d of job %s", pgid, job.job_id)
            return
        self._stopping[pgid] = (job, time.monotonic() + self.cancel_grace_s)
        if self._reaper is None:
            self._reaper = threading.Thread(target=self._reap, name="parsl_lite-local-provider-reaper",
                                            daemon=True)
            self._reaper.start()

    def _reap(self) -> None:
        """Until every stopping group is gone: reap leaders, SIGKILL groups past their grace."""
        while True:
            with self._lock:
                now = time.monotonic()
                for job, _ in self._stopping.values():
                    job.process.poll()  # reap the leader: it is our child
                alive = _live_groups(set(self._stopping))
                for pgid, (job, kill_at) in list(self._stopping.items()):
                    if pgid not in alive:
                        del self._stopping[pgid]
                    elif now >= kill_at:
                        logger.warning("job %s did not stop within %.1fs of SIGTERM; sending SIGKILL",
                                       job.job_id, self.cancel_grace_s)
                        _killpg_quietly(pgid, signal.SIGKILL)
                        del self._stopping[pgid]
                if not self._stopping:
                    self._reaper = None
                    return
            time.sleep(_REAP_INTERVAL_S)


@atexit.register
def _kill_groups_being_stopped() -> None:
    """At exit the reaper, a daemon thread, dies with the interpreter: SIGKILL what it was stopping.

    Otherwise a cancelled job that ignores SIGTERM would outlive the user's script.
    """
    for provider in list(_live_providers):
        with provider._lock:
            for pgid in list(provider._stopping):
                _killpg_quietly(pgid, signal.SIGKILL)
            provider._stopping.clear()


def _ended_status(code: int, files: JobFiles) -> JobStatus:
    """The status of a job whose ``bash`` exited with ``code`` (negative: killed by a signal)."""
    paths = {"stdout_path": files.stdout, "stderr_path": files.stderr}
    if code == 0:
        return JobStatus(JobState.COMPLETED, exit_code=0, **paths)
    if code < 0:
        return JobStatus(JobState.FAILED, f"killed by signal {_signal_name(-code)} from outside parsl_lite",
                         exit_code=code, **paths)
    message = f"exit code {code}"
    if code > 128:  # bash reports a child killed by signal n as 128 + n
        message += f" (a process of the job was probably killed by {_signal_name(code - 128)})"
    tail = read_tail(files.stderr, _MESSAGE_TAIL_BYTES)
    if tail:
        message += f"; end of stderr ({files.stderr}):\n{tail.rstrip()}"
    return JobStatus(JobState.FAILED, message, exit_code=code, **paths)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _live_groups(pgids: set[int]) -> set[int]:
    """Those of ``pgids`` that still have a member that is not a zombie.

    ``killpg(pgid, 0)`` alone is not enough: a job's orphaned children become
    zombies of PID 1, which in containers may take seconds to reap them, and a
    zombie still counts as a group member. Only groups that answer ``killpg``
    are scanned.
    """
    candidates = set()
    for pgid in pgids:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass
        candidates.add(pgid)
    if not candidates:
        return set()
    alive = set()
    for process in psutil.process_iter(["status"]):
        try:
            pgid = os.getpgid(process.pid)
        except OSError:
            continue
        if pgid in candidates and process.info["status"] != psutil.STATUS_ZOMBIE:
            alive.add(pgid)
    return alive


def _killpg_quietly(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass
