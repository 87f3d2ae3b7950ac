"""What runs on the worker for each task of the function service: load, call, serialize, never raise.

The endpoint daemon submits :func:`run_faas_task` to its htex with the
task's opaque bytes; the worker imports this module by name, so it keeps its
imports light (``parsl_lite.serialize`` and the faas errors only). Whatever
happens, the worker returns ``(state, payload, started, finished)``: the
service stores ``payload`` as it is and the client turns it back into the
value or the exception.
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from typing import Any, Callable

from parsl_lite.faas.errors import MaxResultSizeExceeded, SerializationVersionError
from parsl_lite.serialize import deserialize, serialize, wrap_current_exception

RunOutcome = tuple[str, bytes, float, float]  # (state, payload, started, finished)

_CACHE_SIZE = 128
# Functions this worker has loaded, by digest of their bytes: a function runs many times, and loading a
# dill body costs far more than hashing it (the htex worker keeps its own functions the same way).
_functions: "OrderedDict[bytes, Callable]" = OrderedDict()


def _load_function(body: bytes) -> Callable:
    digest = hashlib.blake2b(body, digest_size=16).digest()
    function = _functions.get(digest)
    if function is None:
        function = deserialize(body)
        _functions[digest] = function
        if len(_functions) > _CACHE_SIZE:
            _functions.popitem(last=False)
    else:
        _functions.move_to_end(digest)
    return function


def run_faas_task(function_body: bytes, payload: bytes, client_versions: str,
                  max_result_bytes: int) -> RunOutcome:
    """Run one task and return its outcome; never raises.

    Args:
        function_body: the function, as ``parsl_lite.serialize.serialize`` made it on the client.
        payload: ``serialize((args, kwargs))`` from the client.
        client_versions: the client's ``"Python X, parsl_lite Y"``, named if the bytes cannot be read.
        max_result_bytes: the largest serialized value the service accepts.

    Returns:
        ``("success", serialized value, started, finished)``, or ``("failed", ...)`` with a serialized
        ``RemoteExceptionWrapper`` (the function raised: the client re-raises the original type with
        its traceback), a ``SerializationVersionError`` (the bytes cannot be read here) or a
        ``MaxResultSizeExceeded`` (the value is too big).
    """
    started = time.time()
    try:
        function = _load_function(function_body)
        args, kwargs = deserialize(payload)
    except Exception as exc:
        return "failed", _unreadable(exc, client_versions), started, time.time()
    try:
        value = function(*args, **kwargs)
    except BaseException:  # SystemExit and KeyboardInterrupt in user code fail the task, not the worker
        return "failed", _wrapped(), started, time.time()
    finished = time.time()
    try:
        blob = serialize(value, "the function's return value")
    except Exception:
        return "failed", _wrapped(), started, finished
    if len(blob) > max_result_bytes:
        return "failed", serialize(MaxResultSizeExceeded(len(blob), max_result_bytes)), started, finished
    return "success", blob, started, finished


def _unreadable(exc: Exception, client_versions: str) -> bytes:
    """A body or payload this worker cannot load: name both versions, unless they are the same."""
    from parsl_lite.faas.protocol import versions_string  # only on this path: it imports the wire codec

    here = versions_string()
    if client_versions == here:  # not a version mismatch: the original error says more
        try:
            raise exc
        except Exception:
            return _wrapped()
    return serialize(SerializationVersionError(str(exc), client_versions, here))


def _wrapped() -> bytes:
    """The exception being handled, with its traceback, as bytes the client can re-raise."""
    wrapper: Any = wrap_current_exception()
    return serialize(wrapper)
