"""The forwarder's bookkeeping, fed the frames its capture socket sees (a pure class, no sockets).

The forwarder's data path is ``zmq.proxy_steerable`` (C, no GIL). Its capture
socket copies, in the order the proxy moved them, the (un)subscriptions
coming up from subscribers (``XPUB_VERBOSER``: every one) and the published
frames. The capture is filtered (``INVERT_MATCHING``): it skips the frames of
the topics this tally says have listeners, so Python sees only the frames
nobody hears, which it counts, and the subscriptions, from which it keeps the
listener counts and answers welcome keys. The filter lags the tally by a
moment, so a frame of a topic with listeners that slips through is ignored
here, not counted.

Exact except around the moment a topic gains its first listener or loses
its last. Gaining: the subscriber's socket knows a little before the proxy
reads the subscription, so a frame of the topic in flight then (at most one
burst of the proxy) may be delivered and counted as dropped. Losing: the
capture applies the tally's "no longer filter this topic" at its next
command check (libzmq: about 1 ms), so the topic's frames in that window are
dropped uncounted (and show as forwarded). Frames published after
``subscribe`` returned, while it listens, are never affected (the welcome
comes after the subscription). The capture does not say which way a frame
went: a raw frame starting with byte 0 or 1, which ``publish`` never makes,
would pass for an (un)subscription (publishers hold the broker's token).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Optional

from parsl_lite.messaging import protocol as p

SYNC_PREFIX: Final = b"s"
"""Keys of the frames the forwarder sends through itself to learn that the tally has seen everything before."""

LISTEN, UNLISTEN, WELCOME, SYNCED = "listen", "unlisten", "welcome", "synced"


@dataclass
class Tally:
    listeners: dict[bytes, int] = field(default_factory=dict)
    dropped: int = 0
    synced: int = 0      # the last sync number seen

    def see(self, frame: bytes) -> Optional[tuple[str, bytes]]:
        """Account for one captured frame; what the forwarder must do about it, if anything:
        ``(LISTEN | UNLISTEN, topic key)`` (filter the capture), ``(WELCOME, key)``, ``(SYNCED, key)``.
        Never raises: any bytes a publisher sends are a frame nobody hears at worst."""
        head = frame[:1]
        if head == b"\x01" or head == b"\x00":
            return self._subscription(frame[1:], head == b"\x01")
        key = frame[:frame.find(b"\0") + 1]
        if key in self.listeners:          # heard: the capture's filter had not caught up yet
            return None
        if head == SYNC_PREFIX and key[1:-1].isdigit():
            self.synced = max(self.synced, int(key[1:-1]))
            return SYNCED, key
        if head != p.WELCOME_PREFIX:       # welcomes are ours, not published
            self.dropped += 1
        return None

    def _subscription(self, key: bytes, subscribe: bool) -> Optional[tuple[str, bytes]]:
        count = self.listeners.get(key, 0) + (1 if subscribe else -1)
        if count > 0:
            self.listeners[key] = count
        else:
            self.listeners.pop(key, None)
        prefix = key[:1]
        if subscribe and prefix == p.WELCOME_PREFIX:
            return WELCOME, key
        if prefix == p.TOPIC_PREFIX and key[-1:] == b"\0":
            if subscribe and count == 1:
                return LISTEN, key
            if not subscribe and count <= 0:
                return UNLISTEN, key
        return None

    def topics(self) -> dict[str, int]:
        """Listeners per topic."""
        return {p.key_topic(k): n for k, n in list(self.listeners.items()) if k[:1] == p.TOPIC_PREFIX}


def sync_key(number: int) -> bytes:
    return SYNC_PREFIX + str(number).encode() + b"\0"
