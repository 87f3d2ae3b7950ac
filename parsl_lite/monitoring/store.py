"""Opening the monitoring store: a SQLite file (WAL) or a PostgreSQL database, from Parsl's URL.

One :class:`Store` per connection. The writer holds one; every reader (CLI,
web view, tests) opens its own. SQLite runs in WAL mode, so readers never
block the writer and the writer never fails a reader with "database is
locked"; ``busy_timeout`` covers the rare checkpoint. Rows go in with
``executemany`` inside one transaction per batch.
"""
from __future__ import annotations

import datetime
import os
import socket
import sqlite3
from typing import Any, Iterable, Optional, Sequence
from urllib.parse import urlparse

import psutil

from parsl_lite.errors import ConfigurationError
from parsl_lite.monitoring import schema
from parsl_lite.monitoring.schema import quote

_BUSY_TIMEOUT_MS = 30_000


def sqlite_path(url: str) -> Optional[str]:
    """The file of a ``sqlite:///path`` URL (``sqlite:////abs`` or ``sqlite:///rel``), else None."""
    if not url.startswith("sqlite:///"):
        return None
    return url[len("sqlite:///"):]


def check_url(url: str, field: str = "logging_endpoint") -> None:
    """Refuse a URL that is neither ``sqlite:///PATH`` nor ``postgresql://...``, naming ``field``."""
    scheme = urlparse(url).scheme
    if scheme == "sqlite":
        if not sqlite_path(url):
            raise ConfigurationError(field, f"a SQLite store is 'sqlite:///PATH', got {url!r}")
        return
    if scheme not in ("postgresql", "postgres") and not scheme.startswith("postgresql+"):
        raise ConfigurationError(field, f"must be a 'sqlite:///PATH' or 'postgresql://...' URL, got {url!r}")


class Store:
    """One connection to the store, with the dialect's placeholders and upserts.

    Args:
        url: ``sqlite:///path`` or ``postgresql://user:pw@host:port/db``.
        create: create the tables (the writer does; readers of an old store need not).
    """

    def __init__(self, url: str, create: bool = True, read_only: bool = False) -> None:
        check_url(url)
        self.url = url
        self._text_times = schema.TextTimes()
        path = sqlite_path(url)
        if path is not None:
            self.dialect = "sqlite"
            self.conn: Any = _open_sqlite(path, read_only)
            self.mark = "?"
        else:
            import psycopg

            self.dialect = "postgresql"
            dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
            self.conn = psycopg.connect(dsn, autocommit=False, connect_timeout=10)
            self.mark = "%s"
        if create:
            try:
                self.create_tables()
            except sqlite3.Error as exc:   # a read-only file or directory fails only at the first write
                self.close()
                raise ConfigurationError("logging_endpoint",
                                         f"cannot write the monitoring store {path!r}: {exc}") from exc

    def create_tables(self) -> None:
        cur = self.conn.cursor()
        if self.dialect == "postgresql":   # two writers creating the tables at once must not collide
            cur.execute("SELECT pg_advisory_xact_lock(2026120212)")
        for statement in schema.create_statements(self.dialect):
            cur.execute(statement)
        self.conn.commit()

    # ------------------------------------------------------------ writing

    def time(self, epoch: Optional[float]) -> Any:
        """An epoch time as this dialect's ``DATETIME`` parameter."""
        if epoch is None:
            return None
        if self.dialect == "sqlite":
            return schema.to_db_time(epoch)
        return datetime.datetime.fromtimestamp(epoch)

    def time_us(self, us: int) -> Any:
        """Integer microseconds since the epoch as this dialect's ``DATETIME`` parameter (the writer's hot path)."""
        if self.dialect == "sqlite":
            return self._text_times(us)
        return datetime.datetime.fromtimestamp(us / 1_000_000)

    def insert_sql(self, table: str, columns: Sequence[str], conflict: str = "error",
                   keep: Sequence[str] = ()) -> str:
        """``INSERT`` of ``columns``; ``conflict``: ``error``, ``ignore`` or ``upsert`` (later non-NULLs win).

        ``keep``: columns an upsert never overwrites once set (e.g. a launch time).
        """
        cols = ", ".join(quote(c) for c in columns)
        marks = ", ".join([self.mark] * len(columns))
        sql = f"INSERT INTO {quote(table)} ({cols}) VALUES ({marks})"
        if conflict == "error":
            return sql
        pk = ", ".join(quote(c) for c in schema.BY_NAME[table].primary_key)
        if conflict == "ignore":
            return f"{sql} ON CONFLICT ({pk}) DO NOTHING"
        updates = []
        for c in columns:
            if c in schema.BY_NAME[table].primary_key:
                continue
            q = quote(c)
            first, second = (f"{quote(table)}.{q}", f"excluded.{q}") if c in keep else \
                (f"excluded.{q}", f"{quote(table)}.{q}")
            updates.append(f"{q} = COALESCE({first}, {second})")
        return f"{sql} ON CONFLICT ({pk}) DO UPDATE SET " + ", ".join(updates)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            self.conn.cursor().executemany(sql, rows)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement with ``?`` placeholders (translated for PostgreSQL); return the cursor."""
        if self.dialect == "postgresql":
            sql = sql.replace("?", "%s")
        cur = self.conn.cursor()
        cur.execute(sql, params)
        return cur

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of a ``SELECT`` (``?`` placeholders), outside any write transaction."""
        rows = self.execute(sql, params).fetchall()
        self.conn.commit()   # end the read transaction: a WAL reader must not pin old pages
        return rows

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass


def _open_sqlite(path: str, read_only: bool) -> sqlite3.Connection:
    """A connection in WAL mode; a file that cannot be created is a ConfigurationError naming it."""
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_BUSY_TIMEOUT_MS / 1000,
                               check_same_thread=False)
    else:
        parent = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(parent, exist_ok=True)
            conn = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: durable at checkpoints, never corrupt
            conn.execute("PRAGMA cache_size=-65536")    # 64 MiB of pages: the primary keys' indexes stay in memory
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError("logging_endpoint", f"cannot write the monitoring store {path!r}: {exc}") \
                from exc
    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    return conn


def open_store(url: str, read_only: bool = False) -> Store:
    """A reader's connection (tables created if missing unless ``read_only``)."""
    return Store(url, create=not read_only, read_only=read_only)


def run_liveness(pid: Optional[int], pid_create_time: Optional[float], hostname: Optional[str],
                 exit_status: Optional[str], last_heartbeat: Any, heartbeat_period: Optional[float],
                 now: float) -> str:
    """``running``, ``completed``, ``failed`` or ``ended abnormally`` for one ``pl_run`` row.

    A run still marked ``running`` ended abnormally (SIGKILL, a crash, the
    machine lost) if, on this host, its process is gone (or the pid was reused),
    or, elsewhere, its heartbeat is older than three periods.
    """
    if exit_status and exit_status != "running":
        return exit_status
    if hostname == socket.gethostname() and pid:
        try:
            proc = psutil.Process(pid)
            if pid_create_time is None or abs(proc.create_time() - pid_create_time) < 1.0:
                return "running"
        except psutil.Error:
            pass
        return "ended abnormally"
    beat = schema.from_db_time(last_heartbeat)
    if beat is None or now - beat > 3 * (heartbeat_period or 60.0):
        return "ended abnormally"
    return "running"
