"""The high-throughput executor's wire messages and their ZMQ multipart encoding.

Every message is a frozen, slotted dataclass with a ``kind``; :data:`MESSAGES`
maps kinds to classes. :func:`encode` turns a message into a list of frames for
``send_multipart``; :func:`decode` turns received frames back into a message,
or raises :class:`MalformedMessage` (and nothing else) when they are not one.
No frame is ever unpickled here: a peer that sends bytes cannot make us run
code. Payloads (serialized functions, arguments, results) are opaque bytes.
How values become frames is ``codec.py``'s job; who may send what is
``wire_auth.py``'s (a proof frame in front of every message to the interchange).

Frames::

    [kind, header, ...]
      kind     ASCII name, e.g. b"heartbeat"
      header   JSON

    small messages:   [kind, {"field": value, ...}, <one frame per bytes field, in field order>]
    TaskBatch:        [kind \n [n, digests_hex, body_tasks, spec_pairs] \n index blob, *own_frames]
    ResultBatch:      [kind \n [n] \n index blob, *own_frames]

A batch message's kind, header, index and blob travel in *one* frame (cut at
the first two newlines, which compact JSON never holds raw; the index's size
follows from the header): every frame costs a send, a receive and, with
encryption, a CurveZMQ box on each of a round trip's four hops (protocol 3
had four frames per batch).

In the two batch messages (the hot path) the per-item numbers travel in
``index``, an array of little-endian int64: for a TaskBatch the n task ids,
the n digest numbers (positions in ``digests_hex``) and the lengths of the n
arguments blobs then of the function bodies (of the tasks listed in
``body_tasks``); for a ResultBatch the n task ids, the n status codes (0 ok,
1 error, 2 lost), the n payload lengths and the worker's busy time for the
batch in nanoseconds. Payloads smaller than
:data:`BIG_PAYLOAD_BYTES` are concatenated into ``blob``: a frame per task
would cost ~4 µs each in pyzmq. Larger ones travel in frames of their own,
never copied or re-encoded; their length in ``index`` is -1. ``spec_pairs``
lists ``[task number, resource_spec]`` for the tasks whose spec is not empty.
The interchange reads only the header and the index of a result batch
(:func:`peek_results`) and forwards the frames as they came.

The executor talks to the interchange in requests (``ClientHello``, ``Ping``,
``StatusRequest``, ``HoldBlocks``, ``BlockLost``, ``ShutdownRequest``), each
with a ``request_id`` that its reply (``Ack``, ``ErrorReply``, ``StatusReply``)
repeats.

Versioning: every hello (``ClientHello``, ``Register``, ``WorkerHello``)
carries :data:`PROTOCOL_VERSION`; the interchange refuses other versions with
both numbers in the reason. If a hello of another version cannot even be read,
:func:`decode` raises :class:`VersionMismatch` (a ``MalformedMessage``), so
the interchange can still answer with a clear reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, ClassVar, Final, Literal, NamedTuple, NewType, Optional, Sequence, Union

from parsl_lite.executors.htex.batch_frame import KIND_MOST, NL, batch_head, batch_index
from parsl_lite.executors.htex.codec import (
    BIG_PAYLOAD_BYTES, Invalid, Schema, check_lengths, count, dumps, ints_to_frame, loads,
    pack, positions, unpack,
)
from parsl_lite.executors.htex.errors import MalformedMessage, VersionMismatch

PROTOCOL_VERSION: Final = 4
NO_TASK: Final = -1
"""``WorkerDied.running_task`` when the worker was between tasks."""
UNKNOWN_TASK: Final = -2
"""``WorkerDied.running_task`` when the pool could not tell (the oldest task the worker held is taken)."""

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


class ManagerStatus(NamedTuple):
    """One worker pool, as the interchange sees it (in a :class:`StatusReply`)."""
    manager_id: str          # hex
    block_id: str
    hostname: str
    worker_count: int
    connected_workers: int
    tasks: int               # held by its workers
    held: bool
    draining: bool


# ---------------------------------------------------------------- executor -> interchange

@dataclass(frozen=True, slots=True)
class TaskBatch:
    """Tasks, from the executor to the interchange and from the interchange to a worker."""
    kind: ClassVar[str] = "task_batch"
    tasks: tuple[TaskMessage, ...]


@dataclass(frozen=True, slots=True)
class ClientHello:
    """The executor's first message: who it is and which protocol it speaks. Answered by ``Ack`` or ``ErrorReply``."""
    kind: ClassVar[str] = "client_hello"
    request_id: int
    protocol_version: int
    label: str


