"""Providers: where executors get their workers (this machine, SSH hosts, Slurm, Kubernetes).

``parsl_lite.config_loader`` resolves ``type = "LocalProvider"`` in a TOML
config through ``__all__``. Job states and statuses are importable from here
too (they live in ``parsl_lite.jobs.states``, as Parsl's in ``parsl.jobs.states``); errors live in
``parsl_lite.providers.errors``.

Providers that need an optional client are imported on first use (PEP 562):
``import parsl_lite.providers`` works without them, and constructing one whose
client is missing raises ``OptionalModuleMissing`` naming the extra.
"""
from parsl_lite.lazy import lazy_attributes
from parsl_lite.providers.base import TERMINAL_STATES, ExecutionProvider, JobState, JobStatus  # noqa: F401
from parsl_lite.providers.local import LocalProvider
from parsl_lite.providers.slurm import SlurmProvider

# Only provider classes: every concrete class listed here is a valid ``type`` in a config file.
__all__ = ["ExecutionProvider", "LocalProvider", "SlurmProvider", "KubernetesProvider", "SSHProvider"]

__getattr__ = lazy_attributes("parsl_lite.providers", globals(), {
    "KubernetesProvider": "parsl_lite.providers.kubernetes",
    "SSHProvider": "parsl_lite.providers.ssh",
})
