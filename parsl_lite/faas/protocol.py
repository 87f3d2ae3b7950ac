"""The wire between the function service and its endpoints (ZMQ, CurveZMQ, opened by the endpoint).

An endpoint connects *outbound*: a DEALER socket, to the service's ROUTER,
with the CurveZMQ keys the service issued when the endpoint registered. So an
endpoint behind a firewall opens no port, and only registered keys get
through. The key says which endpoint it is (the hello names the endpoint id
and the service checks it against the key); the routing identity only names
the connection: leave it to the ROUTER, or make it unique per connection (a
new connection whose identity is still held by a live one gets nothing).

Every message is a frozen dataclass with a ``kind``; :func:`encode` makes the
frames, :func:`decode` checks and rebuilds them, or raises
:class:`MalformedMessage` and nothing else. Nothing here unpickles: functions,
arguments and results are opaque bytes (``parsl_lite.serialize`` made them).

Frames: ``[kind, JSON header, *payload frames]``. Top-level ``bytes`` fields
and the ``bytes`` fields of the items of a tuple field travel as frames of
their own, in field order (item by item), never inside the JSON; the header
holds ``null`` in their place.

Conversation::

    endpoint                                   service
    EndpointHello  ------------------------->  (checks id, key, version)
                   <-------------------------  HelloReply (accepted or why not)
    StatusReport   ---- every heartbeat ----->  (stored; answered by ServiceHeartbeat)
                   <-------------------------  TaskDelivery (tasks for this endpoint)
    TasksAccepted  ------------------------->  (the executor holds them: waiting-for-launch)
    TaskStarted    ------------------------->  (running)
    TaskResults    ------------------------->  (stored durably, then ...)
                   <-------------------------  ResultsStored (the endpoint drops its spooled copy)
                   <-------------------------  CancelTasks
    EndpointBye    ------------------------->  (a clean stop: Stopped, not Disconnected)
                   <-------------------------  HelloRequired (the service restarted: say hello again)

Delivery is at-least-once both ways: the service re-sends every task the
endpoint has not returned a result for when the endpoint says hello, and the
endpoint re-sends every result the service has not acknowledged with
``ResultsStored``. Both sides drop duplicates by task id.

Versioning: ``EndpointHello`` carries :data:`PROTOCOL_VERSION`; a service of
another version answers ``HelloReply(accepted=False)`` with both numbers.

Frames: each ``bytes`` field travels as a frame of its own, its place in the
header ``null``. In a list of items, a field holding the very object an earlier
item's field held (a delivery's tasks of one function share its body) travels
once: the later rows say the number of that payload frame instead (version 2).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Final, Literal, NamedTuple, Sequence, Union, get_args, get_origin, get_type_hints

from parsl_lite.executors.htex.codec import dumps, loads
from parsl_lite.faas.errors import MalformedMessage

PROTOCOL_VERSION: Final = 2

ResultState = Literal["success", "failed"]


# ---------------------------------------------------------------- items

class TaskItem(NamedTuple):
    """One task of a :class:`TaskDelivery`.

    Attributes:
        task_id: the service's id (a UUID string).
        function_id: the registered function's id.
        function_body: the function, as ``parsl_lite.serialize`` made it on the client.
        payload: the ``(args, kwargs)``, serialized on the client.
        client_versions: e.g. ``"Python 3.11.7, parsl_lite 0.1.0"``, for a clear error if the endpoint
            cannot read them.
        attempt: 1 the first time the task is delivered, then one more each time it is re-delivered
            because the endpoint went away while holding it.
    """
    task_id: str
    function_id: str
    function_body: bytes
    payload: bytes
    client_versions: str
    attempt: int


class TaskResult(NamedTuple):
    """The outcome of one task in a :class:`TaskResults`.

    Attributes:
        task_id: the service's id.
        state: ``"success"`` (``payload`` is the serialized value) or ``"failed"`` (a serialized
            ``RemoteExceptionWrapper``, or a parsl_lite error such as ``MaxResultSizeExceeded``).
        payload: serialized bytes, as above.
        started: when a worker started the task (UNIX time), 0.0 if it never did.
        finished: when it ended (UNIX time).
    """
    task_id: str
    state: ResultState
    payload: bytes
    started: float
    finished: float


# ---------------------------------------------------------------- endpoint -> service

@dataclass(frozen=True, slots=True)
class EndpointHello:
    """The endpoint's first message on a connection (and again after ``HelloRequired``)."""
    kind: ClassVar[str] = "endpoint_hello"
    protocol_version: int
    endpoint_id: str
    versions: str              # "Python 3.11.7, parsl_lite 0.1.0"
    pending_results: int       # results spooled on disk, about to be re-sent


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Sent every heartbeat period; it is also the endpoint's heartbeat.

    ``report`` holds: ``alive`` (bool), ``managers``, ``connected_workers``,
    ``idle_workers``, ``pending_tasks`` (queued in the executor, not yet on a
    worker), ``outstanding_tasks`` (held by the executor in all), ``blocks``
    (block id -> job state name), ``provider_type``, ``walltime_left_s``
    (float or null), ``timestamp`` (UNIX time). Unknown keys are kept, so a
    newer endpoint may report more.
    """
    kind: ClassVar[str] = "status_report"
    report: dict


@dataclass(frozen=True, slots=True)
class TasksAccepted:
    """The endpoint's executor holds these tasks (a task is acknowledged only then)."""
    kind: ClassVar[str] = "tasks_accepted"
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """A worker started these tasks at ``at`` (UNIX time)."""
    kind: ClassVar[str] = "task_started"
    task_ids: tuple[str, ...]
    at: float


