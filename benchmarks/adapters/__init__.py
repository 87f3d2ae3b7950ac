"""Library adapters. Importing this package registers every adapter.

To add a library: subclass :class:`~benchmarks.adapters.base.Adapter` in a new
module, decorate it with ``@register_adapter`` and import the module here.
"""
from benchmarks.adapters import parsl_family  # noqa: F401  (registers)
from benchmarks.adapters.base import ADAPTERS, Adapter, adapters_for, register_adapter

__all__ = ["ADAPTERS", "Adapter", "adapters_for", "register_adapter"]
