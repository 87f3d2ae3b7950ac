"""Blocks as detached process groups on SSH hosts (paramiko).

Each block goes to the next host in turn (a host that cannot be reached is
skipped, with a warning, and the block goes to the one after)::

    submit ─► SFTP <dir>/<job>.sh ─► ssh: setsid nohup bash -c 'bash <job>.sh; echo $? > <job>.ec' &
                                          stdout ─► <job>.out, stderr ─► <job>.err; prints the pid
    status ─► ssh, one command per host: ps -o pid=,stat= -p <pids>, read the <job>.ec files,
              stop the process groups of the jobs that ended (their leftovers)
    cancel ─► ssh, per host: (detached) kill -TERM -<pgid>..., KILL after a grace period

``setsid`` makes the job's wrapper shell the leader of a new session, so the
job outlives the SSH session, and its pid is the process group of everything
the job starts. The wrapper writes the job's exit code to ``<job>.ec`` when
the job ends, so a finished job's exit code is known; a group that vanished
without one was killed from outside (``kill -9``) or its host rebooted. As a
batch system does, the provider stops whatever a job left running when it
ended. Connections are pooled per host (``ssh_channel.py``) and re-opened
when they broke.

On the remote host the provider needs ``bash``, ``setsid``, ``nohup``, ``ps``
and SFTP, and the job needs Python with parsl_lite installed (set
``worker_init`` to activate it).

How worker pools reach the interchange (``HighThroughputExecutor(address=)``):

- Hosts that can reach this machine: set ``address`` to an address of this
  machine *they* can reach (e.g. ``address="10.200.0.1"``); the interchange
  then listens on all interfaces. The default address, 127.0.0.1, only works
  for an SSH host that is this machine.
- Hosts that cannot reach us (NAT, firewall): ``SSHProvider(tunnel=True)`` and
  leave ``address`` unset (127.0.0.1). Each host's sshd then listens on its own
  ``127.0.0.1:<worker port>`` and forwards every connection back through our
  SSH connection to the interchange, which listens on loopback only. The
  worker port must be free on each host, and cannot be tunnelled to a host
  that is this machine (the interchange holds the port).

With ``encrypted=True`` (the default) the pools read the executor's keys from
``<run_dir>/<label>/certificates``: that path must exist on the hosts too (a
shared file system), or be copied there before the blocks start.
"""
from __future__ import annotations

import itertools
import logging
import os
import re
import shlex
import signal
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from typeguard import typechecked

from parsl_lite.errors import ConfigurationError, OptionalModuleMissing
from parsl_lite.launchers.base import Launcher
from parsl_lite.launchers.launchers import SingleNodeLauncher
from parsl_lite.providers import ssh_channel
from parsl_lite.providers.base import (
    ExecutionProvider, JobState, JobStatus, _safe_name, read_tail, walltime_to_seconds, write_job_script,
)
from parsl_lite.providers.errors import ProviderError, SubmitException, UnknownJob
from parsl_lite.providers.ssh_channel import SSHConnection, SSHHostError, SSHSettings, parse_target

logger = logging.getLogger(__name__)

_job_numbers = itertools.count()
_MESSAGE_TAIL_BYTES = 600
_FETCH_MAX_BYTES = 1 << 20          # a finished job's stdout/stderr copied back, at most this much (the end)
_STOP_STEP_S = 0.1
_PORT_IN_COMMAND = re.compile(r"--port[= ](\d+)")
_ADDRESS_IN_COMMAND = re.compile(r"--address[= ](\S+)")


@dataclass(frozen=True, slots=True)
class _RemoteFiles:
    """One job's files on its host (absolute paths)."""

    script: str
    stdout: str
    stderr: str
    exit_code: str

    @classmethod
    def in_dir(cls, directory: str, name: str) -> "_RemoteFiles":
        base = f"{directory.rstrip('/')}/{name}"
        return cls(f"{base}.sh", f"{base}.out", f"{base}.err", f"{base}.ec")


@dataclass(slots=True, eq=False)
class _Job:
    """One submitted block. ``final`` is set once (under the provider's lock), when it ended for us."""

    job_id: str
    name: str
    connection: SSHConnection
    pid: int                    # the wrapper's pid, also the job's process group and session
    files: _RemoteFiles
    deadline: Optional[float]   # monotonic time its walltime ends, if it has one
    final: Optional[JobStatus] = None


