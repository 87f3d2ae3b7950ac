"""The only place in parsl_lite that pickles.

Data goes through plain :mod:`pickle` (fast, and enough for most arguments);
whatever pickle refuses (lambdas, closures, functions defined in ``__main__`` or
a notebook) goes through :mod:`dill`. Each blob starts with one byte that says
which, so the reader never guesses. Functions are serialized once per process
and then referred to by the digest of their bytes (:class:`FunctionCache`), so
an executor sends a function body once per worker pool, not once per task
(and again when a global it reads was rebound). Bytes bound for another
process send objects of ``__main__`` classes by value, and such a class stays
one class at both ends (``main_classes.py``).
"""
from parsl_lite.serialize.facade import (
    FunctionCache,
    FunctionStore,
    deserialize,
    pack_apply_message,
    serialize,
    serialize_for_transfer,
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
    "serialize_for_transfer",
    "unpack_apply_message",
    "wrap_current_exception",
]