@dataclass(frozen=True, slots=True)
class Ping:
    """Are you there? (``Ack``). Also keeps the link's silence detector quiet."""
    kind: ClassVar[str] = "ping"
    request_id: int


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """What is queued, out and connected (``StatusReply``)."""
    kind: ClassVar[str] = "status_request"
    request_id: int


@dataclass(frozen=True, slots=True)
class HoldBlocks:
    """Send the pools of these blocks no new task (they are about to be scaled in)."""
    kind: ClassVar[str] = "hold_blocks"
    request_id: int
    block_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BlockLost:
    """The block's job ended (the provider says so): its pools are gone, fail their tasks now."""
    kind: ClassVar[str] = "block_lost"
    request_id: int
    block_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class ShutdownRequest:
    """Stop every pool, then the interchange itself (``Ack`` first)."""
    kind: ClassVar[str] = "shutdown_request"
    request_id: int


# ---------------------------------------------------------------- interchange -> executor

@dataclass(frozen=True, slots=True)
class ResultBatch:
    """Results, from a worker to the interchange and from the interchange to the executor.

    ``busy_s``: how long the worker spent running these tasks (the ledger
    batches short tasks by it); 0.0 from senders that run nothing (a
    simulated worker, the interchange's own batches of lost tasks).
    """
    kind: ClassVar[str] = "result_batch"
    results: tuple[ResultMessage, ...]
    busy_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Ack:
    """The request with this ``request_id`` was carried out."""
    kind: ClassVar[str] = "ack"
    request_id: int


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The request with this ``request_id`` was refused; ``reason`` says why."""
    kind: ClassVar[str] = "error_reply"
    request_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class StatusReply:
    """The answer to :class:`StatusRequest`.

    Attributes:
        pending: tasks queued, not yet on a worker.
        outstanding: tasks not finished (queued or on a worker).
        connected_workers: worker processes connected now.
        managers: every registered pool.
        block_idle_s: for blocks whose pools hold no task, seconds since the last one finished.
        block_busy: tasks held by the workers of each block with a registered pool.
        refused: messages refused so far for lacking this run's proof (strangers, other runs).
        dropped: authenticated messages dropped so far as malformed.
    """
    kind: ClassVar[str] = "status_reply"
    request_id: int
    pending: int
    outstanding: int
    connected_workers: int
    managers: tuple[ManagerStatus, ...]
    block_idle_s: dict[str, float]
    block_busy: dict[str, int]
    refused: int = 0
    dropped: int = 0

    @classmethod
    def empty(cls, request_id: int = 0) -> "StatusReply":
        """What we know when the interchange cannot be asked: nothing."""
        return cls(request_id, 0, 0, 0, (), {}, {})


Request = Union[ClientHello, Ping, StatusRequest, HoldBlocks, BlockLost, ShutdownRequest]
Reply = Union[Ack, ErrorReply, StatusReply]


# ---------------------------------------------------------------- pool -> interchange

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
    arrive in either order. ``running_task`` is the task it was running
    (:data:`NO_TASK` if none, :data:`UNKNOWN_TASK` if the pool cannot tell),
    as the worker last wrote it in its slot file: only that task is lost, the
    others it held run elsewhere.
    """
    kind: ClassVar[str] = "worker_died"
    manager_id: ManagerId
    worker_index: int
    exitcode: int
    pid: int = 0
    running_task: int = UNKNOWN_TASK


@dataclass(frozen=True, slots=True)
class Drain:
    """The pool takes no new tasks (its ``drain_period`` is over); it exits once its workers are idle."""
    kind: ClassVar[str] = "drain"
    manager_id: ManagerId


# ---------------------------------------------------------------- worker -> interchange

@dataclass(frozen=True, slots=True)
class WorkerHello:
    """A worker process (``pid``; 0: unknown) connected; its socket identity now stands for this slot."""
    kind: ClassVar[str] = "worker_hello"
    protocol_version: int
    manager_id: ManagerId
    worker_index: int
    pid: int = 0


# ---------------------------------------------------------------- interchange -> pool or worker

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


Message = Union[TaskBatch, ResultBatch, Request, Reply, Register, Heartbeat, WorkerStarted, WorkerDied, Drain,
                WorkerHello, RegisterReply, Shutdown, HeartbeatAck]

MESSAGES: Final[dict[str, type[Message]]] = {m.kind: m for m in (  # type: ignore[misc]
    TaskBatch, ClientHello, Ping, StatusRequest, HoldBlocks, BlockLost, ShutdownRequest,
    ResultBatch, Ack, ErrorReply, StatusReply,
    Register, Heartbeat, WorkerStarted, WorkerDied, Drain, WorkerHello, RegisterReply, Shutdown, HeartbeatAck)}
