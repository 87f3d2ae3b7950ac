"""The Messaging section of RESULTS.md: topics and queues beside their floors, from ``records/messaging.jsonl``.

The records come from ``python -m benchmarks.cases.messaging`` (one per repeat). The section shows the
latest run (medians across its repeats): each figure of ours beside the floor measured in the same run,
their ratio, and the target of TARGETS.md where there is one.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Optional

Record = dict[str, Any]
CASE = "messaging"

# (what, ours, floor or peer, floor's name, higher is better, target: (op, value) or None)
ROWS: tuple[tuple[str, str, str, str, bool, Optional[tuple[str, float]]], ...] = (
    ("topic msgs/s delivered, 1 publisher → 1 subscriber process", "topic_msgs_per_s", "zmq_topic_msgs_per_s",
     "bare pyzmq PUB/SUB", True, (">=", 100_000)),
    ("topic messages lost at high-water marks (sent flat out)", "topic_lost", "zmq_topic_lost", "bare pyzmq", False,
     None),
    ("topic p50 latency, ms (1 msg per ms)", "topic_p50_ms", "zmq_topic_p50_ms", "bare pyzmq", False, ("<=", 0.2)),
    ("topic p95 latency, ms", "topic_p95_ms", "zmq_topic_p95_ms", "bare pyzmq", False, None),
    ("queue put → get → ack msgs/s, batches of 100", "queue_batch100_msgs_per_s", "sqlite_batch100_msgs_per_s",
     "bare SQLite insert/delete", True, (">=", 20_000)),
    ("queue put → get → ack msgs/s, one at a time", "queue_single_msgs_per_s", "dask_queue_single_msgs_per_s",
     "Dask distributed.Queue", True, None),
    ("queue msgs/s, 4 clients at once (a queue each), batches of 100", "queue_concurrent4_batch100_msgs_per_s",
     "queue_batch100_msgs_per_s", "1 client", True, (">=", 20_000)),
    ("queue msgs/s, 4 clients at once, one at a time", "queue_concurrent4_single_msgs_per_s",
     "queue_single_msgs_per_s", "1 client", True, None),
    ("RabbitMQ backend: queue msgs/s, batches of 100", "rabbitmq_queue_batch100_msgs_per_s",
     "queue_batch100_msgs_per_s", "our broker", True, None),
    ("RabbitMQ backend: queue msgs/s, one at a time", "rabbitmq_queue_single_msgs_per_s", "queue_single_msgs_per_s",
     "our broker", True, None),
    ("RabbitMQ backend: topic msgs/s delivered", "rabbitmq_topic_msgs_per_s", "topic_msgs_per_s", "our broker",
     True, None),
    ("RabbitMQ backend: topic p50 latency, ms", "rabbitmq_topic_p50_ms", "topic_p50_ms", "our broker", False, None),
    ("messages lost across a broker SIGKILL + restart (2,000 queued)", "restart_lost", "", "", False, ("<=", 0)),
)


def _num(x: Optional[float]) -> str:
    if x is None or x != x:
        return "–"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.3g}"


def _median(recs: list[Record], figure: str) -> Optional[float]:
    found = [r["figures"][figure] for r in recs if isinstance(r.get("figures", {}).get(figure), (int, float))]
    found = [x for x in found if x == x]
    return statistics.median(found) if found else None


def _meets(value: Optional[float], target: Optional[tuple[str, float]]) -> str:
    if target is None:
        return ""
    op, bound = target
    shown = f"{op.replace('>=', '≥').replace('<=', '≤')} {_num(bound)}"
    if value is None:
        return shown
    return f"{shown} {'✓' if (value >= bound if op == '>=' else value <= bound) else '✗'}"


def render(all_records: Iterable[Record]) -> list[str]:
    """The section's Markdown lines (none without messaging records)."""
    runs: dict[str, list[Record]] = defaultdict(list)
    for rec in all_records:
        if rec.get("case") == CASE:
            runs[rec.get("run_id", "?")].append(rec)
    if not runs:
        return []
    run_id = max(runs, key=lambda r: runs[r][0].get("timestamp", ""))
    recs = runs[run_id]
    ok = [r for r in recs if "figures" in r]
    first = recs[0]
    load = [r.get(k, [0.0])[0] for r in recs for k in ("loadavg_before", "loadavg_after")]
    commit = (first.get("git_commit") or "?")[:10] + (" +dirty" if first.get("git_dirty") else "")
    params = first.get("params", {})
    lines = ["", "## Messaging (topics and queues, issue 13)", "",
             "`.venv/bin/python -m benchmarks.cases.messaging --amqp-url URL` (1 KB messages; everything in one run, "
             "side by side). Medians across repeats; `ours / floor` is the ratio of the two columns.", "",
             f"- run `{run_id}`{' (' + first['label'] + ')' if first.get('label') else ''}: {len(ok)} of "
             f"{len(recs)} repeat(s), {params.get('n', '?'):,} topic messages, {params.get('queue_n', '?'):,} queue "
             f"messages, commit {commit}, {first.get('machine', {}).get('nproc', '?')} cores, "
             f"1-min load {min(load):.2f}–{max(load):.2f}"]
    lines += [f"- **failed** repeat {r.get('repeat')}: {r['error'][:200]}" for r in recs if "error" in r]
    lines += ["", "| figure | ours | floor / peer (same run) | ours / floor | target |", "|---|---:|---|---:|---|"]
    for what, ours, floor, floor_name, higher, target in ROWS:
        mine = _median(ok, ours)
        if mine is None:
            continue
        other = _median(ok, floor) if floor else None
        ratio = f"{mine / other:.2f}×" if other else "–"
        floor_cell = f"{_num(other)} ({floor_name})" if floor else ""
        lines.append(f"| {what} {'↑' if higher else '↓'} | {_num(mine)} | {floor_cell} | {ratio} | "
                     f"{_meets(mine, target)} |")
    return lines + [""]