@dataclass(frozen=True, slots=True)
class TaskResults:
    """Results; each is spooled on the endpoint's disk until ``ResultsStored`` names it."""
    kind: ClassVar[str] = "task_results"
    results: tuple[TaskResult, ...]


@dataclass(frozen=True, slots=True)
class EndpointBye:
    """The endpoint is stopping on purpose (``parsl-lite endpoint stop``)."""
    kind: ClassVar[str] = "endpoint_bye"
    reason: str


# ---------------------------------------------------------------- service -> endpoint

@dataclass(frozen=True, slots=True)
class HelloReply:
    """The answer to ``EndpointHello``. Refused: ``reason`` says why and the endpoint exits with it."""
    kind: ClassVar[str] = "hello_reply"
    accepted: bool
    reason: str
    heartbeat_period_s: float
    heartbeat_threshold_s: float
    max_result_bytes: int
    allowed_functions: tuple[str, ...]   # empty: any function the endpoint's owner may run


@dataclass(frozen=True, slots=True)
class ServiceHeartbeat:
    """The answer to each ``StatusReport``; ``service_id`` changes when the service restarts."""
    kind: ClassVar[str] = "service_heartbeat"
    service_id: str


@dataclass(frozen=True, slots=True)
class TaskDelivery:
    """Tasks for this endpoint. A task may come again (re-delivery); the endpoint drops duplicates."""
    kind: ClassVar[str] = "task_delivery"
    tasks: tuple[TaskItem, ...]


@dataclass(frozen=True, slots=True)
class ResultsStored:
    """These results are stored durably by the service: the endpoint may forget them."""
    kind: ClassVar[str] = "results_stored"
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CancelTasks:
    """The user cancelled these tasks: drop them if not started (a running task is left to finish)."""
    kind: ClassVar[str] = "cancel_tasks"
    task_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HelloRequired:
    """The service does not know this connection (it restarted): send ``EndpointHello`` again."""
    kind: ClassVar[str] = "hello_required"
    reason: str


Message = Union[EndpointHello, StatusReport, TasksAccepted, TaskStarted, TaskResults, EndpointBye,
                HelloReply, ServiceHeartbeat, TaskDelivery, ResultsStored, CancelTasks, HelloRequired]
MESSAGES: Final[dict[str, type]] = {cls.kind: cls for cls in get_args(Message)}


# ---------------------------------------------------------------- encoding

_hints = functools.lru_cache(maxsize=None)(get_type_hints)   # the hints of a message or item class never change


def _item_type(hint: Any) -> Any:
    """The NamedTuple of a ``tuple[Item, ...]`` field, else None."""
    if get_origin(hint) is tuple:
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis and hasattr(args[0], "_fields"):
            return args[0]
    return None


_SCALARS: Final[dict[Any, tuple[type, ...]]] = {int: (int,), float: (float, int), str: (str,), bool: (bool,),
                                               dict: (dict,), ResultState: (str,)}


_STATES: Final = frozenset(get_args(ResultState))
_FAIL: Final = object()


