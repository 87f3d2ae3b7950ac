"""The ``scale`` section of RESULTS.md: one interchange, N simulated pools, against N = 1 in the same run.

The records come from :mod:`benchmarks.scale` (``records/scale.jsonl``). For
each ``max_batch`` the latest run that measured more than one N is shown (else
the latest run): a column per N (medians across repeats), then ``N / 1``, the
ratio of the largest N's median to the one-pool median of that run.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

Record = dict[str, Any]
CASE = "scale"

# (figure, what it is, higher is better): the rows of the table, in order
FIGURES: tuple[tuple[str, str, bool], ...] = (
    ("dispatch_rate_per_s", "tasks/s, first submit → last future done", True),
    ("submit_rate_per_s", "tasks/s of the submit loop", True),
    ("ix_cpu_us_per_task", "interchange CPU (user+sys) per task, µs", False),
    ("ix_cpu_us_per_message", "interchange CPU per worker-side message (task batch, result batch, heartbeat), µs",
     False),
    ("tasks_per_batch", "tasks per task batch sent to a worker", True),
    ("ix_cpu_pct", "interchange CPU while tasks run, % of one core", False),
    ("sim_cpu_pct", "simulated pools' CPU while tasks run, % of one core", False),
    ("ix_rss_mib_idle", "interchange RSS, pools connected, idle, MiB", False),
    ("ix_rss_mib_peak", "interchange peak RSS while tasks run, MiB", False),
    ("idle_heartbeats_per_s", "heartbeats answered per s, idle", True),
    ("idle_ix_cpu_pct", "interchange CPU, idle with N pools heartbeating, % of one core", False),
    ("ix_cpu_us_per_heartbeat", "interchange CPU per heartbeat, idle, µs", False),
    ("load_heartbeats_sent_per_s", "heartbeats sent per s while tasks run", True),
    ("load_heartbeats_per_s", "heartbeats answered per s while tasks run", True),
    ("idle_heartbeat_rtt_ms", "heartbeat round trip (pool → interchange → pool), idle, mean, ms", False),
    ("idle_heartbeat_rtt_max_ms", "heartbeat round trip, idle, longest, ms", False),
    ("load_heartbeat_rtt_ms", "heartbeat round trip while tasks run, mean, ms", False),
    ("load_heartbeat_rtt_max_ms", "heartbeat round trip while tasks run, longest, ms", False),
    ("idle_heartbeat_gap_max_s", "longest a pool went without a heartbeat answer, idle, s", False),
    ("load_heartbeat_gap_max_s", "longest a pool went without a heartbeat answer while tasks run, s "
                                 "(a real pool exits past its threshold)", False),
    ("pools_lost", "pools declared lost or told to shut down", False),
    ("connect_s", "simulators started → N × W workers connected, s", False),
)


def _num(x: float) -> str:
    if x != x:  # NaN
        return "–"
    if float(x).is_integer() and abs(x) < 100:
        return str(int(x))
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if abs(x) >= 0.01 or x == 0 else f"{x:.2g}"


def _latest(recs: list[Record]) -> list[Record]:
    runs: dict[str, list[Record]] = defaultdict(list)
    for rec in recs:
        runs[rec.get("run_id", "")].append(rec)
    comparing = [r for r, rs in runs.items() if len({x["params"]["pools"] for x in rs}) > 1]
    return runs[max(comparing or runs)]


def _median(recs: list[Record], pools: int, figure: str) -> float | None:
    found = [r["figures"][figure] for r in recs
             if r["params"]["pools"] == pools and "figures" in r and isinstance(r["figures"].get(figure), (int, float))]
    return statistics.median(found) if found else None


def render(all_records: Iterable[Record]) -> list[str]:
    """The section's Markdown lines (none without scale records)."""
    by_batch: dict[tuple[int, bool], list[Record]] = defaultdict(list)
    for rec in all_records:
        if rec.get("case") == CASE:
            by_batch[(rec["params"].get("max_batch", 64), rec["params"].get("encrypted", False))].append(rec)
    if not by_batch:
        return []
    lines = ["## `scale` — one interchange, N simulated pools (htex)", "",
             "`python -m benchmarks scale` (README: *The scale benchmark*): a real executor and interchange,",
             "N simulated pools of W workers on the real wire (signed; CurveZMQ where the table says), each",
             "answering at once; no-op tasks through `executor.submit` and the futures. `N / 1`: the largest N",
             "against one pool in the same run. The submitting process, the interchange and the simulators",
             "share this machine's cores, so the rates are bounded by them; the interchange's CPU per task and",
             "per message is what carries over to pools on other machines.", ""]
    for max_batch, encrypted in sorted(by_batch):
        lines += _table(max_batch, encrypted, _latest(by_batch[(max_batch, encrypted)]))
    return lines


