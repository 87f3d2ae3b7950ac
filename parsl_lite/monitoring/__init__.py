"""Monitoring: a workflow's tasks, tries, states and resources, recorded in a Parsl-compatible store.

``Config(monitoring=MonitoringHub(...))``; see docs/monitoring.md.
"""
from parsl_lite.monitoring.hub import MonitoringHub

__all__ = ["MonitoringHub"]