def _quick(value: Any, hint: Any) -> Any:
    """``value`` if it is plainly right for ``hint`` (the common case, checked fast), else ``_FAIL``:
    then :func:`_check` decides, and names what is wrong."""
    t = type(value)
    if hint is str:
        return value if t is str else _FAIL
    if hint is float:
        return value if t is float else float(value) if t is int else _FAIL
    if hint is int:
        return value if t is int else _FAIL
    if hint is ResultState:
        return value if t is str and value in _STATES else _FAIL
    return _FAIL


@functools.lru_cache(maxsize=None)
def _item_plan(item: Any) -> tuple[tuple[str, Any, bool], ...]:
    """``(name, hint, travels as a frame)`` of each field of an item class."""
    hints = _hints(item)
    return tuple((name, hints[name], hints[name] is bytes) for name in item._fields)


def _check(value: Any, hint: Any, where: str) -> Any:
    if hint in _SCALARS:
        allowed = _SCALARS[hint]
        if type(value) not in allowed or (hint is not bool and type(value) is bool):
            raise MalformedMessage(f"{where}: expected {getattr(hint, '__name__', hint)}, got {type(value).__name__}")
        if hint is ResultState and value not in get_args(ResultState):
            raise MalformedMessage(f"{where}: state must be one of {get_args(ResultState)}, got {value!r}")
        return float(value) if hint is float else value
    if get_origin(hint) is tuple:  # tuple[str, ...]
        if type(value) is not list or any(type(v) is not str for v in value):
            raise MalformedMessage(f"{where}: expected a list of strings")
        return tuple(value)
    raise MalformedMessage(f"{where}: no wire type for {hint!r}")  # pragma: no cover - a bug in a message class


def _encode_items(plan: tuple, value: Sequence[Any], frames: list[bytes]) -> list[list[Any]]:
    """The header rows of a list of items; their frames appended to ``frames`` (each shared object once)."""
    rows = []
    last: dict[int, tuple[Any, int]] = {}   # field index -> (the object last sent there, its frame number)
    for entry in value:
        row = []
        for index, ((_, _, is_frame), part) in enumerate(zip(plan, entry)):
            if not is_frame:
                row.append(part)
                continue
            seen = last.get(index)
            if seen is not None and seen[0] is part:
                row.append(seen[1])          # the same bytes as that earlier frame
                continue
            last[index] = (part, len(frames))
            frames.append(part)
            row.append(None)
        rows.append(row)
    return rows


def encode(message: Message) -> list[bytes]:
    """The frames of ``message`` for ``send_multipart``."""
    header: dict[str, Any] = {}
    frames: list[bytes] = []
    hints = _hints(type(message))
    for field in fields(message):
        value = getattr(message, field.name)
        hint = hints[field.name]
        item = _item_type(hint)
        if hint is bytes:
            frames.append(value)
            header[field.name] = None
        elif item is not None:
            header[field.name] = _encode_items(_item_plan(item), value, frames)
        else:
            header[field.name] = list(value) if isinstance(value, tuple) else value
    return [type(message).kind.encode(), dumps(header), *frames]


def decode(frames: Sequence[bytes]) -> Message:
    """The message in ``frames``.

    Raises:
        MalformedMessage: unknown kind, bad JSON, a missing or extra field, a field of the wrong type,
            or a frame count that does not match.
    """
    if len(frames) < 2:
        raise MalformedMessage(f"{len(frames)} frames; a message has at least 2")
    cls = MESSAGES.get(bytes(frames[0]).decode("ascii", "replace"))
    if cls is None:
        raise MalformedMessage(f"unknown message kind {bytes(frames[0])[:40]!r}")
    try:
        header = loads(bytes(frames[1]))
    except Exception as exc:
        raise MalformedMessage(f"{cls.kind}: header is not JSON ({exc})") from None
    if type(header) is not dict:
        raise MalformedMessage(f"{cls.kind}: header must be a JSON object")
    hints = _hints(cls)
    names = [f.name for f in fields(cls)]
    if set(header) != set(names):
        raise MalformedMessage(f"{cls.kind}: fields {sorted(header)}, expected {sorted(names)}")
    payload = _Payload(frames)
    used = 0
    values: dict[str, Any] = {}
    for name in names:
        hint, raw = hints[name], header[name]
        item = _item_type(hint)
        if hint is bytes:
            values[name] = _next_frame(payload, f"{cls.kind}.{name}")
            used += 1
        elif item is not None:
            values[name], n = _decode_items(item, raw, payload, f"{cls.kind}.{name}")
            used += n
        else:
            values[name] = _check(raw, hint, f"{cls.kind}.{name}")
    if len(frames) - 2 != used:
        raise MalformedMessage(f"{cls.kind}: {len(frames) - 2} payload frames, expected {used}")
    return cls(**values)  # an EndpointHello of another version decodes: the service answers with both versions


