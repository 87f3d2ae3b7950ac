"""Monitoring: a workflow's tasks, tries, states and resources, recorded in a Parsl-compatible store.

``Config(monitoring=MonitoringHub(...))``; see docs/monitoring.md.
"""
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from parsl_lite.monitoring.hub import MonitoringHub

__all__ = ["MonitoringHub"]


def __getattr__(name: str) -> Any:
    """``MonitoringHub`` is imported on first use: the readers (``parsl-lite status|monitor|report``) never need it."""
    if name == "MonitoringHub":
        from parsl_lite.monitoring.hub import MonitoringHub

        return MonitoringHub
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
