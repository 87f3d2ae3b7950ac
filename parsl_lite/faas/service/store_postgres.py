"""The store on a PostgreSQL server (psycopg 3), for a service that outgrows one SQLite file.

Same SQL and records as the SQLite store (``store_sql.py``); only the
dialect differs: ``%s`` placeholders, ``= ANY(array)`` for id lists (one
parameter, no chunking), COPY for bulk task inserts, one ``UPDATE ... FROM
unnest(...)`` for a batch of results. Each method is one transaction,
committed before it returns, so what it wrote survives a SIGKILL of the
service (the server keeps it). The tables live in the first schema of the
connection's ``search_path`` (tests give each test its own schema with
``?options=-csearch_path%3D...`` in the DSN).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import psycopg
import psycopg.conninfo
import psycopg.errors

from parsl_lite.faas.service.store_sql import _FINAL, TASK_COLS, SqlStore

# pg_advisory_xact_lock key: two services opening one database create the schema one at a time
_SCHEMA_LOCK = 0x706C6974_66616173 & 0x7FFFFFFFFFFFFFFF


def _redacted(dsn: str) -> str:
    """``host:port/dbname`` of a DSN, for messages (never its password)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://(unparsable DSN)"
    return f"postgresql://{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


class PostgresStore(SqlStore):
    """The store in the PostgreSQL database of ``dsn`` (a libpq URL or key=value string).

    Raises:
        SchemaVersionError: the database was written by a newer parsl_lite.
        psycopg.OperationalError: the server cannot be reached (the message names it).
    """

    placeholder = "%s"
    # seq orders tasks; it has no index of its own (it is inside the task indexes): one index less per update
    types = {"blob": "BYTEA", "float": "DOUBLE PRECISION", "bool": "BOOLEAN", "seq": "BIGSERIAL NOT NULL"}

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.where = _redacted(dsn)
        self._conn = self._connect()
        try:
            with self._write() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                self._create_schema(cur)
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> psycopg.Connection:
        try:
            # autocommit: a read is its own statement; writes open explicit transactions in _write
            return psycopg.connect(self.dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            raise psycopg.OperationalError(f"PostgreSQL store {self.where}: {exc}") from exc

    def _live(self) -> psycopg.Connection:
        """The connection, reopened if the server dropped it (a restart of PostgreSQL)."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[psycopg.Cursor]:
        conn = self._live()
        with conn.transaction(), conn.cursor() as cur:
            yield cur

    @contextlib.contextmanager
    def _read(self) -> Iterator[psycopg.Cursor]:
        with self._live().cursor() as cur:
            yield cur

    def _in_ids(self, column: str, ids: list[str]) -> tuple[str, Any]:
        return f"{column} = ANY(%s)", ids

    def _is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.UniqueViolation)

    def _insert_tasks(self, cur: psycopg.Cursor, rows: list[tuple]) -> None:
        with cur.copy(f"COPY tasks ({TASK_COLS}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def _set_results(self, cur: psycopg.Cursor, rows: list[tuple]) -> int:
        """One UPDATE for the whole batch (rows: ``(state, result, started, finished, task_id)``); how many changed."""
        columns = list(zip(*rows))
        cur.execute("UPDATE tasks AS t SET state = r.state, result = r.result,"
                    " started = COALESCE(r.started, t.started), finished = r.finished"
                    " FROM unnest(%s::text[], %s::bytea[], %s::float8[], %s::float8[], %s::text[])"
                    " AS r(state, result, started, finished, task_id)"
                    f" WHERE t.task_id = r.task_id AND NOT t.{_FINAL}",
                    [list(column) for column in columns])
        return cur.rowcount

    def close(self) -> None:
        self._conn.close()
