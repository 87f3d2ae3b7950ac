"""The high-throughput executor's wire messages and their ZMQ multipart encoding.

Every message is a frozen, slotted dataclass with a ``kind``; :data:`MESSAGES`
maps kinds to classes. :func:`encode` turns a message into a list of frames for
``send_multipart``; :func:`decode` turns received frames back into a message,
or raises :class:`MalformedMessage` (and nothing else) when they are not one.
No frame is ever unpickled here: a peer that sends bytes cannot make us run
code. Payloads (serialized functions, arguments, results) are opaque bytes.

Frames::

    [kind, header, ...]
      kind     ASCII name, e.g. b"heartbeat"
      header   JSON

    small messages:   [kind, {"field": value, ...}, <one frame per bytes field, in field order>]
    TaskBatch:        [kind, [n, digests_hex, body_tasks, spec_pairs], index, blob, *own_frames]
    ResultBatch:      [kind, [n], index, blob, *own_frames]

In the two batch messages (the hot path) the per-item numbers travel in
``index``, an array of little-endian int64: for a TaskBatch the n task ids,
the n digest numbers (positions in ``digests_hex``) and the lengths of the n
arguments blobs then of the function bodies (of the tasks listed in
``body_tasks``); for a ResultBatch the n task ids, the n status codes (0 ok,
1 error, 2 lost) and the n payload lengths. Payloads smaller than
:data:`BIG_PAYLOAD_BYTES` are concatenated into ``blob``: a frame per task
would cost ~4 µs each in pyzmq. Larger ones travel in frames of their own,
never copied or re-encoded; their length in ``index`` is -1. ``spec_pairs``
lists ``[task number, resource_spec]`` for the tasks whose spec is not empty.

Dict fields (``resource_spec``, ``Command.args``, ``CommandReply.result``)
must hold JSON values: str keys; None, bool, int, float, str, lists, dicts.

Versioning: ``Register`` carries :data:`PROTOCOL_VERSION`; the interchange
refuses other versions. If a ``Register`` of another version cannot even be
read, :func:`decode` raises :class:`VersionMismatch` (a ``MalformedMessage``),
so the interchange can still answer with a clear reason.
"""
from __future__ import annotations

import io
import json
import sys
from array import array
from dataclasses import dataclass, fields
from functools import partial
from typing import Any, Callable, ClassVar, Final, Literal, NamedTuple, NewType, Optional, Sequence, Union, \
    get_origin, get_type_hints

from parsl_lite.executors.htex.errors import MalformedMessage, VersionMismatch

PROTOCOL_VERSION: Final = 1
BIG_PAYLOAD_BYTES: Final = 64 * 1024
"""Payloads at least this large travel in a frame of their own instead of the shared blob."""

TaskId = NewType("TaskId", int)
ManagerId = NewType("ManagerId", bytes)
ResultStatus = Literal["ok", "error", "lost"]


# ---------------------------------------------------------------- items of the batch messages
# These two are typed NamedTuples, not dataclasses: decoding builds one per
# task, and a frozen dataclass's __init__ costs ~4x a tuple's (1.7 µs vs 0.4 µs
# measured here). They are just as immutable; ``_replace`` makes changed copies.

class TaskMessage(NamedTuple):
    """One task of a :class:`TaskBatch`.

    Attributes:
        task_id: the executor's id for the task (fits in a signed 64-bit int).
        fn_digest: the digest of the serialized function.
        fn_body: the serialized function; sent only the first time the sender
            sends this digest to this receiver, else None.
        args: the serialized arguments.
        resource_spec: the app's ``parsl_resource_specification`` (JSON values).
    """

    task_id: TaskId
    fn_digest: bytes
    fn_body: Optional[bytes]
    args: bytes
    resource_spec: dict[str, Any]


class ResultMessage(NamedTuple):
    """The outcome of one task in a :class:`ResultBatch`.

    Attributes:
        task_id: the executor's id for the task.
        status: ``"ok"`` (payload: the serialized value), ``"error"`` (a
            serialized ``RemoteExceptionWrapper``) or ``"lost"`` (a serialized
            exception such as ``WorkerLost``).
        payload: serialized bytes, as above.
    """

    task_id: TaskId
    status: ResultStatus
    payload: bytes


# ---------------------------------------------------------------- client <-> interchange

@dataclass(frozen=True, slots=True)
class TaskBatch:
    """Tasks, from the executor to the interchange and from the interchange to a worker."""
    kind: ClassVar[str] = "task_batch"
    tasks: tuple[TaskMessage, ...]


