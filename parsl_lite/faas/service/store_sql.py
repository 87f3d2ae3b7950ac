"""The SQL both stores run, and the mapping between rows and records, written once.

:class:`SqlStore` implements every :class:`~parsl_lite.faas.service.store.Store`
method on top of four small dialect hooks (a write transaction, a read
cursor, a "column is in this id list" fragment, and a bulk insert);
``store_sqlite.py`` and ``store_postgres.py`` only open connections and
fill in those hooks. The statements are written with ``?`` placeholders;
a dialect with another style (psycopg's ``%s``) sets :attr:`SqlStore.placeholder`.

Both stores keep the same shapes: booleans as booleans (SQLite stores 0/1),
bytes as BLOB / bytea, tuples of ids and the endpoint's status dict as JSON
text (nothing queries inside them; the service checks sharing in Python).
Tasks carry a ``seq`` column, their insertion order: ``task_group`` and
equal ``received`` times are ordered by it.
"""
from __future__ import annotations

import abc
import dataclasses
import json
import time
import uuid
from typing import Any, ContextManager, Iterable, Optional, Sequence

from parsl_lite.faas.service.store import (
    CANCELLED, FAILED, FINAL_STATES, PENDING_STATES, PURGED, RUNNING, SUCCESS, WAITING_FOR_EP,
    WAITING_FOR_LAUNCH, EndpointRecord, FunctionRecord, Store, TaskRecord, User,
)

SCHEMA_VERSION = 1
ALL_STATES = (*PENDING_STATES, *FINAL_STATES)


class SchemaVersionError(RuntimeError):
    """The database was written by a newer parsl_lite (a schema this one does not know)."""

    def __init__(self, where: str, found: int, supported: int) -> None:
        self.where, self.found, self.supported = where, found, supported
        super().__init__(f"the store {where} has schema version {found}, newer than this parsl_lite "
                         f"knows ({supported}); upgrade parsl_lite or use another database")


# ---------------------------------------------------------------- schema
# {blob}, {float}, {bool}, {seq} are the dialect's type names (see SqlStore.types).
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE,"
    " is_admin {bool} NOT NULL, created {float} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tokens (token_hash TEXT PRIMARY KEY, user_id TEXT NOT NULL,"
    " description TEXT NOT NULL, created {float} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS functions (function_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL,"
    " name TEXT NOT NULL, description TEXT NOT NULL, body {blob} NOT NULL, public {bool} NOT NULL,"
    " shared_with TEXT NOT NULL, versions TEXT NOT NULL, created {float} NOT NULL)",
    "CREATE TABLE IF NOT EXISTS endpoints (endpoint_id TEXT PRIMARY KEY, owner_id TEXT NOT NULL,"
    " name TEXT NOT NULL, public_key TEXT NOT NULL, public {bool} NOT NULL, allowed_functions TEXT NOT NULL,"
    " shared_with TEXT NOT NULL, created {float} NOT NULL, last_seen {float}, connected {bool} NOT NULL,"
    " status TEXT NOT NULL, UNIQUE (owner_id, name))",
    "CREATE TABLE IF NOT EXISTS tasks (seq {seq}, task_id TEXT NOT NULL UNIQUE, owner_id TEXT NOT NULL,"
    " function_id TEXT NOT NULL, endpoint_id TEXT NOT NULL, task_group_id TEXT NOT NULL,"
    " payload {blob} NOT NULL, versions TEXT NOT NULL, state TEXT NOT NULL, received {float} NOT NULL,"
    " attempts INTEGER NOT NULL, dispatched {float}, started {float}, finished {float}, result {blob},"
    " fetched {float}, purged {float})",
    # tasks_to_deliver / tasks_in_flight: one endpoint's tasks in a state, oldest first
    "CREATE INDEX IF NOT EXISTS tasks_by_endpoint ON tasks (endpoint_id, state, received, seq)",
    "CREATE INDEX IF NOT EXISTS tasks_by_group ON tasks (task_group_id, seq)",
    # purge_fetched: only fetched tasks are in this index
    "CREATE INDEX IF NOT EXISTS tasks_fetched ON tasks (fetched) WHERE fetched IS NOT NULL",
)
VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"

