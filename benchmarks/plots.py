"""Plots of the ``htex`` group for ``RESULTS.md``: ``pi.png`` and ``noop.png``.

Drawn from the same records as the tables (:func:`benchmarks.report.selected_records`:
the latest run comparing libraries, per parameter set; medians across
repeats), with matplotlib's non-interactive Agg backend. Without matplotlib
no plot is written and the report says nothing of them.

- ``pi.png``: wall time against the number of blocks b (log b), one line per
  library, one panel per number of points per estimate.
- ``noop.png``: no-op throughput, bars per library for each n (log scale: the
  libraries differ by orders of magnitude).
"""
from __future__ import annotations

import logging
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks import records

logger = logging.getLogger(__name__)

_GROUP = "htex"
_DPI = 110


def write(all_records: Iterable[records.Record], out_dir: Path) -> list[Path]:
    """Draw every plot the records allow into ``out_dir``.

    Args:
        all_records: every record.
        out_dir: where the PNG files go (next to ``RESULTS.md``).

    Returns:
        The files written (none without matplotlib or without records).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install -r benchmarks/requirements.txt)")
        return []
    from benchmarks import report  # (report imports this module lazily too)

    by_case: dict[str, list[records.Record]] = defaultdict(list)
    for rec in all_records:
        if rec.get("executor") == _GROUP:
            by_case[rec["case"]].append(rec)
    written = []
    for case, draw in (("pi", _draw_pi), ("noop", _draw_noop)):
        if not by_case.get(case):
            continue
        selected = [r for r in report.selected_records(by_case[case]) if "error" not in r]
        if not selected:
            continue
        path = out_dir / f"{case}.png"
        fig = draw(plt, selected, report)
        fig.savefig(path, dpi=_DPI, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written


def _medians(recs: list[records.Record], cols: list[str], figure: str, report: Any) -> dict[str, float]:
    out = {}
    for col in cols:
        found = report.values(recs, cols, col, figure)
        if found:
            out[col] = statistics.median(found)
    return out


def _draw_pi(plt: Any, recs: list[records.Record], report: Any) -> Any:
    """Wall time against b, one line per column, one panel per ``points``."""
    cols = report.columns(recs)
    panels: dict[Any, list[records.Record]] = defaultdict(list)
    for rec in recs:
        panels[rec["params"].get("points")].append(rec)
    keys = sorted(panels, key=lambda k: (k is None, k))
    fig, axes = plt.subplots(1, len(keys), figsize=(6.4 * len(keys), 4.4), squeeze=False)
    for ax, points in zip(axes[0], keys):
        by_b: dict[int, list[records.Record]] = defaultdict(list)
        for rec in panels[points]:
            by_b[rec["params"]["b"]].append(rec)
        for col in cols:
            xs, ys = [], []
            for b in sorted(by_b):
                med = _medians(by_b[b], cols, "wall_s", report).get(col)
                if med is not None:
                    xs.append(b)
                    ys.append(med)
            if xs:
                ax.plot(xs, ys, marker="o", label=col)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        bs = sorted(by_b)
        ax.set_xticks(bs)
        ax.set_xticklabels([str(b) for b in bs])
        ax.minorticks_off()
        ax.set_xlabel("b (tasks; each evaluates 100/b estimates)")
        ax.set_ylabel("wall time (s), lower is better")
        workers = recs[0].get("workers")
        ax.set_title(f"100 × pi({points:,}), W={workers}" if isinstance(points, int) else "pi")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _draw_noop(plt: Any, recs: list[records.Record], report: Any) -> Any:
    """Throughput bars: one group per n, one bar per column."""
    cols = report.columns(recs)
    groups = report.params_groups(recs)
    fig, ax = plt.subplots(figsize=(min(10.0, max(6.4, 1.0 * len(cols) * len(groups))), 4.4))
    width = 0.8 / max(1, len(cols))
    for i, col in enumerate(cols):
        xs, ys = [], []
        for g, (_, prs) in enumerate(groups):
            med = _medians(prs, cols, "throughput_per_s", report).get(col)
            if med is not None:
                xs.append(g + (i - (len(cols) - 1) / 2) * width)
                ys.append(med)
        bars = ax.bar(xs, ys, width=width, label=col)
        ax.bar_label(bars, labels=[f"{y:,.0f}" for y in ys], fontsize="x-small", rotation=90, padding=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([text for text, _ in groups])
    ax.set_yscale("log")
    ax.set_ylabel("no-op tasks/s (first submit → last result), higher is better")
    ax.set_title("no-op throughput, htex group")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize="small")
    ax.margins(y=0.25)
    fig.tight_layout()
    return fig
