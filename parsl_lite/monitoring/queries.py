"""The monitoring store's read side: what ``status``, ``monitor``, ``report`` and the web view ask it.

Tables and columns are Parsl's monitoring database's (``workflow``, ``task``, ``try``, ``status``,
``resource``, ``node``, ``block``) plus ours (see :mod:`parsl_lite.monitoring.schema`). Every query
here only reads, on its own read-only connection: a SQLite store in WAL mode is never blocked (nor
blocks its writer) while a run writes it. The one write, :meth:`Store.mark_ended_abnormally`, is a
short transaction of its own on a separate connection.

Times come back as float seconds: the stored naive timestamps read as if they were UTC (SQLite's
``julianday``, PostgreSQL's ``extract(epoch ...)`` both do so), so differences are exact and
:func:`naive_now` gives "now" on the same scale.
"""
from __future__ import annotations

import datetime
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence
from urllib.parse import urlparse

from parsl_lite.errors import ParslError
from parsl_lite.monitoring import schema, store, views

logger = logging.getLogger(__name__)

DEFAULT_DB_RELPATH = os.path.join("runinfo", "monitoring.db")
# Parsl's lifecycle order: breaks ties between two states of one task stamped with the same time.
STATE_ORDER = ("unsched", "pending", "launched", "running", "running_ended", "joining", "fail_retryable",
               "exec_done", "memo_done", "failed", "dep_fail")
ENDED_ABNORMALLY = "ended abnormally"
_NO_END = 2 ** 62
_RANK_SQL = "CASE task_status_name " + " ".join(
    f"WHEN '{name}' THEN {rank}" for rank, name in enumerate(STATE_ORDER)) + " ELSE 99 END"


class StoreUnreadable(ParslError):
    """The monitoring store is missing or cannot be opened; the message names it."""


class UnknownRun(ParslError):
    """No run in the store matches what was asked; the message lists the runs there are."""


def default_store_url(cwd: Optional[str] = None) -> str:
    """``sqlite:////<cwd>/runinfo/monitoring.db``: parsl-visualize's default, where runs write by default."""
    return "sqlite:///" + os.path.abspath(os.path.join(cwd or os.getcwd(), DEFAULT_DB_RELPATH))


def resolve_store_url(db: Optional[str], cwd: Optional[str] = None) -> str:
    """A store URL from ``--db``: None (the default), a SQLite URL, a PostgreSQL URL, or a plain file path."""
    if db is None:
        return default_store_url(cwd)
    if db.startswith(("sqlite:", "postgresql:", "postgres:", "postgresql+")):
        return db
    if "://" in db:
        raise StoreUnreadable(f"--db {db!r}: not a sqlite:/// or postgresql:// URL, nor a file path")
    return "sqlite:///" + os.path.abspath(os.path.join(cwd or os.getcwd(), db))


_EPOCH = re.compile(r"\{epoch:([\w.\"]+)\}")


def _hide_password(url: str) -> str:
    """``postgresql://user:***@host:port/db``: a store named in messages without its password."""
    parts = urlparse(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[0].split(":", 1)[0] + ":***@"
                          + parts.netloc.rsplit("@", 1)[1]).geturl()


def naive_now() -> float:
    """Now, on the stores' time scale (local wall time read as UTC, as the stored naive times are)."""
    return datetime.datetime.now().replace(tzinfo=datetime.timezone.utc).timestamp()


def format_time(t: Optional[float]) -> str:
    """A stored time as it was written (``YYYY-MM-DD HH:MM:SS``), or ``-``."""
    if t is None:
        return "-"
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@dataclass(frozen=True)
class RunRow:
    """One row of ``workflow`` with our liveness facts beside it."""

    run_id: str
    workflow_name: Optional[str]
    user: str
    host: str
    rundir: str
    began: float
    completed: Optional[float]
    tasks_failed_count: int
    tasks_completed_count: int
    exit_status: Optional[str] = None      # pl_run's: running | completed | failed | ended abnormally
    pid: Optional[int] = None
    pid_create_time: Optional[float] = None
    writer_host: Optional[str] = None
    last_heartbeat_raw: Any = None         # as stored, for store.run_liveness
    heartbeat: Optional[float] = None
    heartbeat_period: Optional[float] = None

    def began_raw_epoch(self) -> float:
        """``began`` as a real epoch (``began`` is on the naive scale): the local offset taken off."""
        return self.began - (naive_now() - time.time())

    def state(self) -> str:
        """``running``, ``completed``, ``failed`` or ``ended abnormally`` (the process gone, never ended).

        ``failed``: some task failed, or the kernel's cleanup did. Runs written without ``pl_run``
        (Parsl's own) are ``running`` until ``time_completed`` is set.
        """
        if self.exit_status is None:
            done = self.completed is not None
            return ("failed" if self.tasks_failed_count else "completed") if done else "running"
        status = store.run_liveness(self.pid, self.pid_create_time, self.writer_host, self.exit_status,
                                    self.last_heartbeat_raw, self.heartbeat_period, time.time())
        if status == "completed" and self.tasks_failed_count:
            return "failed"
        return status