@dataclass(frozen=True, slots=True)
class Observation:
    """What one probe of a host said about one job's process group."""

    alive: bool                 # the wrapper runs (and is not a zombie)
    stopped: bool = False       # ... but is stopped (SIGSTOP)
    exit_code: Optional[int] = None  # recorded by the wrapper when the job ended


class SSHProvider(ExecutionProvider):
    """Runs each block as a detached process group on one of several SSH hosts, in turn.

    Args:
        hostnames: the hosts; ``"host"`` or ``"host:port"`` (``port`` applies
            to those without one).
        username: the remote user (default: the local user name).
        port: sshd's port on hosts that do not name one.
        key_filename: a private key file; without it the keys in ``~/.ssh``
            and the SSH agent are tried.
        known_hosts: a known_hosts file to check host keys against (default
            ``~/.ssh/known_hosts``). Unknown host keys are refused ...
        accept_unknown_hosts: ... unless this is True (then trusted for this
            run, never written to any file).
        remote_script_dir: where job scripts and their output go on each host,
            relative to the login directory unless absolute.
        nodes_per_block: passed to the launcher; each block runs on one host.
        init_blocks: blocks started when the executor starts.
        min_blocks: blocks kept even when idle.
        max_blocks: blocks never exceeded.
        parallelism: ratio of task slots to outstanding tasks the strategy aims for.
        worker_init: shell lines run in the job before the workers start
            (``source ~/venv/bin/activate``).
        launcher: starts the copies of the worker command.
        walltime: ``HH:MM:SS`` after which a block is stopped and reported as
            TIMEOUT (checked at each status poll); None for no limit.
        cmd_timeout: seconds to wait for a connection or a remote command.
        tunnel: forward each host's ``127.0.0.1:<worker port>`` to the
            interchange over the SSH connection (see the module docstring).

    Raises:
        OptionalModuleMissing: paramiko (the ``ssh`` extra) is not installed.
        ConfigurationError: a bad host name, port, timeout or missing key file.

    Attributes:
        cancel_grace_s: seconds a stopped job gets between SIGTERM and SIGKILL.
        status_poll_interval_s: seconds between two status polls (one SSH
            command per host each).
    """

    cancel_grace_s: float = 2.0
    status_poll_interval_s: float = 5.0

    @typechecked
    def __init__(self, hostnames: Sequence[str], username: Optional[str] = None, port: int = 22,
                 key_filename: Optional[str] = None, known_hosts: Optional[str] = None,
                 accept_unknown_hosts: bool = False, remote_script_dir: str = ".parsl_lite/jobs",
                 nodes_per_block: int = 1, init_blocks: int = 1, min_blocks: int = 0, max_blocks: int = 1,
                 parallelism: Union[int, float] = 1, worker_init: str = "",
                 launcher: Launcher = SingleNodeLauncher(), walltime: Optional[str] = None,
                 cmd_timeout: Union[int, float] = 30, tunnel: bool = False) -> None:
        if ssh_channel.paramiko is None:
            raise OptionalModuleMissing(["paramiko"], "SSHProvider talks SSH through paramiko: "
                                        "pip install 'parsl_lite[ssh]'")
        super().__init__(init_blocks=init_blocks, min_blocks=min_blocks, max_blocks=max_blocks,
                         nodes_per_block=nodes_per_block, parallelism=parallelism, walltime=walltime,
                         worker_init=worker_init, launcher=launcher)
        targets = _check_arguments(hostnames, port, key_filename, known_hosts, remote_script_dir, cmd_timeout)
        self.hostnames = list(hostnames)
        self.username = username
        self.port = port
        self.key_filename = key_filename
        self.known_hosts = known_hosts
        self.accept_unknown_hosts = accept_unknown_hosts
        self.remote_script_dir = remote_script_dir
        self.cmd_timeout = cmd_timeout
        self.tunnel = tunnel
        settings = SSHSettings(username, _expand(key_filename), _expand(known_hosts), accept_unknown_hosts,
                               float(cmd_timeout))
        self._connections = [SSHConnection(target, settings, self.label) for target in targets]
        self._turn = itertools.cycle(range(len(self._connections)))
        self._token = uuid.uuid4().hex[:8]  # job file names stay unique across runs sharing a directory
        self._walltime_s = walltime_to_seconds(walltime) if walltime is not None else None
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    @property
    def label(self) -> str:
        return "ssh"

    @property
    def status_polling_interval(self) -> float:
        return self.status_poll_interval_s

    # ------------------------------------------------------------ the interface

    def submit(self, command: str, tasks_per_node: int, job_name: str = "parsl_lite.auto") -> str:
        """Stage the job script on the next host and start it there, detached.

        Raises:
            SubmitException: no host could start it (each host and its reason
                are named), or ``tunnel=True`` with a command it cannot tunnel.
            LauncherError: ``tasks_per_node`` below 1 or an empty command.
        """
        number = next(_job_numbers)
        name = f"{_safe_name(job_name)}.{self._token}-{number}"
        text = self._job_script(command, tasks_per_node, job_name)
        tunnel_port = self._tunnel_port(command, job_name) if self.tunnel else None
        if self.script_dir:  # a local copy, beside the executor's other files, to read when debugging
            os.makedirs(self.script_dir, exist_ok=True)
            write_job_script(os.path.join(self.script_dir, f"{name}.sh"), text, self.label)
        failures: list[SSHHostError] = []
        with self._lock:
            first = next(self._turn)
        count = len(self._connections)
        for connection in (self._connections[(first + i) % count] for i in range(count)):
            try:
                job = self._start(connection, name, text, tunnel_port, number)
            except SSHHostError as exc:
                failures.append(exc)
                if len(failures) < count:
                    logger.warning("job %s not started on %s (%s); trying the next host", name,
                                   connection.where, exc.reason)
                continue
            with self._lock:
                self._jobs[job.job_id] = job
            logger.debug("started job %s on %s with pid %d", job.job_id, connection.where, job.pid)
            return job.job_id
        reasons = "; ".join(f"{exc.where}: {exc.reason}" for exc in failures)
        raise SubmitException(self.label, f"no host could start the job: {reasons}", job_name=job_name) \
            from failures[-1]

    def status(self, job_ids: Sequence[str]) -> list[JobStatus]:
        """Each job's status, with one SSH command per host; stops jobs past their walltime.

        A host that cannot be reached gives UNKNOWN for its jobs (with the
        reason); if no host could be reached, ProviderError.

        Raises:
            UnknownJob: an id this provider did not issue.
            ProviderError: none of the hosts asked could be reached.
        """
        with self._lock:
            jobs = [self._job(job_id) for job_id in job_ids]
        by_host: dict[SSHConnection, list[_Job]] = defaultdict(list)
        for job in jobs:
            if job.final is None:
                by_host[job.connection].append(job)
        current: dict[str, JobStatus] = {}
        failures: list[SSHHostError] = []
        for connection, host_jobs in by_host.items():
            try:
                current.update(self._poll_host(connection, host_jobs))
            except SSHHostError as exc:
                failures.append(exc)
                unknown = JobStatus(JobState.UNKNOWN, f"cannot ask {exc.where}: {exc.reason}")
                current.update({job.job_id: unknown for job in host_jobs})
        if failures and len(failures) == len(by_host):
            raise ProviderError(self.label, "; ".join(f"{exc.where}: {exc.reason}" for exc in failures)) \
                from failures[-1]
        return [job.final or current[job.job_id] for job in jobs]

    def cancel(self, job_ids: Sequence[str]) -> list[bool]:
        """Stop each job's process group: SIGTERM now, SIGKILL after ``cancel_grace_s``.

        The waiting happens on the host, so this returns after one SSH
        command per host. A job that had already ended keeps its own final
        status; any other is CANCELLED from now on. False for unknown ids and
        for jobs whose host could not be reached.
        """
        results: dict[str, bool] = {}
        to_stop: dict[SSHConnection, list[_Job]] = defaultdict(list)
        with self._lock:
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None:
                    logger.warning("cannot cancel unknown job %s", job_id)
                    results[job_id] = False
                    continue
                results[job_id] = True
                if job.final is None:
                    job.final = JobStatus(JobState.CANCELLED, "cancelled by parsl_lite")
                    to_stop[job.connection].append(job)
        for connection, jobs in to_stop.items():
            try:
                self._stop_groups(connection, jobs)
            except SSHHostError as exc:
                logger.error("cannot stop jobs %s: %s", [job.job_id for job in jobs], exc)
                results.update({job.job_id: False for job in jobs})
        return [results[job_id] for job_id in job_ids]

    def close(self) -> None:
        """Close every SSH connection (and its tunnels). Jobs keep running; cancel them first."""
        for connection in self._connections:
            connection.close()

    # ------------------------------------------------------------ internals

    def _job(self, job_id: str) -> _Job:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise UnknownJob(self.label, job_id) from None

    def _tunnel_port(self, command: str, job_name: str) -> int:
        port = _PORT_IN_COMMAND.search(command)
        if port is None:
            raise SubmitException(self.label, "tunnel=True needs the worker port in the command as '--port N' "
                                  "(as the HighThroughputExecutor's launch command has it)", job_name=job_name)
        address = _ADDRESS_IN_COMMAND.search(command)
        if address is not None and not (address.group(1).startswith("127.") or address.group(1) == "localhost"):
            raise SubmitException(self.label, f"tunnel=True: pools must connect to 127.0.0.1 on their host, "
                                  f"but the command says --address {address.group(1)}; leave "
                                  f"HighThroughputExecutor(address=) unset", job_name=job_name)
        return int(port.group(1))

    def _start(self, connection: SSHConnection, name: str, text: str, tunnel_port: Optional[int],
               number: int) -> _Job:
        files = _RemoteFiles.in_dir(connection.remote_dir(self.remote_script_dir), name)
        connection.put_text(files.script, text)
        if tunnel_port is not None:
            connection.ensure_forward(tunnel_port, "127.0.0.1", tunnel_port)
        result = connection.run(_in_bash(_launch_command(files)))
        pid_text = result.stdout.strip()
        if result.exit_code != 0 or not pid_text.isdigit():
            raise SSHHostError(self.label, connection.where,
                               f"could not start {files.script} (exit code {result.exit_code}, "
                               f"stdout {pid_text!r}, stderr {result.stderr.strip()[-300:]!r})")
        pid = int(pid_text)
        job_id = f"ssh-{number}-{connection.target.host}-pid{pid}"
        deadline = time.monotonic() + self._walltime_s if self._walltime_s is not None else None
        return _Job(job_id, name, connection, pid, files, deadline)

    def _poll_host(self, connection: SSHConnection, jobs: list[_Job]) -> dict[str, JobStatus]:
        """Probe one host for its jobs (one command); settle those that ended or timed out."""
        probe = probe_command([(job.pid, job.files.exit_code) for job in jobs], self.cancel_grace_s)
        result = connection.run(_in_bash(probe))
        if result.exit_code != 0:
            raise SSHHostError(self.label, connection.where,
                               f"status probe failed (exit code {result.exit_code}): {result.stderr.strip()[-300:]}")
        observed = parse_probe(result.stdout)
        now = time.monotonic()
        statuses: dict[str, JobStatus] = {}
        ended: list[tuple[_Job, JobStatus]] = []
        timed_out: list[_Job] = []
        for job in jobs:
            seen = observed.get(job.pid)
            if seen is None:
                raise SSHHostError(self.label, connection.where, f"status probe said nothing about pid {job.pid}: "
                                   f"{result.stdout.strip()[-300:]!r} {result.stderr.strip()[-300:]!r}")
            if not seen.alive:  # its group is being stopped by the probe itself
                ended.append((job, self._ended_status(job, seen.exit_code)))
            elif job.deadline is not None and now >= job.deadline:
                ended.append((job, JobStatus(JobState.TIMEOUT, f"walltime {self.walltime} reached; stopped")))
                timed_out.append(job)
            elif seen.stopped:
                statuses[job.job_id] = JobStatus(JobState.HELD, f"stopped (SIGSTOP) on {connection.where}")
            else:
                statuses[job.job_id] = JobStatus(JobState.RUNNING)
        if timed_out:
            try:
                self._stop_groups(connection, timed_out)
            except SSHHostError as exc:
                logger.warning("cannot stop jobs past their walltime %s: %s", [j.job_id for j in timed_out], exc)
        with self._lock:
            for job, status in ended:
                if job.final is None:
                    job.final = status
                    logger.debug("job %s ended: %s", job.job_id, status)
                statuses[job.job_id] = job.final
        return statuses

    def _ended_status(self, job: _Job, code: Optional[int]) -> JobStatus:
        """The final status of a job whose wrapper is gone, with its output copied back."""
        stdout_path, stderr_path, err_tail = self._fetch_output(job)
        paths = {"stdout_path": stdout_path, "stderr_path": stderr_path}
        where = job.connection.where
        if code == 0:
            return JobStatus(JobState.COMPLETED, exit_code=0, **paths)
        if code is None:
            message = (f"its processes on {where} ended without recording an exit code: killed from outside "
                       f"parsl_lite (e.g. kill -9 of its process group {job.pid}) or the host restarted")
            return JobStatus(JobState.FAILED, message, **paths)
        message = f"exit code {code} on {where}"
        if code > 128:  # bash reports a child killed by signal n as 128 + n
            message += f" (a process of the job was probably killed by {_signal_name(code - 128)})"
        if err_tail:
            message += f"; end of stderr ({job.files.stderr}):\n{err_tail.rstrip()}"
        return JobStatus(JobState.FAILED, message, exit_code=code, **paths)

    def _fetch_output(self, job: _Job) -> tuple[Optional[str], Optional[str], Optional[str]]:
        """Copy the end of the job's stdout/stderr next to its local script copy; return paths and stderr's tail."""
        local: list[Optional[str]] = []
        err_tail: Optional[str] = None
        for remote, suffix in ((job.files.stdout, "out"), (job.files.stderr, "err")):
            try:
                data = job.connection.read_tail(remote, _FETCH_MAX_BYTES)
            except SSHHostError as exc:
                logger.warning("cannot copy back %s: %s", remote, exc)
                data = None
            path = None
            if data is not None and self.script_dir:
                path = os.path.join(self.script_dir, f"{job.name}.{suffix}")
                try:
                    with open(path, "wb") as stream:
                        stream.write(data)
                except OSError as exc:
                    logger.warning("cannot write %s: %s", path, exc)
                    path = None
            if suffix == "err" and data:
                err_tail = (read_tail(path, _MESSAGE_TAIL_BYTES) if path else
                            data[-_MESSAGE_TAIL_BYTES:].decode(errors="replace"))
            local.append(path)
        return local[0], local[1], err_tail

    def _stop_groups(self, connection: SSHConnection, jobs: list[_Job]) -> None:
        result = connection.run(_in_bash(stop_command([job.pid for job in jobs], self.cancel_grace_s)))
        if result.exit_code != 0:
            raise SSHHostError(self.label, connection.where,
                               f"could not start stopping process groups (exit code {result.exit_code}): "
                               f"{result.stderr.strip()[-300:]}")


