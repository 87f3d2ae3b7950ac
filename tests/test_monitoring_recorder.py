"""The Recorder, monitoring's pure core: items in, rows out (no threads, processes or store)."""
from __future__ import annotations

from parsl_lite.dataflow.states import States
from parsl_lite.monitoring import recorder as rec
from parsl_lite.monitoring.recorder import ERROR, EXECUTOR, RAN, Recorder

RUN = "run-1"


def us_text(us: int) -> str:
    return f"t{us}"


def new() -> Recorder:
    return Recorder(RUN, us_text)


def pending(t, tid, deps=""):
    return (t, tid, States.pending.value, 0, "app", "htex", False, t, deps)


def launched(t, tid, try_id=0):
    return (t, tid, States.launched.value, try_id, "htex")


def final(t, tid, state, try_id=0, fail_count=0, history=None, ran=None):
    return (t, tid, state.value, try_id, fail_count, float(fail_count), None, history, ran)


def test_a_task_whose_life_fits_one_batch_is_one_task_row_one_try_row_and_a_status_row_per_change():
    r = new()
    for item in (pending(1.0, 7, "3,4"), launched(1.5, 7),
                 final(2.0, 7, States.exec_done, ran=(1.6, "h", "h:pool:0:99", "0"))):
        r.add(item)
    batch = r.flush()
    assert [s[:2] for s in batch.status] == [(7, "pending"), (7, "launched"), (7, "exec_done")]
    assert [s[2] for s in batch.status] == ["t1000000", "t1500000", "t2000000"]
    assert batch.task == [[7, RUN, "3,4", "app", "False", None, "t1000000", "t2000000", 0, 0.0]]
    assert batch.tries == [[0, 7, RUN, "htex", "t1500000", "t1600000", "t2000000", None, "h", "0"]]
    assert batch.detail == [[RUN, 7, 0, None, None, "h:pool:0:99", "exec_done", None, None]]
    assert (batch.completed, batch.failed, batch.events) == (1, 0, 3)
    assert not batch.task_updates and not batch.try_updates


def test_a_task_finishing_in_a_later_batch_updates_the_rows_of_the_earlier_one():
    r = new()
    r.add(pending(1.0, 1))
    r.add(launched(1.1, 1))
    first = r.flush()
    assert len(first.task) == 1 and len(first.tries) == 1
    r.add(final(2.0, 1, States.exec_done))
    second = r.flush()
    assert second.task == [] and second.tries == []
    assert second.task_updates == [(None, "t2000000", 0, 0.0, 1, RUN)]
    assert second.try_updates == [(None, "t2000000", None, None, None, 0, 1, RUN)]
    assert r.completed == 1


def test_a_retried_failure_keeps_each_try_and_its_error():
    r = new()
    r.add(pending(1.0, 2))
    r.add(launched(1.1, 2, 0))
    r.add(final(1.2, 2, States.fail_retryable, 0, 1, ("ValueError('x')",)))
    r.add(launched(1.3, 2, 1))
    r.add(final(1.4, 2, States.failed, 1, 2, ("ValueError('x')", "ValueError('y')")))
    r.add((1.4, 2, ERROR, 1, "ValueError", "y"))
    batch = r.flush()
    tries = {row[0]: row for row in batch.tries}
    assert tries[0][7] == "ValueError('x')" and tries[1][7] == "ValueError('x'),ValueError('y')"
    details = {row[2]: row for row in batch.detail}
    assert details[0][6:] == ["fail_retryable", None, "ValueError('x')"]
    assert details[1][6:] == ["failed", "ValueError", "y"]
    assert (batch.completed, batch.failed) == (0, 1)
    assert batch.task[0][8:] == [2, 2.0]


def test_status_timestamps_strictly_increase_so_parsl_s_primary_key_never_collides():
    r = new()
    for tid in range(3):
        r.add(pending(5.0, tid))
    assert [s[2] for s in r.flush().status] == ["t5000000", "t5000001", "t5000002"]


