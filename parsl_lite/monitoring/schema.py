"""The monitoring store's tables: Parsl 2026.10.26's seven, then ours beside them.

Parsl's tables (``workflow``, ``task``, ``try``, ``status``, ``resource``,
``node``, ``block``) keep Parsl's names, columns, types and primary keys, so
``parsl-visualize`` and users' pandas scripts read a parsl_lite run
unchanged. What Parsl's schema has no place for lives in tables prefixed
``pl_``: the process that writes a run (to tell a run killed with SIGKILL from
one still running), per-try placement (endpoint, worker) and error text,
per-worker resource samples, and endpoint status reports.

Times are ``DATETIME`` columns. SQLite stores them as text in SQLAlchemy's
format (``YYYY-MM-DD HH:MM:SS.ffffff``, local time, as Parsl writes them), so
Parsl's Flask/SQLAlchemy models parse them; PostgreSQL gets ``TIMESTAMP``.
Readers (the CLI, the web view) import the table and column names from here.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Optional

SCHEMA_VERSION = 1

# Parsl's table names (parsl/monitoring/db_manager.py).
WORKFLOW = "workflow"
TASK = "task"
TRY = "try"
STATUS = "status"
RESOURCE = "resource"
NODE = "node"
BLOCK = "block"
# Ours.
RUN = "pl_run"
TRY_DETAIL = "pl_try"
WORKER_RESOURCE = "pl_worker_resource"
ENDPOINT = "pl_endpoint"


@dataclass(frozen=True)
class Column:
    name: str
    type: str            # TEXT, INTEGER, BIGINT, FLOAT, BOOLEAN, DATETIME
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    autoincrement: Optional[str] = None   # a lone INTEGER primary key the store numbers
    parsl: bool = True                    # one of Parsl's tables

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _c(name: str, type_: str, nullable: bool = True) -> Column:
    return Column(name, type_, nullable)


_PSUTIL_FLOATS = ("psutil_process_memory_percent", "psutil_process_children_count", "psutil_process_time_user",
                  "psutil_process_time_system", "psutil_process_memory_virtual", "psutil_process_memory_resident",
                  "psutil_process_disk_read", "psutil_process_disk_write")

TABLES: tuple[Table, ...] = (
    Table(WORKFLOW, (
        _c("run_id", "TEXT", False), _c("workflow_name", "TEXT"), _c("workflow_version", "TEXT"),
        _c("time_began", "DATETIME", False), _c("time_completed", "DATETIME"), _c("host", "TEXT", False),
        _c("user", "TEXT", False), _c("rundir", "TEXT", False), _c("tasks_failed_count", "INTEGER", False),
        _c("tasks_completed_count", "INTEGER", False),
    ), ("run_id",)),
    Table(STATUS, (
        _c("task_id", "INTEGER", False), _c("task_status_name", "TEXT", False), _c("timestamp", "DATETIME", False),
        _c("run_id", "TEXT", False), _c("try_id", "INTEGER", False),
    ), ("task_id", "run_id", "task_status_name", "timestamp")),
    Table(TASK, (
        _c("task_id", "INTEGER", False), _c("run_id", "TEXT", False), _c("task_depends", "TEXT"),
        _c("task_func_name", "TEXT", False), _c("task_memoize", "TEXT", False), _c("task_hashsum", "TEXT"),
        _c("task_inputs", "TEXT"), _c("task_outputs", "TEXT"), _c("task_stdin", "TEXT"), _c("task_stdout", "TEXT"),
        _c("task_stderr", "TEXT"), _c("task_time_invoked", "DATETIME"), _c("task_time_returned", "DATETIME"),
        _c("task_fail_count", "INTEGER", False), _c("task_fail_cost", "FLOAT", False),
    ), ("task_id", "run_id")),
    Table(TRY, (
        _c("try_id", "INTEGER", False), _c("task_id", "INTEGER", False), _c("run_id", "TEXT", False),
        _c("block_id", "TEXT"), _c("hostname", "TEXT"), _c("task_executor", "TEXT", False),
        _c("task_try_time_launched", "DATETIME"), _c("task_try_time_running", "DATETIME"),
        _c("task_try_time_returned", "DATETIME"), _c("task_fail_history", "TEXT"), _c("task_joins", "TEXT"),
    ), ("try_id", "task_id", "run_id")),
    Table(NODE, (
        _c("id", "INTEGER", False), _c("run_id", "TEXT", False), _c("hostname", "TEXT", False),
        _c("uid", "TEXT", False), _c("block_id", "TEXT", False), _c("cpu_count", "INTEGER", False),
        _c("total_memory", "BIGINT", False), _c("active", "BOOLEAN", False), _c("worker_count", "INTEGER", False),
        _c("python_v", "TEXT", False), _c("timestamp", "DATETIME", False), _c("last_heartbeat", "DATETIME", False),
    ), ("id",), autoincrement="id"),
    Table(BLOCK, (
        _c("run_id", "TEXT", False), _c("executor_label", "TEXT", False), _c("block_id", "TEXT", False),
        _c("job_id", "TEXT"), _c("timestamp", "DATETIME", False), _c("status", "TEXT", False),
    ), ("run_id", "block_id", "executor_label", "timestamp")),
    Table(RESOURCE, (
        _c("try_id", "INTEGER", False), _c("task_id", "INTEGER", False), _c("run_id", "TEXT", False),
        _c("timestamp", "DATETIME", False), _c("resource_monitoring_interval", "FLOAT"),
        _c("psutil_process_pid", "INTEGER"),
        *(_c(name, "FLOAT") for name in _PSUTIL_FLOATS[:]),
        _c("psutil_process_status", "TEXT"), _c("psutil_cpu_num", "TEXT"),
        _c("psutil_process_num_ctx_switches_voluntary", "FLOAT"),
        _c("psutil_process_num_ctx_switches_involuntary", "FLOAT"),
    ), ("try_id", "task_id", "run_id", "timestamp")),
    # ---- ours ----
    Table(RUN, (  # one row per run: who writes it, so a reader can tell "running" from "killed"
        _c("run_id", "TEXT", False), _c("pid", "INTEGER", False), _c("pid_create_time", "FLOAT"),
        _c("hostname", "TEXT", False), _c("script", "TEXT"), _c("config", "TEXT"),
        _c("last_heartbeat", "DATETIME", False), _c("heartbeat_period", "FLOAT", False),
        _c("exit_status", "TEXT", False),   # running | completed | failed (cleanup raised)
        _c("events_written", "BIGINT", False), _c("schema_version", "INTEGER", False),
    ), ("run_id",), parsl=False),
    Table(TRY_DETAIL, (  # where a try ran and how it failed (Parsl's try table has no column for these)
        _c("run_id", "TEXT", False), _c("task_id", "INTEGER", False), _c("try_id", "INTEGER", False),
        _c("executor", "TEXT"), _c("endpoint_id", "TEXT"), _c("block_id", "TEXT"), _c("worker", "TEXT"),
        _c("final_state", "TEXT"), _c("error_type", "TEXT"), _c("error", "TEXT"),
    ), ("run_id", "task_id", "try_id"), parsl=False),
    Table(WORKER_RESOURCE, (  # psutil samples of each worker process, idle or busy
        _c("run_id", "TEXT", False), _c("executor_label", "TEXT", False), _c("block_id", "TEXT"),
        _c("hostname", "TEXT", False), _c("worker", "TEXT", False), _c("pid", "INTEGER", False),
        _c("timestamp", "DATETIME", False), _c("cpu_percent", "FLOAT"), _c("cpu_user", "FLOAT"),
        _c("cpu_system", "FLOAT"), _c("memory_resident", "BIGINT"), _c("memory_virtual", "BIGINT"),
        _c("task_id", "INTEGER"), _c("try_id", "INTEGER"),
    ), ("run_id", "executor_label", "worker", "pid", "timestamp"), parsl=False),
    Table(ENDPOINT, (  # status reports of function-service endpoints, as the FaaS executor sees them
        _c("run_id", "TEXT", False), _c("executor_label", "TEXT", False), _c("endpoint_id", "TEXT", False),
        _c("timestamp", "DATETIME", False), _c("status", "TEXT", False), _c("connected_workers", "INTEGER"),
        _c("idle_workers", "INTEGER"), _c("pending_tasks", "INTEGER"), _c("last_seen", "FLOAT"),
    ), ("run_id", "executor_label", "endpoint_id", "timestamp"), parsl=False),
)

BY_NAME: dict[str, Table] = {t.name: t for t in TABLES}

# Indexes beyond the primary keys: what the readers filter and group by.
INDEXES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ix_task_task_hashsum", TASK, ("task_hashsum",)),   # Parsl's
    ("ix_pl_worker_resource_run", WORKER_RESOURCE, ("run_id", "timestamp")),
)

_TYPES = {
    "sqlite": {"DATETIME": "DATETIME", "BOOLEAN": "BOOLEAN", "BIGINT": "BIGINT", "FLOAT": "FLOAT",
               "INTEGER": "INTEGER", "TEXT": "TEXT"},
    "postgresql": {"DATETIME": "TIMESTAMP WITHOUT TIME ZONE", "BOOLEAN": "BOOLEAN", "BIGINT": "BIGINT",
                   "FLOAT": "DOUBLE PRECISION", "INTEGER": "INTEGER", "TEXT": "TEXT"},
}


def quote(name: str) -> str:
    """``user`` and ``try`` are reserved words: every identifier is quoted."""
    return f'"{name}"'


def create_statements(dialect: str) -> list[str]:
    """``CREATE TABLE/INDEX IF NOT EXISTS`` for every table, in ``dialect`` (``sqlite`` or ``postgresql``)."""
    types = _TYPES[dialect]
    statements = []
    for table in TABLES:
        parts = []
        for col in table.columns:
            if col.name == table.autoincrement:
                parts.append(f"{quote(col.name)} " + ("INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT" if dialect == "sqlite"
                                                      else "SERIAL PRIMARY KEY"))
                continue
            parts.append(f"{quote(col.name)} {types[col.type]}" + ("" if col.nullable else " NOT NULL"))
        if table.primary_key and table.autoincrement is None:
            parts.append("PRIMARY KEY (" + ", ".join(quote(c) for c in table.primary_key) + ")")
        statements.append(f"CREATE TABLE IF NOT EXISTS {quote(table.name)} (" + ", ".join(parts) + ")")
    for name, table_name, cols in INDEXES:
        statements.append(f"CREATE INDEX IF NOT EXISTS {quote(name)} ON {quote(table_name)} ("
                          + ", ".join(quote(c) for c in cols) + ")")
    return statements


def to_db_time(epoch: Optional[float]) -> Optional[str]:
    """An epoch time as the text SQLAlchemy writes and parses for a SQLite ``DATETIME`` (local time, as Parsl)."""
    if epoch is None:
        return None
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S.%f")


class TextTimes:
    """Integer microseconds -> ``to_db_time``'s text, fast: the date and second are formatted once per second."""

    def __init__(self) -> None:
        self._prefixes: dict[int, str] = {}

    def __call__(self, us: int) -> str:
        second, micro = divmod(us, 1_000_000)
        prefix = self._prefixes.get(second)
        if prefix is None:
            if len(self._prefixes) > 256:
                self._prefixes.clear()
            prefix = self._prefixes[second] = datetime.datetime.fromtimestamp(second).strftime("%Y-%m-%d %H:%M:%S.")
        return f"{prefix}{micro:06d}"


def from_db_time(value: object) -> Optional[float]:
    """A stored ``DATETIME`` (SQLite text or a PostgreSQL ``datetime``) back to epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    text = str(value)
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else "%Y-%m-%d %H:%M:%S"
    return datetime.datetime.strptime(text, fmt).timestamp()