# ------------------------------------------------------------ remote shell text and its parsing (pure)

def _in_bash(script: str) -> str:
    """Run ``script`` with bash whatever the user's login shell is (sh, zsh, fish, csh)."""
    return f"exec /bin/bash -c {shlex.quote(script)}"


def _launch_command(files: _RemoteFiles) -> str:
    """Start the job detached, in a session of its own, and print the wrapper's pid (= its pgid).

    No ``cd ... &&`` in front: ``a && b &`` would put both in a subshell and
    ``$!`` would be the subshell's pid. The exit code file is written under a
    temporary name and renamed, so a reader never sees it half written.
    """
    tmp = f"{files.exit_code}.tmp"
    wrapper = (f"/bin/bash {shlex.quote(files.script)}; echo $? > {shlex.quote(tmp)}; "
               f"mv -f {shlex.quote(tmp)} {shlex.quote(files.exit_code)}")
    return (f"setsid nohup /bin/bash -c {shlex.quote(wrapper)} > {shlex.quote(files.stdout)} "
            f"2> {shlex.quote(files.stderr)} < /dev/null & echo $!")


_STOPPER = ('kill -TERM -- "$@" 2>/dev/null; for _ in $(seq {steps}); do _alive=0; '
            'for _g in "$@"; do kill -0 -- "$_g" 2>/dev/null && _alive=1; done; '
            '[ $_alive = 0 ] && exit 0; sleep {step}; done; kill -KILL -- "$@" 2>/dev/null; exit 0')