@dataclass(frozen=True, slots=True)
class Command:
    """A request from the executor to the interchange (``"status"``, ``"hold_manager"``, ``"shutdown"``...)."""
    kind: ClassVar[str] = "command"
    request_id: int
    name: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ResultBatch:
    """Results, from a worker to the interchange and from the interchange to the executor."""
    kind: ClassVar[str] = "result_batch"
    results: tuple[ResultMessage, ...]


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The interchange's answer to the :class:`Command` with the same ``request_id``."""
    kind: ClassVar[str] = "command_reply"
    request_id: int
    result: dict[str, Any]


# ---------------------------------------------------------------- manager -> interchange

@dataclass(frozen=True, slots=True)
class Register:
    """A worker pool introduces its node. Workers are started only after an accepting reply."""
    kind: ClassVar[str] = "register"
    protocol_version: int
    manager_id: ManagerId
    block_id: str
    hostname: str
    pid: int
    cores: int
    mem_bytes: int
    worker_count: int
    python_version: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    kind: ClassVar[str] = "heartbeat"
    manager_id: ManagerId


@dataclass(frozen=True, slots=True)
class WorkerStarted:
    """The pool started (or restarted) the worker in slot ``worker_index``, as process ``pid``."""
    kind: ClassVar[str] = "worker_started"
    manager_id: ManagerId
    worker_index: int
    pid: int = 0


@dataclass(frozen=True, slots=True)
class WorkerDied:
    """The worker in slot ``worker_index`` exited; ``exitcode`` < 0 is the signal that killed it.

    ``pid`` (0: unknown) tells which process of the slot died: this message and
    the replacement's ``WorkerHello`` travel on different connections and may
    arrive in either order.
    """
    kind: ClassVar[str] = "worker_died"
    manager_id: ManagerId
    worker_index: int
    exitcode: int
    pid: int = 0


@dataclass(frozen=True, slots=True)
class Drain:
    """The pool takes no new tasks; it exits once its workers are idle."""
    kind: ClassVar[str] = "drain"
    manager_id: ManagerId


# ---------------------------------------------------------------- worker -> interchange

@dataclass(frozen=True, slots=True)
class WorkerHello:
    """A worker process (``pid``; 0: unknown) connected; its socket identity now stands for this slot."""
    kind: ClassVar[str] = "worker_hello"
    manager_id: ManagerId
    worker_index: int
    pid: int = 0


# ---------------------------------------------------------------- interchange -> manager