class Store:
    """A read-only view of one monitoring store (SQLite file or PostgreSQL database).

    Args:
        url: ``sqlite:///path`` or ``postgresql://...``.

    Raises:
        StoreUnreadable: the file does not exist, or the database cannot be opened.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect = "postgresql" if url.startswith("postgres") else "sqlite"
        self._columns: dict[str, frozenset[str]] = {}
        self.path = store.sqlite_path(url) or _hide_password(url)
        if self.dialect == "sqlite" and not os.path.isfile(self.path):
            raise StoreUnreadable(f"no monitoring store at {self.path} (no monitored run here? give --db URL)")
        try:
            self._db = store.open_store(url, read_only=True)
            self._db.query("SELECT count(*) FROM sqlite_master" if self.dialect == "sqlite" else "SELECT 1")
        except Exception as exc:  # sqlite3.Error, psycopg.Error, a bad URL
            raise StoreUnreadable(f"cannot read the monitoring store {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of ``sql`` (``?`` placeholders, ``{epoch:COL}`` for a timestamp column as float seconds)."""
        return self._db.query(self._dialect_sql(sql), params)

    def _dialect_sql(self, sql: str) -> str:
        if self.dialect == "sqlite":
            return _EPOCH.sub(r"((julianday(\1) - 2440587.5) * 86400.0)", sql)
        return _EPOCH.sub(r"extract(epoch from \1)::float8", sql.replace("%", "%%"))

    def columns(self, table: str) -> frozenset[str]:
        """The columns ``table`` has (empty if there is no such table): ours may come later than Parsl's."""
        if table not in self._columns:
            if self.dialect == "sqlite":
                rows = self.query(f'PRAGMA table_info("{table}")')
                names = frozenset(r[1] for r in rows)
            else:
                rows = self.query("SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                                  "AND table_schema = current_schema()", (table,))
                names = frozenset(r[0] for r in rows)
            if names:
                self._columns[table] = names
            return names
        return self._columns[table]

    def change_token(self) -> tuple:
        """Cheap; differs from the last call's whenever something was committed since (equal: nothing new)."""
        if self.dialect == "sqlite":
            stat = [os.stat(p) for p in (self.path, self.path + "-wal") if os.path.exists(p)]
            return tuple((s.st_mtime_ns, s.st_size) for s in stat)
        rows = self.query("SELECT count(*), max({epoch:timestamp}) FROM status")
        return tuple(rows[0])

    # ------------------------------------------------------------------ runs

    def runs(self) -> list[RunRow]:
        """Every workflow in the store, oldest first, with its writer's liveness facts where the store has them."""
        if not self.columns(schema.WORKFLOW):
            return []
        live = bool(self.columns(schema.RUN))
        extra = (", l.exit_status, l.pid, l.pid_create_time, l.hostname, l.last_heartbeat, "
                 "{epoch:l.last_heartbeat}, l.heartbeat_period") if live else ""
        join = f" LEFT JOIN {schema.RUN} l ON l.run_id = w.run_id" if live else ""
        rows = self.query(
            'SELECT w.run_id, w.workflow_name, w."user", w.host, w.rundir, {epoch:w.time_began}, '
            "{epoch:w.time_completed}, w.tasks_failed_count, w.tasks_completed_count" + extra +
            f" FROM workflow w{join} ORDER BY w.time_began")
        return [RunRow(*row) for row in rows]

    def find_run(self, spec: Optional[str]) -> RunRow:
        """The run ``spec`` names: a run id, a unique prefix of one, or its run dir (``003``, ``runinfo/003``).

        None: the latest run. Raises:
            UnknownRun: nothing (or more than one run) matches; the message lists the store's runs.
        """
        runs = self.runs()
        if not runs:
            raise UnknownRun(f"no runs in the monitoring store {self.path}")
        if spec is None:
            return runs[-1]
        found = [r for r in runs if r.run_id == spec]
        found = found or [r for r in runs if r.rundir and _same_rundir(r.rundir, spec)]
        found = found or [r for r in runs if r.run_id.startswith(spec)]
        if len(found) == 1:
            return found[0]
        known = ", ".join(f"{r.run_id} ({os.path.basename(r.rundir or '')})" for r in runs[-10:])
        why = "matches several runs" if found else "is not a run"
        raise UnknownRun(f"run {spec!r} {why} in the monitoring store {self.path}; runs: {known}")

    def mark_ended_abnormally(self, run: RunRow) -> None:
        """Record that ``run``'s process died without ending it (one short write transaction of its own).

        ``pl_run.exit_status`` becomes ``ended abnormally`` and Parsl's ``workflow.time_completed`` its
        last heartbeat (so parsl-visualize no longer shows it running), unless it ended meanwhile.
        """
        writer = store.open_store(self.url)
        try:
            at = writer.time(schema.from_db_time(run.last_heartbeat_raw) or run.began_raw_epoch())
            writer.execute(f"UPDATE {schema.RUN} SET exit_status = ? WHERE run_id = ? AND exit_status = ?",
                           (ENDED_ABNORMALLY, run.run_id, "running"))
            writer.execute("UPDATE workflow SET time_completed = ? WHERE run_id = ? AND time_completed IS NULL",
                           (at, run.run_id))
            writer.commit()
        finally:
            writer.close()

    # ------------------------------------------------------------------ tasks

    def state_counts(self, run_id: str) -> dict[str, int]:
        """Tasks by their current state (the last ``status`` row of each task)."""
        sql = f"SELECT state, count(*) FROM ({self._last_states_sql()}) last_state GROUP BY state"
        return {name: int(n) for name, n in self.query(sql, (run_id, 0, _NO_END))}

    def last_states(self, run_id: str, lo: int = 0, hi: int = _NO_END) -> list[tuple[int, str]]:
        """(task id, current state) of the tasks with ``lo <= task_id < hi``."""
        return self.query(self._last_states_sql(), (run_id, lo, hi))

    def _last_states_sql(self) -> str:
        """Each task's newest ``status`` row in one pass: SQLite's bare-column ``max()``, PostgreSQL's
        ``DISTINCT ON`` (a window query costs 5x as much on 100,000 tasks). The task-id range reads a
        slice of status's primary key (task_id first)."""
        if self.dialect == "sqlite":
            return ("SELECT task_id, task_status_name AS state, max(timestamp) FROM status WHERE run_id = ? "
                    "AND task_id >= ? AND task_id < ? GROUP BY task_id")
        return ("SELECT DISTINCT ON (task_id) task_id, task_status_name AS state FROM status WHERE run_id = ? "
                f"AND task_id >= ? AND task_id < ? ORDER BY task_id, timestamp DESC, {_RANK_SQL} DESC")

    def _detail_join(self, alias: str = "y") -> tuple[str, str]:
        """(join, prefix) to read ``pl_try`` beside a ``try`` row; empty on stores without it (Parsl's own)."""
        if not self.columns(schema.TRY_DETAIL):
            return "", ""
        return (f" LEFT JOIN {schema.TRY_DETAIL} d ON d.run_id = {alias}.run_id AND d.task_id = {alias}.task_id "
                f"AND d.try_id = {alias}.try_id", "d.")

    def executor_task_counts(self, run_id: str, lo: int = 0, hi: int = _NO_END) -> dict[str, int]:
        """Tasks (``lo <= task_id < hi``) tried on each executor (Parsl's ``try.task_executor``, never NULL)."""
        rows = self.query('SELECT task_executor, count(DISTINCT task_id) FROM "try" WHERE run_id = ? '
                          "AND task_id >= ? AND task_id < ? GROUP BY task_executor", (run_id, lo, hi))
        return {label: int(n) for label, n in rows if label is not None}

    def recent_failures(self, run_id: str, limit: int = 20, lo: int = 0, hi: int = _NO_END) -> list[dict]:
        """The newest failed tries (``lo <= task_id < hi``) with their error text, newest first.

        The text is ``pl_try``'s (``Type: message``), else the last line of Parsl's fail history.
        """
        join, d = self._detail_join("s")
        error = f"{d}error_type, {d}error" if d else "NULL, NULL"
        rows = self.query(
            "SELECT s.task_id, s.try_id, t.task_func_name, {epoch:s.timestamp}, s.task_status_name, "
            f"{error}, y.task_fail_history FROM status s JOIN task t ON t.run_id = s.run_id "
            'AND t.task_id = s.task_id LEFT JOIN "try" y ON y.run_id = s.run_id AND y.task_id = s.task_id '
            f"AND y.try_id = s.try_id{join} WHERE s.run_id = ? AND s.task_id >= ? AND s.task_id < ? AND "
            "s.task_status_name IN ('failed', 'dep_fail', 'fail_retryable') ORDER BY s.timestamp DESC LIMIT ?",
            (run_id, lo, hi, limit))
        out = []
        for task_id, try_id, func, at, state, error_type, error, history in rows:
            text = error or views.short_error(history, 10_000) or state
            if error_type and not text.startswith(error_type):
                text = f"{error_type}: {text}"
            out.append({"task_id": task_id, "try_id": try_id, "func_name": func, "time": at, "state": state,
                        "error": text})
        return out

    def task_stream(self, run_id: str, limit: Optional[int] = None) -> list[tuple]:
        """Tries as (task_id, try_id, func_name, executor, worker, start, end, state), by start time.

        ``start``: when the try ran (launched, if it never said running); ``end``: None while it runs;
        ``worker``: ``pl_try``'s worker (or endpoint), else the try's host. ``limit``: the tries of the
        newest ``limit`` tasks only (a cheap filter on the task id before anything is computed).
        """
        join, d = self._detail_join()
        worker = f"COALESCE({d}worker, {d}endpoint_id, y.hostname, y.block_id)" if d else \
            "COALESCE(y.hostname, y.block_id)"
        state = f"{d}final_state" if d else "NULL"
        lo = 0
        if limit:
            newest = self.query("SELECT task_id FROM task WHERE run_id = ? ORDER BY task_id DESC LIMIT 1", (run_id,))
            lo = newest[0][0] - limit + 1 if newest else 0
        return self.query(
            f"SELECT y.task_id, y.try_id, t.task_func_name, y.task_executor, {worker}, "
            "COALESCE({epoch:y.task_try_time_running}, {epoch:y.task_try_time_launched}) AS start, "
            f'{{epoch:y.task_try_time_returned}}, {state} FROM "try" y JOIN task t '
            f"ON t.run_id = y.run_id AND t.task_id = y.task_id{join} WHERE y.run_id = ? AND y.task_id >= ? "
            "ORDER BY start", (run_id, lo))

    def last_event_time(self, run_id: str) -> Optional[float]:
        """The newest state change of the run (None: no task yet)."""
        return self.query("SELECT max({epoch:timestamp}) FROM status WHERE run_id = ?", (run_id,))[0][0]

    def state_deltas(self, run_id: str, t0: float, bin_s: float) -> list[tuple[int, str, int]]:
        """(bin, state, entered - left) per time bin of ``bin_s`` from ``t0``: tasks by state over time.

        Each ``status`` row enters its state and leaves the task's previous one (``LAG`` by time; with
        the index on status(run_id, task_id, timestamp) that needs no sort). Rows are grouped by
        (bin, new, old) before the deltas are summed.
        """
        rows = self.query(
            "WITH s AS (SELECT {epoch:timestamp} AS t, task_status_name AS new, LAG(task_status_name) OVER ("
            "PARTITION BY task_id ORDER BY timestamp) AS old FROM status WHERE run_id = ?), "
            "b AS (SELECT CAST((t - ?) / ? AS INTEGER) AS bin, new, old, count(*) AS n FROM s GROUP BY 1, 2, 3) "
            "SELECT bin, state, SUM(delta) FROM (SELECT bin, new AS state, n AS delta FROM b UNION ALL "
            "SELECT bin, old AS state, -n AS delta FROM b WHERE old IS NOT NULL) d GROUP BY bin, state "
            "ORDER BY bin", (run_id, t0, bin_s))
        return [(int(b), s, int(d)) for b, s, d in rows]

    # ------------------------------------------------------------------ workers, blocks, endpoints

    def blocks(self, run_id: str) -> list[dict]:
        """The latest status of each block, by executor."""
        if not self.columns("block"):
            return []
        rows = self.query(
            "SELECT executor_label, block_id, job_id, status, t FROM (SELECT executor_label, block_id, job_id, "
            "status, {epoch:timestamp} AS t, ROW_NUMBER() OVER (PARTITION BY executor_label, block_id "
            "ORDER BY timestamp DESC) AS rn FROM block WHERE run_id = ?) b WHERE rn = 1 "
            "ORDER BY executor_label, block_id", (run_id,))
        return [dict(zip(("executor", "block_id", "job_id", "status", "timestamp"), r)) for r in rows]

    def nodes(self, run_id: str) -> list[dict]:
        """The latest row of each worker pool (``node``, by uid), with its executor where the store says it."""
        cols = self.columns("node")
        if not cols:
            return []
        label = "executor_label" if "executor_label" in cols else "NULL"
        rows = self.query(
            f"SELECT {label}, hostname, uid, block_id, worker_count, active, t, hb FROM (SELECT *, "
            "{epoch:timestamp} AS t, {epoch:last_heartbeat} AS hb, ROW_NUMBER() OVER (PARTITION BY uid "
            "ORDER BY timestamp DESC, last_heartbeat DESC) AS rn FROM node WHERE run_id = ?) n WHERE rn = 1 "
            "ORDER BY hostname, uid", (run_id,))
        keys = ("executor", "hostname", "uid", "block_id", "worker_count", "active", "timestamp", "last_heartbeat")
        return [dict(zip(keys, r), active=bool(r[5])) for r in rows]

    def endpoints(self, run_id: str) -> list[dict]:
        """The latest status report of each function-service endpoint the run used."""
        if not self.columns(schema.ENDPOINT):
            return []
        rows = self.query(
            "SELECT endpoint_id, executor_label, status, connected_workers, idle_workers, pending_tasks, t FROM "
            "(SELECT *, {epoch:timestamp} AS t, ROW_NUMBER() OVER (PARTITION BY executor_label, endpoint_id "
            f"ORDER BY timestamp DESC) AS rn FROM {schema.ENDPOINT} WHERE run_id = ?) e WHERE rn = 1 "
            "ORDER BY executor_label, endpoint_id", (run_id,))
        keys = ("endpoint_id", "executor", "status", "workers", "idle_workers", "pending_tasks", "last_seen")
        return [dict(zip(keys, r)) for r in rows]

    def resource_samples(self, run_id: str) -> list[tuple[str, float, Optional[float], Optional[float]]]:
        """(worker, time, cpu %, RSS bytes) samples by time: ``pl_worker_resource``, else Parsl's ``resource``."""
        if self.columns(schema.WORKER_RESOURCE):
            return self.query("SELECT worker, {epoch:timestamp}, cpu_percent, memory_resident "
                              f"FROM {schema.WORKER_RESOURCE} WHERE run_id = ? ORDER BY timestamp", (run_id,))
        if not self.columns(schema.RESOURCE):
            return []
        rows = self.query(
            "SELECT CAST(psutil_process_pid AS TEXT), {epoch:timestamp}, psutil_process_time_user + "
            "psutil_process_time_system, psutil_process_memory_resident FROM resource WHERE run_id = ? "
            "ORDER BY psutil_process_pid, timestamp", (run_id,))
        return _cpu_percent_from_times(rows)


def _same_rundir(rundir: str, spec: str) -> bool:
    spec = spec.rstrip("/")
    return rundir.rstrip("/") == os.path.abspath(spec) or os.path.basename(rundir.rstrip("/")) == spec


def _cpu_percent_from_times(rows: Iterable[tuple]) -> list[tuple]:
    """Parsl's resource rows carry cumulative CPU seconds; the CPU % is their slope between samples."""
    out = []
    last: dict[str, tuple[float, float]] = {}
    for worker, t, cpu_s, rss in rows:
        prev = last.get(worker)
        percent = None
        if prev is not None and cpu_s is not None and t > prev[0]:
            percent = max(0.0, 100.0 * (cpu_s - prev[1]) / (t - prev[0]))
        if cpu_s is not None:
            last[worker] = (t, cpu_s)
        out.append((worker, t, percent, rss))
    out.sort(key=lambda r: r[1])
    return out


def open_store(url: str) -> Store:
    """A read-only :class:`Store` on ``url`` (see :func:`resolve_store_url`)."""
    return Store(url)


def settle_run(db: Store, run: RunRow) -> str:
    """``run``'s state; a run whose process died without ending it is marked so in the store, once.

    A store this user cannot write (another user's run) is only read: the state is the same, a warning
    says it was not recorded.
    """
    state = run.state()
    if state == ENDED_ABNORMALLY and run.exit_status == "running":
        try:
            db.mark_ended_abnormally(run)
        except Exception as exc:  # sqlite3/psycopg errors, a read-only file or database
            logger.warning("run %s ended abnormally; could not record it in %s: %s", run.run_id, db.path, exc)
    return state


class SnapshotReader:
    """Reads one run's :class:`views.MonitorView` again and again, re-reading only what may still change.

    A task in a final state never changes again, so its count, executor and failure are kept once
    every task below its id is final too (the "settled" watermark, held :data:`SETTLE_MARGIN` ids
    back for events written out of order): each refresh reads the unsettled window of task ids only,
    a slice of the primary keys. On a finished 100,000-task run the second read costs milliseconds.
    """

    SETTLE_MARGIN = 1000

    def __init__(self, db: Store, run_spec: Optional[str] = None) -> None:
        self.db = db
        self.run_id = db.find_run(run_spec).run_id
        self._settled = 0                       # tasks with ids below are final, and counted below
        self._counts: dict[str, int] = {}
        self._executors: dict[str, int] = {}
        self._failures: list[dict] = []

    def read(self, now: Optional[float] = None) -> views.MonitorView:
        db, rid = self.db, self.run_id
        run = db.find_run(rid)
        now = naive_now() if now is None else now
        window = db.last_states(rid, self._settled)
        settle_to = settled_below(window, self._settled, self.SETTLE_MARGIN)
        if settle_to > self._settled:
            self._settle(window, settle_to)
        counts = dict(self._counts)
        for task_id, state, *_ in window:
            if task_id >= self._settled:
                counts[state] = counts.get(state, 0) + 1
        live_exec = db.executor_task_counts(rid, self._settled)
        executors = views.executor_views(db.blocks(rid), db.nodes(rid), _add(self._executors, live_exec))
        failures = db.recent_failures(rid, views.FAILURE_ROWS, self._settled) + self._failures
        failures.sort(key=lambda f: f["time"] or 0.0, reverse=True)
        return views.build_view(views.run_view(run, run.state(), now), counts, executors, db.endpoints(rid),
                                failures, db.task_stream(rid, views.STREAM_ROWS), now)

    def _settle(self, window: list[tuple], settle_to: int) -> None:
        lo, db, rid = self._settled, self.db, self.run_id
        for task_id, state, *_ in window:
            if task_id < settle_to:
                self._counts[state] = self._counts.get(state, 0) + 1
        self._executors = _add(self._executors, db.executor_task_counts(rid, lo, settle_to))
        self._failures = sorted(self._failures + db.recent_failures(rid, views.FAILURE_ROWS, lo, settle_to),
                                key=lambda f: f["time"] or 0.0, reverse=True)[:views.FAILURE_ROWS]
        self._settled = settle_to


def settled_below(window: Sequence[tuple], lo: int, margin: int) -> int:
    """The new watermark: ``margin`` ids below the first task (from ``lo``) not final, or below the newest."""
    unfinished = [row[0] for row in window if row[1] not in views.FINAL_STATES]
    top = min(unfinished) if unfinished else (max(row[0] for row in window) + 1 if window else lo)
    return max(lo, top - margin)


def _add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {*a, *b}}


def read_snapshot(db: Store, run_id: Optional[str] = None, *, now: Optional[float] = None) -> views.MonitorView:
    """One snapshot of ``run_id`` (None: the latest run); a live view keeps a :class:`SnapshotReader`.

    Raises:
        UnknownRun: ``run_id`` names no run.
    """
    return SnapshotReader(db, run_id).read(now)
