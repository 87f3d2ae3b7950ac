"""Exceptions raised on a worker, carried home with their traceback."""
from __future__ import annotations

import sys
from types import TracebackType
from typing import NoReturn

from tblib import Traceback

from parsl_lite.errors import ParslError
from parsl_lite.serialize.facade import deserialize, serialize


class RemoteTaskError(ParslError):
    """Stands in for a remote exception whose own type could not be unpickled here."""


class RemoteExceptionWrapper:
    """An exception from another process, with its original traceback.

    The exception itself is serialized when it can be (an exception class
    defined in the user's ``__main__`` comes home as that class, see
    ``main_classes.py``); if it cannot (or its type does not exist on this
    side), :meth:`reraise` raises a :class:`RemoteTaskError` with the original
    type's name and message.
    """

    __slots__ = ("type_name", "text", "pickled", "traceback")

    def __init__(self, e_type: type, e_value: BaseException, traceback: TracebackType | None) -> None:
        self.type_name = f"{e_type.__module__}.{e_type.__qualname__}"
        self.text = str(e_value)
        try:
            self.pickled: bytes | None = serialize(e_value)
            deserialize(self.pickled)  # an exception may pickle but fail to unpickle
        except Exception:
            self.pickled = None
        self.traceback = Traceback(traceback).to_dict() if traceback is not None else None

    def get_exception(self) -> BaseException:
        """Rebuild the exception, with the remote traceback attached."""
        exc: BaseException | None = None
        if self.pickled is not None:
            try:
                exc = deserialize(self.pickled)
            except Exception:
                exc = None
        if exc is None:
            exc = RemoteTaskError(f"{self.type_name}: {self.text}")
        if self.traceback is not None:
            exc = exc.with_traceback(Traceback.from_dict(self.traceback).as_traceback())
        return exc

    def reraise(self) -> NoReturn:
        """Raise the remote exception here, with its remote traceback."""
        raise self.get_exception()

    def __repr__(self) -> str:
        return f"RemoteExceptionWrapper({self.type_name}: {self.text})"


def wrap_current_exception() -> RemoteExceptionWrapper:
    """Wrap the exception being handled (call inside ``except``)."""
    e_type, e_value, tb = sys.exc_info()
    assert e_type is not None and e_value is not None
    return RemoteExceptionWrapper(e_type, e_value, tb)