def _stopper(groups: str, grace_s: float) -> str:
    """Shell text that SIGTERMs process groups (``-pgid`` words in ``groups``), SIGKILLs them after ``grace_s``.

    It runs detached on the host, so the caller does not wait through the grace period.
    """
    script = _STOPPER.format(steps=max(1, round(grace_s / _STOP_STEP_S)), step=_STOP_STEP_S)
    return f"setsid nohup /bin/bash -c {shlex.quote(script)} stop {groups} > /dev/null 2>&1 < /dev/null &"


def stop_command(pgids: Sequence[int], grace_s: float) -> str:
    """Stop these process groups: SIGTERM now, SIGKILL after ``grace_s``."""
    return _stopper(" ".join(f"-{pgid}" for pgid in pgids), grace_s)


# Per job: ps first, then the exit code file. The wrapper writes its file before it exits, so a
# job that ``ps`` no longer shows has its file by then if it ended by itself. Ended jobs' groups
# are stopped in the same round trip (their leftovers must not outlive them).
_PROBE_FUNCTIONS = (
    '_st() { _s=; while read -r _q _r; do [ "$_q" = "$1" ] && _s=$_r; done <<< "$_ps"; }; '
    '_p() { _st "$1"; '
    'if [ -e "$2" ]; then _c=; read -r _c < "$2"; echo "$1 exit $_c"; _end="$_end -$1"; '
    'elif [ -z "$_s" ] || [ "${_s#Z}" != "$_s" ]; then echo "$1 gone"; _end="$_end -$1"; '
    'else echo "$1 run $_s"; fi; }; ')


