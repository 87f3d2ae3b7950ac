"""Providers: where executors get their workers (this machine, SSH hosts, Slurm, Kubernetes).

``parsl_lite.config_loader`` resolves ``type = "LocalProvider"`` in a TOML
config through ``__all__``. Job states and statuses are importable from here
too (Parsl keeps them in ``parsl.jobs.states``); errors live in
``parsl_lite.providers.errors``.
"""
from parsl_lite.providers.base import TERMINAL_STATES, ExecutionProvider, JobState, JobStatus  # noqa: F401
from parsl_lite.providers.local import LocalProvider

# Only provider classes: every concrete class listed here is a valid ``type`` in a config file.
__all__ = ["ExecutionProvider", "LocalProvider"]