def _table(max_batch: int, encrypted: bool, recs: list[Record]) -> list[str]:
    ns = sorted({r["params"]["pools"] for r in recs})
    first = recs[0]
    load = [r.get(k, [0.0])[0] for r in recs for k in ("loadavg_before", "loadavg_after")]
    params = first["params"]
    lines = [f"### max_batch = {max_batch}, {'encrypted (CurveZMQ)' if encrypted else 'encrypted=False'}", "",
             f"- run `{first.get('run_id', '?')}`: W = {params['workers_per_pool']} workers per pool, "
             f"{params['tasks']:,} tasks per N, {len({r.get('repeat') for r in recs})} repeat(s), "
             f"heartbeat period {first.get('options', {}).get('heartbeat_period', '?')} s, "
             f"commit {(first.get('git_commit') or '?')[:10]}, "
             f"{first.get('machine', {}).get('nproc', '?')} cores, 1-min load {min(load):.2f}–{max(load):.2f}"]
    for rec in recs:
        if "error" in rec:
            lines.append(f"- **failed** N = {rec['params']['pools']}: {rec['error'][:200]}")
    ratio = ns[-1] != 1 and 1 in ns
    head = "| figure | " + " | ".join(f"N = {n} ({n * params['workers_per_pool']:,} workers)" for n in ns)
    lines += ["", head + (f" | N = {ns[-1]} / N = 1 |" if ratio else " |"),
              "|---|" + "---:|" * (len(ns) + ratio)]
    for figure, what, higher in FIGURES:
        medians = [_median(recs, n, figure) for n in ns]
        if all(m is None for m in medians):
            continue
        row = [f"{figure} {'↑' if higher else '↓'} ({what})"] + ["–" if m is None else _num(m) for m in medians]
        if ratio:
            one, big = medians[ns.index(1)], medians[-1]
            row.append(f"{big / one:.2f}×" if one and big is not None else "–")
        lines.append("| " + " | ".join(row) + " |")
    if ratio:
        lines += ["", *_how_it_scales(recs, ns[-1], params["workers_per_pool"])]
    return lines + [""]


def _how_it_scales(recs: list[Record], big: int, workers: int) -> list[str]:
    """The table's reading in words, computed from its medians (so it stays true when re-run)."""
    def m(pools: int, figure: str) -> float:
        value = _median(recs, pools, figure)
        return math.nan if value is None else value

    threshold = recs[0].get("options", {}).get("heartbeat_threshold", math.nan)
    period = recs[0].get("options", {}).get("heartbeat_period", math.nan)
    per_pool = (m(big, "ix_rss_mib_idle") - m(1, "ix_rss_mib_idle")) / (big - 1)
    return [
        f"How it scales, N = 1 → {big}:",
        f"- interchange CPU per worker-side message: {_num(m(1, 'ix_cpu_us_per_message'))} → "
        f"{_num(m(big, 'ix_cpu_us_per_message'))} µs "
        f"({m(big, 'ix_cpu_us_per_message') / m(1, 'ix_cpu_us_per_message'):.2f}×);"
        f" per task {_num(m(1, 'ix_cpu_us_per_task'))} → {_num(m(big, 'ix_cpu_us_per_task'))} µs "
        f"({m(big, 'ix_cpu_us_per_task') / m(1, 'ix_cpu_us_per_task'):.2f}×) with "
        f"{_num(m(1, 'tasks_per_batch'))} → {_num(m(big, 'tasks_per_batch'))} tasks per batch: the cost per task "
        f"follows the batch size (ledger.py sends full batches only while the queue holds one for every "
        f"worker), not the number of pools;",
        f"- interchange memory: {per_pool:.2f} MiB more per connected pool of {workers} "
        f"({1024 * per_pool / (workers + 1):.0f} KiB per connection), idle; peak while tasks run "
        f"{_num(m(big, 'ix_rss_mib_peak'))} MiB at N = {big};",
        f"- heartbeats: {_num(m(big, 'idle_heartbeats_per_s'))}/s answered idle (N / period = "
        f"{_num(big / period)}/s) at {_num(m(big, 'idle_ix_cpu_pct'))}% of a core; while tasks run each waits "
        f"in line with the workers' results (round trip {_num(m(big, 'load_heartbeat_rtt_ms'))} ms "
        f"mean, {_num(m(big, 'load_heartbeat_rtt_max_ms'))} ms longest) but they keep flowing: the longest a pool "
        f"went unanswered was {m(big, 'load_heartbeat_gap_max_s'):.1f} s (threshold {_num(threshold)} s); "
        f"pools lost: {_num(m(big, 'pools_lost'))}.",
    ]