def probe_command(jobs: Sequence[tuple[int, str]], grace_s: float) -> str:
    """One command that reports each ``(pid, exit code file)`` job and stops the groups of ended ones.

    Output: a line per job, ``<pid> exit <code>``, ``<pid> gone`` (no process
    and no exit code: killed from outside) or ``<pid> run <ps stat>``.
    """
    pids = ",".join(str(pid) for pid, _ in jobs)
    calls = "".join(f"_p {pid} {shlex.quote(path)}; " for pid, path in jobs)
    return (f'_ps=$(ps -o pid=,stat= -p {pids} 2>/dev/null); _end=; {_PROBE_FUNCTIONS}{calls}'
            f'if [ -n "$_end" ]; then {_stopper("$_end", grace_s)} fi; true')


def parse_probe(output: str) -> dict[int, Observation]:
    """Turn :func:`probe_command`'s output into an observation per pid it mentions."""
    observed: dict[int, Observation] = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        pid, kind = int(parts[0]), parts[1]
        if kind == "exit" and len(parts) == 3 and parts[2].isdigit():
            observed[pid] = Observation(alive=False, exit_code=int(parts[2]))
        elif kind == "gone" or kind == "exit":  # an unreadable exit code counts as none
            observed[pid] = Observation(alive=False)
        elif kind == "run":
            observed[pid] = Observation(alive=True, stopped=len(parts) > 2 and parts[2].startswith("T"))
    return observed


