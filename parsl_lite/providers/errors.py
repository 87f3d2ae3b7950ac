"""Exceptions raised by providers.

Every provider maps what its backend raises (``OSError`` from ``subprocess``,
scheduler commands that exit non-zero, paramiko or Kubernetes API errors) to
one of these, chained with ``raise ... from exc``, so callers above the
provider interface only ever catch our own types. The messages name the
provider (its ``label``) and say what failed.
"""
from __future__ import annotations

from typing import Optional

from parsl_lite.errors import ParslError


class ProviderError(ParslError):
    """A provider could not do what it was asked.

    Args:
        provider: the provider's label (``local``, ``slurm``, ...).
        reason: what went wrong, and the likely cause if known.
    """

    def __init__(self, provider: str, reason: str) -> None:
        self.provider = provider
        self.reason = reason
        super().__init__(f"provider {provider!r}: {reason}")


ExecutionProviderException = ProviderError  # Parsl's name, for code that catches it


class SubmitException(ProviderError):
    """Submitting a job failed; nothing was started.

    Args:
        provider: the provider's label.
        reason: why the submission failed.
        job_name: the name the job would have had.
        stdout: what the submit command printed, if one ran.
        stderr: its error output, if one ran.
        retcode: its exit code, if one ran.
    """

    def __init__(self, provider: str, reason: str, *, job_name: Optional[str] = None,
                 stdout: Optional[str] = None, stderr: Optional[str] = None,
                 retcode: Optional[int] = None) -> None:
        self.job_name = job_name
        self.stdout = stdout
        self.stderr = stderr
        self.retcode = retcode
        details = [f"job {job_name!r}"] if job_name else []
        if retcode is not None:
            details.append(f"exit code {retcode}")
        if stderr:
            details.append(f"stderr: {stderr.strip()[-500:]}")
        super().__init__(provider, reason + (f" ({'; '.join(details)})" if details else ""))


class ScaleOutFailed(ProviderError):
    """Asking for more blocks failed (the scheduler refused, or a quota was hit)."""


class ScriptWriteError(ProviderError):
    """The job script could not be written.

    Args:
        provider: the provider's label.
        path: the script's path.
        reason: the operating system's reason (permissions, full disk, ...).
    """

    def __init__(self, provider: str, path: str, reason: str) -> None:
        self.path = path
        super().__init__(provider, f"cannot write job script {path}: {reason}")


ScriptPathError = ScriptWriteError  # Parsl's name


class UnknownJob(ProviderError):
    """A job id was not issued by this provider (or by this provider object)."""

    def __init__(self, provider: str, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(provider, f"unknown job id {job_id!r}: it was not submitted by this provider")


_STDERR_IN_MESSAGE = 1000  # characters of a failed command's stderr kept in its error


class SchedulerCommandFailed(ProviderError):
    """A scheduler command exited non-zero, or could not be started.

    Attributes:
        command: the command line, as a string.
        returncode: its exit code (negative: killed by that signal), or None if it never ran.
        stderr: what it wrote on stderr.
        stdout: what it wrote on stdout.
    """

    def __init__(self, provider: str, command: str, returncode: Optional[int], stderr: str,
                 stdout: str = "") -> None:
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.stdout = stdout
        detail = stderr.strip()[-_STDERR_IN_MESSAGE:] or "(nothing on stderr)"
        if returncode is None:
            reason = f"cannot run `{command}`: {detail}"
        else:
            reason = f"`{command}` failed with exit code {returncode}: {detail}"
        super().__init__(provider, reason)


class SchedulerCommandTimeout(ProviderError):
    """A scheduler command did not finish within its timeout; it was killed.

    Attributes:
        command: the command line, as a string.
        timeout_s: the timeout it exceeded.
    """

    def __init__(self, provider: str, command: str, timeout_s: float) -> None:
        self.command = command
        self.timeout_s = timeout_s
        super().__init__(provider, f"`{command}` did not finish within cmd_timeout={timeout_s:g}s and was killed; "
                                   "is the scheduler's controller reachable and responsive?")
