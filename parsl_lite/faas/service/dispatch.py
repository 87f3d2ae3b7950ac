"""The service's side of the endpoint conversation, as a pure state machine (no sockets, clocks or store).

``endpoint_link.py`` feeds it events (a decoded message from a connection, a
store call's answer, a timer tick, a submission) and executes the actions it
returns, in order: sends, store calls, ``on_final``. The time is passed in.

Rules (``faas/protocol.py`` has the conversation)::

    message from a connection with no hello here   -> HelloRequired (this service restarted, or dropped it)
    hello of another protocol version              -> HelloReply(accepted=False), naming both versions
    hello: unknown id, or the connection's key     -> HelloReply(accepted=False) with the reason
           is not the key issued to that endpoint
    hello accepted                                 -> HelloReply(accepted), connected in the store; an older
                                                      connection of the same endpoint is forgotten; then:
        tasks in flight (delivered, no result)     -> requeued and delivered again (the endpoint may have
                                                      lost them; it drops duplicates), or failed with
                                                      EndpointLost once delivered 1 + max_retries times
        tasks waiting-for-ep                       -> delivered in chunks, at most max_outstanding at once
    results                                        -> set_results; ResultsStored for every id now final;
                                                      on_final(ids); room for more deliveries
    silent past heartbeat_threshold_s              -> offline (store: connected False); its tasks stay in
                                                      flight and are delivered again at its next hello
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence, Union

from parsl_lite.faas import protocol as p
from parsl_lite.faas.errors import EndpointLost, FaaSError, MaxResultSizeExceeded
from parsl_lite.faas.service.store import EndpointRecord, TaskRecord
from parsl_lite.serialize import serialize

ResultRow = tuple[str, str, bytes, Optional[float], float]
"""``(task_id, state, result, started, finished)``, as ``Store.set_results`` takes it."""


@dataclass(frozen=True)
class DispatchSettings:
    """Knobs of the dispatcher.

    Attributes:
        service_id: this service instance's id (a new UUID per start), sent in ServiceHeartbeat.
        heartbeat_period_s: how often endpoints report (told to them in HelloReply).
        heartbeat_threshold_s: an endpoint silent this long is offline.
        max_result_bytes: a bigger result is stored as a failed ``MaxResultSizeExceeded``.
        chunk_size: tasks per TaskDelivery message (and per store fetch).
        chunk_bytes: a TaskDelivery closes once its payloads and bodies pass this many bytes.
        max_outstanding: tasks delivered to one endpoint and not yet returned, at most.
        max_retries_on_system_failure: re-deliveries after the endpoint went away holding a task;
            one more and the task fails with ``EndpointLost`` (Globus Compute's name).
    """
    service_id: str
    heartbeat_period_s: float
    heartbeat_threshold_s: float
    max_result_bytes: int
    chunk_size: int = 500
    chunk_bytes: int = 16 * 1024 * 1024
    max_outstanding: int = 5000
    max_retries_on_system_failure: int = 3

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.max_outstanding < 1:
            raise ValueError(f"chunk_size ({self.chunk_size}) and max_outstanding ({self.max_outstanding}) "
                             "must be at least 1")


# ---------------------------------------------------------------- events (in)

@dataclass(frozen=True)
class MessageReceived:
    """A decoded message from the connection ``identity``, which authenticated with CurveZMQ ``key`` (z85)."""
    identity: bytes
    key: str
    message: p.Message
    now: float


@dataclass(frozen=True)
class EndpointLookedUp:
    """The answer to :class:`LookUpEndpoint`: the store's record of the id the hello named (None: unknown)."""
    identity: bytes
    key: str
    hello: p.EndpointHello
    record: Optional[EndpointRecord]
    now: float


@dataclass(frozen=True)
class InFlightLoaded:
    """The answer to :class:`LoadInFlight`: ``(task_id, attempts)`` of the endpoint's tasks in flight."""
    endpoint_id: str
    tasks: tuple[tuple[str, int], ...]
    now: float


@dataclass(frozen=True)
class TasksFetched:
    """The answer to :class:`FetchTasks`, with the function bodies of those tasks (absent: not in the store)."""
    endpoint_id: str
    tasks: tuple[TaskRecord, ...]
    bodies: Mapping[str, bytes]
    now: float


@dataclass(frozen=True)
class ResultsSaved:
    """The answer to :class:`StoreResults`: ``final`` are final in the store, ``rejected`` were not stored
    (unknown ids, or tasks of another endpoint)."""
    identity: bytes
    endpoint_id: str
    final: tuple[str, ...]
    rejected: tuple[str, ...]


@dataclass(frozen=True)
class Tick:
    """The timer: time to look for silent endpoints."""
    now: float


@dataclass(frozen=True)
class Submitted:
    """New tasks for this endpoint are in the store (waiting-for-ep)."""
    endpoint_id: str


@dataclass(frozen=True)
class Cancelled:
    """The store cancelled these tasks of this endpoint."""
    endpoint_id: str
    task_ids: tuple[str, ...]


Event = Union[MessageReceived, EndpointLookedUp, InFlightLoaded, TasksFetched, ResultsSaved, Tick,
              Submitted, Cancelled]


# ---------------------------------------------------------------- actions (out)

@dataclass(frozen=True)
class Send:
    identity: bytes
    message: p.Message


@dataclass(frozen=True)
class LookUpEndpoint:
    """``store.get_endpoint(hello.endpoint_id)``, then feed :class:`EndpointLookedUp`."""
    identity: bytes
    key: str
    hello: p.EndpointHello


@dataclass(frozen=True)
class RecordSeen:
    """``store.set_endpoint_seen(endpoint_id, at, connected, status)``; ``connected=False``: it is offline."""
    endpoint_id: str
    at: float
    connected: bool
    status: Optional[dict] = None


@dataclass(frozen=True)
class LoadInFlight:
    """``store.tasks_in_flight(endpoint_id)``, then feed :class:`InFlightLoaded`."""
    endpoint_id: str


@dataclass(frozen=True)
class Requeue:
    task_ids: tuple[str, ...]


@dataclass(frozen=True)
class FailTasks:
    """``store.fail_tasks(task_ids, result, at)``; ``result`` is the serialized exception."""
    task_ids: tuple[str, ...]
    result: bytes
    at: float


@dataclass(frozen=True)
class FetchTasks:
    """``store.tasks_to_deliver(endpoint_id, limit)`` and the bodies of their functions; feed :class:`TasksFetched`."""
    endpoint_id: str
    limit: int


@dataclass(frozen=True)
class MarkDispatched:
    task_ids: tuple[str, ...]
    at: float


@dataclass(frozen=True)
class MarkRunning:
    task_ids: tuple[str, ...]
    at: float


@dataclass(frozen=True)
class StoreResults:
    """``store.set_results(rows)``; first drop the ``verify`` ids that are not this endpoint's tasks
    (it was not delivered them in this service instance). Then feed :class:`ResultsSaved`."""
    identity: bytes
    endpoint_id: str
    rows: tuple[ResultRow, ...]
    verify: frozenset[str]


@dataclass(frozen=True)
class NotifyFinal:
    """Call ``on_final(task_ids)``: these tasks hold a final state in the store (ids may repeat over time)."""
    task_ids: tuple[str, ...]


Action = Union[Send, LookUpEndpoint, RecordSeen, LoadInFlight, Requeue, FailTasks, FetchTasks, MarkDispatched,
               MarkRunning, StoreResults, NotifyFinal]


# ---------------------------------------------------------------- the state machine

@dataclass
class Session:
    """One hello'd connection of an endpoint in this service instance."""
    identity: bytes
    endpoint_id: str
    key: str
    last_message: float
    outstanding: set[str] = field(default_factory=set)   # delivered, no result yet
    fetch_limit: int = 0         # > 0: a FetchTasks of this limit is out, its TasksFetched not back yet
    backlog: bool = True         # the store may hold waiting-for-ep tasks for it
    last_report: dict = field(default_factory=dict)


class Dispatcher:
    """Endpoint sessions, deliveries and liveness. ``handle(event) -> actions``; nothing else does I/O."""

    def __init__(self, settings: DispatchSettings) -> None:
        self.settings = settings
        self._sessions: dict[bytes, Session] = {}
        self._by_endpoint: dict[str, Session] = {}
        self._on: dict[type, Callable[..., list[Action]]] = {
            MessageReceived: self._message, EndpointLookedUp: self._looked_up, InFlightLoaded: self._in_flight,
            TasksFetched: self._fetched, ResultsSaved: self._saved, Tick: self._tick,
            Submitted: self._submitted, Cancelled: self._cancelled,
        }
        self._on_message: dict[type, Callable[[Session, MessageReceived], list[Action]]] = {
            p.StatusReport: self._status, p.TasksAccepted: lambda s, e: [], p.TaskStarted: self._started,
            p.TaskResults: self._results, p.EndpointBye: self._bye,
        }

    def handle(self, event: Event) -> list[Action]:
        return self._on[type(event)](event)

    def is_online(self, endpoint_id: str) -> bool:
        return endpoint_id in self._by_endpoint

    def session(self, endpoint_id: str) -> Optional[Session]:
        return self._by_endpoint.get(endpoint_id)

    def online_endpoints(self) -> list[str]:
        return list(self._by_endpoint)

    # ------------------------------------------------------------ messages from endpoints
    def _message(self, event: MessageReceived) -> list[Action]:
        message = event.message
        if isinstance(message, p.EndpointHello):
            return self._hello(event, message)
        session = self._sessions.get(event.identity)
        if session is None or session.key != event.key:
            if isinstance(message, p.EndpointBye):
                return []
            return [Send(event.identity, p.HelloRequired(
                f"service {self.settings.service_id} has no session for this connection (the service restarted "
                "or declared the endpoint offline): send EndpointHello"))]
        handler = self._on_message.get(type(message))
        if handler is None:   # a service -> endpoint message sent to us
            return []
        session.last_message = max(session.last_message, event.now)
        return handler(session, event)

    def _hello(self, event: MessageReceived, hello: p.EndpointHello) -> list[Action]:
        if hello.protocol_version != p.PROTOCOL_VERSION:
            return [self._refuse(event.identity, f"protocol version mismatch: the endpoint speaks version "
                                 f"{hello.protocol_version}, this service speaks version {p.PROTOCOL_VERSION}")]
        return [LookUpEndpoint(event.identity, event.key, hello)]

    def _looked_up(self, event: EndpointLookedUp) -> list[Action]:
        reason = self._hello_refusal(event)
        if reason:
            return [self._refuse(event.identity, reason)]
        record = event.record
        assert record is not None
        for old in (self._sessions.get(event.identity), self._by_endpoint.get(record.endpoint_id)):
            if old is not None:   # this connection's earlier hello, or the endpoint's earlier connection
                self._drop(old)
        session = Session(event.identity, record.endpoint_id, event.key, event.now)
        self._sessions[event.identity] = session
        self._by_endpoint[record.endpoint_id] = session
        s = self.settings
        return [Send(event.identity, p.HelloReply(True, "", s.heartbeat_period_s, s.heartbeat_threshold_s,
                                                  s.max_result_bytes, tuple(record.allowed_functions))),
                RecordSeen(record.endpoint_id, event.now, True, None),
                LoadInFlight(record.endpoint_id)]

    def _hello_refusal(self, event: EndpointLookedUp) -> str:
        endpoint_id = event.hello.endpoint_id
        if event.record is None:
            return f"endpoint {endpoint_id} is not registered with this service (unknown or deleted)"
        if event.record.public_key != event.key:   # the key, not the routing identity, says who it is
            return (f"endpoint {endpoint_id}: this connection's CurveZMQ key is not the one issued to the endpoint "
                    "when it registered")
        return ""

    def _refuse(self, identity: bytes, reason: str) -> Send:
        s = self.settings
        return Send(identity, p.HelloReply(False, reason, s.heartbeat_period_s, s.heartbeat_threshold_s,
                                           s.max_result_bytes, ()))

    def _status(self, session: Session, event: MessageReceived) -> list[Action]:
        report = event.message.report  # type: ignore[union-attr]
        session.last_report = report
        return [RecordSeen(session.endpoint_id, event.now, True, report),
                Send(session.identity, p.ServiceHeartbeat(self.settings.service_id))]

    def _started(self, session: Session, event: MessageReceived) -> list[Action]:
        message = event.message
        assert isinstance(message, p.TaskStarted)
        ids = tuple(t for t in message.task_ids if t in session.outstanding)
        return [MarkRunning(ids, message.at)] if ids else []

    def _results(self, session: Session, event: MessageReceived) -> list[Action]:
        message = event.message
        assert isinstance(message, p.TaskResults)
        rows: dict[str, ResultRow] = {}
        for result in message.results:
            rows[result.task_id] = self._row(result)
        verify = frozenset(t for t in rows if t not in session.outstanding)
        if not rows:
            return []
        return [StoreResults(session.identity, session.endpoint_id, tuple(rows.values()), verify)]

    def _row(self, result: p.TaskResult) -> ResultRow:
        started = result.started or None
        limit = self.settings.max_result_bytes
        if len(result.payload) > limit:
            blob = serialize(MaxResultSizeExceeded(len(result.payload), limit))
            return (result.task_id, "failed", blob, started, result.finished)
        return (result.task_id, result.state, result.payload, started, result.finished)

    def _bye(self, session: Session, event: MessageReceived) -> list[Action]:
        message = event.message
        assert isinstance(message, p.EndpointBye)
        self._drop(session)
        status = {**session.last_report, "alive": False, "stopped": True, "reason": message.reason}
        return [RecordSeen(session.endpoint_id, event.now, False, status)]

    def _drop(self, session: Session) -> None:
        self._sessions.pop(session.identity, None)
        if self._by_endpoint.get(session.endpoint_id) is session:
            del self._by_endpoint[session.endpoint_id]

    # ------------------------------------------------------------ deliveries
    def _in_flight(self, event: InFlightLoaded) -> list[Action]:
        session = self._by_endpoint.get(event.endpoint_id)
        if session is None:
            return []
        max_attempts = 1 + self.settings.max_retries_on_system_failure
        lost = tuple(t for t, attempts in event.tasks if attempts >= max_attempts)
        again = tuple(t for t, attempts in event.tasks if attempts < max_attempts)
        actions: list[Action] = []
        if lost:
            error = EndpointLost(event.endpoint_id, f"the endpoint went away holding the task {max_attempts} times "
                                 f"(max_retries_on_system_failure={self.settings.max_retries_on_system_failure})")
            actions += [FailTasks(lost, serialize(error), event.now), NotifyFinal(lost)]
        if again:
            actions.append(Requeue(again))
        session.backlog = True
        return actions + self._maybe_fetch(session)

    def _maybe_fetch(self, session: Session) -> list[Action]:
        """Ask the store for more tasks if some may wait and there is room for a chunk (or nothing is out)."""
        s = self.settings
        room = s.max_outstanding - len(session.outstanding)
        if session.fetch_limit or not session.backlog or room <= 0:
            return []
        if room < s.chunk_size and session.outstanding:
            return []   # wait for a chunk's worth of room rather than fetch a few at a time
        session.fetch_limit = min(room, s.chunk_size)
        session.backlog = False   # until a Submitted, or a full fetch, says there may be more
        return [FetchTasks(session.endpoint_id, session.fetch_limit)]

    def _fetched(self, event: TasksFetched) -> list[Action]:
        session = self._by_endpoint.get(event.endpoint_id)
        if session is None:
            return []   # offline meanwhile: the tasks were not marked, they stay waiting-for-ep
        if len(event.tasks) >= session.fetch_limit:
            session.backlog = True
        session.fetch_limit = 0
        missing = tuple(t.task_id for t in event.tasks if t.function_id not in event.bodies)
        deliver = [t for t in event.tasks if t.function_id in event.bodies]
        actions: list[Action] = []
        if missing:
            error = FaaSError(f"the function of tasks {', '.join(missing[:5])} is not in the service's store")
            actions += [FailTasks(missing, serialize(error), event.now), NotifyFinal(missing)]
        if deliver:
            ids = tuple(t.task_id for t in deliver)
            session.outstanding.update(ids)
            actions.append(MarkDispatched(ids, event.now))
            actions += [Send(session.identity, m) for m in self._chunks(deliver, event.bodies)]
        return actions + self._maybe_fetch(session)

    def _chunks(self, tasks: Sequence[TaskRecord], bodies: Mapping[str, bytes]) -> list[p.TaskDelivery]:
        """TaskDelivery messages of at most ``chunk_size`` tasks and about ``chunk_bytes`` bytes each."""
        out: list[p.TaskDelivery] = []
        items: list[p.TaskItem] = []
        size = 0
        for t in tasks:
            body = bodies[t.function_id]
            items.append(p.TaskItem(t.task_id, t.function_id, body, t.payload, t.versions, t.attempts + 1))
            size += len(body) + len(t.payload)
            if len(items) >= self.settings.chunk_size or size >= self.settings.chunk_bytes:
                out.append(p.TaskDelivery(tuple(items)))
                items, size = [], 0
        if items:
            out.append(p.TaskDelivery(tuple(items)))
        return out

    def _saved(self, event: ResultsSaved) -> list[Action]:
        session = self._by_endpoint.get(event.endpoint_id)
        done = event.final + event.rejected
        actions: list[Action] = []
        if done:
            actions.append(Send(event.identity, p.ResultsStored(done)))
        if event.final:
            actions.append(NotifyFinal(event.final))
        if session is not None:
            session.outstanding.difference_update(done)
            actions += self._maybe_fetch(session)
        return actions

    def _submitted(self, event: Submitted) -> list[Action]:
        session = self._by_endpoint.get(event.endpoint_id)
        if session is None:
            return []   # offline: the tasks wait in the store until its hello
        session.backlog = True
        return self._maybe_fetch(session)

    def _cancelled(self, event: Cancelled) -> list[Action]:
        session = self._by_endpoint.get(event.endpoint_id)
        if session is None or not event.task_ids:
            return []
        session.outstanding.difference_update(event.task_ids)
        return [Send(session.identity, p.CancelTasks(tuple(event.task_ids)))] + self._maybe_fetch(session)

    # ------------------------------------------------------------ liveness
    def _tick(self, event: Tick) -> list[Action]:
        actions: list[Action] = []
        threshold = self.settings.heartbeat_threshold_s
        for session in [s for s in self._sessions.values() if event.now - s.last_message > threshold]:
            self._drop(session)
            actions.append(RecordSeen(session.endpoint_id, session.last_message, False, None))
        return actions