# ---------------------------------------------------------------- rows <-> records
USER_COLS = "user_id, username, is_admin, created"
FUNCTION_COLS = "function_id, owner_id, name, description, body, public, shared_with, versions, created"
ENDPOINT_COLS = ("endpoint_id, owner_id, name, public_key, public, allowed_functions, shared_with, created,"
                 " last_seen, connected, status")
TASK_COLS = ("task_id, owner_id, function_id, endpoint_id, task_group_id, payload, versions, state, received,"
             " attempts, dispatched, started, finished, result, fetched, purged")
TASK_COLS_NO_PAYLOAD = TASK_COLS.replace(" payload,", " '' AS payload,")   # '' is b"" once mapped (_task)


def _params(n: int) -> str:
    return ", ".join("?" * n)


def _user(row: Sequence[Any]) -> User:
    return User(row[0], row[1], bool(row[2]), row[3])


def _function_row(r: FunctionRecord) -> tuple:
    return (r.function_id, r.owner_id, r.name, r.description, bytes(r.body), bool(r.public),
            json.dumps(list(r.shared_with)), r.versions, r.created)


def _function(row: Sequence[Any]) -> FunctionRecord:
    return FunctionRecord(row[0], row[1], row[2], row[3], bytes(row[4]), bool(row[5]),
                          tuple(json.loads(row[6])), row[7], row[8])


def _endpoint_row(r: EndpointRecord) -> tuple:
    return (r.endpoint_id, r.owner_id, r.name, r.public_key, bool(r.public), json.dumps(list(r.allowed_functions)),
            json.dumps(list(r.shared_with)), r.created, r.last_seen, bool(r.connected), json.dumps(r.status))


def _endpoint(row: Sequence[Any]) -> EndpointRecord:
    return EndpointRecord(row[0], row[1], row[2], row[3], bool(row[4]), tuple(json.loads(row[5])),
                          tuple(json.loads(row[6])), row[7], row[8], bool(row[9]), json.loads(row[10]))


def _task_row(r: TaskRecord) -> tuple:
    return (r.task_id, r.owner_id, r.function_id, r.endpoint_id, r.task_group_id, bytes(r.payload), r.versions,
            r.state, r.received, r.attempts, r.dispatched, r.started, r.finished,
            None if r.result is None else bytes(r.result), r.fetched, r.purged)


_TASK_FIELDS = tuple(f.name for f in dataclasses.fields(TaskRecord))
assert ", ".join(_TASK_FIELDS) == TASK_COLS


def _task(row: Sequence[Any]) -> TaskRecord:
    """The record of a row, whose columns are TaskRecord's fields in order (both drivers give bytes for blobs).

    Filled in directly rather than through the frozen dataclass's ``__init__`` (one ``object.__setattr__``
    per field): get_tasks and tasks_to_deliver map thousands of rows per call, and this is 3x faster.
    """
    record = object.__new__(TaskRecord)
    record.__dict__.update(zip(_TASK_FIELDS, row))
    return record


def _state_in(states: Sequence[str]) -> str:
    """``state IN ('a', 'b')``: the state names are our constants, safe as SQL literals."""
    return "state IN (" + ", ".join(f"'{state}'" for state in states) + ")"


_FINAL = _state_in(FINAL_STATES)
_PENDING = _state_in(PENDING_STATES)
_SET_RESULT = ("UPDATE tasks SET state = ?, result = ?, started = COALESCE(?, started), finished = ?"
               f" WHERE task_id = ? AND NOT {_FINAL}")


