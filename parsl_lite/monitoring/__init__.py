"""Monitoring: a workflow's tasks, tries, states and resources, recorded in a Parsl-compatible store."""
