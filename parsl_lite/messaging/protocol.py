"""The wire between ``parsl_lite.messaging`` clients and the broker (ZMQ).

Two kinds of traffic, on three broker sockets:

- **Requests** (queues, tables, stats) go over a plain TCP connection from
  each client thread to the broker, one request at a time per connection.
  Each is a frozen dataclass below with a ``kind``, a ``request_id`` its
  reply repeats, and the broker's ``token``, checked on every request.
  Frames: ``[kind, JSON header, *bytes fields]`` (the layout comes from
  ``executors/htex/codec.py``'s :class:`Schema`). A batch of message bodies
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

import struct
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Sequence, Union, get_args

from parsl_lite.executors.htex.codec import Invalid, Schema
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
_SCHEMAS: Final[dict[str, Schema]] = {cls.kind: Schema.of(cls) for cls in (*get_args(Request), *get_args(Reply))}
_BY_CLASS: Final[dict[type, Schema]] = {schema.cls: schema for schema in _SCHEMAS.values()}
MESSAGES: Final[dict[str, type]] = {kind: schema.cls for kind, schema in _SCHEMAS.items()}


def encode(message: Message) -> list[bytes]:
    """The frames of ``message`` for ``send_multipart``."""
    return _BY_CLASS[type(message)].encode(message)


def decode(frames: Sequence[Any]) -> Message:
    """The message in ``frames``.

    Raises:
        MalformedMessage: unknown kind, bad JSON, missing or extra fields, a field of the wrong type.
    """
    frames = [bytes(f) for f in frames]
    if len(frames) < 2:
        raise MalformedMessage(f"{len(frames)} frames; a message has at least 2")
    schema = _SCHEMAS.get(frames[0].decode("ascii", "replace"))
    if schema is None:
        raise MalformedMessage(f"unknown message kind {frames[0][:40]!r}")
    try:
        return schema.decode(frames)
    except Invalid as exc:
        raise MalformedMessage(f"{schema.kind}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise MalformedMessage(f"{schema.kind}: {exc}") from None


def join_bodies(bodies: Sequence[bytes]) -> tuple[tuple[int, ...], bytes]:
    """``(sizes, blob)`` for a batch field."""
    return tuple(len(b) for b in bodies), b"".join(bodies)


def split_bodies(sizes: Sequence[int], blob: bytes) -> list[bytes]:
    """The bodies of a batch field.

    Raises:
        MalformedMessage: the sizes do not add up to the blob.
    """
    if sum(sizes) != len(blob) or any(s < 0 for s in sizes):
        raise MalformedMessage(f"batch sizes add up to {sum(sizes)}, blob has {len(blob)} bytes")
    out, at = [], 0
    view = memoryview(blob)
    for size in sizes:
        out.append(bytes(view[at:at + size]))
        at += size
    return out


# ---------------------------------------------------------------- requests and replies on a stream

_STREAM_HEAD = struct.Struct("<II")      # bytes after the head, frames
STREAM_HEAD_BYTES: Final = _STREAM_HEAD.size
MAX_STREAM_BYTES: Final = 1 << 31        # a message longer than this is not from one of ours
MAX_FRAMES: Final = 64


def stream_parts(frames: Sequence[bytes]) -> list[bytes]:
    """The bytes of a message of ``frames`` on a connection, as parts for ``socket.sendmsg`` (no copy of
    the frames)."""
    lengths = struct.pack(f"<{len(frames)}I", *map(len, frames))
    return [_STREAM_HEAD.pack(len(lengths) + sum(map(len, frames)), len(frames)) + lengths, *frames]


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
