"""The building blocks of ``messages.py``'s encoding: JSON headers, int64 index frames, payload packing.

Kept apart from ``messages.py`` (which says *what* travels) so each file does
one job: this one says how values become frames and how frames are checked
on the way back. Nothing here unpickles: payloads stay opaque bytes.

A small message is ``[kind, JSON header, *bytes fields]``; :class:`Schema`
derives that layout from a message dataclass's type hints. Header fields may
be ``int``, ``float``, ``bool``, ``str``, ``dict`` (JSON values), ``dict[str, int]``,
``dict[str, float]``, ``tuple[str, ...]``, ``tuple[int, ...]`` or a tuple of a
``NamedTuple`` whose fields are of those scalar types.
"""
from __future__ import annotations

import io
import json
import sys
from array import array
from dataclasses import dataclass, fields
from typing import Any, Callable, Final, Sequence, get_args, get_origin, get_type_hints

BIG_PAYLOAD_BYTES: Final = 64 * 1024
"""Payloads at least this large travel in a frame of their own instead of the shared blob."""


class Invalid(ValueError):
    """Raised inside decoders; ``messages.decode`` turns it into ``MalformedMessage``."""


def _refuse_constant(name: str) -> Any:
    raise Invalid(f"{name} is not allowed in a header")


_JSON_OUT = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_JSON_IN = json.JSONDecoder(parse_constant=_refuse_constant)
_LITTLE_ENDIAN = sys.byteorder == "little"


def dumps(obj: Any) -> bytes:
    return _JSON_OUT.encode(obj).encode("ascii")


_scan = _JSON_IN.scan_once  # the C scanner: a compact header needs no whitespace handling around it


def loads(frame: bytes) -> Any:
    text = frame.decode("utf-8")
    try:
        value, end = _scan(text, 0)
    except (StopIteration, ValueError):
        end = -1
    if end == len(text):
        return value
    return _JSON_IN.decode(text)  # whitespace around it, or not JSON: the full decoder accepts or says why


def ints_to_frame(values: list[int]) -> bytes:
    numbers = array("q", values)
    if not _LITTLE_ENDIAN:
        numbers.byteswap()
    return numbers.tobytes()


def frame_to_ints(frame: bytes) -> list[int]:
    numbers = array("q")
    numbers.frombytes(frame)
    if not _LITTLE_ENDIAN:
        numbers.byteswap()
    return numbers.tolist()


def pack(payloads: list[bytes]) -> tuple[list[int], list[bytes]]:
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


def check_lengths(lengths: list[int], blob_size: int, own_frames: int) -> None:
    """Check that payload lengths (from an index frame) agree with the frames that carry them."""
    n_own = lengths.count(-1)
    if lengths and min(lengths) < -1:
        raise Invalid("negative payload length")
    if n_own != own_frames:
        raise Invalid(f"{n_own} payload(s) announced in frames of their own, {own_frames} frame(s) sent")
    if sum(lengths) + n_own != blob_size:
        raise Invalid(f"payload lengths add up to {sum(lengths) + n_own} bytes, the blob has {blob_size}")


def unpack(lengths: list[int], blob: bytes, own: Sequence[bytes]) -> list[bytes]:
    """Inverse of :func:`pack`, checking that the lengths and frames agree."""
    check_lengths(lengths, len(blob), len(own))
    read = io.BytesIO(blob).read  # shares blob's buffer; read(k) is the fastest way to cut it up
    if -1 not in lengths:
        return list(map(read, lengths))
    next_own = iter(own).__next__
    return [next_own() if length < 0 else read(length) for length in lengths]


def header_list(frames: Sequence[bytes], size: int) -> list[Any]:
    header = loads(frames[1])
    if type(header) is not list or len(header) != size:
        raise Invalid(f"header must be a JSON list of {size} items")
    return header


def count(value: Any, what: str) -> int:
    if type(value) is not int or value < 0:
        raise Invalid(f"{what} must be a non-negative integer")
    return value


def positions(value: Any, n: int, what: str) -> list[int]:
    """A strictly increasing list of task numbers in ``range(n)``."""
    if type(value) is not list or set(map(type, value)) - {int}:
        raise Invalid(f"{what} must be a list of integers")
    if value and (value[0] < 0 or value[-1] >= n or any(a >= b for a, b in zip(value, value[1:]))):
        raise Invalid(f"{what} must be increasing task numbers below {n}")
    return value


