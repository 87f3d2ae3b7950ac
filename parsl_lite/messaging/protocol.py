"""The wire between ``parsl_lite.messaging`` clients and the broker (ZMQ).

Two kinds of traffic, on three broker sockets:

- **Requests** (queues, tables, stats) go over a plain TCP connection from
  each client thread to the broker, one request at a time per connection.
  Each is a frozen dataclass below with a ``kind``, a ``request_id`` its
  reply repeats, and the broker's ``token``, checked on every request.
  Frames: ``[kind, head, *bytes fields]``, the head binary (:class:`_Layout`:
  the int, float and bool fields in one struct, then each other field with its
  length; 1-3 µs a message where JSON took 5-25). A batch of message bodies
  travels as one ``blob`` frame plus their ``sizes``. On the connection a
  message is :func:`stream_parts`: a head (byte count, frame count), the
  frame lengths, the frames. Not ZMQ's DEALER/ROUTER: a round trip there
  wakes each side's ZMQ I/O thread too (four more thread switches), which
  measured 80-200 µs of the 0.3-0.5 ms a request cost; a plain socket's round
  trip is 10-40 µs.
- **Topic frames** go from a publisher's XPUB to the broker's XSUB, and from
  the broker's XPUB to subscribers' SUB sockets. They are not dataclasses: a
  topic frame is the hot path (100k/s), so it is one frame
  ``key + meta + body`` made by :func:`topic_frame` (one frame costs pyzmq
  less than three): ``key`` is ``b"t" + topic + b"\\0"`` (ZMQ matches
  subscriptions on a prefix of the frame; the NUL makes that exact: topic
  ``"5"`` never hears ``"50"``), ``meta`` a 17-byte struct (publisher id,
  sequence number, flags), ``body`` the serialized message.

Conversation::

    client                                     broker
    Hello           ------------------------>  (token, version)
                    <------------------------  Welcome (the topic addresses)
    DeclareQueue / QueueStatsRequest -------->  QueueInfo
    PutMessages     ------------------------>  Done (stored durably, committed)
    GetMessages     ------------------------>  (held until a message or timeout_s)
                    <------------------------  Delivered (0..n messages)
    Settle          ------------------------>  Done (acked / nacked)
    TablePut / TableGet / TableScan -------->  Done / TableValue / TableRows
    ReportLoss / StatsRequest --------------->  Done / Stats
    anything wrong  <------------------------  ErrorReply (code, text)

Versioning: ``Hello`` carries :data:`PROTOCOL_VERSION`; a broker of another
version answers ``ErrorReply(code="version")`` with both numbers.
"""
from __future__ import annotations

import io
import json
import struct
import sys
from array import array
from dataclasses import dataclass, fields
from typing import Any, Callable, ClassVar, Final, Sequence, Union, get_args, get_type_hints

from parsl_lite.messaging.errors import MalformedMessage

PROTOCOL_VERSION: Final = 2   # 2: requests on plain TCP instead of ZMQ DEALER/ROUTER

# ---------------------------------------------------------------- requests (client -> broker)


@dataclass(frozen=True, slots=True)
class Hello:
    """A client's first request: checks the token and the version, learns the topic addresses."""
    kind: ClassVar[str] = "hello"
    request_id: int
    token: str
    protocol_version: int
    client: str                     # "host:pid", for the broker's log


@dataclass(frozen=True, slots=True)
class DeclareQueue:
    """Create the queue if missing (``create``), else check it exists; answered by ``QueueInfo``.

    Settings of 0 keep the queue's current ones (or the broker's defaults for a new queue).
    """
    kind: ClassVar[str] = "declare_queue"
    request_id: int
    token: str
    queue: str
    create: bool
    visibility_timeout_s: float
    max_receives: int
    max_bytes: int


@dataclass(frozen=True, slots=True)
class DeleteQueue:
    kind: ClassVar[str] = "delete_queue"
    request_id: int
    token: str
    queue: str


@dataclass(frozen=True, slots=True)
class QueueStatsRequest:
    kind: ClassVar[str] = "queue_stats"
    request_id: int
    token: str
    queue: str


