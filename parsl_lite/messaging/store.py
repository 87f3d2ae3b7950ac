"""The broker's durable state: queues, their messages and the tables, in one SQLite file (WAL).

``synchronous=NORMAL`` in WAL mode: a committed transaction survives the
broker being killed (SIGKILL), not a power cut of the machine. The broker
commits once per batch of requests, before it answers any of them, so a
``put`` that returned is stored.

Only what a reply promised must be committed before the reply: a stored
message, a queue created or deleted, a table row (:attr:`Store.promised`).
Receive counts and acks are committed within ``COMMIT_PERIOD_S`` (the broker's
loop): a broker killed in between delivers those messages again, which
at-least-once allows.

Rows only; the order, deadlines and receive counts are ``book.py``'s, which
the broker rebuilds from :meth:`Store.load` at start (deliveries in flight when
the broker died come back as ready, with their receive counts).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

COMMIT_PERIOD_S = 0.05

from parsl_lite.messaging.book import QueueSettings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, visibility_timeout_s REAL NOT NULL, max_receives INTEGER NOT NULL,
    max_bytes INTEGER NOT NULL, dead_letter_queue TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL, body BLOB NOT NULL,
    enqueued_at REAL NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0, UNIQUE (queue, message_id));
CREATE TABLE IF NOT EXISTS kv (tbl TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (tbl, key));
"""


class Store:
    """One connection, used by the broker's request loop only (one thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._in_tx = False
        self.promised = False
        row = self._db.execute("SELECT MAX(m) FROM (SELECT MAX(seq) AS m FROM messages UNION ALL "
                               "SELECT seq FROM sqlite_sequence WHERE name = 'messages')").fetchone()
        self._next_seq = (row[0] or 0) + 1

    def begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True

    def commit(self) -> None:
        if self._in_tx:
            self._db.execute("COMMIT")
            self._in_tx = False
        self.promised = False

    def _promise(self) -> None:
        self.begin()
        self.promised = True

    def close(self) -> None:
        self.commit()
        self._db.close()

    # ------------------------------------------------------------ queues

    def load(self) -> dict[str, tuple[QueueSettings, list[tuple[int, str, int, float, int]]]]:
        """Every queue: its settings and its messages as ``(seq, message_id, size, enqueued_at, receive_count)``."""
        out: dict[str, tuple[QueueSettings, list]] = {}
        for name, vt, mr, mb, dlq in self._db.execute("SELECT * FROM queues"):
            out[name] = (QueueSettings(vt, mr, mb, dlq), [])
        rows = self._db.execute("SELECT queue, seq, message_id, length(body), enqueued_at, receive_count "
                                "FROM messages ORDER BY seq")
        for queue, *entry in rows:
            if queue in out:
                out[queue][1].append(tuple(entry))
        return out

    def save_queue(self, name: str, settings: QueueSettings) -> None:
        self._promise()
        self._db.execute("INSERT OR REPLACE INTO queues VALUES (?, ?, ?, ?, ?)",
                         (name, settings.visibility_timeout_s, settings.max_receives, settings.max_bytes,
                          settings.dead_letter_queue))

    def delete_queue(self, name: str) -> None:
        self._promise()
        self._db.execute("DELETE FROM queues WHERE name = ?", (name,))
        self._db.execute("DELETE FROM messages WHERE queue = ?", (name,))

    def insert(self, queue: str, message_ids: Sequence[str], bodies: Sequence[bytes],
               now: float) -> list[tuple[int, str, int]]:
        """Store new messages; ``(seq, message_id, size)`` of those not stored before (a retried put)."""
        self._promise()
        first = self._next_seq
        self._next_seq += len(bodies)
        rows = [(first + i, queue, message_id, body, now) for i, (message_id, body) in enumerate(zip(message_ids, bodies))]
        cur = self._db.executemany("INSERT OR IGNORE INTO messages (seq, queue, message_id, body, enqueued_at) "
                                   "VALUES (?, ?, ?, ?, ?)", rows)
        if cur.rowcount != len(rows):   # some were stored before: keep those this call stored
            marks = ",".join("?" * len(rows))
            kept = {s for (s,) in self._db.execute(f"SELECT seq FROM messages WHERE seq IN ({marks})",
                                                   tuple(r[0] for r in rows))}
            rows = [r for r in rows if r[0] in kept]
        return [(r[0], r[2], len(r[3])) for r in rows]

    def bodies(self, seqs: Sequence[int]) -> dict[int, bytes]:
        if len(seqs) == 1:
            row = self._db.execute("SELECT body FROM messages WHERE seq = ?", (seqs[0],)).fetchone()
            return {seqs[0]: row[0]} if row else {}
        marks = ",".join("?" * len(seqs))
        return dict(self._db.execute(f"SELECT seq, body FROM messages WHERE seq IN ({marks})", tuple(seqs)))

    def set_receive_counts(self, pairs: Iterable[tuple[int, int]]) -> None:
        """``(receive_count, seq)`` pairs."""
        self.begin()
        self._db.executemany("UPDATE messages SET receive_count = ? WHERE seq = ?", pairs)

    def delete(self, seqs: Iterable[int]) -> None:
        self.begin()
        self._db.executemany("DELETE FROM messages WHERE seq = ?", ((s,) for s in seqs))

    def move(self, seq: int, queue: str) -> int:
        """Move a message to another queue (dead-lettering) as a new row at its end; its new seq."""
        self._promise()
        new = self._next_seq
        self._next_seq += 1
        self._db.execute("UPDATE OR REPLACE messages SET seq = ?, queue = ?, receive_count = 0 WHERE seq = ?",
                         (new, queue, seq))
        return new

    # ------------------------------------------------------------ tables

    def table_put(self, table: str, key: str, value: bytes) -> None:
        self._promise()
        self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (table, key, value))

    def table_get(self, table: str, key: str) -> bytes | None:
        row = self._db.execute("SELECT value FROM kv WHERE tbl = ? AND key = ?", (table, key)).fetchone()
        return row[0] if row else None

    def table_scan(self, table: str, prefix: str) -> list[tuple[str, bytes]]:
        rows = self._db.execute("SELECT key, value FROM kv WHERE tbl = ? AND substr(key, 1, ?) = ? ORDER BY key",
                                (table, len(prefix), prefix))
        return list(rows)