HELLOS: Final = (ClientHello, Register, WorkerHello)
"""The first message of each kind of peer; each carries ``protocol_version``."""


class ResultFrames(NamedTuple):
    """A result batch as the interchange routes it: the task ids and busy time read, the frames untouched."""
    task_ids: list[int]
    frames: Sequence[bytes]
    busy_s: float = 0.0


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
            a hello of another protocol version that cannot be read.
    """
    return _guarded(frames, lambda decoder, frames: decoder(frames))


def peek_results(frames: Sequence[bytes]) -> Union[ResultFrames, Message]:
    """Like :func:`decode`, but a result batch is checked and its task ids read, its payloads left alone.

    The interchange routes results with this: it needs the ids (for the
    ledger), not the payloads, which it forwards as they came.

    Raises:
        MalformedMessage: as :func:`decode`.
    """
    return _guarded(frames, _peek_or_decode)


def _guarded(frames: Sequence[bytes], run: Callable[[Any, Sequence[bytes]], Any]) -> Any:
    kind: Optional[str] = None
    try:
        if not frames:
            raise Invalid("no frames")
        if set(map(type, frames)) != {bytes}:
            raise Invalid("frames must be bytes")
        first = frames[0]
        entry = _DECODERS.get(first)
        if entry is None:  # a batch: its kind ends at the first newline of its one frame
            cut = first.find(NL, 0, KIND_MOST)
            entry = _BATCH_DECODERS.get(first[:cut]) if cut > 0 else None
            if entry is None:
                raise Invalid(f"unknown kind {first[:40]!r}")
        elif len(frames) < 2:
            raise Invalid(f"{len(frames)} frame(s); every message but a batch has at least 2")
        kind, decoder = entry
        return run(decoder, frames)
    except MalformedMessage:
        raise
    except Invalid as exc:
        raise MalformedMessage(kind, str(exc)) from None
    except Exception as exc:  # the boundary: whatever the peer's bytes break is the peer's fault
        raise MalformedMessage(kind, f"{type(exc).__name__}: {exc}") from exc


def _peek_or_decode(decoder: Callable[[Sequence[bytes]], Message], frames: Sequence[bytes]) -> Any:
    if decoder is not _decode_result_batch:
        return decoder(frames)
    ids, _, lengths, busy_ns, blob_at = _result_index(frames)
    check_lengths(lengths, len(frames[0]) - blob_at, len(frames) - 1)
    return ResultFrames(ids, frames, busy_ns / 1e9)


# ---------------------------------------------------------------- TaskBatch

_TASK_BATCH = TaskBatch.kind.encode()
_TASK_HEAD = _TASK_BATCH + NL
_new_task: Callable[[tuple[Any, ...]], TaskMessage] = partial(tuple.__new__, TaskMessage)  # skips NamedTuple's __new__


def _encode_task_batch(msg: TaskBatch) -> list[bytes]:
    tasks = msg.tasks
    n = len(tasks)
    if not n:
        return [_TASK_HEAD + b"[0,[],[],[]]\n"]
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
    lengths, data = pack(payloads)
    if spec_pairs:
        header = dumps([n, [digest.hex() for digest in unique], body_tasks, spec_pairs])
    else:  # ints and hex strings only: the same compact JSON, formatted (a third of the encoder's time)
        header = ('[%d,["%s"],[%s],[]]' % (n, '","'.join(map(bytes.hex, unique)), ",".join(map(str, body_tasks)))
                  ).encode()
    return [b"".join((_TASK_HEAD, header, NL, ints_to_frame([*ids, *digest_numbers, *lengths]), data[0])),
            *data[1:]]


def _decode_task_batch(frames: Sequence[bytes]) -> TaskBatch:
    frame = frames[0]
    (n, digests_hex, body_tasks, spec_pairs), at = batch_head(frame, 4)
    n = count(n, "the task count")
    body_tasks = positions(body_tasks, n, "body_tasks")
    if type(digests_hex) is not list or set(map(type, digests_hex)) - {str}:
        raise Invalid("digests must be a list of hex strings")
    digests = [bytes.fromhex(text) for text in digests_hex]
    numbers, blob_at = batch_index(frame, at, 3 * n + len(body_tasks))
    ids, digest_numbers, lengths = numbers[:n], numbers[n:2 * n], numbers[2 * n:]
    if n and (min(digest_numbers) < 0 or max(digest_numbers) >= len(digests)):
        raise Invalid("a task refers to a digest the header does not list")
    payloads = unpack(lengths, frame[blob_at:], frames[1:])
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
        raise Invalid("spec_pairs must be a list")
    for pair in spec_pairs:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not int or type(pair[1]) is not dict:
            raise Invalid("spec_pairs must hold [task number, resource_spec] pairs")
        index, spec = pair
        if not 0 <= index < len(specs) or specs[index] or not spec:
            raise Invalid(f"bad or repeated resource_spec entry for task number {index}")
        specs[index] = spec


# ---------------------------------------------------------------- ResultBatch

_RESULT_BATCH = ResultBatch.kind.encode()
_RESULT_HEAD = _RESULT_BATCH + NL
_STATUS_NAMES: Final[tuple[ResultStatus, ...]] = ("ok", "error", "lost")
_STATUS_CODES: Final[dict[str, int]] = {name: code for code, name in enumerate(_STATUS_NAMES)}
_new_result: Callable[[tuple[Any, ...]], ResultMessage] = partial(tuple.__new__, ResultMessage)


def _encode_result_batch(msg: ResultBatch) -> list[bytes]:
    results = msg.results
    n = len(results)
    busy_ns = round(msg.busy_s * 1e9)
    if busy_ns < 0:
        raise ValueError(f"busy_s must be >= 0, got {msg.busy_s}")
    if not n:
        return [b"".join((_RESULT_HEAD, b"[0]\n", ints_to_frame([busy_ns])))]
    ids, statuses, payloads = zip(*results)
    if statuses.count("ok") == n:
        codes = [0] * n
    else:
        try:
            codes = list(map(_STATUS_CODES.__getitem__, statuses))
        except KeyError as exc:
            raise ValueError(f"result status must be one of {_STATUS_NAMES}, got {exc.args[0]!r}") from None
    lengths, data = pack(list(payloads))
    return [b"".join((_RESULT_HEAD, b"[%d]\n" % n, ints_to_frame([*ids, *codes, *lengths, busy_ns]), data[0])),
            *data[1:]]


def _result_index(frames: Sequence[bytes]) -> tuple[list[int], list[int], list[int], int, int]:
    """A result batch's task ids, status codes, payload lengths, busy nanoseconds and blob offset."""
    frame = frames[0]
    (n,), at = batch_head(frame, 1)
    n = count(n, "the result count")
    numbers, blob_at = batch_index(frame, at, 3 * n + 1)
    codes = numbers[n:2 * n]
    if any(codes) and not set(codes) <= {0, 1, 2}:
        raise Invalid("result status codes must be 0, 1 or 2")
    if numbers[-1] < 0:
        raise Invalid("negative busy time")
    return numbers[:n], codes, numbers[2 * n:3 * n], numbers[-1], blob_at


