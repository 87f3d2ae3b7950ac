"""The only place in parsl_lite that pickles.

Data goes through plain :mod:`pickle` (fast, and enough for most arguments);
whatever pickle refuses (lambdas, closures, functions defined in ``__main__`` or
a notebook) goes through :mod:`dill`. Each blob starts with one byte that says
which, so the reader never guesses. Functions are serialized once per process
and then referred to by the digest of their bytes (:class:`FunctionCache`), so
an executor sends a function body once per worker pool, not once per task.
"""
from parsl_lite.serialize.facade import (
    FunctionCache,
    FunctionStore,
    deserialize,
    pack_apply_message,
    serialize,
    unpack_apply_message,
)
from parsl_lite.serialize.remote_error import RemoteExceptionWrapper, wrap_current_exception

__all__ = [
    "FunctionCache",
    "FunctionStore",
    "RemoteExceptionWrapper",
    "deserialize",
    "pack_apply_message",
    "serialize",
    "unpack_apply_message",
    "wrap_current_exception",
]
