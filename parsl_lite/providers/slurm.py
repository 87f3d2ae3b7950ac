"""Blocks as Slurm batch jobs.

Each block is one batch job: a script of ``#SBATCH`` lines built from the
provider's parameters, then ``worker_init``, then the launcher's command::

    submit ─► <script_dir>/<job>.sh ─► sbatch ─► "Submitted batch job 42" ─► job id "42"
    status ─► squeue --states=all --job=42,43,... (status_batch_size ids per call)
                  └─ for jobs squeue no longer lists, or that failed:
                     sacct (accounting on)  or  scontrol show job (kept MinJobAge, 300 s by default)
    cancel ─► scancel 42 43 ...

Slurm's state names and squeue's short codes map onto :class:`JobState`
through one table, :data:`SLURM_STATES`. A job's final status is kept once it
is known, so Slurm forgetting the job later (after ``MinJobAge``, or when
accounting is off) cannot turn a finished job into a lost one.

Every command runs through :func:`~parsl_lite.providers.cluster.run_command`
with ``cmd_timeout``: a failure is a ``ProviderError`` naming the command, its
exit code and Slurm's own stderr; a hang is killed and reported as such.
"""
from __future__ import annotations

import itertools
import logging
import re
import shlex
import threading
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Optional, Sequence, Union

from typeguard import typechecked

from parsl_lite.errors import ConfigurationError
from parsl_lite.launchers.base import Launcher
from parsl_lite.launchers.launchers import SingleNodeLauncher
from parsl_lite.providers.base import ExecutionProvider, JobFiles, JobState, JobStatus, read_tail, write_job_script
from parsl_lite.providers.cluster import SchedulerCommandFailed, SchedulerCommandTimeout, run_command
from parsl_lite.providers.errors import ProviderError, SubmitException, UnknownJob

logger = logging.getLogger(__name__)

_job_numbers = itertools.count()  # process-wide: two providers sharing a script_dir never collide
_MESSAGE_TAIL_BYTES = 600
_SCONTROL_ONE_BY_ONE = 4  # more ended jobs than this: one `scontrol show job` listing instead of one call each
_SAFE_VALUE = re.compile(r"[^\s'\"\\]+")  # a #SBATCH value we put in a line as it is

# (Slurm's state name, squeue's short code, our state). One row per Slurm state;
# both names are looked up, since squeue prints codes and sacct/scontrol names.
_STATE_ROWS: tuple[tuple[str, str, JobState], ...] = (
    ("PENDING", "PD", JobState.PENDING),
    ("CONFIGURING", "CF", JobState.PENDING),       # nodes booting for it
    ("REQUEUED", "RQ", JobState.PENDING),
    ("REQUEUE_FED", "RF", JobState.PENDING),
    ("RUNNING", "R", JobState.RUNNING),
    ("RESIZING", "RS", JobState.RUNNING),
    ("SIGNALING", "SI", JobState.RUNNING),
    ("STAGE_OUT", "SO", JobState.RUNNING),
    # Ended, processes still being cleaned up: not final, since the job may yet
    # turn out FAILED; the next poll sees its real end.
    ("COMPLETING", "CG", JobState.RUNNING),
    ("SUSPENDED", "S", JobState.HELD),
    ("STOPPED", "ST", JobState.HELD),
    ("REQUEUE_HOLD", "RH", JobState.HELD),
    ("RESV_DEL_HOLD", "RD", JobState.HELD),
    ("COMPLETED", "CD", JobState.COMPLETED),
    ("CANCELLED", "CA", JobState.CANCELLED),
    ("TIMEOUT", "TO", JobState.TIMEOUT),
    ("DEADLINE", "DL", JobState.TIMEOUT),          # ended at its --deadline: a time limit too
    ("FAILED", "F", JobState.FAILED),
    ("NODE_FAIL", "NF", JobState.FAILED),
    ("OUT_OF_MEMORY", "OOM", JobState.FAILED),
    ("BOOT_FAIL", "BF", JobState.FAILED),
    ("PREEMPTED", "PR", JobState.FAILED),          # killed for another job; its tasks must go elsewhere
    ("REVOKED", "RV", JobState.FAILED),            # federation: ran on another cluster
    ("SPECIAL_EXIT", "SE", JobState.FAILED),
)
SLURM_STATES: dict[str, JobState] = {
    name: state for long, short, state in _STATE_ROWS for name in (long, short)
}
_LONG_NAMES: dict[str, str] = {short: long for long, short, _ in _STATE_ROWS} | {
    long: long for long, _, _ in _STATE_ROWS}