def _expand(path: Optional[str]) -> Optional[str]:
    return os.path.expanduser(path) if path is not None else None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _check_arguments(hostnames: Sequence[str], port: int, key_filename: Optional[str], known_hosts: Optional[str],
                     remote_script_dir: str, cmd_timeout: Union[int, float]) -> list:
    """Refuse bad SSH settings at construction, naming the field; return the parsed hosts."""
    if isinstance(hostnames, str):
        raise ConfigurationError("hostnames", f"must be a list of host names, got the string {hostnames!r}")
    if not hostnames:
        raise ConfigurationError("hostnames", "must name at least one host")
    if not 0 < port < 65536:
        raise ConfigurationError("port", f"must be in 1..65535, got {port}")
    try:
        targets = [parse_target(name, port) for name in hostnames]
    except ValueError as exc:
        raise ConfigurationError("hostnames", str(exc)) from None
    for field, path in (("key_filename", key_filename), ("known_hosts", known_hosts)):
        if path is not None and not os.path.isfile(os.path.expanduser(path)):
            raise ConfigurationError(field, f"no such file: {path}")
    if not remote_script_dir.strip():
        raise ConfigurationError("remote_script_dir", "must not be empty")
    if cmd_timeout <= 0:
        raise ConfigurationError("cmd_timeout", f"must be > 0 seconds, got {cmd_timeout}")
    return targets
