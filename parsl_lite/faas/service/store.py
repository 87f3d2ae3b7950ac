"""What the function service keeps, behind one small interface: users, tokens, functions, endpoints, tasks.

Two implementations share this interface and one conformance test suite:
``store_sqlite.py`` (the default: one file, WAL) and ``store_postgres.py``
(psycopg 3, for a service that outgrows one file). :func:`open_store` picks
one from a URL (``sqlite:///path/faas.db`` or a path; ``postgresql://...``).

Rules every implementation keeps:

- Each method is one transaction: when it returns, what it wrote survives a
  SIGKILL of the service (SQLite in WAL mode, ``synchronous=NORMAL`` or ``FULL``; PostgreSQL
  commits).
- Methods are called from one thread at a time per store object (the service
  runs them on its store thread); an implementation need not be thread-safe
  beyond that, but must allow other processes to read the same database
  (monitoring, a second service process in tests) without "database is
  locked" errors: SQLite uses WAL and a busy timeout.
- Only hashes of tokens are stored (``token_hash``: hex SHA-256, computed by
  the service); never a token.
- Timestamps are UNIX times (float seconds); ``None`` means "not yet".

Task states (``TaskRecord.state``), funcX's names where it has one::

    waiting-for-ep      accepted and persisted; not yet delivered (its endpoint is offline, or about to get it)
    waiting-for-launch  delivered to the endpoint (dispatched), or acknowledged by it (accepted)
    running             a worker started it
    success / failed    the result (value or exception) is stored
    cancelled           the user cancelled it before it ran
    purged              its result was fetched, kept for the time-to-live, then deleted
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Final, Iterable, Optional, Sequence

WAITING_FOR_EP: Final = "waiting-for-ep"
WAITING_FOR_LAUNCH: Final = "waiting-for-launch"
RUNNING: Final = "running"
SUCCESS: Final = "success"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
PURGED: Final = "purged"
PENDING_STATES: Final = (WAITING_FOR_EP, WAITING_FOR_LAUNCH, RUNNING)
FINAL_STATES: Final = (SUCCESS, FAILED, CANCELLED, PURGED)


@dataclass(frozen=True)
class User:
    user_id: str
    username: str
    is_admin: bool
    created: float


@dataclass(frozen=True)
class FunctionRecord:
    """A registered function. ``shared_with`` holds user ids; ``public`` lets every user run it."""
    function_id: str
    owner_id: str
    name: str
    description: str
    body: bytes                  # as parsl_lite.serialize made it on the client
    public: bool
    shared_with: tuple[str, ...]
    versions: str                # the registering client's "Python X, parsl_lite Y"
    created: float


@dataclass(frozen=True)
class EndpointRecord:
    """A registered endpoint.

    ``public_key`` is the CurveZMQ public key (z85) the service issued it; only
    that key may connect as this endpoint. ``allowed_functions`` empty means any
    function its users may run. ``shared_with`` lists user ids (besides the
    owner) that may send to it; ``public`` lets everyone.
    """
    endpoint_id: str
    owner_id: str
    name: str
    public_key: str
    public: bool
    allowed_functions: tuple[str, ...]
    shared_with: tuple[str, ...]
    created: float
    last_seen: Optional[float] = None      # the last message from it
    connected: bool = False                # a live connection (hello'd, heartbeats within the threshold)
    status: dict = field(default_factory=dict)   # its last StatusReport.report


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    owner_id: str
    function_id: str
    endpoint_id: str
    task_group_id: str
    payload: bytes               # serialized (args, kwargs)
    versions: str                # the submitting client's "Python X, parsl_lite Y"
    state: str
    received: float
    attempts: int = 0            # deliveries so far
    dispatched: Optional[float] = None
    started: Optional[float] = None
    finished: Optional[float] = None
    result: Optional[bytes] = None       # success: the value; failed: the exception (serialized)
    fetched: Optional[float] = None      # first time a client got the final state
    purged: Optional[float] = None


class Store(abc.ABC):
    """The service's persistent state. See the module docstring for the rules."""

    # ------------------------------------------------------------ users and tokens
    @abc.abstractmethod
    def create_user(self, username: str, is_admin: bool = False) -> User:
        """A new user. Raises ``ValueError`` naming the username if it exists."""

    @abc.abstractmethod
    def get_user(self, user_id: str) -> Optional[User]: ...

    @abc.abstractmethod
    def user_by_name(self, username: str) -> Optional[User]: ...

    @abc.abstractmethod
    def add_token(self, user_id: str, token_hash: str, description: str = "") -> None: ...

    @abc.abstractmethod
    def user_for_token(self, token_hash: str) -> Optional[User]: ...

    # ------------------------------------------------------------ functions
    @abc.abstractmethod
    def add_function(self, record: FunctionRecord) -> None: ...

    @abc.abstractmethod
    def get_function(self, function_id: str) -> Optional[FunctionRecord]: ...

    # ------------------------------------------------------------ endpoints
    @abc.abstractmethod
    def add_endpoint(self, record: EndpointRecord) -> None:
        """A new endpoint, or (same id) replace its name, key, sharing and allowed functions."""

    @abc.abstractmethod
    def get_endpoint(self, endpoint_id: str) -> Optional[EndpointRecord]: ...

    @abc.abstractmethod
    def endpoint_by_name(self, owner_id: str, name: str) -> Optional[EndpointRecord]: ...

    @abc.abstractmethod
    def list_endpoints(self) -> list[EndpointRecord]: ...

    @abc.abstractmethod
    def delete_endpoint(self, endpoint_id: str) -> bool: ...

    @abc.abstractmethod
    def set_endpoint_seen(self, endpoint_id: str, at: float, connected: bool,
                          status: Optional[dict] = None) -> None:
        """Record a message from the endpoint (``status``: its report, if this was one) or its loss."""

    @abc.abstractmethod
    def disconnect_all_endpoints(self) -> None:
        """At service start: no endpoint is connected to a process that just started."""

    # ------------------------------------------------------------ tasks
    @abc.abstractmethod
    def add_tasks(self, records: Sequence[TaskRecord]) -> None:
        """Persist new tasks, all or none (one transaction)."""

    @abc.abstractmethod
    def get_tasks(self, task_ids: Iterable[str], with_payload: bool = True) -> dict[str, TaskRecord]:
        """The tasks that exist among ``task_ids`` (unknown ids are absent from the result).

        ``with_payload=False``: their ``payload`` is ``b""`` (not read: a caller answering with states and
        results, e.g. the results WebSocket, need not read megabytes of arguments per task).
        """

    @abc.abstractmethod
    def tasks_to_deliver(self, endpoint_id: str, limit: int) -> list[TaskRecord]:
        """Tasks of this endpoint in state waiting-for-ep, oldest first (at most ``limit``)."""

    @abc.abstractmethod
    def tasks_in_flight(self, endpoint_id: str) -> list[TaskRecord]:
        """Tasks delivered to this endpoint with no result yet (waiting-for-launch or running)."""

    @abc.abstractmethod
    def mark_dispatched(self, task_ids: Sequence[str], at: float) -> None:
        """waiting-for-ep -> waiting-for-launch; ``attempts`` += 1; ``dispatched`` = at (first time only)."""

    @abc.abstractmethod
    def mark_running(self, task_ids: Sequence[str], at: float) -> None:
        """waiting-for-launch -> running, ``started`` = at. Tasks in other states are left alone."""

    @abc.abstractmethod
    def requeue(self, task_ids: Sequence[str]) -> None:
        """Back to waiting-for-ep (their endpoint went away holding them), for re-delivery."""

    @abc.abstractmethod
    def set_results(self, results: Sequence[tuple[str, str, bytes, Optional[float], float]]) -> list[str]:
        """Store ``(task_id, state, result, started, finished)`` of tasks that have no final state yet.

        Idempotent: a task already final (a duplicate result) is left as it is. Returns the ids of
        every task in ``results`` that now holds a final state (new or earlier), so the endpoint can
        forget all of them.
        """

    @abc.abstractmethod
    def fail_tasks(self, task_ids: Sequence[str], result: bytes, at: float) -> None:
        """Pending tasks -> failed with ``result`` (a serialized exception, e.g. ``EndpointLost``)."""

    @abc.abstractmethod
    def cancel_tasks(self, task_ids: Sequence[str], at: float) -> list[str]:
        """Tasks in waiting-for-ep or waiting-for-launch -> cancelled; returns those cancelled."""

    @abc.abstractmethod
    def mark_fetched(self, task_ids: Sequence[str], at: float) -> None:
        """First fetch of a final task: its time-to-live starts (later fetches leave ``fetched`` alone)."""

    @abc.abstractmethod
    def purge_fetched(self, before: float) -> int:
        """Results fetched before ``before`` are deleted; the tasks stay, state ``purged``. Returns how many."""

    @abc.abstractmethod
    def task_group(self, task_group_id: str) -> list[str]:
        """The ids of the tasks submitted with this group id, in submission order."""

    @abc.abstractmethod
    def count_tasks(self) -> dict[str, int]:
        """State -> number of tasks (for status pages and tests)."""

    @abc.abstractmethod
    def close(self) -> None: ...


def open_store(url: str) -> Store:
    """The store for ``url``: ``postgresql://...`` (or ``postgres://``), else an SQLite file path or URL.

    Raises:
        ValueError: a URL of another scheme, naming it.
    """
    if url.startswith(("postgresql://", "postgres://")):
        from parsl_lite.faas.service.store_postgres import PostgresStore
        return PostgresStore(url)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///"):]   # sqlite:///rel/path, sqlite:////abs/path
    elif "://" in url:
        raise ValueError(f"--db {url!r}: use an SQLite file path, sqlite:///PATH or postgresql://...")
    from parsl_lite.faas.service.store_sqlite import SqliteStore
    return SqliteStore(url)
