"""Library adapters. Importing this package registers every adapter.

To add a library: subclass :class:`~benchmarks.adapters.base.Adapter` in a new
module, decorate it with ``@register_adapter`` and import the module here.
"""
# Import order is registration order: the order of `list` and of a run's first repeat.
from benchmarks.adapters import parsl_family  # noqa: F401,I001  (registers the Parsl family)
from benchmarks.adapters import dask_distributed  # noqa: F401  (registers dask)
from benchmarks.adapters import processpool  # noqa: F401  (registers processpool)
from benchmarks.adapters.base import ADAPTERS, Adapter, adapters_for, register_adapter

__all__ = ["ADAPTERS", "Adapter", "adapters_for", "register_adapter"]
