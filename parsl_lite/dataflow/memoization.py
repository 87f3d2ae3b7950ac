"""Memoization: reuse a task's result when the same function gets the same arguments.

::

    task ready ──check_memo──► make_hash(func source+closure, args, kwargs) ─► table?
                                   │ hit: a done Future          │ miss: None, task runs
    task done ──update_memo_result──► table[hash] = result ──► checkpoint (by mode)
                                                                  │
    start(): checkpoint_files ─► read_checkpoint ─► table (values decoded on first hit)

A hash covers the function (its source, or its code when the source is not
available, its name, defaults and closure values) and its resolved arguments,
minus the keyword arguments named in ``ignore_for_cache``. Globals the
function reads are not covered, as in Parsl. Values are encoded canonically
(:func:`id_for_memo`, which users may extend with ``id_for_memo.register``),
then hashed with SHA-256, so the hash is the same in every process and run.

Failures are memoized for the run, as in Parsl: the same call fails again
with the same exception object, without running. They are never
checkpointed, so a re-run tries them again. An argument that cannot be
encoded fails the task with ``ValueError``.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import inspect
import logging
import os
import re
import struct
import threading
import types
from abc import ABC, abstractmethod
from concurrent.futures import Future
from typing import Any, Callable, Literal, Optional, Sequence

from typeguard import typechecked

from parsl_lite.dataflow.checkpoints import CHECKPOINT_DIR, Checkpointer, read_checkpoint
from parsl_lite.errors import ConfigurationError, DeserializationError, InternalConsistencyError, SerializationError
from parsl_lite.representation import RepresentationMixin
from parsl_lite.serialize import deserialize, serialize

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------- canonical encoding

_HASH_DOMAIN = b"parsl_lite.memo.v1\x00"  # bump when an encoding changes: old checkpoints then simply miss


def _frame(data: bytes) -> bytes:
    """Length-prefix ``data`` so that concatenations cannot be confused."""
    return len(data).to_bytes(8, "big") + data


def _type_name(cls: type) -> bytes:
    return f"{cls.__module__}.{cls.__qualname__}".encode()


@functools.singledispatch
def id_for_memo(obj: Any, output_ref: bool = False) -> bytes:
    """Return bytes that identify ``obj`` for memoization (Parsl's name and signature).

    Equal values give equal bytes in every process: dicts regardless of key
    order, sets regardless of iteration order, ``File`` objects by URL.
    Unknown types fall back to their serialized form. Register an encoder for
    your own type with ``@id_for_memo.register(MyType)`` (built-in scalars keep
    their fixed encodings).

    Args:
        obj: the value.
        output_ref: accepted for Parsl compatibility; files are identified by
            URL either way.

    Raises:
        ValueError: ``obj`` cannot be encoded (it cannot be serialized).
    """
    return _encode_object(obj)


def _exact(base: type, encode: Callable[[Any], bytes]) -> None:
    """Register ``encode`` for ``base``; subclasses (enums, namedtuples...) are tagged with their type."""

    def impl(obj: Any, output_ref: bool = False) -> bytes:
        if type(obj) is base:
            return encode(obj)
        if isinstance(obj, enum.Enum):
            return _encode_enum(obj)
        return b"X" + _frame(_type_name(type(obj))) + encode(base(obj))

    id_for_memo.register(base)(impl)


def _encode_int(obj: int) -> bytes:
    return b"I" + obj.to_bytes((obj.bit_length() + 8) // 8, "big", signed=True)


def _encode_float(obj: float) -> bytes:
    return b"D" + (b"nan" if obj != obj else struct.pack(">d", obj))


def _encode_str(obj: str) -> bytes:
    return b"S" + obj.encode("utf-8", "surrogatepass")


# Exact scalar types skip singledispatch inside containers (a 1000-int list hashes ~3x faster),
# so their encodings are fixed: registering an encoder for ``int`` changes nothing.
_SCALARS: dict[type, Callable[[Any], bytes]] = {
    int: _encode_int, float: _encode_float, str: _encode_str, bool: lambda obj: b"B1" if obj else b"B0",
    type(None): lambda obj: b"N", bytes: lambda obj: b"Y" + obj,
}


def _framed(item: Any) -> bytes:
    encode = _SCALARS.get(type(item))
    data = encode(item) if encode is not None else id_for_memo(item)
    return len(data).to_bytes(8, "big") + data


def _items(tag: bytes, items: Any) -> bytes:
    return tag + b"".join([_framed(item) for item in items])


def _unordered(tag: bytes, items: Any) -> bytes:
    return tag + b"".join(sorted([_framed(item) for item in items]))


def _encode_dict(obj: dict) -> bytes:
    return b"M" + b"".join(sorted([_framed(k) + _framed(v) for k, v in obj.items()]))


for _type, _encode in _SCALARS.items():
    _exact(_type, _encode)
del _type, _encode
_exact(complex, lambda obj: b"C" + struct.pack(">dd", obj.real, obj.imag))
_exact(bytearray, lambda obj: b"A" + bytes(obj))
_exact(list, functools.partial(_items, b"L"))
_exact(tuple, functools.partial(_items, b"T"))
_exact(dict, _encode_dict)
_exact(set, functools.partial(_unordered, b"E"))
_exact(frozenset, functools.partial(_unordered, b"Z"))


@id_for_memo.register(enum.Enum)
def _encode_enum(obj: enum.Enum, output_ref: bool = False) -> bytes:
    return b"U" + _frame(_type_name(type(obj))) + obj.name.encode()


@id_for_memo.register(type)
def _encode_class(obj: type, output_ref: bool = False) -> bytes:
    return b"K" + _type_name(obj)


@id_for_memo.register(types.ModuleType)
def _encode_module(obj: types.ModuleType, output_ref: bool = False) -> bytes:
    return b"W" + obj.__name__.encode()


@id_for_memo.register(functools.partial)
def _encode_partial(obj: functools.partial, output_ref: bool = False) -> bytes:
    return _items(b"P", (obj.func, obj.args, obj.keywords))


@id_for_memo.register(types.MethodType)
def _encode_method(obj: types.MethodType, output_ref: bool = False) -> bytes:
    return _items(b"V", (obj.__func__, obj.__self__))


def _encode_object(obj: Any) -> bytes:
    url = getattr(obj, "url", None)
    if isinstance(url, str) and hasattr(type(obj), "filepath"):  # a File (duck-typed: data_provider may be absent)
        return b"R" + url.encode("utf-8", "surrogatepass")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return b"Q" + _frame(_type_name(type(obj))) + _encode_dict(fields)
    try:
        blob = serialize(obj, f"a value of type {type(obj).__qualname__}")
    except SerializationError as exc:
        raise ValueError(f"cannot encode a {type(obj).__qualname__} for memoization: {exc}") from exc
    return b"O" + _frame(_type_name(type(obj))) + blob


# Functions: name and source (or code) are computed once per code object; defaults
# and closure values are read on every call, since they can change.
_STATIC: dict[int, tuple[types.CodeType, str, str, bytes]] = {}  # id(code) -> (code, module, qualname, bytes)
_STATIC_MAX = 4096
_static_lock = threading.Lock()
_in_progress = threading.local()  # functions being encoded on this thread: breaks closure cycles


def _function_static(func: types.FunctionType) -> bytes:
    code, module, qualname = func.__code__, func.__module__, func.__qualname__
    entry = _STATIC.get(id(code))  # lock-free read: dict.get is atomic
    if entry is not None and entry[0] is code and entry[1] == module and entry[2] == qualname:
        return entry[3]
    try:
        body = b"s" + inspect.getsource(func).encode("utf-8", "surrogatepass")
    except (OSError, TypeError):  # defined in exec()'d text, a REPL without history, ...
        body = b"c" + _code_bytes(code)
    static = _frame(f"{module}.{qualname}".encode()) + _frame(body)
    with _static_lock:
        if len(_STATIC) >= _STATIC_MAX:
            _STATIC.clear()
        _STATIC[id(code)] = (code, module, qualname, static)  # holding ``code`` keeps its id from being reused
    return static


def _code_bytes(code: types.CodeType) -> bytes:
    """The code's behaviour, without file names or line numbers (marshal output depends on refcounts)."""
    consts = [_code_bytes(c) if isinstance(c, types.CodeType) else id_for_memo(c) for c in code.co_consts]
    parts = (code.co_code, *consts, repr((code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
                                          code.co_argcount, code.co_kwonlyargcount, code.co_flags)).encode())
    return b"".join(_frame(p) for p in parts)


@id_for_memo.register(types.FunctionType)
def _encode_function(obj: types.FunctionType, output_ref: bool = False) -> bytes:
    out = [b"F", _function_static(obj)]
    if obj.__defaults__ is not None or obj.__kwdefaults__ is not None:
        out += (b"d", _framed(obj.__defaults__), _framed(obj.__kwdefaults__))
    if obj.__closure__:
        active: set[int] = _in_progress.__dict__.setdefault("ids", set())
        if id(obj) in active:  # reached again through its own closure (a recursive nested function)
            return b"G" + out[1]
        active.add(id(obj))
        try:
            for var, cell in zip(obj.__code__.co_freevars, obj.__closure__):
                try:
                    contents = cell.cell_contents
                except ValueError:  # an empty cell: assigned later in the enclosing function
                    out += (b"c", _frame(var.encode()), _frame(b"-"))
                else:
                    out += (b"c", _frame(var.encode()), _framed(contents))
        finally:
            active.discard(id(obj))
    return b"".join(out)


def make_hash(record: Any) -> str:
    """Return the hex SHA-256 identifying a task's call.

    Args:
        record: a :class:`~parsl_lite.dataflow.graph.TaskRecord` (``func``,
            ``args``, ``kwargs`` resolved to values, ``ignore_for_cache``).

    Raises:
        ValueError: a value cannot be encoded (see :func:`id_for_memo`).
        RecursionError: an argument contains itself.
    """
    kwargs = record.kwargs or {}
    if record.ignore_for_cache:
        ignored = set(record.ignore_for_cache)
        kwargs = {k: v for k, v in kwargs.items() if k not in ignored}
    digest = hashlib.sha256(_HASH_DOMAIN)
    for part in (record.func, tuple(record.args or ()), kwargs):
        digest.update(_frame(id_for_memo(part)))
    return digest.hexdigest()


# ---------------------------------------------------------------- memoizers

class Memoizer(RepresentationMixin, ABC):
    """What the kernel asks of a memoizer.

    The kernel calls :meth:`start` once at load, :meth:`check_memo` for each
    ready task whose app has ``cache=True`` (when memoization is on),
    :meth:`update_memo_result` / :meth:`update_memo_exception` when a task
    finishes, :meth:`checkpoint` from ``dfk.checkpoint()``, and :meth:`close`
    at cleanup. All but ``start`` and ``close`` may be called from several
    threads at once.
    """

    @abstractmethod
    def start(self, *, run_dir: str, config_run_dir: Optional[str] = None) -> None:
        """Load earlier results and get ready; ``run_dir`` is this run's numbered directory.

        ``config_run_dir`` is the config's ``run_dir`` (Parsl passes both).
        """

    @abstractmethod
    def check_memo(self, record: Any) -> Optional[Future]:
        """Return a done Future holding the memoized result, or None; sets ``record.hashsum``."""

    @abstractmethod
    def update_memo_result(self, record: Any, result: Any) -> None:
        """Remember the result of a task that succeeded."""

    @abstractmethod
    def update_memo_exception(self, record: Any, exception: BaseException) -> None:
        """Be told that a task failed (for memoizers that remember failures)."""

    @abstractmethod
    def checkpoint(self) -> Optional[str]:
        """Write what is not yet checkpointed; return the checkpoint directory, or None."""

    @abstractmethod
    def close(self) -> None:
        """Write what the mode asks for at exit and stop background work. Idempotent."""


_MISSING = object()


class _Failed:
    """A memoized failure in the table (a result could be an exception object itself)."""

    __slots__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception
_PERIOD = re.compile(r"(\d+):([0-5]?\d):([0-5]?\d)")


def parse_period(text: str) -> int:
    """Return the seconds in an ``HH:MM:SS`` period.

    Raises:
        ConfigurationError: on field ``checkpoint_period``, if malformed or zero.
    """
    match = _PERIOD.fullmatch(text.strip())
    if match is None:
        raise ConfigurationError("checkpoint_period", f"expected HH:MM:SS (e.g. '00:30:00'), got {text!r}")
    hours, minutes, seconds = (int(g) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total == 0:
        raise ConfigurationError("checkpoint_period", f"must be longer than zero, got {text!r}")
    return total


class BasicMemoizer(Memoizer):
    """An in-memory memo table with optional checkpoint files (Parsl's ``BasicMemoizer``).

    Args:
        checkpoint_files: checkpoint directories (or files) of earlier runs
            whose results are reused, oldest first; later ones win for the
            same call. See :func:`parsl_lite.utils.get_all_checkpoints`. None
            (the default) with a ``checkpoint_mode`` reuses every earlier
            run's checkpoint under the config's ``run_dir``, as Parsl does;
            ``[]`` reuses none.
        checkpoint_period: ``HH:MM:SS`` between checkpoints in ``periodic`` mode.
        checkpoint_mode: when results are written to ``<run_dir>/checkpoint/``:
            ``task_exit`` (as each task finishes), ``periodic``, ``dfk_exit``
            (at cleanup), ``manual`` (only on ``dfk.checkpoint()``), or None
            (never).
        memoize: False turns app caching off for every app.

    Raises:
        typeguard.TypeCheckError: an argument has the wrong type.
        ConfigurationError: a malformed ``checkpoint_period``, a missing one
            in ``periodic`` mode, or ``checkpoint_files`` given as one string.
    """

    @typechecked
    def __init__(self, *, checkpoint_files: Optional[Sequence[str]] = None, checkpoint_period: Optional[str] = None,
                 checkpoint_mode: Optional[Literal["task_exit", "periodic", "dfk_exit", "manual"]] = None,
                 memoize: bool = True) -> None:
        if isinstance(checkpoint_files, str):
            raise ConfigurationError("checkpoint_files", f"expected a list of checkpoint directories, got the "
                                     f"string {checkpoint_files!r}; wrap it in a list")
        if checkpoint_files is not None and not all(checkpoint_files):
            raise ConfigurationError("checkpoint_files", "contains an empty path")
        self._period_s = None if checkpoint_period is None else parse_period(checkpoint_period)
        if checkpoint_mode == "periodic" and checkpoint_period is None:
            raise ConfigurationError("checkpoint_period", "required with checkpoint_mode='periodic' (HH:MM:SS)")
        if checkpoint_period is not None and checkpoint_mode != "periodic":
            logger.warning("checkpoint_period=%r is ignored: checkpoint_mode is %r, not 'periodic'",
                           checkpoint_period, checkpoint_mode)
        if not memoize and (checkpoint_mode is not None or checkpoint_files):
            logger.warning("memoize=False: nothing is reused or checkpointed, whatever checkpoint_mode "
                           "and checkpoint_files say")
        self.checkpoint_files = None if checkpoint_files is None else list(checkpoint_files)
        self.checkpoint_period = checkpoint_period
        self.checkpoint_mode = checkpoint_mode
        self.memoize = memoize
        self._lock = threading.Lock()  # guards the table and the counters; held only for dict operations
        self._results: dict[str, Any] = {}
        self._blobs: dict[str, bytes] = {}  # loaded from checkpoints, decoded on first hit
        self._hits = self._misses = 0
        self._checkpointer: Optional[Checkpointer] = None
        self._started = False
        self._warned: set[tuple[str, str]] = set()

    def start(self, *, run_dir: str, config_run_dir: Optional[str] = None) -> None:
        """Load ``checkpoint_files`` and prepare ``<run_dir>/checkpoint/``.

        Args:
            run_dir: this run's directory (``runinfo/NNN``).
            config_run_dir: the config's ``run_dir`` (``runinfo``), whose earlier
                runs' checkpoints are loaded when ``checkpoint_files`` is None.

        Raises:
            BadCheckpoint: a checkpoint file is missing, not a checkpoint, or damaged.
            InternalConsistencyError: started twice without :meth:`close`.
        """
        if self._started:
            raise InternalConsistencyError("BasicMemoizer.start() called again before close()")
        blobs: dict[str, bytes] = {}
        files = self.checkpoint_files
        if files is None and self.checkpoint_mode is not None and config_run_dir is not None:
            from parsl_lite.utils import get_all_checkpoints  # Parsl's default: every earlier run's checkpoint

            files = [path for path in get_all_checkpoints(config_run_dir)
                     if os.path.dirname(path) != os.path.abspath(run_dir)]
        if self.memoize:
            for path in files or ():
                blobs.update(read_checkpoint(path))
            if files:
                logger.info("memoizer: %d results from %d checkpoints", len(blobs), len(files))
        with self._lock:
            self._results, self._blobs = {}, blobs
            self._hits = self._misses = 0
        if self.memoize and self.checkpoint_mode is not None:
            directory = os.path.abspath(os.path.join(run_dir, CHECKPOINT_DIR))
            self._checkpointer = Checkpointer(self.checkpoint_mode, directory, self._period_s)
        self._started = True

    def check_memo(self, record: Any) -> Optional[Future]:
        """Hash the task into ``record.hashsum``; return a done Future with its memoized outcome, or None.

        The Future holds the memoized result, or the very exception object a
        failed identical call raised.

        Raises:
            ValueError: an argument cannot be encoded (Parsl fails such a task).
            RecursionError: an argument contains itself.
        """
        record.hashsum = None
        if not (self.memoize and record.memoize):
            return None
        hashsum = make_hash(record)
        record.hashsum = hashsum
        with self._lock:
            value = self._results.get(hashsum, _MISSING)
            blob = self._blobs.pop(hashsum, None) if value is _MISSING else None
            if value is _MISSING and blob is None:
                self._misses += 1
                return None
            self._hits += 1
        if blob is not None:
            value = self._decode(record, hashsum, blob)
            if value is _MISSING:
                return None
        future: Future = Future()
        if type(value) is _Failed:
            future.set_exception(value.exception)
        else:
            future.set_result(value)
        return future

    def _decode(self, record: Any, hashsum: str, blob: bytes) -> Any:
        """A checkpointed result, decoded on its first hit; _MISSING if it cannot be (the task runs)."""
        try:
            value = deserialize(blob)
        except DeserializationError as exc:
            self._warn_once(("load", record.func_name), "task %s (%s): checkpointed result unusable, running "
                            "the task: %s", record.id, record.func_name, exc)
            with self._lock:
                self._hits, self._misses = self._hits - 1, self._misses + 1
            return _MISSING
        with self._lock:
            return self._results.setdefault(hashsum, value)

    def update_memo_result(self, record: Any, result: Any) -> None:
        """Remember a successful result and hand it to the checkpointer."""
        hashsum = record.hashsum
        if not (self.memoize and record.memoize and isinstance(hashsum, str)):
            return
        with self._lock:
            self._results[hashsum] = result
            self._blobs.pop(hashsum, None)
        if self._checkpointer is not None:
            self._checkpointer.add(record.id, hashsum, result)

    def update_memo_exception(self, record: Any, exception: BaseException) -> None:
        """Remember a failure for this run (never checkpointed: a re-run tries again)."""
        hashsum = record.hashsum
        if not (self.memoize and record.memoize and isinstance(hashsum, str)):
            return
        with self._lock:
            self._results[hashsum] = _Failed(exception)
            self._blobs.pop(hashsum, None)

    def checkpoint(self) -> Optional[str]:
        """Write queued results and fsync; return the checkpoint directory (None if checkpointing is off).

        Raises:
            OSError: writing failed; the results stay queued for the next try.
        """
        if self._checkpointer is None:
            logger.info("checkpoint() does nothing: checkpoint_mode=%r, memoize=%r, started=%r",
                        self.checkpoint_mode, self.memoize, self._started)
            return None
        self._checkpointer.flush()
        return self._checkpointer.directory

    def close(self) -> None:
        """Stop the periodic timer; checkpoint at exit in ``dfk_exit`` and ``periodic`` modes. Idempotent."""
        if not self._started:
            return
        self._started = False
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.close()
        logger.info("memoizer closed: %d hits, %d misses, %d results checkpointed", self._hits, self._misses,
                    checkpointer.written if checkpointer is not None else 0)

    def _warn_once(self, key: tuple[str, str], message: str, *args: Any) -> None:
        if key not in self._warned:  # a benign race at worst logs twice
            self._warned.add(key)
            logger.warning(message, *args)
