"""``AppFuture``, what calling an app returns, and ``DataFuture``, a file it writes.

An ``AppFuture`` is a ``concurrent.futures.Future`` (so ``wait``,
``as_completed`` and ``add_done_callback`` work), awaitable in asyncio and
Jupyter, and indexable: ``fut[0]`` or ``fut.key`` is a new future of that part
of the result, resolved without a round trip through an executor.
"""
from __future__ import annotations

import asyncio
import html
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Callable, Generator, Optional

from parsl_lite.data_provider.files import File
from parsl_lite.fast_future import FastFuture

if TYPE_CHECKING:
    from parsl_lite.dataflow.graph import TaskRecord


class _Chainable(FastFuture):
    """Future with item/attribute access and ``await``."""

    def __getitem__(self, key: Any) -> "DerivedFuture":
        return DerivedFuture(self, lambda value: value[key], f"[{key!r}]")

    def __getattr__(self, name: str) -> "DerivedFuture":
        # Only called for attributes that do not exist; private and dunder
        # names stay errors so that introspection (pickle, IPython) behaves.
        if name.startswith("_"):
            raise AttributeError(name)
        return DerivedFuture(self, lambda value: getattr(value, name), f".{name}")

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.wrap_future(self).__await__()

    def cancel(self) -> bool:
        """Tasks are not cancellable once submitted; always False."""
        return False


class DerivedFuture(_Chainable):
    """The future of ``getter(parent.result())``; fails if the parent or the getter fails."""

    def __init__(self, parent: Future, getter: Callable[[Any], Any], label: str) -> None:
        super().__init__()
        self.parent = parent
        self.label = label
        parent.add_done_callback(lambda done: self._resolve(done, getter))

    def _resolve(self, parent: Future, getter: Callable[[Any], Any]) -> None:
        exc = parent.exception()
        if exc is not None:
            self.set_exception(exc)
            return
        try:
            value = getter(parent.result())
        except BaseException as err:  # the getter's failure (KeyError, AttributeError...) is the future's
            self.set_exception(err)
        else:
            self.set_result(value)

    @property
    def tid(self) -> Optional[int]:
        return getattr(self.parent, "tid", None)

    def __repr__(self) -> str:
        return f"<DerivedFuture {self.parent!r}{self.label} state={self._state.lower()}>"


class AppFuture(_Chainable):
    """The future of one app invocation.

    Only the DataFlowKernel sets its result or exception (``set_result`` /
    ``set_exception`` are kernel-only).

    Attributes:
        task_record: the kernel's record of the task.
    """

    # Class-level defaults, set on the instance only when a call has them: the
    # future of a plain call stores two attributes (fewer objects, less GC work).
    _outputs: Optional[list] = None
    _stdout_future: Optional["DataFuture"] = None  # set when stdout=File(...), as in Parsl
    _stderr_future: Optional["DataFuture"] = None

    def __init__(self, task_record: "TaskRecord") -> None:
        super().__init__()
        self.task_record = task_record

    @property
    def tid(self) -> int:
        """The task id."""
        return self.task_record.id

    @property
    def outputs(self) -> list:
        """One ``DataFuture`` per ``File`` in the call's ``outputs``."""
        outputs = self._outputs
        if outputs is None:
            outputs = self._outputs = []
        return outputs

    @property
    def stdout(self) -> Any:
        """The call's ``stdout``: its path or ``(path, mode)``, or a ``DataFuture`` when it was a ``File``."""
        if self._stdout_future is not None:
            return self._stdout_future
        return (self.task_record.kwargs or {}).get("stdout")

    @property
    def stderr(self) -> Any:
        """The call's ``stderr``, like :attr:`stdout`."""
        if self._stderr_future is not None:
            return self._stderr_future
        return (self.task_record.kwargs or {}).get("stderr")

    def task_status(self) -> str:
        """The task's state name (``pending``, ``launched``, ``exec_done``...)."""
        return self.task_record.state.name

    def __repr__(self) -> str:
        record = self.task_record
        return f"<AppFuture task {record.id} {record.func_name} state={record.state.name}>"

    def _repr_html_(self) -> str:
        """A small table for Jupyter: task id, app, state, executor, then duration or error."""
        record = self.task_record
        rows = [("task", str(record.id)), ("app", record.func_name), ("state", record.state.name),
                ("executor", record.executor or "-")]
        if self.done():
            rows.append(_outcome(self, record))
        return _html_table("AppFuture", rows)


def _html_table(kind: str, rows: list[tuple[str, str]]) -> str:
    """A small two-column table; every value HTML-escaped (error texts may hold markup)."""
    cells = "".join(f"<tr><th style='text-align:left'>{name}</th><td style='text-align:left'>"
                    f"{html.escape(value)}</td></tr>" for name, value in rows)
    return f"<table class='parsl-lite-{kind.lower()}'><caption>{kind}</caption>{cells}</table>"


def _outcome(fut: Future, record: "TaskRecord") -> tuple[str, str]:
    """``("error", "Type: message")`` for a failed future, else ``("duration", "0.123 s")``."""
    exc = fut.exception()
    if exc is not None:
        return "error", f"{type(exc).__name__}: {exc}"
    if record.time_returned is None or not record.time_invoked:
        return "duration", "-"
    return "duration", f"{record.time_returned - record.time_invoked:.3f} s"


class DataFuture(_Chainable):
    """Resolves to its ``File`` when the app that writes it succeeds, or fails with it.

    Args:
        app_fut: the future of the app that writes the file.
        file_obj: the file.
        tid: the writing task's id.
    """

    def __init__(self, app_fut: Future, file_obj: File, tid: Optional[int] = None) -> None:
        super().__init__()
        if not isinstance(file_obj, File):
            raise TypeError(f"DataFuture needs a File, got {type(file_obj).__name__}")
        self.app_fut = app_fut
        self.file_obj = file_obj
        self._tid = tid
        app_fut.add_done_callback(self._parent_done)

    def _parent_done(self, app_fut: Future) -> None:
        exc = app_fut.exception()
        if exc is not None:
            self.set_exception(exc)
        else:
            self.set_result(self.file_obj)

    @property
    def tid(self) -> Optional[int]:
        return self._tid

    @property
    def filepath(self) -> str:
        return self.file_obj.filepath

    @property
    def filename(self) -> str:
        return self.file_obj.filename

    def __repr__(self) -> str:
        return f"<DataFuture {self.file_obj.url} of task {self._tid} state={self._state.lower()}>"

    def _repr_html_(self) -> str:
        """A small table for Jupyter: the file, the task that writes it, and its state or error."""
        rows = [("file", self.file_obj.url), ("task", str(self._tid)), ("state", self._state.lower())]
        exc = self.exception() if self.done() else None
        if exc is not None:
            rows.append(("error", f"{type(exc).__name__}: {exc}"))
        return _html_table("DataFuture", rows)