@dataclass(frozen=True, slots=True)
class PutMessages:
    """Append messages; ``message_ids`` are the client's, so a put retried after a lost reply is stored once."""
    kind: ClassVar[str] = "put_messages"
    request_id: int
    token: str
    queue: str
    message_ids: tuple[str, ...]
    sizes: tuple[int, ...]
    blob: bytes


@dataclass(frozen=True, slots=True)
class GetMessages:
    """Up to ``max_messages``; the broker answers at once if any is ready, else within ``timeout_s``."""
    kind: ClassVar[str] = "get_messages"
    request_id: int
    token: str
    queue: str
    max_messages: int
    timeout_s: float


@dataclass(frozen=True, slots=True)
class Settle:
    """Ack (done: delete) or nack (give back now) the deliveries named by their receipts."""
    kind: ClassVar[str] = "settle"
    request_id: int
    token: str
    queue: str
    receipts: tuple[int, ...]
    ack: bool


@dataclass(frozen=True, slots=True)
class TablePut:
    kind: ClassVar[str] = "table_put"
    request_id: int
    token: str
    table: str
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class TableGet:
    kind: ClassVar[str] = "table_get"
    request_id: int
    token: str
    table: str
    key: str


@dataclass(frozen=True, slots=True)
class TableScan:
    """All rows of a table whose key starts with ``prefix``, in key order."""
    kind: ClassVar[str] = "table_scan"
    request_id: int
    token: str
    table: str
    prefix: str


@dataclass(frozen=True, slots=True)
class ReportLoss:
    """A subscriber saw ``lost`` messages of ``topic`` missing (sequence gaps: dropped at a high-water mark)."""
    kind: ClassVar[str] = "report_loss"
    request_id: int
    token: str
    topic: str
    lost: int


@dataclass(frozen=True, slots=True)
class StatsRequest:
    kind: ClassVar[str] = "stats"
    request_id: int
    token: str


# ---------------------------------------------------------------- replies (broker -> client)

@dataclass(frozen=True, slots=True)
class Welcome:
    kind: ClassVar[str] = "welcome"
    request_id: int
    broker_id: str
    protocol_version: int
    publish_address: str            # the XSUB publishers connect to
    subscribe_address: str          # the XPUB subscribers connect to


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue's settings and contents; ``oldest_age_s`` is 0.0 for an empty queue."""
    kind: ClassVar[str] = "queue_info"
    request_id: int
    queue: str
    length: int                     # ready + in flight
    in_flight: int
    oldest_age_s: float
    visibility_timeout_s: float
    max_receives: int
    max_bytes: int
    dead_letter_queue: str


@dataclass(frozen=True, slots=True)
class Delivered:
    """Messages handed to this reader, invisible to others until acked or ``visibility_timeout_s`` passes."""
    kind: ClassVar[str] = "delivered"
    request_id: int
    queue: str
    message_ids: tuple[str, ...]
    receipts: tuple[int, ...]
    receive_counts: tuple[int, ...]
    enqueued_at: tuple[float, ...]
    sizes: tuple[int, ...]
    blob: bytes


@dataclass(frozen=True, slots=True)
class Done:
    """A request done; ``count`` is how many items it affected (messages stored, settled, ...)."""
    kind: ClassVar[str] = "done"
    request_id: int
    count: int


@dataclass(frozen=True, slots=True)
class TableValue:
    kind: ClassVar[str] = "table_value"
    request_id: int
    found: bool
    value: bytes


@dataclass(frozen=True, slots=True)
class TableRows:
    kind: ClassVar[str] = "table_rows"
    request_id: int
    keys: tuple[str, ...]
    sizes: tuple[int, ...]
    blob: bytes


@dataclass(frozen=True, slots=True)
class Stats:
    """Broker counters: ``topics`` (published, forwarded, dropped_no_listener, lost_slow_subscriber) and
    ``queues`` (name -> length, in_flight, oldest_age_s, dead_lettered)."""
    kind: ClassVar[str] = "stats_reply"
    request_id: int
    stats: dict


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """The request was refused. ``code``: auth, version, no_such_queue, too_large, bad_request, internal."""
    kind: ClassVar[str] = "error"
    request_id: int
    code: str
    text: str


