"""Providers: where executors get their workers (this machine, SSH hosts, Slurm, Kubernetes)."""

__all__: list[str] = []