class _Payload:
    """The payload frames of a message, taken in order; a row may name one taken already (shared bytes)."""

    def __init__(self, frames: Sequence[bytes]) -> None:
        self._frames = frames
        self.taken: list[bytes] = []

    def __iter__(self) -> "_Payload":
        return self

    def __next__(self) -> bytes:
        index = len(self.taken) + 2
        if index >= len(self._frames):
            raise StopIteration
        frame = bytes(self._frames[index])
        self.taken.append(frame)
        return frame

    def earlier(self, number: Any, where: str) -> bytes:
        if type(number) is not int or not 0 <= number < len(self.taken):
            raise MalformedMessage(f"{where}: refers to payload frame {number!r}, not one sent before it")
        return self.taken[number]


def _next_frame(payload: Any, where: str) -> bytes:
    try:
        return next(payload)
    except StopIteration:
        raise MalformedMessage(f"{where}: payload frame missing") from None


def _decode_items(item: Any, raw: Any, payload: Any, where: str) -> tuple[tuple[Any, ...], int]:
    if type(raw) is not list:
        raise MalformedMessage(f"{where}: expected a list")
    plan = _item_plan(item)
    width = len(plan)
    out, used = [], 0
    for i, row in enumerate(raw):
        if type(row) is not list or len(row) != width:
            raise MalformedMessage(f"{where}[{i}]: expected {width} fields")
        parts = []
        for (name, hint, is_frame), value in zip(plan, row):
            if is_frame:
                if value is not None:   # the bytes of an earlier frame of this message
                    parts.append(payload.earlier(value, f"{where}[{i}].{name}"))
                    continue
                parts.append(_next_frame(payload, f"{where}[{i}].{name}"))
                used += 1
            else:
                checked = _quick(value, hint)
                parts.append(_check(value, hint, f"{where}[{i}].{name}") if checked is _FAIL else checked)
        out.append(item(*parts))
    return tuple(out), used


def versions_string() -> str:
    """This process's ``"Python X.Y.Z, parsl_lite V"``, as clients and endpoints report it."""
    import platform

    from parsl_lite import __version__
    return f"Python {platform.python_version()}, parsl_lite {__version__}"


def send_nowait(socket: Any, frames: Sequence[bytes]) -> None:
    """``socket.send_multipart(frames, zmq.NOBLOCK, copy=False)`` with plain-int flags (pyzmq turns each
    frame's flags into an ``enum``, a measurable cost on a delivery of thousands of frames); frames under
    ``zmq.COPY_THRESHOLD`` bytes are copied, as pyzmq would.

    Raises:
        zmq.Again: the socket takes nothing now (only the first frame can say so: a message is atomic).
    """
    send, more, noblock, small = _zmq_send()
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        send(socket, frame, (more if index < last else 0) | noblock, len(frame) < small)


def recv_nowait(socket: Any) -> list[bytes]:
    """``socket.recv_multipart(zmq.NOBLOCK)`` without pyzmq's per-frame ``enum`` (``getsockopt(RCVMORE)``).

    Raises:
        zmq.Again: no message waits.
    """
    recv, noblock = _zmq_recv()
    frame = recv(socket, noblock, False)
    parts = [frame.bytes]
    while frame.more:
        frame = recv(socket, 0, False)
        parts.append(frame.bytes)
    return parts


@functools.lru_cache(maxsize=None)
def _zmq_recv() -> tuple[Any, int]:
    import zmq
    from zmq.backend import Socket as Compiled
    return Compiled.recv, int(zmq.NOBLOCK)


@functools.lru_cache(maxsize=None)
def _zmq_send() -> tuple[Any, int, int, int]:
    import zmq
    from zmq.backend import Socket as Compiled
    return Compiled.send, int(zmq.SNDMORE), int(zmq.NOBLOCK), zmq.COPY_THRESHOLD