Request = Union[Hello, DeclareQueue, DeleteQueue, QueueStatsRequest, PutMessages, GetMessages, Settle,
                TablePut, TableGet, TableScan, ReportLoss, StatsRequest]
Reply = Union[Welcome, QueueInfo, Delivered, Done, TableValue, TableRows, Stats, ErrorReply]
Message = Union[Request, Reply]
# ---------------------------------------------------------------- the binary layout of a message

_LITTLE_ENDIAN = sys.byteorder == "little"
_COUNT = struct.Struct("<I")
_SCALARS: Final = {int: "q", float: "d", bool: "?"}


class Invalid(ValueError):
    """Bytes that are not a message of the layout being decoded."""


def _str_field() -> tuple[Callable[[Any], bytes], Callable[[bytes, int], tuple[Any, int]]]:
    def encode(value: str) -> bytes:
        data = value.encode()
        return _COUNT.pack(len(data)) + data

    def decode(head: bytes, at: int) -> tuple[str, int]:
        (size,), at = _COUNT.unpack_from(head, at), at + 4
        if at + size > len(head):
            raise Invalid(f"a string of {size} bytes at byte {at} of {len(head)}")
        return head[at:at + size].decode(), at + size
    return encode, decode


def _numbers_field(code: str) -> tuple[Callable[[Any], bytes], Callable[[bytes, int], tuple[Any, int]]]:
    width = struct.calcsize(code)

    def encode(values: tuple) -> bytes:
        numbers = array(code, values)
        if not _LITTLE_ENDIAN:
            numbers.byteswap()
        return _COUNT.pack(len(numbers)) + numbers.tobytes()

    def decode(head: bytes, at: int) -> tuple[tuple, int]:
        (n,), at = _COUNT.unpack_from(head, at), at + 4
        end = at + n * width
        if end > len(head):
            raise Invalid(f"{n} numbers at byte {at} of {len(head)}")
        numbers = array(code, head[at:end])
        if not _LITTLE_ENDIAN:
            numbers.byteswap()
        return tuple(numbers), end
    return encode, decode


def _strings_field() -> tuple[Callable[[Any], bytes], Callable[[bytes, int], tuple[Any, int]]]:
    """A count, then the strings joined by NUL (a string with a NUL is refused)."""
    encode_str, decode_str = _str_field()

    def encode(values: tuple) -> bytes:
        joined = "\0".join(values)
        if values and joined.count("\0") != len(values) - 1:
            raise ValueError("a string of a tuple field has a NUL character")
        return _COUNT.pack(len(values)) + encode_str(joined)

    def decode(head: bytes, at: int) -> tuple[tuple, int]:
        (n,), at = _COUNT.unpack_from(head, at), at + 4
        joined, at = decode_str(head, at)
        values = tuple(joined.split("\0")) if n else ()
        if len(values) != n:
            raise Invalid(f"{n} strings announced, {len(values)} sent")
        return values, at
    return encode, decode


def _json_field() -> tuple[Callable[[Any], bytes], Callable[[bytes, int], tuple[Any, int]]]:
    encode_str, decode_str = _str_field()

    def decode(head: bytes, at: int) -> tuple[Any, int]:
        text, at = decode_str(head, at)
        value = json.loads(text)
        if type(value) is not dict:
            raise Invalid("expected a JSON object")
        return value, at
    return (lambda value: encode_str(json.dumps(value, separators=(",", ":")))), decode


_VARIABLE: Final = {str: _str_field(), tuple[int, ...]: _numbers_field("q"), tuple[float, ...]: _numbers_field("d"),
                    tuple[str, ...]: _strings_field(), dict: _json_field()}


