"""The broker's durable state: queues, their messages and the tables, in one SQLite file (WAL).

``synchronous=NORMAL`` in WAL mode: a committed transaction survives the
broker being killed (SIGKILL), not a power cut of the machine. The broker
commits once per batch of requests, before it answers any of them, so a
``put`` that returned is stored.

Only what a reply promised must be committed before the reply: a stored
message, a queue created or deleted, a table row (:attr:`Store.promised`).
Receive counts and acks are only noted in memory and written with the next
commit, within ``COMMIT_PERIOD_S`` (the broker's loop): a broker killed in
between delivers those messages again, which at-least-once allows. So a
message put, got and acked costs one INSERT and one DELETE (batched with the
others of its commit); a receive count is never written for a message acked
before the commit. Bodies of the messages held are kept in memory too (up to
``CACHE_BYTES``): a delivery reads SQLite only after a restart or when the
queues hold more than that.

The messages table has no index but its ``seq`` (each index is another page
written per commit): a put sent again after a lost reply is stored once
because the book knows the ids it holds (``QueueBook.holds``); one sent again
after its message was already acked is stored again, which at-least-once
allows. (A file made before this had AUTOINCREMENT and UNIQUE (queue,
message_id); it still works: ``INSERT OR IGNORE``.)

Rows only; the order, deadlines and receive counts are ``book.py``'s, which
the broker rebuilds from :meth:`Store.load` at start (deliveries in flight when
the broker died come back as ready, with their receive counts).
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

from parsl_lite.messaging.book import QueueSettings

COMMIT_PERIOD_S = 0.05
CACHE_BYTES = 64 * 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY, visibility_timeout_s REAL NOT NULL, max_receives INTEGER NOT NULL,
    max_bytes INTEGER NOT NULL, dead_letter_queue TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY, queue TEXT NOT NULL, message_id TEXT NOT NULL, body BLOB NOT NULL,
    enqueued_at REAL NOT NULL, receive_count INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS kv (tbl TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (tbl, key));
"""


class Store:
    """One connection, used by the broker's request loop only (one thread)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA locking_mode=EXCLUSIVE")   # one process: no file locks per transaction
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._in_tx = False
        self.promised = False
        self._counts: dict[int, int] = {}       # seq -> receive count not written yet
        self._deletes: list[int] = []           # seqs acked, not deleted yet
        self._cache: dict[int, bytes] = {}      # seq -> body of a message held
        self._cached_bytes = 0
        self._next_seq = (self._db.execute("SELECT MAX(seq) FROM messages").fetchone()[0] or 0) + 1

    def begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True

    def commit(self) -> None:
        """Write what was only noted (receive counts, acks) and commit."""
        if self._counts:
            self.begin()
            self._db.executemany("UPDATE messages SET receive_count = ? WHERE seq = ?",
                                 [(count, seq) for seq, count in self._counts.items()])
            self._counts.clear()
        if self._deletes:
            self.begin()
            self._db.executemany("DELETE FROM messages WHERE seq = ?", [(s,) for s in self._deletes])
            self._deletes.clear()
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
        for (seq,) in self._db.execute("SELECT seq FROM messages WHERE queue = ?", (name,)).fetchall():
            self._forget(seq)
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
        cache = self._cache
        for seq, _, _, body, _ in rows:
            if self._cached_bytes + len(body) <= CACHE_BYTES:
                cache[seq] = body
                self._cached_bytes += len(body)
        return [(r[0], r[2], len(r[3])) for r in rows]

    def bodies(self, seqs: Sequence[int]) -> list[bytes]:
        """The bodies of ``seqs``, in order (b"" for a row that is gone)."""
        cache = self._cache
        missing = [seq for seq in seqs if seq not in cache]
        found: dict[int, bytes] = {}
        for at in range(0, len(missing), 500):   # SQLite's limit of bound parameters
            chunk = missing[at:at + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self._db.execute(f"SELECT seq, body FROM messages WHERE seq IN ({marks})", chunk))
        return [cache.get(seq) or found.get(seq, b"") for seq in seqs]

    def set_receive_counts(self, seqs: Sequence[int], counts: Sequence[int]) -> None:
        """The receive counts of ``seqs``, written with the next commit."""
        self._counts.update(zip(seqs, counts))

    def delete(self, seqs: Sequence[int]) -> None:
        """Rows deleted with the next commit."""
        counts, cache, freed = self._counts, self._cache, 0
        for seq in seqs:
            counts.pop(seq, None)
            body = cache.pop(seq, None)
            if body is not None:
                freed += len(body)
        self._cached_bytes -= freed
        self._deletes += seqs

    def _forget(self, seq: int) -> None:
        self._counts.pop(seq, None)
        body = self._cache.pop(seq, None)
        if body is not None:
            self._cached_bytes -= len(body)

    def move(self, seq: int, queue: str) -> int:
        """Move a message to another queue (dead-lettering) as a new row at its end; its new seq."""
        self._promise()
        new = self._next_seq
        self._next_seq += 1
        self._counts.pop(seq, None)
        body = self._cache.pop(seq, None)
        if body is not None:
            self._cache[new] = body
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
