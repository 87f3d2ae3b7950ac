"""Talking to functions while they run: topics, durable queues and tables, through a broker.

::

    script / notebook / app on any executor or endpoint
      msg.publish(topic, m) ──XPUB──▶ XSUB ┐                         ┌ XPUB ──▶ msg.subscribe(topic)  (SUB)
                                           └──[broker: forwarder]────┘        (returns once live; ends on a stop)
      msg.queue(name).put / get / ack, msg.table(name).put / get / scan
                            ──DEALER──▶ ROUTER [broker: request loop] ──▶ QueueBook (pure) ──▶ SQLite (WAL)

The broker is its own daemon (``parsl-lite broker start``); clients find it
through ``PARSL_LITE_BROKER_URL`` + ``PARSL_LITE_BROKER_TOKEN`` or
``$PARSL_LITE_HOME/broker/broker.json`` (``paths.py``). The wire is
``protocol.py``; queue bookkeeping is ``book.py`` (pure, fed the time).

    from parsl_lite import messaging as msg
    msg.publish("5", {"x": 1})               # never blocks; nobody listening: dropped, counted
    q = msg.queue("front")                   # created if missing; durable
    q.put({"action": "forward", "doc": 7})
    m = q.get(timeout=5)                     # a Message, or None after at most 5 s
    m.ack()
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

from parsl_lite.messaging.client import BrokerClient, default_client, reset_default_client
from parsl_lite.messaging.components import Component
from parsl_lite.messaging.errors import (
    BrokerAuthError, BrokerError, BrokerNotFound, BrokerUnavailable, MessageTooLarge, MessagingError, NoSuchQueue,
)
from parsl_lite.messaging.queues import Message, Queue, Table, delete_queue
from parsl_lite.messaging.topics import STOP, Subscription, publish, stop, subscribe


def queue(name: str, visibility_timeout_s: Optional[float] = None, max_receives: Optional[int] = None,
          max_bytes: Optional[int] = None) -> Queue:
    """The queue ``name``, created if missing (durable). Settings given here replace the queue's.

    Args:
        visibility_timeout_s: how long a message got but not acked stays invisible (default 30 s).
        max_receives: deliveries without an ack before it goes to the dead-letter queue ``NAME.dead``
            (default: never).
        max_bytes: the largest serialized message ``put`` accepts (default 1 MiB).
    """
    return Queue(name, visibility_timeout_s, max_receives, max_bytes)


def table(name: str) -> Table:
    """The keyed store ``name`` (created on first ``put``)."""
    return Table(name)


def component(name: str, func: Callable[[Any], Any], input_queue: str, replicas: int = 1,
              executor: Union[str, Sequence[str]] = "all") -> Component:
    """Launch ``replicas`` apps (on ``executor``: a label, or "all"), each running ``func(body)`` on every
    message it pulls from ``input_queue``. ``scale(M)`` changes the count while it runs; ``stop()`` drains
    the queue and returns each replica's ``{"replica", "handled", "failed", "results"}``."""
    return Component(name, func, input_queue, replicas, executor)


def worker_env() -> dict[str, str]:
    """The variables that point a process at this process's broker (URL and token)."""
    from parsl_lite.messaging.paths import TOKEN_ENV, URL_ENV
    client = default_client()
    return {URL_ENV: client.url, TOKEN_ENV: client.token}


def worker_init() -> str:
    """Shell lines exporting :func:`worker_env`, for a provider's ``worker_init`` (workers started on other
    hosts do not inherit this environment; the broker must listen on an address they reach)."""
    import shlex
    return "; ".join(f"export {name}={shlex.quote(value)}" for name, value in worker_env().items())


def stats() -> dict[str, Any]:
    """The broker's counters: per queue (length, in flight, oldest age, dead-lettered) and for topics
    (published, dropped with no listener, lost by slow subscribers)."""
    return default_client().stats()


__all__ = ["queue", "delete_queue", "table", "component", "Component", "worker_env", "worker_init", "publish", "subscribe", "stop", "stats", "Queue", "Message", "Table",
           "Subscription", "STOP", "BrokerClient", "default_client", "reset_default_client", "MessagingError",
           "BrokerAuthError", "BrokerError", "BrokerNotFound", "BrokerUnavailable", "MessageTooLarge", "NoSuchQueue"]