class _Layout:
    """How a message dataclass maps onto frames ``[kind, head, *bytes fields]``: the head is its int, float
    and bool fields in one struct, then its other fields, each with its length."""

    def __init__(self, cls: type) -> None:
        hints = get_type_hints(cls)
        names = [f.name for f in fields(cls)]
        self.cls, self.kind = cls, cls.kind.encode()  # type: ignore[attr-defined]
        self.scalars = tuple(n for n in names if hints[n] in _SCALARS)
        self.fixed = struct.Struct("<" + "".join(_SCALARS[hints[n]] for n in self.scalars))
        self.variable = tuple((n, *_VARIABLE[hints[n]]) for n in names if hints[n] in _VARIABLE)
        self.frames = tuple(n for n in names if hints[n] is bytes)
        unknown = set(names) - set(self.scalars) - {n for n, *_ in self.variable} - set(self.frames)
        if unknown:
            raise TypeError(f"{cls.__name__}: no layout for fields {sorted(unknown)}")

    def encode(self, msg: Any) -> list[bytes]:
        head = [self.fixed.pack(*[getattr(msg, n) for n in self.scalars])]
        head += [encode(getattr(msg, n)) for n, encode, _ in self.variable]
        return [self.kind, b"".join(head), *[getattr(msg, n) for n in self.frames]]

    def decode(self, frames: Sequence[bytes]) -> Any:
        if len(frames) != 2 + len(self.frames):
            raise Invalid(f"{len(frames)} frames, expected {2 + len(self.frames)}")
        head = frames[1]
        values = dict(zip(self.scalars, self.fixed.unpack_from(head, 0)))
        at = self.fixed.size
        for name, _, decode in self.variable:
            values[name], at = decode(head, at)
        if at != len(head):
            raise Invalid(f"{len(head) - at} bytes after the fields")
        values.update(zip(self.frames, frames[2:]))
        return self.cls(**values)


_SCHEMAS: Final[dict[str, _Layout]] = {cls.kind: _Layout(cls) for cls in (*get_args(Request), *get_args(Reply))}
_BY_CLASS: Final[dict[type, _Layout]] = {schema.cls: schema for schema in _SCHEMAS.values()}
MESSAGES: Final[dict[str, type]] = {kind: schema.cls for kind, schema in _SCHEMAS.items()}
_BY_KIND: Final[dict[bytes, _Layout]] = {schema.kind: schema for schema in _SCHEMAS.values()}


def encode(message: Message) -> list[bytes]:
    """The frames of ``message`` for ``send_multipart``."""
    return _BY_CLASS[type(message)].encode(message)


def decode(frames: Sequence[Any]) -> Message:
    """The message in ``frames``.

    Raises:
        MalformedMessage: unknown kind, too many or too few bytes or frames, text that is not UTF-8.
    """
    if len(frames) < 2:
        raise MalformedMessage(f"{len(frames)} frames; a message has at least 2")
    if type(frames[0]) is not bytes or type(frames[1]) is not bytes:
        frames = [bytes(f) for f in frames]
    schema = _BY_KIND.get(frames[0])
    if schema is None:
        raise MalformedMessage(f"unknown message kind {frames[0][:40]!r}")
    try:
        return schema.decode(frames)
    except (ValueError, TypeError, struct.error) as exc:   # Invalid, UnicodeDecodeError, a short head
        raise MalformedMessage(f"{schema.kind.decode()}: {exc}") from None


def join_bodies(bodies: Sequence[bytes]) -> tuple[tuple[int, ...], bytes]:
    """``(sizes, blob)`` for a batch field."""
    return tuple(len(b) for b in bodies), b"".join(bodies)


def split_bodies(sizes: Sequence[int], blob: bytes) -> list[bytes]:
    """The bodies of a batch field.

    Raises:
        MalformedMessage: the sizes do not add up to the blob.
    """
    if sum(sizes) != len(blob) or min(sizes, default=0) < 0:
        raise MalformedMessage(f"batch sizes add up to {sum(sizes)}, blob has {len(blob)} bytes")
    return list(map(io.BytesIO(blob).read, sizes))   # read(k) cuts the shared buffer at C speed


# ---------------------------------------------------------------- requests and replies on a stream

_STREAM_HEAD = struct.Struct("<II")      # bytes after the head, frames
STREAM_HEAD_BYTES: Final = _STREAM_HEAD.size
MAX_STREAM_BYTES: Final = 1 << 31        # a message longer than this is not from one of ours
MAX_FRAMES: Final = 64


