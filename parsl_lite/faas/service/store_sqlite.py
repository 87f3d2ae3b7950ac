"""The default store: one SQLite file in WAL mode (``DIR/faas.db``).

Why these settings: WAL lets other processes read while the service writes
(status pages, tests, a second service process) without "database is
locked"; the busy timeout makes a second writer wait its turn instead of
failing. Writes take the lock at ``BEGIN IMMEDIATE``, so two writers never
deadlock upgrading a read lock. The SQL itself lives in ``store_sql.py``,
shared with PostgreSQL.

Durability: the default is ``synchronous=NORMAL``. In WAL mode a commit is
then in the operating system's hands when the method returns, so a SIGKILL
of the service loses nothing (the issue's promise, and what the SIGKILL test
checks for both levels); a crash of the whole machine may lose the last
commits (never the file's consistency). ``faas.db?synchronous=full`` adds an
fsync per commit, which survives a power loss too, at 2–7 ms per commit on
this kind of disk (about 30 times a commit's own work; a no-op task's round
trip makes three or four commits).
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from typing import Any, Iterator

from parsl_lite.faas.service.store_sql import SqlStore

BUSY_TIMEOUT_S = 30.0
SYNCHRONOUS_LEVELS = ("FULL", "NORMAL", "EXTRA")
MIN_SQLITE = (3, 35, 0)      # UPDATE ... RETURNING (cancel_tasks); upserts and json_each are older


def split_options(path: str) -> tuple[str, str]:
    """``(file, synchronous)`` of ``file[?synchronous=full|normal|extra]`` (default NORMAL).

    Raises:
        ValueError: an option other than ``synchronous``, or a level other than these three, naming it.
    """
    file, _, query = path.partition("?")
    synchronous = "NORMAL"
    for option in filter(None, query.split("&")):
        name, _, value = option.partition("=")
        if name != "synchronous" or value.upper() not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"SQLite store {path}: option {option!r}: the only option is "
                             f"synchronous={'|'.join(level.lower() for level in SYNCHRONOUS_LEVELS)}")
        synchronous = value.upper()
    return file, synchronous


class SqliteStore(SqlStore):
    """The store in one SQLite file at ``path`` (created, with its schema, on first open).

    ``path`` may end in ``?synchronous=normal`` (see the module docstring).

    Raises:
        ValueError: an unknown option after ``?``.
        SchemaVersionError: the file was written by a newer parsl_lite.
        sqlite3.OperationalError: the file cannot be opened (the message names it).
    """

    types = {"blob": "BLOB", "float": "REAL", "bool": "INTEGER", "seq": "INTEGER PRIMARY KEY"}

    def __init__(self, path: str | os.PathLike) -> None:
        self.path, self.synchronous = split_options(os.fspath(path))
        self.where = self.path
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise RuntimeError(f"SQLite store {self.path}: this Python's SQLite is {sqlite3.sqlite_version}; "
                               f"the store needs {'.'.join(map(str, MIN_SQLITE))} or newer")
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        try:
            # autocommit (isolation_level=None): transactions are the explicit BEGIN IMMEDIATE of _write;
            # check_same_thread=False: the service creates the store on one thread and calls it on another
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            with self._write() as cur:
                self._create_schema(cur)
        except sqlite3.Error as exc:
            self._close_quietly()
            raise sqlite3.OperationalError(f"SQLite store {self.path}: {exc}") from exc
        except BaseException:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            self._conn.rollback()
            raise
        cur.execute("COMMIT")

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        yield self._conn.cursor()

    def _in_ids(self, column: str, ids: list[str]) -> tuple[str, Any]:
        # one parameter whatever the number of ids: no chunking under SQLite's variable limit
        return f"{column} IN (SELECT value FROM json_each(?))", json.dumps(ids)

    def _is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    @property
    def inline_ok(self) -> bool:
        """A commit does not wait for the disk (WAL at NORMAL/OFF): AsyncStore may run small calls on the loop."""
        return self.synchronous in ("NORMAL", "OFF")

    def settings(self) -> dict[str, object]:
        """This connection's journal mode, synchronous level and busy timeout (for tests and status pages)."""
        return {name: self._conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "busy_timeout")}

    def close(self) -> None:
        self._conn.close()
