"""Exceptions of ``parsl_lite.messaging`` (client and broker), under :class:`parsl_lite.errors.ParslError`."""
from __future__ import annotations

from typing import Any

from parsl_lite.errors import ParslError


class MessagingError(ParslError):
    """Base class of the messaging exceptions."""


class MalformedMessage(MessagingError):
    """Bytes from a peer are not a valid message of ``messaging/protocol.py``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"malformed message: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason,))


class BrokerNotFound(MessagingError):
    """No broker address: neither the environment nor ``$PARSL_LITE_HOME/broker/broker.json`` names one."""


class BrokerUnavailable(MessagingError):
    """The broker did not answer a request within its timeout (it is down, or restarting)."""


class BrokerAuthError(MessagingError):
    """The broker refused the token (or the protocol version); the message says which and where it came from."""


class MessageTooLarge(MessagingError):
    """A message is bigger than its queue's (or topic's) limit; refused before anything is sent."""

    def __init__(self, where: str, size: int, limit: int) -> None:
        self.where, self.size, self.limit = where, size, limit
        super().__init__(f"message for {where} is {size} bytes; the limit is {limit} bytes")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.where, self.size, self.limit))


class NoSuchQueue(MessagingError):
    """The queue does not exist (it was deleted, or never declared)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"queue {name!r} does not exist (deleted, or never created with msg.queue({name!r}))")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name,))


class BrokerError(MessagingError):
    """The broker refused a request for another reason (``code`` names it)."""

    def __init__(self, code: str, text: str) -> None:
        self.code, self.text = code, text
        super().__init__(f"{code}: {text}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.text))
