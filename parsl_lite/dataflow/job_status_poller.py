"""Moved to :mod:`parsl_lite.jobs.job_status_poller`; this import path still works."""
from parsl_lite.jobs.job_status_poller import JobStatusPoller  # noqa: F401

__all__ = ["JobStatusPoller"]