def test_executor_events_become_endpoint_block_and_placement_rows():
    r = new()
    r.add((1.0, -1, EXECUTOR, 0, "faas", "endpoint_status",
           {"endpoint_id": "ep-1", "status": "online", "connected_workers": 4, "idle_workers": 1, "pending_tasks": 0,
            "last_seen": 0.5}))
    r.add((1.1, -1, EXECUTOR, 0, "htex", "block_status", {"block_id": "0", "job_id": "local-0", "status": "RUNNING"}))
    r.add((1.2, 9, EXECUTOR, 0, "faas", "task_placed", {"endpoint_id": "ep-1", "ok": True}))
    batch = r.flush()
    assert batch.endpoint == [(RUN, "faas", "ep-1", "t1000000", "online", 4, 1, 0, 0.5)]
    assert batch.block == [(RUN, "htex", "0", "local-0", "t1100000", "RUNNING")]
    assert batch.detail == [[RUN, 9, 0, "faas", "ep-1", None, None, None, None]]


def test_the_column_lists_match_the_schema():
    from parsl_lite.monitoring import schema
    for table, columns in ((schema.TASK, rec.TASK_COLUMNS), (schema.TRY, rec.TRY_COLUMNS),
                           (schema.STATUS, rec.STATUS_COLUMNS), (schema.TRY_DETAIL, rec.DETAIL_COLUMNS),
                           (schema.ENDPOINT, rec.ENDPOINT_COLUMNS), (schema.BLOCK, rec.BLOCK_COLUMNS)):
        assert set(columns) <= set(schema.BY_NAME[table].column_names), table


PARSL_PYTHON = __import__("pathlib").Path(__file__).resolve().parents[1] / ".venv-parsl" / "bin" / "python"


def test_parsl_s_seven_tables_are_ours_column_for_column(tmp_path):
    """Parsl 2026.10.26 creates its tables (its own venv, a subprocess); every column, type, NOT NULL and key matches."""
    import sqlite3
    import subprocess

    from parsl_lite.monitoring import schema

    theirs = tmp_path / "parsl.db"
    subprocess.run([str(PARSL_PYTHON), "-c", "import sys; from parsl.monitoring.db_manager import Database; "
                    "Database('sqlite:///' + sys.argv[1])", str(theirs)], check=True, timeout=60)
    ours = sqlite3.connect(":memory:")
    for statement in schema.create_statements("sqlite"):
        ours.execute(statement)
    parsl = sqlite3.connect(theirs)
    parsl_tables = {row[0] for row in parsl.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert parsl_tables == {t.name for t in schema.TABLES if t.parsl}
    for table in sorted(parsl_tables):
        def columns(conn):   # (name, type, notnull, position in the primary key)
            return [(c[1], c[2].upper(), bool(c[3]), c[5]) for c in conn.execute(f'PRAGMA table_info("{table}")')]
        assert columns(ours) == columns(parsl), table


def test_add_many_makes_the_rows_add_makes_one_by_one():
    """The writer's inlined loop against the plain one, on a mix of lives split across batches."""
    import random
    rng = random.Random(7)
    items, t = [], 1.0
    for tid in range(300):
        t += 0.001
        life = [pending(t, tid), launched(t + 0.0001, tid)]
        ran = (t + 0.0001, "h", f"w{tid % 3}", "0")
        if tid % 2:   # where it ran: with the change that followed (the hub's way), or an item of its own
            life.append((t + 0.0002, tid, RAN, 0, *ran))
            ran = None
        if tid % 7 == 0:
            life += [final(t + 0.0003, tid, States.fail_retryable, 0, 1, ("E('a')",)), launched(t + 0.0004, tid, 1),
                     final(t + 0.0005, tid, States.failed, 1, 2, ("E('a')", "E('b')")),
                     (t + 0.0005, tid, ERROR, 1, "E", "b")]
        else:
            life.append(final(t + 0.0003, tid, States.exec_done, ran=ran))
        items.extend(life)
    cuts = sorted(rng.sample(range(1, len(items)), 25))
    chunks = [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)])]
    one, many = new(), new()
    for chunk in chunks:
        for item in chunk:
            one.add(item)
        many.add_many(chunk)
        assert vars(one.flush()) == vars(many.flush())
    assert (one.completed, one.failed) == (many.completed, many.failed)
