"""The writer thread: drain the queue, write each batch in one transaction.

It blocks on the queue (no polling); the only timed wake-up is the heartbeat
(``pl_run.last_heartbeat``) once per ``heartbeat_period`` while idle, which
tells a reader on another host that the run is alive. A batch that fails to
write is retried (the store may be busy: a PostgreSQL restart, a SQLite
checkpoint); events are never dropped while the thread lives.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from parsl_lite.monitoring import recorder as rec
from parsl_lite.monitoring import schema
from parsl_lite.monitoring.recorder import Batch, Recorder
from parsl_lite.monitoring.store import Store

logger = logging.getLogger(__name__)

_STOP = object()
_MAX_BATCH = 50_000
_RETRY_S = 0.5


class Writer:
    """Owns the store connection of one run and the thread that writes into it."""

    def __init__(self, store: Store, events: "queue.SimpleQueue[Any]", run_id: str, batching_interval: float,
                 heartbeat_period: float, debug: bool = False) -> None:
        self.store = store
        self.events = events
        self.run_id = run_id
        self.batching_interval = batching_interval
        self.heartbeat_period = heartbeat_period
        self.debug = debug
        self.events_written = 0
        self.recorder = Recorder(run_id, store.time)
        self._sql = self._statements()
        self._end: tuple[float, str] = (0.0, "completed")
        self._carry: Any = None
        self._thread = threading.Thread(target=self._run, name="parsl_lite-monitoring", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self, end_time: float, exit_status: str, timeout_s: float = 120.0) -> None:
        """Write everything queued so far, then the workflow's end; close the store."""
        self._end = (end_time, exit_status)
        self.events.put(_STOP)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.error("monitoring writer did not finish within %.0f s; the store may lack events", timeout_s)

    # ------------------------------------------------------------ the thread

    def _run(self) -> None:
        last_write = 0.0
        try:
            while True:
                try:
                    first, self._carry = (self._carry, None) if self._carry is not None else \
                        (self.events.get(timeout=self.heartbeat_period), None)
                except queue.Empty:
                    self._write(Batch())   # heartbeat only
                    continue
                wait = self.batching_interval - (time.monotonic() - last_write)
                if wait > 0 and first is not _STOP:
                    time.sleep(wait)   # let a burst gather: at most one transaction per interval
                stop = self._drain(first)
                self._write(self.recorder.flush())
                last_write = time.monotonic()
                if stop:
                    break
            self._write_end()
        except Exception:
            logger.exception("monitoring writer failed; events after this point are not recorded")
        finally:
            self.store.close()

    def _drain(self, first: Any) -> bool:
        """Feed the recorder ``first`` and whatever else is queued (up to a batch); True at the stop mark."""
        add, get = self.recorder.add, self.events.get_nowait
        item = first
        for _ in range(_MAX_BATCH):
            if item is _STOP:
                return True
            add(item)
            try:
                item = get()
            except queue.Empty:
                return False
        self._carry = item   # the batch is full: this one starts the next
        return False

    def _write(self, batch: Batch) -> None:
        """One transaction; retried while the store refuses it (events are not dropped)."""
        for attempt in range(1_000_000):
            try:
                self._write_once(batch)
                self.events_written += batch.events
                if self.debug:
                    logger.debug("wrote %d events (%d status rows)", batch.events, len(batch.status))
                return
            except Exception as exc:
                try:
                    self.store.rollback()
                except Exception:
                    pass
                if attempt % 20 == 0:
                    logger.warning("monitoring store write failed (%r); retrying", exc)
                time.sleep(_RETRY_S)
                self._reconnect()

    def _write_once(self, batch: Batch) -> None:
        store, sql = self.store, self._sql
        store.executemany(sql["task"], batch.task)
        store.executemany(sql["try"], batch.tries)
        store.executemany(sql["status"], batch.status)
        store.executemany(sql["detail"], batch.detail)
        store.executemany(sql["endpoint"], batch.endpoint)
        store.executemany(sql["block"], batch.block)
        now = store.time(time.time())
        if batch.completed or batch.failed:
            store.execute('UPDATE "workflow" SET tasks_completed_count = ?, tasks_failed_count = ? WHERE run_id = ?',
                          (self.recorder.completed, self.recorder.failed, self.run_id))
        store.execute('UPDATE "pl_run" SET last_heartbeat = ?, events_written = ? WHERE run_id = ?',
                      (now, self.events_written + batch.events, self.run_id))
        store.commit()

    def _write_end(self) -> None:
        end_time, status = self._end
        for attempt in range(20):
            try:
                self.store.execute('UPDATE "workflow" SET time_completed = ?, tasks_completed_count = ?, '
                                   'tasks_failed_count = ? WHERE run_id = ?',
                                   (self.store.time(end_time), self.recorder.completed, self.recorder.failed,
                                    self.run_id))
                self.store.execute('UPDATE "pl_run" SET exit_status = ?, last_heartbeat = ?, events_written = ? '
                                   'WHERE run_id = ?',
                                   (status, self.store.time(end_time), self.events_written, self.run_id))
                self.store.commit()
                return
            except Exception as exc:
                logger.warning("monitoring: writing the workflow's end failed (%r); retrying", exc)
                self.store.rollback()
                time.sleep(_RETRY_S)

    def _reconnect(self) -> None:
        """A PostgreSQL connection that broke is opened again (SQLite connections do not break)."""
        if self.store.dialect != "postgresql" or not getattr(self.store.conn, "closed", False):
            return
        try:
            self.store = Store(self.store.url, create=False)
        except Exception as exc:
            logger.info("monitoring store still unreachable: %r", exc)

    def _statements(self) -> dict[str, str]:
        s = self.store
        return {
            "task": s.insert_sql(schema.TASK, rec.TASK_COLUMNS, "upsert"),
            "try": s.insert_sql(schema.TRY, rec.TRY_COLUMNS, "upsert", keep=rec.TRY_KEEP),
            "status": s.insert_sql(schema.STATUS, rec.STATUS_COLUMNS, "ignore"),
            "detail": s.insert_sql(schema.TRY_DETAIL, rec.DETAIL_COLUMNS, "upsert"),
            "endpoint": s.insert_sql(schema.ENDPOINT, rec.ENDPOINT_COLUMNS, "ignore"),
            "block": s.insert_sql(schema.BLOCK, rec.BLOCK_COLUMNS, "ignore"),
        }
