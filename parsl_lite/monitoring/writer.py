"""The writer process: frames from the kernel's process in, one transaction per batch out.

Started by :class:`~parsl_lite.monitoring.hub.MonitoringHub` as
``python -m parsl_lite.monitoring.writer`` with a pipe on its stdin, it holds
the run's store connection, so the store's work (turning events into rows,
SQLite or PostgreSQL) never takes the kernel's interpreter lock. Frames are a
4-byte length and a pickle: a list of items (:mod:`~parsl_lite.monitoring.recorder`),
``("flush",)`` (answered on stdout with the events written so far, once they
are committed) or ``("end", time, exit_status)``.

It blocks reading its stdin; the only timed wake-up is the heartbeat
(``pl_run.last_heartbeat``) once per ``heartbeat_period`` while idle, which
tells a reader on another host that the run is alive. End of file without an
``end`` frame (the kernel's process was killed) writes what arrived and exits,
leaving the run marked ``running`` for :func:`~parsl_lite.monitoring.store.run_liveness`
to call it ended abnormally. A batch that fails to write is retried: events
are never dropped while this process lives.
"""
from __future__ import annotations

import argparse
import logging
import os
import select
import sys
import time
from typing import BinaryIO, Optional

from parsl_lite.monitoring import recorder as rec
from parsl_lite.monitoring.frames import read_frame
from parsl_lite.monitoring import schema
from parsl_lite.monitoring.recorder import Batch, Recorder
from parsl_lite.monitoring.store import Store

logger = logging.getLogger("parsl_lite.monitoring.writer")

_RETRY_S = 0.5


class Writer:
    """Owns the store connection of one run; :meth:`serve` is the process's loop."""

    def __init__(self, store: Store, run_id: str, heartbeat_period: float, debug: bool = False) -> None:
        self.store = store
        self.run_id = run_id
        self.heartbeat_period = heartbeat_period
        self.debug = debug
        self.events_written = 0
        self.recorder = Recorder(run_id, store.time_us)
        self._sql = self._statements()

    def serve(self, fd: int, answers: BinaryIO) -> str:
        """Read frames from ``fd`` until ``end`` or end of file; return how the run ended (or ``eof``)."""
        while True:
            ready, _, _ = select.select([fd], [], [], self.heartbeat_period)
            if not ready:
                self.write(Batch())   # heartbeat only
                continue
            frame = read_frame(fd)
            if frame is None:
                self.write(self.recorder.flush())
                return "eof"
            if isinstance(frame, list):
                self.recorder.add_many(frame)
                if not _more_waiting(fd):   # a backlog is written in bigger transactions
                    self.write(self.recorder.flush())
            elif frame[0] == "flush":
                self.write(self.recorder.flush())
                answers.write(f"{self.events_written}\n".encode())
                answers.flush()
            elif frame[0] == "end":
                self.write(self.recorder.flush())
                self.write_end(frame[1], frame[2])
                return frame[2]

    def write(self, batch: Batch) -> None:
        """One transaction; retried while the store refuses it (events are not dropped)."""
        attempt = 0
        while True:
            try:
                self._write_once(batch)
                self.events_written += batch.events
                if self.debug and batch:
                    logger.debug("wrote %d events (%d status rows)", batch.events, len(batch.status))
                return
            except Exception as exc:
                _rollback(self.store)
                if attempt % 20 == 0:
                    logger.warning("monitoring store write failed (%r); retrying", exc)
                attempt += 1
                time.sleep(_RETRY_S)
                self._reconnect()

    def _write_once(self, batch: Batch) -> None:
        store, sql = self.store, self._sql
        store.executemany(sql["task"], batch.task)
        store.executemany(sql["task_update"], batch.task_updates)
        store.executemany(sql["try"], batch.tries)
        store.executemany(sql["try_update"], batch.try_updates)
        store.executemany(sql["status"], batch.status)
        store.executemany(sql["detail"], batch.detail)
        store.executemany(sql["endpoint"], batch.endpoint)
        store.executemany(sql["block"], batch.block)
        if batch.completed or batch.failed:
            store.execute('UPDATE "workflow" SET tasks_completed_count = ?, tasks_failed_count = ? WHERE run_id = ?',
                          (self.recorder.completed, self.recorder.failed, self.run_id))
        store.execute('UPDATE "pl_run" SET last_heartbeat = ?, events_written = ? WHERE run_id = ?',
                      (store.time(time.time()), self.events_written + batch.events, self.run_id))
        store.commit()

    def write_end(self, end_time: float, status: str) -> None:
        for _ in range(20):
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
                _rollback(self.store)
                time.sleep(_RETRY_S)
                self._reconnect()

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
        pg = s.dialect == "postgresql"
        return {
            "task": s.insert_sql(schema.TASK, rec.TASK_COLUMNS, "upsert"),
            "task_update": rec.TASK_UPDATE.replace("?", "%s") if pg else rec.TASK_UPDATE,
            "try": s.insert_sql(schema.TRY, rec.TRY_COLUMNS, "upsert", keep=rec.TRY_KEEP),
            "try_update": rec.TRY_UPDATE.replace("?", "%s") if pg else rec.TRY_UPDATE,
            "status": s.insert_sql(schema.STATUS, rec.STATUS_COLUMNS, "ignore"),
            "detail": s.insert_sql(schema.TRY_DETAIL, rec.DETAIL_COLUMNS, "upsert"),
            "endpoint": s.insert_sql(schema.ENDPOINT, rec.ENDPOINT_COLUMNS, "ignore"),
            "block": s.insert_sql(schema.BLOCK, rec.BLOCK_COLUMNS, "ignore"),
        }


def _more_waiting(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _rollback(store: Store) -> None:
    try:
        store.rollback()
    except Exception:
        pass


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="parsl_lite monitoring writer (started by MonitoringHub)")
    parser.add_argument("--url", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--heartbeat-period", type=float, default=30.0)
    parser.add_argument("--logfile", required=True)
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--nice", type=int, default=10, help="how much to lower this process's priority")
    args = parser.parse_args(argv)
    logging.basicConfig(filename=args.logfile, level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(name)s [%(levelname)s] %(message)s")
    logger.info("monitoring writer for run %s into %s, pid %d", args.run_id, args.url, os.getpid())
    if args.nice:
        try:   # on a busy machine the workflow's processes come first; the store catches up when they idle
            os.nice(args.nice)
        except OSError as exc:
            logger.info("could not lower the writer's priority: %s", exc)
    writer = Writer(Store(args.url, create=False), args.run_id, args.heartbeat_period, args.debug)
    try:
        how = writer.serve(sys.stdin.fileno(), sys.stdout.buffer)
    finally:
        writer.store.close()
    logger.info("monitoring writer done (%s): %d events written", how, writer.events_written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
