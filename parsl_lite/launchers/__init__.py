"""Launchers: how a provider's job starts workers on its nodes.

``parsl_lite.config_loader`` resolves ``type = "SingleNodeLauncher"`` in a TOML
config through ``__all__``, so a launcher becomes available there by being
listed here (errors live in ``parsl_lite.launchers.errors``: they are not
config types).
"""
from parsl_lite.launchers.base import Launcher
from parsl_lite.launchers.launchers import SimpleLauncher, SingleNodeLauncher, SrunLauncher, WrappedLauncher

__all__ = [
    "Launcher",
    "SimpleLauncher",
    "WrappedLauncher",
    "SingleNodeLauncher",
    "SrunLauncher",
]
