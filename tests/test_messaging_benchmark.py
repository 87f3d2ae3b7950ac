"""The messaging benchmark's records become RESULTS.md's Messaging section (no measuring here)."""
from __future__ import annotations

import json

from benchmarks import messaging_report, records, report


def _record(run_id: str, repeat: int, stamp: str, **figures: float) -> dict:
    return {"case": "messaging", "library": "parsl_lite", "adapter": "parsl_lite-messaging", "executor": "messaging",
            "run_id": run_id, "repeat": repeat, "timestamp": stamp, "loadavg_before": [1.5, 1, 1],
            "loadavg_after": [2.5, 1, 1], "git_commit": "abcdef1234567", "params": {"n": 1000, "queue_n": 100},
            "machine": {"nproc": 2}, "figures": figures}


def test_the_latest_run_is_shown_with_medians_ratios_and_targets(tmp_path):
    for rec in (_record("old", 0, "2026-12-01T00:00:00", topic_msgs_per_s=1.0),
                _record("new", 0, "2026-12-02T00:00:00", topic_msgs_per_s=90_000, zmq_topic_msgs_per_s=180_000,
                        restart_lost=0, rabbitmq_queue_batch100_msgs_per_s=4000, queue_batch100_msgs_per_s=30_000),
                _record("new", 1, "2026-12-02T00:01:00", topic_msgs_per_s=110_000, zmq_topic_msgs_per_s=220_000,
                        restart_lost=0, rabbitmq_queue_batch100_msgs_per_s=4200, queue_batch100_msgs_per_s=10_000)):
        records.append(tmp_path, rec)
    lines = messaging_report.render(records.load(tmp_path))
    text = "\n".join(lines)
    assert "run `new`: 2 of 2 repeat(s)" in text and "1-min load 1.50–2.50" in text
    assert "| 100,000 | 200,000 (bare pyzmq PUB/SUB) | 0.50× | ≥ 100,000 ✓ |" in text
    assert "| 20,000 | – (bare SQLite insert/delete) | – | ≥ 20,000 ✓ |" in text  # median, no floor
    assert "RabbitMQ backend: queue msgs/s, batches of 100 ↑ | 4,100 | 20,000 (our broker) | 0.20×" in text
    assert "≤ 0 ✓" in text and "p50" not in text                              # unmeasured rows are left out
    whole = report.render(records.load(tmp_path))
    assert "## Messaging" in whole and "| `new` | messaging |" in whole
    assert json.loads((tmp_path / "messaging.jsonl").read_text().splitlines()[0])["case"] == "messaging"
