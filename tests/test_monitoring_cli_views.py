"""The pure parts of the monitoring CLI: the snapshot, the watermark, the report's data shaping and drawing."""
from __future__ import annotations

import dataclasses
import json
import re

from rich.console import Console

from parsl_lite.monitoring import queries, report, terminal, views


def a_run(**changes) -> views.RunView:
    fields = dict(run_id="r1", name="wf.py", user="me", host="h", rundir="/x/runinfo/000", began=100.0,
                  completed=None, state="running", duration_s=5.0, tasks_completed_count=0, tasks_failed_count=0)
    return views.RunView(**{**fields, **changes})


def test_counts_keep_the_main_states_in_order_and_add_others_with_tasks():
    counts = views.ordered_counts({"failed": 2, "exec_done": 5, "fail_retryable": 1, "joining": 0})
    assert list(counts) == [*views.SHOWN_STATES, "fail_retryable"]
    assert counts["exec_done"] == 5 and counts["pending"] == 0


def test_worker_pools_go_to_the_executor_that_owns_their_block():
    blocks = [{"executor": "htex", "block_id": "0", "job_id": "7", "status": "RUNNING", "timestamp": 1.0},
              {"executor": "slurm", "block_id": "1", "job_id": "8", "status": "PENDING", "timestamp": 1.0}]
    nodes = [{"executor": None, "hostname": "n1", "uid": "m1", "block_id": "0", "worker_count": 4, "active": True},
             {"executor": None, "hostname": "n2", "uid": "m2", "block_id": "0", "worker_count": 4, "active": False},
             {"executor": None, "hostname": "n3", "uid": "m3", "block_id": "9", "worker_count": 1, "active": True}]
    by_label = {e.label: e for e in views.executor_views(blocks, nodes, {"htex": 10, "threads": 3})}
    assert by_label["htex"].workers == 4 and len(by_label["htex"].nodes) == 2 and by_label["htex"].tasks == 10
    assert by_label["slurm"].workers is None and by_label["slurm"].blocks[0]["status"] == "PENDING"
    assert by_label["threads"].workers is None and by_label["threads"].tasks == 3
    assert by_label["?"].nodes[0]["hostname"] == "n3"   # a block no executor claims
    (only,) = views.executor_views([], nodes[:1], {"htex": 5})   # no block rows: the run's only executor
    assert only.label == "htex" and only.workers == 4


def test_the_snapshot_is_plain_json_and_keeps_the_newest_rows():
    stream = [(i, 0, "f", "htex", "w1", 100.0 + i, 100.5 + i, "exec_done") for i in range(300)]
    failures = [{"task_id": i, "try_id": 0, "func_name": "f", "time": 200.0 - i, "state": "failed",
                 "error": "ValueError: bad"} for i in range(30)]
    view = views.build_view(a_run(), {"exec_done": 300}, [], [], failures, stream, 400.0)
    assert len(view.stream) == views.STREAM_ROWS and view.stream[-1]["task_id"] == 299
    assert len(view.failures) == views.FAILURE_ROWS and view.failures[0]["task_id"] == 0
    assert view.total == 300 and view.finished == 300 and view.rate == 60.0   # 300 in 5 s
    json.dumps(dataclasses.asdict(view))


def test_a_run_that_ended_abnormally_lasts_until_its_last_heartbeat():
    row = queries.RunRow("r", "wf", "me", "h", "/x", 100.0, None, 0, 0, "ended abnormally", heartbeat=130.0)
    assert views.run_view(row, "ended abnormally", now=500.0).duration_s == 30.0
    assert views.run_view(row, "running", now=500.0).duration_s == 400.0


def test_the_settled_watermark_stops_at_the_first_unfinished_task_minus_the_margin():
    window = [(i, "exec_done") for i in range(5000)] + [(5000, "running"), (5001, "exec_done")]
    assert queries.settled_below(window, 0, 1000) == 4000
    assert queries.settled_below([(i, "exec_done") for i in range(5000)], 0, 1000) == 4000   # the newest, held back
    assert queries.settled_below([(3, "pending")], 2, 1000) == 2   # never goes back
    assert queries.settled_below([], 7, 1000) == 7