# Ended states whose status is worth a second question (exit code, signal).
_ASK_DETAILS = frozenset({"FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "PREEMPTED", "SPECIAL_EXIT"})


def slurm_state(name: str) -> JobState:
    """Map a Slurm state (``RUNNING``, ``CANCELLED by 0``, ``PD``, ``OOM``) to a :class:`JobState`.

    Unknown names give ``UNKNOWN`` (not final, so the job is asked about again).
    """
    words = name.split()
    return SLURM_STATES.get(words[0].upper().rstrip("+"), JobState.UNKNOWN) if words else JobState.UNKNOWN


class SlurmRecord(NamedTuple):
    """What Slurm says about one job: its state and, once it ended, how."""

    state: str                       # Slurm's long name, e.g. FAILED
    reason: Optional[str] = None     # squeue/scontrol Reason, e.g. NonZeroExitCode, Resources
    exit_code: Optional[int] = None
    signal: Optional[int] = None


@dataclass(slots=True, eq=False)
class _Job:
    """One submitted block. ``final`` is set once, when the job is known to have ended."""

    job_id: str
    files: JobFiles
    final: Optional[JobStatus] = None


class SlurmProvider(ExecutionProvider):
    """Runs each block as a Slurm batch job.

    Args:
        partition: ``--partition``; None for the cluster's default.
        account: ``--account`` charged for the jobs.
        qos: ``--qos``.
        constraint: ``--constraint`` (node features).
        clusters: ``--clusters`` for sbatch, squeue, sacct and scancel (multi-cluster setups).
        nodes_per_block: ``--nodes`` of each job.
        cores_per_node: CPUs asked for on each node (``--cpus-per-task`` =
            cores_per_node / tasks per node); also tells the executor how many workers fit.
        mem_per_node: memory per node in GB (``--mem``).
        gpus_per_node: ``--gpus-per-node``.
        gres: ``--gres`` (generic resources, e.g. ``gpu:2``).
        init_blocks: blocks started when the executor starts.
        min_blocks: blocks kept even when idle.
        max_blocks: blocks never exceeded.
        parallelism: ratio of task slots to outstanding tasks the strategy aims for (0..1).
        walltime: ``--time`` as ``HH:MM:SS``; None to use the partition's default.
            Slurm rounds it up to whole minutes.
        scheduler_options: text placed after our ``#SBATCH`` lines, as it is
            (more ``#SBATCH`` lines, for example).
        regex_job_id: pattern that finds the job id in sbatch's output; the
            group named ``id`` (or the first group) is the id.
        worker_init: shell lines run in the job before the workers start.
        cmd_timeout: seconds any Slurm command may take before it is killed
            and reported as hanging.
        status_batch_size: job ids per ``squeue``/``sacct`` call.
        exclusive: ``--exclusive``: no other job shares the nodes.
        launcher: starts the workers in the job (``SrunLauncher`` for one per node).
        status_poll_interval_s: seconds between two status polls by the
            executor's poller (10 s; Slurm sites frown on tighter loops).

    Raises:
        TypeCheckError: a parameter of the wrong type.
        ConfigurationError: a value out of range or malformed (names the field).
    """

    @typechecked
    def __init__(self, partition: Optional[str] = None, account: Optional[str] = None, qos: Optional[str] = None,
                 constraint: Optional[str] = None, clusters: Optional[str] = None, nodes_per_block: int = 1,
                 cores_per_node: Optional[int] = None, mem_per_node: Optional[Union[int, float]] = None,
                 gpus_per_node: Optional[int] = None, gres: Optional[str] = None, init_blocks: int = 1,
                 min_blocks: int = 0, max_blocks: int = 1, parallelism: Union[int, float] = 1,
                 walltime: Optional[str] = "00:10:00", scheduler_options: str = "",
                 regex_job_id: str = r"Submitted batch job (?P<id>\S*)", worker_init: str = "",
                 cmd_timeout: Union[int, float] = 10, status_batch_size: int = 50, exclusive: bool = True,
                 launcher: Launcher = SingleNodeLauncher(),
                 status_poll_interval_s: Union[int, float] = 10.0) -> None:
        super().__init__(init_blocks=init_blocks, min_blocks=min_blocks, max_blocks=max_blocks,
                         nodes_per_block=nodes_per_block, parallelism=parallelism, walltime=walltime,
                         worker_init=worker_init, launcher=launcher, cores_per_node=cores_per_node,
                         mem_per_node=mem_per_node)
        for field, value in (("partition", partition), ("account", account), ("qos", qos),
                             ("constraint", constraint), ("clusters", clusters), ("gres", gres)):
            if value is not None and not _SAFE_VALUE.fullmatch(value):
                raise ConfigurationError(field, f"must be a non-empty word without spaces or quotes, got {value!r}")
        if gpus_per_node is not None and gpus_per_node < 1:
            raise ConfigurationError("gpus_per_node", f"must be >= 1 or None, got {gpus_per_node}")
        if cmd_timeout <= 0:
            raise ConfigurationError("cmd_timeout", f"must be > 0 seconds, got {cmd_timeout}")
        if status_batch_size < 1:
            raise ConfigurationError("status_batch_size", f"must be >= 1, got {status_batch_size}")
        if status_poll_interval_s <= 0:
            raise ConfigurationError("status_poll_interval_s", f"must be > 0 seconds, got {status_poll_interval_s}")
        try:
            pattern = re.compile(regex_job_id)
        except re.error as exc:
            raise ConfigurationError("regex_job_id", f"not a regular expression: {exc}") from None
        if pattern.groups < 1:
            raise ConfigurationError("regex_job_id", "needs a group that captures the id, e.g. (?P<id>\\S+)")
        self.partition = partition
        self.account = account
        self.qos = qos
        self.constraint = constraint
        self.clusters = clusters
        self.gpus_per_node = gpus_per_node
        self.gres = gres
        self.scheduler_options = scheduler_options
        self.regex_job_id = regex_job_id
        self.cmd_timeout = cmd_timeout
        self.status_batch_size = status_batch_size
        self.status_poll_interval_s = status_poll_interval_s
        self.exclusive = exclusive
        self._job_id_pattern = pattern
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()  # guards _jobs and each _Job.final; never held around a command
        self._accounting: Optional[bool] = None  # does sacct work here? None until asked

    @property
    def label(self) -> str:
        return "slurm"

    @property
    def status_polling_interval(self) -> float:
        return self.status_poll_interval_s

    def submit(self, command: str, tasks_per_node: int, job_name: str = "parsl_lite.auto") -> str:
        """Write the batch script and ``sbatch`` it.

        Raises:
            ScriptWriteError: ``script_dir`` is unset or not writable.
            SubmitException: sbatch refused the job (Slurm's message, exit
                code and stderr included), hung past ``cmd_timeout``, or
                printed no job id.
            LauncherError: ``tasks_per_node`` below 1 or an empty command.
        """
        files = self._job_files(f"{job_name}.{next(_job_numbers)}")
        header = self._sbatch_header(job_name, files, tasks_per_node)
        write_job_script(files.script, self._job_script(command, tasks_per_node, job_name, header), self.label)
        argv = ["sbatch", *self._cluster_args(), files.script]
        try:
            result = run_command(argv, timeout_s=self.cmd_timeout, provider=self.label)
        except SchedulerCommandTimeout as exc:
            raise SubmitException(self.label, f"{exc.reason}; the job may or may not have been queued "
                                  "(check squeue)", job_name=job_name) from exc
        except SchedulerCommandFailed as exc:
            raise SubmitException(self.label, f"sbatch refused {files.script}: `{exc.command}`",
                                  job_name=job_name, stdout=exc.stdout, stderr=exc.stderr,
                                  retcode=exc.returncode) from exc
        match = self._job_id_pattern.search(result.stdout)
        if match is None:
            raise SubmitException(self.label, f"no job id in sbatch's output {result.stdout.strip()!r} "
                                  f"(regex_job_id={self.regex_job_id!r})", job_name=job_name,
                                  stdout=result.stdout, stderr=result.stderr, retcode=result.returncode)
        job_id = match.group("id") if "id" in self._job_id_pattern.groupindex else match.group(1)
        with self._lock:
            self._jobs[job_id] = _Job(job_id, files)
        logger.debug("submitted Slurm job %s (%s) in %.3fs", job_id, files.script, result.duration_s)
        return job_id

    def status(self, job_ids: Sequence[str]) -> list[JobStatus]:
        """Each job's status, from squeue, then sacct or scontrol for jobs that ended.

        Raises:
            UnknownJob: an id this provider did not issue.
            ProviderError: a Slurm command failed or hung (the caller keeps
                the statuses it had and asks again later).
        """
        with self._lock:
            jobs = [self._job(job_id) for job_id in job_ids]
            to_ask = list(dict.fromkeys(job.job_id for job in jobs if job.final is None))
        current: dict[str, JobStatus] = {}
        if to_ask:
            records = self._squeue(to_ask)
            ended = [jid for jid in to_ask if jid not in records or records[jid].state in _ASK_DETAILS]
            if ended:
                records.update(self._ended_records(ended))
            with self._lock:
                for job_id in to_ask:
                    job = self._jobs[job_id]
                    if job.final is not None:  # a cancel settled it while we asked
                        continue
                    status = self._status_from(job, records.get(job_id))
                    if status.terminal:
                        job.final = status
                        logger.debug("Slurm job %s ended: %s", job_id, status)
                    current[job_id] = status
        with self._lock:
            return [job.final if job.final is not None else current[job.job_id] for job in jobs]

    def cancel(self, job_ids: Sequence[str]) -> list[bool]:
        """``scancel`` the jobs; each is CANCELLED from now on, unless its end was already known.

        Returns:
            For each id: True if it is cancelled or had ended; False if it is
            unknown or scancel failed (the failure is logged).
        """
        with self._lock:
            known = [job_id for job_id in job_ids if job_id in self._jobs]
            live = list(dict.fromkeys(job_id for job_id in known if self._jobs[job_id].final is None))
        for job_id in set(job_ids) - set(known):
            logger.warning("cannot cancel unknown Slurm job %s: not submitted by this provider", job_id)
        failed: set[str] = set()
        for batch in _batches(live, self.status_batch_size):
            try:
                run_command(["scancel", *self._cluster_args(), *batch], timeout_s=self.cmd_timeout,
                            provider=self.label)
            except ProviderError as exc:
                logger.error("cannot cancel Slurm jobs %s: %s", ",".join(batch), exc)
                failed.update(batch)
        with self._lock:
            for job_id in live:
                job = self._jobs[job_id]
                if job_id not in failed and job.final is None:
                    job.final = JobStatus(JobState.CANCELLED, f"Slurm job {job_id} cancelled by parsl_lite",
                                          stdout_path=job.files.stdout, stderr_path=job.files.stderr)
        return [job_id in known and job_id not in failed for job_id in job_ids]

    # --- the batch script ---

    def _sbatch_header(self, job_name: str, files: JobFiles, tasks_per_node: int) -> str:
        """The ``#SBATCH`` lines of one job, then ``scheduler_options``."""
        options = [f"--job-name={_quoted(job_name)}", f"--output={_quoted(files.stdout)}",
                   f"--error={_quoted(files.stderr)}", f"--nodes={self.nodes_per_block}",
                   f"--ntasks-per-node={tasks_per_node}"]
        if self.walltime is not None:
            options.append(f"--time={self.walltime.strip()}")
        if self.cores_per_node is not None:
            if self.cores_per_node % tasks_per_node:
                logger.warning("cores_per_node=%d does not divide among %d tasks per node; each task gets %d",
                               self.cores_per_node, tasks_per_node, max(1, self.cores_per_node // tasks_per_node))
            options.append(f"--cpus-per-task={max(1, self.cores_per_node // tasks_per_node)}")
        if self.mem_per_node is not None:
            options.append(f"--mem={max(1, int(self.mem_per_node * 1024))}M")
        if self.exclusive:
            options.append("--exclusive")
        for flag, value in (("partition", self.partition), ("account", self.account), ("qos", self.qos),
                            ("constraint", self.constraint), ("clusters", self.clusters),
                            ("gpus-per-node", self.gpus_per_node), ("gres", self.gres)):
            if value is not None:
                options.append(f"--{flag}={value}")
        lines = [f"#SBATCH {option}" for option in options]
        if self.scheduler_options.strip():
            lines.append(self.scheduler_options.strip("\n"))
        return "\n".join(lines)

    def _cluster_args(self) -> list[str]:
        return [f"--clusters={self.clusters}"] if self.clusters else []

    # --- asking Slurm ---

    def _squeue(self, job_ids: list[str]) -> dict[str, SlurmRecord]:
        """State and reason of each job squeue still lists (finished ones too, until MinJobAge)."""
        records: dict[str, SlurmRecord] = {}
        for batch in _batches(job_ids, self.status_batch_size):
            argv = ["squeue", *self._cluster_args(), "--noheader", "--states=all", "--format=%i %t %r",
                    f"--jobs={','.join(batch)}"]
            result = run_command(argv, timeout_s=self.cmd_timeout, provider=self.label, check=False)
            if result.returncode != 0:
                # One id that Slurm has forgotten makes squeue fail (more ids do not): not an error.
                if "Invalid job id" in result.stderr:
                    continue
                raise SchedulerCommandFailed(self.label, _argv_text(argv), result.returncode, result.stderr,
                                             result.stdout)
            records.update(parse_squeue(result.stdout, set(batch)))
        return records

    def _ended_records(self, job_ids: list[str]) -> dict[str, SlurmRecord]:
        """How jobs ended: sacct if accounting is on, else ``scontrol show job`` (one id per call)."""
        records: dict[str, SlurmRecord] = {}
        if self._accounting is not False:
            records.update(self._sacct(job_ids))
        left = [job_id for job_id in job_ids if job_id not in records]
        if len(left) > _SCONTROL_ONE_BY_ONE:
            records.update(self._scontrol(None, set(left)))  # one listing of every job beats many calls
        else:
            for job_id in left:
                records.update(self._scontrol(job_id, {job_id}))
        return records

    def _sacct(self, job_ids: list[str]) -> dict[str, SlurmRecord]:
        records: dict[str, SlurmRecord] = {}
        for batch in _batches(job_ids, self.status_batch_size):
            argv = ["sacct", *self._cluster_args(), "--allocations", "--noheader", "--parsable2",
                    "--format=JobIDRaw,State,ExitCode", f"--jobs={','.join(batch)}"]
            result = run_command(argv, timeout_s=self.cmd_timeout, provider=self.label, check=False)
            if result.returncode != 0:
                if "accounting storage is disabled" in result.stderr:
                    logger.info("Slurm accounting is disabled here; asking scontrol about ended jobs")
                    self._accounting = False
                else:
                    logger.warning("`%s` failed (exit code %d): %s; asking scontrol instead", _argv_text(argv),
                                   result.returncode, result.stderr.strip())
                return records
            self._accounting = True
            records.update(parse_sacct(result.stdout, set(batch)))
        return records

    def _scontrol(self, job_id: Optional[str], wanted: set[str]) -> dict[str, SlurmRecord]:
        """``scontrol show job`` for one job, or for every job Slurm still holds (``job_id`` None)."""
        argv = ["scontrol", *self._cluster_args(), "--oneliner", "show", "job", *([job_id] if job_id else [])]
        result = run_command(argv, timeout_s=self.cmd_timeout, provider=self.label, check=False)
        if result.returncode != 0:
            if "Invalid job id" in result.stderr:
                return {}  # purged (older than MinJobAge)
            raise SchedulerCommandFailed(self.label, _argv_text(argv), result.returncode, result.stderr,
                                         result.stdout)
        return parse_scontrol(result.stdout, wanted)

    # --- internals; callers hold self._lock ---

    def _job(self, job_id: str) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise UnknownJob(self.label, job_id) from None

    def _status_from(self, job: _Job, record: Optional[SlurmRecord]) -> JobStatus:
        paths = {"stdout_path": job.files.stdout, "stderr_path": job.files.stderr}
        if record is None:
            return JobStatus(JobState.MISSING, f"Slurm no longer knows job {job.job_id}: not in squeue, sacct "
                             "or scontrol (purged after MinJobAge with accounting off?)", **paths)
        state = slurm_state(record.state)
        if state is JobState.PENDING and (record.reason or "").startswith("JobHeld"):
            state = JobState.HELD  # held by a user or an administrator (scontrol hold, sbatch --hold)
        if state is JobState.UNKNOWN:
            return JobStatus(state, f"Slurm job {job.job_id} is in a state parsl_lite does not know: "
                             f"{record.state}", **paths)
        if state is JobState.COMPLETED:
            return JobStatus(state, exit_code=0, **paths)
        return JobStatus(state, _message(job, record, state), exit_code=record.exit_code, **paths)


def _message(job: _Job, record: SlurmRecord, state: JobState) -> Optional[str]:
    """Why a job is where it is, in words, with the end of its stderr if it failed."""
    reason = record.reason if record.reason not in (None, "None", "(null)") else None
    if state in (JobState.PENDING, JobState.HELD, JobState.RUNNING):
        parts = [record.state.lower()] if record.state not in ("PENDING", "RUNNING") else []
        return ", ".join(parts + ([f"reason: {reason}"] if reason else [])) or None
    text = f"Slurm job {job.job_id} {record.state}"
    if reason:
        text += f" ({reason})"
    if state is JobState.CANCELLED:
        return text + ": cancelled outside parsl_lite (scancel, an administrator, or a dependency)"
    if state is JobState.TIMEOUT:
        return text + ": reached its time limit"
    if record.signal:
        text += f", killed by signal {record.signal}"
    if record.exit_code is not None:
        text += f", exit code {record.exit_code}"
    tail = read_tail(job.files.stderr, _MESSAGE_TAIL_BYTES)
    if tail:
        text += f"; end of stderr ({job.files.stderr}):\n{tail.rstrip()}"
    return text


# --- parsers of Slurm's output (pure; tested on their own) ---

def parse_squeue(text: str, wanted: set[str]) -> dict[str, SlurmRecord]:
    """Parse ``squeue --format='%i %t %r'`` lines; other lines (``CLUSTER: x``) are skipped."""
    records = {}
    for line in text.splitlines():
        fields = line.split(None, 2)
        if len(fields) >= 2 and fields[0] in wanted:
            state = _LONG_NAMES.get(fields[1], fields[1])
            records[fields[0]] = SlurmRecord(state, fields[2].strip() if len(fields) > 2 else None)
    return records


def parse_sacct(text: str, wanted: set[str]) -> dict[str, SlurmRecord]:
    """Parse ``sacct --parsable2 --format=JobIDRaw,State,ExitCode`` lines (the last row of a job wins)."""
    records = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) >= 3 and fields[0] in wanted and fields[1]:
            state = fields[1].split()[0]  # "CANCELLED by 0"
            exit_code, signal = _exit_code(fields[2])
            records[fields[0]] = SlurmRecord(state, None, exit_code, signal)
    return records


_KEY_VALUE = re.compile(r"(?:^|\s)([A-Za-z][\w:/]*)=(\S*)")


def parse_scontrol(text: str, wanted: set[str]) -> dict[str, SlurmRecord]:
    """Parse ``scontrol --oneliner show job`` lines (``JobId=5 ... JobState=FAILED ... ExitCode=3:0``)."""
    records = {}
    for line in text.splitlines():
        fields = dict(_KEY_VALUE.findall(line))
        if fields.get("JobId") in wanted and "JobState" in fields:
            exit_code, signal = _exit_code(fields.get("ExitCode", ""))
            records[fields["JobId"]] = SlurmRecord(fields["JobState"], fields.get("Reason"), exit_code, signal)
    return records


def _exit_code(text: str) -> tuple[Optional[int], Optional[int]]:
    """``"3:0"`` -> (3, 0): Slurm's exit code and the signal that ended the job (0 if none)."""
    code, _, signal = text.partition(":")
    try:
        return int(code), int(signal or 0)
    except ValueError:
        return None, None


def _batches(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _quoted(value: str) -> str:
    """A value for an ``#SBATCH`` line; sbatch strips double quotes around values with spaces."""
    return f'"{value}"' if re.search(r"\s", value) else value


def _argv_text(argv: Sequence[str]) -> str:
    return shlex.join(argv)
