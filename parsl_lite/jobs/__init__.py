"""Jobs: the ground between executors and providers (Parsl's ``parsl.jobs``).

Job states and statuses (:mod:`~parsl_lite.jobs.states`), the provider
interface (:mod:`~parsl_lite.jobs.provider`), the pure scaling strategy
(:mod:`~parsl_lite.jobs.strategy`) and the shell that polls job states and
carries out its decisions (:mod:`~parsl_lite.jobs.job_status_poller`). Nothing
here imports a concrete provider or executor.
"""
from parsl_lite.jobs.states import TERMINAL_STATES, JobState, JobStatus

__all__ = ["JobState", "JobStatus", "TERMINAL_STATES"]