def test_states_over_time_accumulates_the_deltas_per_bin():
    deltas = [(0, "pending", 3), (1, "pending", -2), (1, "launched", 2), (3, "launched", -2), (3, "exec_done", 2)]
    over = report.states_over_time(deltas, 0.5)
    assert over["t"] == [0.5, 1.0, 1.5, 2.0]
    assert over["series"]["pending"] == [3, 1, 1, 1]
    assert over["series"]["launched"] == [0, 2, 2, 0] and over["series"]["exec_done"] == [0, 0, 0, 2]


def test_stream_columns_index_workers_and_apps_and_mark_failures():
    rows = [(1, 0, "f", "htex", "w1", 10.0, 10.5, "exec_done"), (2, 0, "g", "htex", "w2", 10.2, None, None),
            (3, 0, "f", "htex", "w1", 11.0, 11.1, "failed"), (4, 0, "f", "htex", "w1", None, None, None)]
    cols = report.stream_columns(rows, 10.0)
    assert cols["workers"] == ["htex/w1", "htex/w2"] and cols["apps"] == ["f", "g"]
    assert cols["w"] == [0, 1, 0] and cols["a"] == [0, 1, 0] and cols["s"] == [0, 200, 1000]   # ms
    assert cols["d"] == [500, -1, 100] and cols["f"] == [0, 0, 1]


def test_app_stats_histograms_hold_every_try():
    stats = report.app_stats(report.app_durations(
        [(i, 0, "f", "x", "w", 0.0, 0.001 * (i + 1), "exec_done") for i in range(100)]))
    (f,) = stats
    assert f["count"] == 100 and sum(f["hist"]) == 100 and len(f["edges"]) == report.HIST_BINS + 1
    assert abs(f["p50"] - 0.051) < 1e-9 and f["max"] == 0.1
    (same,) = report.app_stats({"g": [0.2, 0.2]})   # all equal: still a valid histogram
    assert sum(same["hist"]) == 2 and same["edges"][0] < 0.2 < same["edges"][-1]


def test_the_page_embeds_its_data_safely_and_fetches_nothing():
    data = {"run": {**dataclasses.asdict(a_run()), "began_text": "-", "end": 1.0}, "counts": {"failed": 1},
            "stream": report.stream_columns([], 0.0), "states_over_time": report.states_over_time([], 1.0),
            "resources": {}, "apps": [],
            "failures": [{"task_id": 1, "try_id": 0, "func_name": "f", "time": 1.0, "state": "failed",
                          "error": "ValueError: </script><script>alert(1)</script>"}]}
    page = report.render_html(data)
    block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(block)["failures"][0]["error"].endswith("alert(1)</script>")
    assert "<script>alert" not in page and "&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page


def test_the_terminal_view_shows_counts_executors_endpoints_and_errors():
    executors = views.executor_views([], [], {"htex": 4})
    endpoints = [{"endpoint_id": "ep-1", "executor": "faas", "status": "online", "workers": 2, "idle_workers": 1,
                  "pending_tasks": 0, "last_seen": 100.0}]
    failures = [{"task_id": 3, "try_id": 1, "func_name": "f", "time": 100.0, "state": "failed",
                 "error": "Traceback...\nZeroDivisionError: division by zero"}]
    view = views.build_view(a_run(), {"exec_done": 3, "failed": 1}, executors, endpoints, failures, [], 105.0)
    console = Console(width=140, record=True)
    console.print(terminal.render(view, 100))
    text = console.export_text()
    assert "exec_done 3" in text and "failed 1" in text and "total 4" in text
    assert "htex" in text and "ep-1" in text and "online" in text
    assert "ZeroDivisionError: division by zero" in text and "Traceback" not in text
