"""Benchmark cases. Importing this package registers every case.

To add a case: write ``run(adapter, **params) -> figures`` against the
adapter API in a module here, register a :class:`~benchmarks.cases.base.Case`
for it, and import the module below.
"""
# Import order is registration order, which is the order of `run all` and the report.
from benchmarks.cases import throughput  # noqa: F401,I001  (registers noop, chain)
from benchmarks.cases import latency  # noqa: F401  (registers latency)
from benchmarks.cases import pi  # noqa: F401  (registers pi)
from benchmarks.cases import dag  # noqa: F401  (registers dag)
from benchmarks.cases import memory  # noqa: F401  (registers memory)
from benchmarks.cases import faas  # noqa: F401  (registers faas_latency, faas_throughput, faas_restart, faas_scale)
from benchmarks.cases import faas_routing  # noqa: F401  (registers faas_routing)
from benchmarks.cases import monitoring  # noqa: F401  (registers monitoring and the adapters of its group)
from benchmarks.cases.base import CASES, Case, Figure, Figures, register_case

__all__ = ["CASES", "Case", "Figure", "Figures", "register_case"]