class SqlStore(Store):
    """Every store method, in SQL both SQLite and PostgreSQL run; subclasses supply the connection."""

    placeholder = "?"
    types: dict[str, str] = {}         # {blob}, {float}, {bool}, {seq} of SCHEMA
    where = "?"                        # the database, for error messages (a file, a DSN without password)

    # ------------------------------------------------------------ dialect hooks
    @abc.abstractmethod
    def _write(self) -> ContextManager[Any]:
        """A cursor inside one write transaction: committed on exit, rolled back on an exception."""

    @abc.abstractmethod
    def _read(self) -> ContextManager[Any]:
        """A cursor for reads (no write lock taken)."""

    @abc.abstractmethod
    def _in_ids(self, column: str, ids: list[str]) -> tuple[str, Any]:
        """``(sql, param)``: a condition "``column`` is one of ``ids``" taking one parameter."""

    @abc.abstractmethod
    def _is_duplicate(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a unique-constraint violation."""

    def _insert_tasks(self, cur: Any, rows: list[tuple]) -> None:
        """Insert task rows (a dialect may use a faster bulk path)."""
        cur.executemany(self._sql(f"INSERT INTO tasks ({TASK_COLS}) VALUES ({_params(16)})"), rows)

    def _sql(self, statement: str) -> str:
        return statement if self.placeholder == "?" else statement.replace("?", self.placeholder)

    def _exec(self, cur: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self._sql(statement), tuple(params))
        return cur

    # ------------------------------------------------------------ schema
    def _create_schema(self, cur: Any) -> None:
        """Create the tables on first open (inside a write transaction); refuse a newer schema."""
        self._exec(cur, VERSION_TABLE)
        row = self._exec(cur, "SELECT MAX(version) FROM schema_version").fetchone()
        found = row[0] if row else None
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaVersionError(self.where, found, SCHEMA_VERSION)
        for statement in SCHEMA:
            self._exec(cur, statement.format(**self.types))
        if found is None:
            self._exec(cur, "INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        """The version recorded in the database (for tests and the status page)."""
        with self._read() as cur:
            return self._exec(cur, "SELECT MAX(version) FROM schema_version").fetchone()[0]

    # ------------------------------------------------------------ users and tokens
    def create_user(self, username: str, is_admin: bool = False) -> User:
        user = User(str(uuid.uuid4()), username, bool(is_admin), time.time())
        self._insert(f"INSERT INTO users ({USER_COLS}) VALUES ({_params(4)})",
                     [(user.user_id, user.username, user.is_admin, user.created)],
                     f"a user named {username!r} already exists")
        return user

    def get_user(self, user_id: str) -> Optional[User]:
        return self._one(f"SELECT {USER_COLS} FROM users WHERE user_id = ?", (user_id,), _user)

    def user_by_name(self, username: str) -> Optional[User]:
        return self._one(f"SELECT {USER_COLS} FROM users WHERE username = ?", (username,), _user)

    def add_token(self, user_id: str, token_hash: str, description: str = "") -> None:
        self._insert("INSERT INTO tokens (token_hash, user_id, description, created) VALUES (?, ?, ?, ?)",
                     [(token_hash, user_id, description, time.time())],
                     f"token hash {token_hash[:12]}... is already stored")

    def user_for_token(self, token_hash: str) -> Optional[User]:
        cols = ", ".join(f"u.{c.strip()}" for c in USER_COLS.split(","))
        return self._one(f"SELECT {cols} FROM tokens t JOIN users u ON u.user_id = t.user_id"
                         " WHERE t.token_hash = ?", (token_hash,), _user)

    def _insert(self, statement: Optional[str], rows: list[tuple], duplicate: str) -> None:
        """Insert ``rows`` in one transaction (``statement`` None: tasks, by the dialect's bulk path).

        Raises:
            ValueError: ``duplicate``, if a row's unique key exists (nothing was written).
        """
        try:
            with self._write() as cur:
                if statement is None:
                    self._insert_tasks(cur, rows)
                else:
                    cur.executemany(self._sql(statement), rows)
        except Exception as exc:
            if self._is_duplicate(exc):
                raise ValueError(duplicate) from None
            raise

    def _one(self, statement: str, params: Sequence[Any], make: Any) -> Any:
        with self._read() as cur:
            row = self._exec(cur, statement, params).fetchone()
        return None if row is None else make(row)

    # ------------------------------------------------------------ functions
    def add_function(self, record: FunctionRecord) -> None:
        self._insert(f"INSERT INTO functions ({FUNCTION_COLS}) VALUES ({_params(9)})", [_function_row(record)],
                     f"function {record.function_id} already exists")

    def get_function(self, function_id: str) -> Optional[FunctionRecord]:
        return self._one(f"SELECT {FUNCTION_COLS} FROM functions WHERE function_id = ?", (function_id,), _function)

    # ------------------------------------------------------------ endpoints
    def add_endpoint(self, record: EndpointRecord) -> None:
        """Insert, or replace name, key, sharing and allowed functions; its liveness and creation stay."""
        self._insert(f"INSERT INTO endpoints ({ENDPOINT_COLS}) VALUES ({_params(11)})"
                     " ON CONFLICT (endpoint_id) DO UPDATE SET name = excluded.name,"
                     " public_key = excluded.public_key, public = excluded.public,"
                     " allowed_functions = excluded.allowed_functions, shared_with = excluded.shared_with",
                     [_endpoint_row(record)], f"user {record.owner_id} already has an endpoint named {record.name!r}")

    def get_endpoint(self, endpoint_id: str) -> Optional[EndpointRecord]:
        return self._one(f"SELECT {ENDPOINT_COLS} FROM endpoints WHERE endpoint_id = ?", (endpoint_id,), _endpoint)

    def endpoint_by_name(self, owner_id: str, name: str) -> Optional[EndpointRecord]:
        return self._one(f"SELECT {ENDPOINT_COLS} FROM endpoints WHERE owner_id = ? AND name = ?",
                         (owner_id, name), _endpoint)

    def list_endpoints(self) -> list[EndpointRecord]:
        with self._read() as cur:
            rows = self._exec(cur, f"SELECT {ENDPOINT_COLS} FROM endpoints ORDER BY created, endpoint_id").fetchall()
        return [_endpoint(row) for row in rows]

    def delete_endpoint(self, endpoint_id: str) -> bool:
        with self._write() as cur:
            return self._exec(cur, "DELETE FROM endpoints WHERE endpoint_id = ?", (endpoint_id,)).rowcount > 0

    def set_endpoint_seen(self, endpoint_id: str, at: float, connected: bool,
                          status: Optional[dict] = None) -> None:
        with self._write() as cur:
            if status is None:
                self._exec(cur, "UPDATE endpoints SET last_seen = ?, connected = ? WHERE endpoint_id = ?",
                           (at, bool(connected), endpoint_id))
            else:
                self._exec(cur, "UPDATE endpoints SET last_seen = ?, connected = ?, status = ? WHERE endpoint_id = ?",
                           (at, bool(connected), json.dumps(status), endpoint_id))

    def disconnect_all_endpoints(self) -> None:
        with self._write() as cur:
            self._exec(cur, "UPDATE endpoints SET connected = ? WHERE connected = ?", (False, True))

    # ------------------------------------------------------------ tasks
    def add_tasks(self, records: Sequence[TaskRecord]) -> None:
        if not records:
            return
        rows = [_task_row(r) for r in records]
        self._insert(None, rows, f"add_tasks: a task id of these {len(rows)} already exists; none was added")

    def get_tasks(self, task_ids: Iterable[str], with_payload: bool = True) -> dict[str, TaskRecord]:
        ids = list(task_ids)
        if not ids:
            return {}
        cond, param = self._in_ids("task_id", ids)
        with self._read() as cur:
            rows = self._exec(cur, f"SELECT {TASK_COLS if with_payload else TASK_COLS_NO_PAYLOAD} FROM tasks "
                                   f"WHERE {cond}", (param,)).fetchall()
        if with_payload:
            return {row[0]: _task(row) for row in rows}
        return {row[0]: _task((*row[:5], b"", *row[6:])) for row in rows}

    def tasks_to_deliver(self, endpoint_id: str, limit: int) -> list[TaskRecord]:
        with self._read() as cur:
            rows = self._exec(cur, f"SELECT {TASK_COLS} FROM tasks WHERE endpoint_id = ? AND state = ?"
                                   " ORDER BY received, seq LIMIT ?",
                              (endpoint_id, WAITING_FOR_EP, int(limit))).fetchall()
        return [_task(row) for row in rows]

    def tasks_in_flight(self, endpoint_id: str) -> list[TaskRecord]:
        with self._read() as cur:
            rows = self._exec(cur, f"SELECT {TASK_COLS} FROM tasks WHERE endpoint_id = ? AND state IN (?, ?)"
                                   " ORDER BY received, seq", (endpoint_id, WAITING_FOR_LAUNCH, RUNNING)).fetchall()
        return [_task(row) for row in rows]

    def _update_ids(self, statement: str, params: Sequence[Any], task_ids: Sequence[str],
                    returning: bool = False) -> list[str]:
        """Run ``UPDATE tasks SET ... WHERE ... AND <task_id in ids>`` in one transaction.

        ``statement`` ends with its WHERE conditions; the id condition is appended, so its one
        parameter comes last.
        """
        ids = list(task_ids)
        if not ids:
            return []
        cond, param = self._in_ids("task_id", ids)
        statement = f"{statement} AND {cond}" + (" RETURNING task_id" if returning else "")
        with self._write() as cur:
            self._exec(cur, statement, (*params, param))
            return [row[0] for row in cur.fetchall()] if returning else []

    def mark_dispatched(self, task_ids: Sequence[str], at: float) -> None:
        self._update_ids("UPDATE tasks SET state = ?, attempts = attempts + 1, dispatched = COALESCE(dispatched, ?)"
                         " WHERE state = ?", (WAITING_FOR_LAUNCH, at, WAITING_FOR_EP), task_ids)

    def mark_running(self, task_ids: Sequence[str], at: float) -> None:
        self._update_ids("UPDATE tasks SET state = ?, started = ? WHERE state = ?",
                         (RUNNING, at, WAITING_FOR_LAUNCH), task_ids)

    def requeue(self, task_ids: Sequence[str]) -> None:
        """Delivered-but-unfinished tasks go back to waiting-for-ep; ``started`` is kept until a new start."""
        self._update_ids("UPDATE tasks SET state = ? WHERE state IN (?, ?)",
                         (WAITING_FOR_EP, WAITING_FOR_LAUNCH, RUNNING), task_ids)

    def set_results(self, results: Sequence[tuple[str, str, bytes, Optional[float], float]]) -> list[str]:
        if not results:
            return []
        first: dict[str, tuple] = {}     # a task twice in one batch: the first result wins, as across batches
        for task_id, state, result, started, finished in results:
            if state not in (SUCCESS, FAILED):
                raise ValueError(f"set_results: task {task_id}: state {state!r} is not {SUCCESS!r} or {FAILED!r}")
            first.setdefault(task_id, (state, bytes(result), started, finished, task_id))
        rows, ids = list(first.values()), list(first)
        cond, param = self._in_ids("task_id", ids)
        with self._write() as cur:
            if self._set_results(cur, rows) == len(rows):
                return ids                    # each was stored now (the usual case: no duplicates)
            final = self._exec(cur, f"SELECT task_id FROM tasks WHERE {cond} AND {_FINAL}", (param,)).fetchall()
        done = {row[0] for row in final}
        return [task_id for task_id in ids if task_id in done]

    def _set_results(self, cur: Any, rows: list[tuple]) -> int:
        """Apply ``(state, result, started, finished, task_id)`` rows to tasks not yet final; how many changed."""
        cur.executemany(self._sql(_SET_RESULT), rows)
        return cur.rowcount

    def fail_tasks(self, task_ids: Sequence[str], result: bytes, at: float) -> None:
        self._update_ids(f"UPDATE tasks SET state = ?, result = ?, finished = ? WHERE {_PENDING}",
                         (FAILED, bytes(result), at), task_ids)

    def cancel_tasks(self, task_ids: Sequence[str], at: float) -> list[str]:
        cancelled = set(self._update_ids("UPDATE tasks SET state = ?, finished = ? WHERE state IN (?, ?)",
                                         (CANCELLED, at, WAITING_FOR_EP, WAITING_FOR_LAUNCH), task_ids,
                                         returning=True))
        return [task_id for task_id in dict.fromkeys(task_ids) if task_id in cancelled]

    def mark_fetched(self, task_ids: Sequence[str], at: float) -> None:
        self._update_ids(f"UPDATE tasks SET fetched = ? WHERE fetched IS NULL AND {_FINAL}",
                         (at,), task_ids)

    def purge_fetched(self, before: float) -> int:
        """Fetched successes and failures lose their result (and payload); cancelled tasks stay cancelled."""
        with self._write() as cur:
            return self._exec(cur, "UPDATE tasks SET state = ?, result = NULL, payload = ?, purged = ?"
                                   " WHERE fetched IS NOT NULL AND fetched < ? AND state IN (?, ?)",
                              (PURGED, b"", time.time(), before, SUCCESS, FAILED)).rowcount

    def task_group(self, task_group_id: str) -> list[str]:
        with self._read() as cur:
            rows = self._exec(cur, "SELECT task_id FROM tasks WHERE task_group_id = ? ORDER BY seq",
                              (task_group_id,)).fetchall()
        return [row[0] for row in rows]

    def count_tasks(self) -> dict[str, int]:
        """Every state (0 if none) -> how many tasks are in it."""
        with self._read() as cur:
            rows = self._exec(cur, "SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall()
        counts = dict.fromkeys(ALL_STATES, 0)
        counts.update((state, int(n)) for state, n in rows)
        return counts