@dataclass(frozen=True, slots=True)
class RegisterReply:
    kind: ClassVar[str] = "register_reply"
    accepted: bool
    reason: str
    heartbeat_period_s: float


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Stop (a pool and its workers, or a worker)."""
    kind: ClassVar[str] = "shutdown"
    reason: str


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    kind: ClassVar[str] = "heartbeat_ack"


Message = Union[TaskBatch, Command, ResultBatch, CommandReply, Register, Heartbeat, WorkerStarted, WorkerDied,
                Drain, WorkerHello, RegisterReply, Shutdown, HeartbeatAck]

MESSAGES: Final[dict[str, type[Message]]] = {m.kind: m for m in (
    TaskBatch, Command, ResultBatch, CommandReply, Register, Heartbeat, WorkerStarted, WorkerDied, Drain,
    WorkerHello, RegisterReply, Shutdown, HeartbeatAck)}


# ---------------------------------------------------------------- public entry points

def encode(msg: Message) -> list[bytes]:
    """Return the frames that carry ``msg``, for ``socket.send_multipart``.

    Raises:
        TypeError, ValueError, OverflowError: ``msg`` is not a message or a
            field does not fit its type (a bug on the sending side).
    """
    try:
        encoder = _ENCODERS[type(msg)]
    except KeyError:
        raise TypeError(f"not a message of this protocol: {type(msg).__qualname__}") from None
    return encoder(msg)


def decode(frames: Sequence[bytes]) -> Message:
    """Return the message carried by ``frames`` (as from ``socket.recv_multipart()``).

    Raises:
        MalformedMessage: the frames are not a valid message of this protocol,
            whatever is wrong with them; :class:`VersionMismatch` if they are
            a ``Register`` of another protocol version that cannot be read.
    """
    kind: Optional[str] = None
    try:
        if len(frames) < 2:
            raise _Invalid(f"{len(frames)} frame(s); every message has at least 2")
        if set(map(type, frames)) != {bytes}:
            raise _Invalid("frames must be bytes")
        entry = _DECODERS.get(frames[0])
        if entry is None:
            raise _Invalid(f"unknown kind {frames[0][:40]!r}")
        kind, decoder = entry
        return decoder(frames)
    except MalformedMessage:
        raise
    except _Invalid as exc:
        raise MalformedMessage(kind, str(exc)) from None
    except Exception as exc:  # the boundary: whatever the peer's bytes break is the peer's fault
        raise MalformedMessage(kind, f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- shared helpers

class _Invalid(ValueError):
    """Raised inside decoders; :func:`decode` turns it into ``MalformedMessage``."""


def _refuse_constant(name: str) -> Any:
    raise _Invalid(f"{name} is not allowed in a header")


_JSON_OUT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_JSON_IN = json.JSONDecoder(parse_constant=_refuse_constant)
_LITTLE_ENDIAN = sys.byteorder == "little"


def _dumps(obj: Any) -> bytes:
    return _JSON_OUT.encode(obj).encode("ascii")


def _loads(frame: bytes) -> Any:
    return _JSON_IN.decode(frame.decode("utf-8"))


def _ints_to_frame(values: list[int]) -> bytes:
    numbers = array("q", values)
    if not _LITTLE_ENDIAN:
        numbers.byteswap()
    return numbers.tobytes()


def _frame_to_ints(frame: bytes) -> list[int]:
    numbers = array("q")
    numbers.frombytes(frame)
    if not _LITTLE_ENDIAN:
        numbers.byteswap()
    return numbers.tolist()


def _pack(payloads: list[bytes]) -> tuple[list[int], list[bytes]]:
    """Lengths (-1: in a frame of its own) and frames ``[blob, *own_frames]``."""
    lengths = list(map(len, payloads))
    if not payloads or max(lengths) < BIG_PAYLOAD_BYTES:
        return lengths, [b"".join(payloads)]
    small: list[bytes] = []
    own: list[bytes] = []
    for index, payload in enumerate(payloads):
        if lengths[index] >= BIG_PAYLOAD_BYTES:
            own.append(payload)
            lengths[index] = -1
        else:
            small.append(payload)
    return lengths, [b"".join(small), *own]


def _unpack(lengths: list[int], blob: bytes, own: Sequence[bytes]) -> list[bytes]:
    """Inverse of :func:`_pack`, checking that the lengths and frames agree."""
    n_own = lengths.count(-1)
    if lengths and min(lengths) < -1:
        raise _Invalid("negative payload length")
    if n_own != len(own):
        raise _Invalid(f"{n_own} payload(s) announced in frames of their own, {len(own)} frame(s) sent")
    if sum(lengths) + n_own != len(blob):
        raise _Invalid(f"payload lengths add up to {sum(lengths) + n_own} bytes, the blob has {len(blob)}")
    read = io.BytesIO(blob).read  # shares blob's buffer; read(k) is the fastest way to cut it up
    if not n_own:
        return list(map(read, lengths))
    next_own = iter(own).__next__
    return [next_own() if length < 0 else read(length) for length in lengths]


def _header_list(frames: Sequence[bytes], size: int) -> list[Any]:
    header = _loads(frames[1])
    if type(header) is not list or len(header) != size:
        raise _Invalid(f"header must be a JSON list of {size} items")
    return header


def _count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise _Invalid(f"{what} must be a non-negative integer")
    return value


def _positions(value: Any, n: int, what: str) -> list[int]:
    """A strictly increasing list of task numbers in ``range(n)``."""
    if type(value) is not list or set(map(type, value)) - {int}:
        raise _Invalid(f"{what} must be a list of integers")
    if value and (value[0] < 0 or value[-1] >= n or any(a >= b for a, b in zip(value, value[1:]))):
        raise _Invalid(f"{what} must be increasing task numbers below {n}")
    return value


# ---------------------------------------------------------------- TaskBatch

_TASK_BATCH = TaskBatch.kind.encode()
_new_task: Callable[[tuple[Any, ...]], TaskMessage] = partial(tuple.__new__, TaskMessage)  # skips NamedTuple's __new__


def _encode_task_batch(msg: TaskBatch) -> list[bytes]:
    tasks = msg.tasks
    n = len(tasks)
    if not n:
        return [_TASK_BATCH, b"[0,[],[],[]]", b"", b""]
    ids, digests, bodies, args, specs = zip(*tasks)
    unique = list(dict.fromkeys(digests))
    if len(unique) == 1:
        digest_numbers = [0] * n
    else:
        number = {digest: i for i, digest in enumerate(unique)}
        digest_numbers = list(map(number.__getitem__, digests))
    payloads = list(args)
    body_tasks: list[int] = []
    if bodies.count(None) != n:
        body_tasks = [i for i, body in enumerate(bodies) if body is not None]
        payloads += [bodies[i] for i in body_tasks]
    spec_pairs = [[i, spec] for i, spec in enumerate(specs) if spec] if any(specs) else []
    lengths, data = _pack(payloads)
    header = _dumps([n, [digest.hex() for digest in unique], body_tasks, spec_pairs])
    return [_TASK_BATCH, header, _ints_to_frame([*ids, *digest_numbers, *lengths]), *data]


def _decode_task_batch(frames: Sequence[bytes]) -> TaskBatch:
    n, digests_hex, body_tasks, spec_pairs = _header_list(frames, 4)
    n = _count(n, "the task count")
    body_tasks = _positions(body_tasks, n, "body_tasks")
    if len(frames) < 4:
        raise _Invalid(f"{len(frames)} frames; a task batch has at least 4")
    if len(frames[2]) != 8 * (3 * n + len(body_tasks)):
        raise _Invalid(f"index of {len(frames[2])} bytes does not fit {n} tasks and {len(body_tasks)} bodies")
    if type(digests_hex) is not list or set(map(type, digests_hex)) - {str}:
        raise _Invalid("digests must be a list of hex strings")
    digests = [bytes.fromhex(text) for text in digests_hex]
    numbers = _frame_to_ints(frames[2])
    ids, digest_numbers, lengths = numbers[:n], numbers[n:2 * n], numbers[2 * n:]
    if n and (min(digest_numbers) < 0 or max(digest_numbers) >= len(digests)):
        raise _Invalid("a task refers to a digest the header does not list")
    payloads = _unpack(lengths, frames[3], frames[4:])
    bodies: list[Optional[bytes]] = [None] * n
    for i, body in zip(body_tasks, payloads[n:]):
        bodies[i] = body
    specs: list[dict[str, Any]] = [{} for _ in range(n)]
    if spec_pairs:
        _fill_specs(spec_pairs, specs)
    fn_digests = [digests[0]] * n if len(digests) == 1 else list(map(digests.__getitem__, digest_numbers))
    return TaskBatch(tuple(map(_new_task, zip(ids, fn_digests, bodies, payloads[:n], specs))))


def _fill_specs(spec_pairs: Any, specs: list[dict[str, Any]]) -> None:
    if type(spec_pairs) is not list:
        raise _Invalid("spec_pairs must be a list")
    for pair in spec_pairs:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not int or type(pair[1]) is not dict:
            raise _Invalid("spec_pairs must hold [task number, resource_spec] pairs")
        index, spec = pair
        if not 0 <= index < len(specs) or specs[index] or not spec:
            raise _Invalid(f"bad or repeated resource_spec entry for task number {index}")
        specs[index] = spec


# ---------------------------------------------------------------- ResultBatch

_RESULT_BATCH = ResultBatch.kind.encode()
_STATUS_NAMES: Final[tuple[ResultStatus, ...]] = ("ok", "error", "lost")
_STATUS_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(_STATUS_NAMES)}
_new_result: Callable[[tuple[Any, ...]], ResultMessage] = partial(tuple.__new__, ResultMessage)


def _encode_result_batch(msg: ResultBatch) -> list[bytes]:
    results = msg.results
    n = len(results)
    if not n:
        return [_RESULT_BATCH, b"[0]", b"", b""]
    ids, statuses, payloads = zip(*results)
    if statuses.count("ok") == n:
        codes = [0] * n
    else:
        try:
            codes = list(map(_STATUS_CODES.__getitem__, statuses))
        except KeyError as exc:
            raise ValueError(f"result status must be one of {_STATUS_NAMES}, got {exc.args[0]!r}") from None
    lengths, data = _pack(list(payloads))
    return [_RESULT_BATCH, _dumps([n]), _ints_to_frame([*ids, *codes, *lengths]), *data]


def _decode_result_batch(frames: Sequence[bytes]) -> ResultBatch:
    (n,) = _header_list(frames, 1)
    n = _count(n, "the result count")
    if len(frames) < 4:
        raise _Invalid(f"{len(frames)} frames; a result batch has at least 4")
    if len(frames[2]) != 8 * 3 * n:
        raise _Invalid(f"index of {len(frames[2])} bytes does not fit {n} results")
    numbers = _frame_to_ints(frames[2])
    ids, codes, lengths = numbers[:n], numbers[n:2 * n], numbers[2 * n:]
    if any(codes):
        if not set(codes) <= {0, 1, 2}:
            raise _Invalid("result status codes must be 0, 1 or 2")
        statuses = list(map(_STATUS_NAMES.__getitem__, codes))
    else:
        statuses = ["ok"] * n
    payloads = _unpack(lengths, frames[3], frames[4:])
    return ResultBatch(tuple(map(_new_result, zip(ids, statuses, payloads))))


# ---------------------------------------------------------------- the small messages

def _check_int(value: Any) -> int:
    if type(value) is not int:
        raise _Invalid(f"expected an integer, got {type(value).__name__}")
    return value


def _check_float(value: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise _Invalid(f"expected a number, got {type(value).__name__}")
    return float(value)


def _exact(kind: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise _Invalid(f"expected {kind.__name__}, got {type(value).__name__}")
        return value
    return check


_CHECKS: Final[dict[Any, Callable[[Any], Any]]] = {
    int: _check_int, float: _check_float, bool: _exact(bool), str: _exact(str), dict: _exact(dict),
}


@dataclass(frozen=True, slots=True)
class _Schema:
    """How a small message maps onto frames: JSON fields in the header, bytes fields after it."""
    cls: type[Message]
    kind: str
    json_fields: tuple[tuple[str, Callable[[Any], Any]], ...]
    frame_fields: tuple[str, ...]

    @classmethod
    def of(cls, message_cls: type[Message]) -> "_Schema":
        hints = get_type_hints(message_cls)
        json_fields: list[tuple[str, Callable[[Any], Any]]] = []
        frame_fields: list[str] = []
        for field in fields(message_cls):
            hint = hints[field.name]
            hint = getattr(hint, "__supertype__", hint)  # a NewType's base type
            hint = get_origin(hint) or hint              # dict[str, Any] -> dict
            if hint is bytes:
                frame_fields.append(field.name)
            else:
                json_fields.append((field.name, _CHECKS[hint]))
        return cls(message_cls, message_cls.kind, tuple(json_fields), tuple(frame_fields))

    def encode(self, msg: Any) -> list[bytes]:
        header = {name: getattr(msg, name) for name, _ in self.json_fields}
        return [self.kind.encode(), _dumps(header), *(getattr(msg, name) for name in self.frame_fields)]

    def decode(self, frames: Sequence[bytes]) -> Message:
        header = _loads(frames[1])
        if type(header) is not dict:
            raise _Invalid("header must be a JSON object")
        missing = [name for name, _ in self.json_fields if name not in header]
        if missing or len(header) != len(self.json_fields):
            unexpected = sorted(set(header) - {name for name, _ in self.json_fields})
            raise _Invalid(f"missing fields {missing}, unexpected fields {unexpected}")
        if len(frames) != 2 + len(self.frame_fields):
            raise _Invalid(f"{len(frames)} frames, expected {2 + len(self.frame_fields)}")
        values: dict[str, Any] = {}
        for name, check in self.json_fields:
            try:
                values[name] = check(header[name])
            except _Invalid as exc:
                raise _Invalid(f"field {name!r}: {exc}") from None
        values.update(zip(self.frame_fields, frames[2:]))
        return self.cls(**values)


def _decode_register(schema: _Schema, frames: Sequence[bytes]) -> Message:
    try:
        return schema.decode(frames)
    except Exception:
        theirs = _peek_version(frames[1])
        if theirs is not None and theirs != PROTOCOL_VERSION:
            raise VersionMismatch(theirs, PROTOCOL_VERSION) from None
        raise


def _peek_version(header: bytes) -> Optional[int]:
    try:
        version = _loads(header).get("protocol_version")
    except Exception:  # a broken header has no version to report
        return None
    return version if type(version) is int else None


# ---------------------------------------------------------------- dispatch tables

_ENCODERS: Final[dict[type, Callable[[Any], list[bytes]]]] = {
    TaskBatch: _encode_task_batch, ResultBatch: _encode_result_batch}
_DECODERS: Final[dict[bytes, tuple[str, Callable[[Sequence[bytes]], Message]]]] = {
    _TASK_BATCH: (TaskBatch.kind, _decode_task_batch), _RESULT_BATCH: (ResultBatch.kind, _decode_result_batch)}

for _cls in MESSAGES.values():
    if _cls not in _ENCODERS:
        _schema = _Schema.of(_cls)
        _ENCODERS[_cls] = _schema.encode
        _DECODERS[_cls.kind.encode()] = (_cls.kind, partial(_decode_register, _schema) if _cls is Register
                                         else _schema.decode)
del _cls, _schema