def stream_parts(frames: Sequence[bytes]) -> list[bytes]:
    """The bytes of a message of ``frames`` on a connection, as parts for ``socket.sendmsg`` (no copy of
    the frames)."""
    sizes = [len(f) for f in frames]
    n = len(sizes)
    return [struct.pack(f"<II{n}I", 4 * n + sum(sizes), n, *sizes), *frames]


def stream_size(buffer: Any, at: int = 0) -> int:
    """How many bytes the message starting at ``buffer[at:]`` has (head included), or 0 when its head is not
    all there.

    Raises:
        MalformedMessage: a head none of ours would send (too long, too many frames).
    """
    if len(buffer) - at < STREAM_HEAD_BYTES:
        return 0
    size, n = _STREAM_HEAD.unpack_from(buffer, at)
    if size > MAX_STREAM_BYTES or n > MAX_FRAMES or 4 * n > size:
        raise MalformedMessage(f"a stream head of {size} bytes in {n} frames")
    return STREAM_HEAD_BYTES + size


def stream_frames(buffer: Any, at: int, size: int) -> list[bytes]:
    """The frames of the whole message of ``size`` bytes (:func:`stream_size`) at ``buffer[at:]``.

    Raises:
        MalformedMessage: the frame lengths do not add up to the message.
    """
    n = _STREAM_HEAD.unpack_from(buffer, at)[1]
    start = at + STREAM_HEAD_BYTES + 4 * n
    lengths = struct.unpack_from(f"<{n}I", buffer, at + STREAM_HEAD_BYTES)
    if start + sum(lengths) != at + size:
        raise MalformedMessage(f"frame lengths add up to {sum(lengths)}, the message has {size - start + at}")
    out = []
    if type(buffer) is bytes:       # slices are bytes already (a client's reply)
        for length in lengths:
            out.append(buffer[start:start + length])
            start += length
        return out
    with memoryview(buffer) as view:
        for length in lengths:
            out.append(bytes(view[start:start + length]))
            start += length
    return out


# ---------------------------------------------------------------- topic frames (the hot path)

FLAG_DATA: Final = 0
FLAG_STOP: Final = 1          # ends the listeners of the topic; body: b"" (all) or a listener id (that one)
FLAG_WELCOME: Final = 2       # the broker to one new subscriber: your subscriptions are live

_META = struct.Struct("<QQB")  # publisher id, sequence number (per publisher and topic), flags
TOPIC_PREFIX: Final = b"t"
WELCOME_PREFIX: Final = b"w"


def topic_key(topic: str) -> bytes:
    """The subscription key of a user topic.

    Raises:
        ValueError: ``topic`` is not a non-empty string without NUL.
    """
    if not isinstance(topic, str) or not topic or "\0" in topic:
        raise ValueError(f"topic {topic!r}: need a non-empty string without NUL characters")
    return TOPIC_PREFIX + topic.encode() + b"\0"


def welcome_key(subscriber_id: str) -> bytes:
    return WELCOME_PREFIX + subscriber_id.encode() + b"\0"


def key_topic(key: bytes) -> str:
    """The topic (or subscriber id) of a key."""
    return key[1:-1].decode(errors="replace")


_pack_meta = _META.pack
_unpack_meta = _META.unpack_from
_META_SIZE: Final = _META.size


def topic_frame(key: bytes, publisher: int, seq: int, flags: int, body: bytes) -> bytes:
    return key + _pack_meta(publisher, seq, flags) + body


def frame_key(frame: bytes) -> bytes:
    """The key at the start of a topic frame (b"" if there is none)."""
    return frame[:frame.find(b"\0") + 1]


def read_frame(frame: bytes) -> tuple[bytes, int, int, int, bytes]:
    """``(key, publisher, seq, flags, body)`` of a topic frame.

    Raises:
        MalformedMessage: not a topic frame.
    """
    end = frame.find(b"\0") + 1
    try:
        publisher, seq, flags = _unpack_meta(frame, end)
    except struct.error:
        raise MalformedMessage(f"a topic frame of {len(frame)} bytes has no key and meta") from None
    if not end:
        raise MalformedMessage("a topic frame without a key")
    return frame[:end], publisher, seq, flags, frame[end + _META_SIZE:]
