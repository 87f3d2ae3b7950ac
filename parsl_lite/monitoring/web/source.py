"""The web view's read side: the store through ``queries`` and ``views`` (the terminal monitor's), one thread.

The snapshots come from one ``queries.SnapshotReader`` per run shown, as the
terminal monitor's do: a refresh re-reads only the tasks that may still change.

Every call runs on the one thread of :attr:`StoreSource.executor` (a store
connection stays on the thread that opened it). The page's document is
``dataclasses.asdict`` of ``views.MonitorView`` minus the time it was made
(so an unchanged store gives an unchanged document and nothing is pushed), with the
task stream keyed by try (``"task_id.try_id"``) so that a patch carries only the tries that changed.
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Hashable, Optional

from parsl_lite.monitoring import queries

_VOLATILE = ("generated_at",)   # changes at every read without the store changing


class StoreSource:
    """Snapshots of one run (``run_spec``) or of the latest run (None: follows a newer run when one starts).

    Raises (at construction, before anything listens):
        queries.StoreUnreadable: the store cannot be opened.
        queries.UnknownRun: ``run_spec`` names no run of the store.
    """

    def __init__(self, url: str, run_spec: Optional[str] = None) -> None:
        self.url = url
        self.run_spec = run_spec
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plite-web-store")
        self._store: Any = None
        self._reader: Optional[queries.SnapshotReader] = None   # of the run shown: re-reads what may change
        self.executor.submit(self._check).result()

    def _open(self) -> Any:
        if self._store is None:
            self._store = queries.open_store(self.url)
        return self._store

    def _check(self) -> None:
        store = self._open()
        if self.run_spec is not None:
            store.find_run(self.run_spec)

    def _run_id(self) -> Optional[str]:
        """The run to show; None while a store followed for its latest run holds none."""
        store = self._open()
        if self.run_spec is None:
            try:
                return store.find_run(None).run_id
            except queries.UnknownRun:
                return None
        return store.find_run(self.run_spec).run_id

    def signature(self) -> Hashable:
        return self._open().change_token()

    def snapshot(self) -> Any:
        run_id = self._run_id()
        doc: dict[str, Any] = {"run": None}
        if run_id is not None:
            if self._reader is None or self._reader.run_id != run_id:
                self._reader = queries.SnapshotReader(self._open(), run_id)
            doc = dataclasses.asdict(self._reader.read())
            for key in _VOLATILE:
                doc.pop(key, None)
            # keyed by try, so a patch carries the tries that changed, not the whole list (the page sorts)
            doc["stream"] = {f"{r['task_id']}.{r['try_id']}": r for r in doc.get("stream") or []}
        # the store's times are local wall times read as UTC: the page adds this to its clock
        doc["clock_offset_s"] = round(queries.naive_now() - time.time())
        return doc

    def report_html(self) -> Optional[str]:
        """report.py's HTML of the run shown, once it ended (None while it runs)."""
        from parsl_lite.monitoring import report
        run_id = self._run_id()
        if run_id is None or self._open().find_run(run_id).state() == "running":
            return None
        return report.render_report(self._open(), run_id)

    def close(self) -> None:
        def _close() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None
        self.executor.submit(_close).result()
        self.executor.shutdown(wait=True)
