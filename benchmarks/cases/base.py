"""What a benchmark case is, and the registry of cases.

A case is one function ``run(adapter, **params) -> figures`` written against
the :class:`~benchmarks.adapters.base.Adapter` API only. It starts timing
after the library is started and its apps decorated, and returns plain floats
named with their units.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.adapters.base import Adapter

Figures = dict[str, float]
CaseFn = Callable[..., Figures]


@dataclass(frozen=True)
class Figure:
    """How the report shows one figure.

    Attributes:
        name: the key in the case's figures, unit included (``p50_ms``).
        higher_is_better: True for rates, False for times.
    """

    name: str
    higher_is_better: bool


@dataclass(frozen=True)
class Case:
    """One benchmark, its parameters and the figures it reports.

    Attributes:
        name: the ``run`` command's argument and the records file's stem.
        run: ``run(adapter, **params) -> figures``.
        sizes: default values of the size parameter, one child per value.
        figures: what ``run`` returns, in report order.
        size_param: the parameter ``--sizes`` overrides.
        fixed: the other parameters, the same in every run.
        timeout_s: default budget of one child, start-up included.
        sizes_by_executor: default sizes for some executor groups, in place
            of :attr:`sizes` (``latency`` takes 200 round trips in ``htex``).
        executors: the groups whose ``run all`` includes this case; None is
            every group. ``run CASE`` runs it in any group.
        fixed_in_all: replaces some of :attr:`fixed` when the case runs as
            part of ``run all`` (``pi`` uses 10**5 points there, 10**6 alone),
            unless the command line overrides them.
        sizes_in_all: default sizes of some groups when the case runs as part
            of ``run all`` (``noop`` runs only n=10,000 in ``htex``'s: its
            100k-task measurement of Parsl and Dask alone takes ~9 minutes
            here), unless ``--sizes`` is given.
    """

    name: str
    run: CaseFn
    sizes: Sequence[int]
    figures: Sequence[Figure]
    size_param: str = "n"
    fixed: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 300.0
    sizes_by_executor: Mapping[str, Sequence[int]] = field(default_factory=dict)
    executors: frozenset[str] | None = None
    fixed_in_all: Mapping[str, Any] = field(default_factory=dict)
    sizes_in_all: Mapping[str, Sequence[int]] = field(default_factory=dict)

    def in_all(self, executor: str) -> bool:
        """Whether ``run all --executor EXECUTOR`` includes this case."""
        return self.executors is None or executor in self.executors

    def param_sets(self, sizes: Sequence[int] | None = None, executor: str | None = None,
                   overrides: Mapping[str, Any] | None = None, in_all: bool = False) -> list[dict[str, Any]]:
        """The parameter dicts of one repeat, one per size.

        Args:
            sizes: overrides the default sizes when given.
            executor: the group; picks its entry of :attr:`sizes_by_executor`.
            overrides: replace fixed parameters (``--pi-n``).
            in_all: the case runs as part of ``run all`` (:attr:`fixed_in_all`).

        Returns:
            ``[{size_param: size, **fixed}, ...]``.
        """
        fixed = {**self.fixed, **(self.fixed_in_all if in_all else {}), **(overrides or {})}
        default = self.sizes_by_executor.get(executor or "", self.sizes)
        if in_all:
            default = self.sizes_in_all.get(executor or "", default)
        return [{self.size_param: size, **fixed} for size in (sizes or default)]

    def __call__(self, adapter: Adapter, params: Mapping[str, Any]) -> Figures:
        """Run the case once.

        Args:
            adapter: a started library.
            params: one of :meth:`param_sets`.

        Returns:
            The figures, floats by name.
        """
        return self.run(adapter, **params)


CASES: dict[str, Case] = {}
"""Every registered case by name, in registration order."""


def register_case(case: Case) -> Case:
    """Add a case to :data:`CASES`.

    Args:
        case: the case; its name must be new and not ``all``.

    Returns:
        ``case`` unchanged.

    Raises:
        ValueError: the name is taken.
    """
    if case.name in CASES or case.name == "all":
        raise ValueError(f"case name {case.name!r} taken")
    CASES[case.name] = case
    return case


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile of already sorted values, linearly interpolated.

    Args:
        sorted_values: ascending, at least one value.
        q: in [0, 1].

    Returns:
        The interpolated value.
    """
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (re-exported so cases import one module)."""
    return statistics.fmean(values)