# ---------------------------------------------------------------- checks of header values

Check = Callable[[Any], Any]


def _check_int(value: Any) -> int:
    if type(value) is not int:
        raise Invalid(f"expected an integer, got {type(value).__name__}")
    return value


def _check_float(value: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise Invalid(f"expected a number, got {type(value).__name__}")
    return float(value)


def _exact(kind: type) -> Check:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise Invalid(f"expected {kind.__name__}, got {type(value).__name__}")
        return value
    return check


_SCALARS: Final[dict[Any, Check]] = {int: _check_int, float: _check_float, bool: _exact(bool), str: _exact(str)}


def _dict_of(value_check: Check) -> Check:
    def check(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise Invalid(f"expected an object, got {type(value).__name__}")
        return {key: value_check(item) for key, item in value.items()}
    return check


def _tuple_of(item_check: Check) -> Check:
    def check(value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise Invalid(f"expected a list, got {type(value).__name__}")
        return tuple(map(item_check, value))
    return check


def _record(cls: Any) -> Check:
    """A NamedTuple sent as a JSON list of its fields, in order."""
    checks = [check_for(hint) for hint in get_type_hints(cls).values()]

    def check(value: Any) -> Any:
        if type(value) is not list or len(value) != len(checks):
            raise Invalid(f"{cls.__name__} must be a list of {len(checks)} values")
        return cls._make(c(v) for c, v in zip(checks, value))
    return check


def check_for(hint: Any) -> Check:
    """The check (and conversion) of a header value declared with type ``hint``."""
    hint = getattr(hint, "__supertype__", hint)  # a NewType's base type
    origin, args = get_origin(hint), get_args(hint)
    if hint in _SCALARS:
        return _SCALARS[hint]
    if hint is dict or (origin is dict and args[1] is Any):
        return _exact(dict)
    if origin is dict:
        return _dict_of(check_for(args[1]))
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = args[0]
        return _tuple_of(_record(item) if hasattr(item, "_fields") else check_for(item))
    raise TypeError(f"no wire encoding for header fields of type {hint!r}")


@dataclass(frozen=True, slots=True)
class Schema:
    """How a small message maps onto frames: JSON fields in the header, bytes fields after it."""
    cls: type
    kind: str
    json_fields: tuple[tuple[str, Check], ...]
    frame_fields: tuple[str, ...]

    @classmethod
    def of(cls, message_cls: type) -> "Schema":
        hints = get_type_hints(message_cls)
        json_fields: list[tuple[str, Check]] = []
        frame_fields: list[str] = []
        for field in fields(message_cls):
            hint = hints[field.name]
            if getattr(hint, "__supertype__", hint) is bytes:
                frame_fields.append(field.name)
            else:
                json_fields.append((field.name, check_for(hint)))
        return cls(message_cls, message_cls.kind, tuple(json_fields), tuple(frame_fields))  # type: ignore[attr-defined]

    def encode(self, msg: Any) -> list[bytes]:
        header = {name: getattr(msg, name) for name, _ in self.json_fields}
        return [self.kind.encode(), dumps(header), *(getattr(msg, name) for name in self.frame_fields)]

    def decode(self, frames: Sequence[bytes]) -> Any:
        header = loads(frames[1])
        if type(header) is not dict:
            raise Invalid("header must be a JSON object")
        missing = [name for name, _ in self.json_fields if name not in header]
        if missing or len(header) != len(self.json_fields):
            unexpected = sorted(set(header) - {name for name, _ in self.json_fields})
            raise Invalid(f"missing fields {missing}, unexpected fields {unexpected}")
        if len(frames) != 2 + len(self.frame_fields):
            raise Invalid(f"{len(frames)} frames, expected {2 + len(self.frame_fields)}")
        values: dict[str, Any] = {}
        for name, check in self.json_fields:
            try:
                values[name] = check(header[name])
            except Invalid as exc:
                raise Invalid(f"field {name!r}: {exc}") from None
        values.update(zip(self.frame_fields, frames[2:]))
        return self.cls(**values)