def _decode_result_batch(frames: Sequence[bytes]) -> ResultBatch:
    ids, codes, lengths, busy_ns, blob_at = _result_index(frames)
    n = len(ids)
    statuses = list(map(_STATUS_NAMES.__getitem__, codes)) if any(codes) else ["ok"] * n
    payloads = unpack(lengths, frames[0][blob_at:], frames[1:])
    return ResultBatch(tuple(map(_new_result, zip(ids, statuses, payloads))), busy_ns / 1e9)


# ---------------------------------------------------------------- hellos of other versions

def _decode_hello(schema: Schema, frames: Sequence[bytes]) -> Message:
    try:
        return schema.decode(frames)
    except Exception:
        theirs = _peek_version(frames[1])
        if theirs is not None and theirs != PROTOCOL_VERSION:
            raise VersionMismatch(theirs, PROTOCOL_VERSION, schema.kind) from None
        raise


def _peek_version(header: bytes) -> Optional[int]:
    try:
        version = loads(header).get("protocol_version")
    except Exception:  # a broken header has no version to report
        return None
    return version if type(version) is int else None


# ---------------------------------------------------------------- dispatch tables

_ENCODERS: Final[dict[type, Callable[[Any], list[bytes]]]] = {
    TaskBatch: _encode_task_batch, ResultBatch: _encode_result_batch}
_BATCH_DECODERS: Final[dict[bytes, tuple[str, Callable[[Sequence[bytes]], Message]]]] = {
    _TASK_BATCH: (TaskBatch.kind, _decode_task_batch), _RESULT_BATCH: (ResultBatch.kind, _decode_result_batch)}
_DECODERS: Final[dict[bytes, tuple[str, Callable[[Sequence[bytes]], Message]]]] = {}

for _cls in MESSAGES.values():
    if _cls not in _ENCODERS:
        _schema = Schema.of(_cls)
        _ENCODERS[_cls] = _schema.encode
        _DECODERS[_cls.kind.encode()] = (_cls.kind, partial(_decode_hello, _schema) if _cls in HELLOS
                                         else _schema.decode)
del _cls, _schema
