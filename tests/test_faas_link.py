"""The service's endpoint link (faas/service/endpoint_link.py) on the real wire.

A real EndpointLink on a real SqliteStore, and real zmq DEALER sockets with CurveZMQ keys speaking
faas/protocol.py as an endpoint does. Each test is one asyncio scenario; waits are on conditions (a reply,
a store state), each guarded by a timeout against a hang.
"""
from __future__ import annotations

import asyncio
import os
import stat
import time
import uuid
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import pytest
import zmq
import zmq.asyncio

from parsl_lite.faas import protocol as p
from parsl_lite.faas.errors import EndpointLost
from parsl_lite.faas.service.async_store import AsyncStore
from parsl_lite.faas.service.endpoint_link import EndpointLink
from parsl_lite.faas.service.keys import issue_endpoint_keys, service_keys
from parsl_lite.faas.service.store import (RUNNING, SUCCESS, WAITING_FOR_EP, WAITING_FOR_LAUNCH, EndpointRecord,
                                           FunctionRecord, TaskRecord)
from parsl_lite.serialize import deserialize
from tests.faas_helpers import call, register_endpoint, register_function, start_service, submit

GUARD_S = 20.0   # only against a hang


class Wire:
    """A DEALER with an endpoint's CurveZMQ keys: the endpoint's end. Its routing identity is the ROUTER's choice
    (unique per connection) unless ``identity`` is given (e.g. the endpoint id, as the endpoint daemon sets it)."""

    def __init__(self, ctx: zmq.asyncio.Context, url: str, server_key: str, endpoint_id: str,
                 keys: tuple[str, str], identity: Optional[bytes] = None) -> None:
        self.endpoint_id = endpoint_id
        self.socket = ctx.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.socket.setsockopt(zmq.IDENTITY, identity)
        self.socket.curve_serverkey = server_key.encode()
        self.socket.curve_publickey, self.socket.curve_secretkey = keys[0].encode(), keys[1].encode()
        self.socket.connect(url)
        self.inbox: list[p.Message] = []

    async def send(self, message: p.Message) -> None:
        await self.socket.send_multipart(p.encode(message))

    async def expect(self, kind: type, timeout_s: float = GUARD_S) -> Any:
        """The next message of ``kind`` (others are kept in ``inbox``)."""
        for i, m in enumerate(self.inbox):
            if isinstance(m, kind):
                return self.inbox.pop(i)
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.endpoint_id}: no {kind.__name__} within {timeout_s} s; got {self.inbox}")
            try:
                m = p.decode(await asyncio.wait_for(self.socket.recv_multipart(), left))
            except asyncio.TimeoutError:
                continue
            if isinstance(m, kind):
                return m
            self.inbox.append(m)

    async def hello(self, version: int = p.PROTOCOL_VERSION, endpoint_id: Optional[str] = None) -> p.HelloReply:
        """Say hello until answered: a reconnecting DEALER may be parked until its old connection is gone."""
        message = p.EndpointHello(version, endpoint_id or self.endpoint_id, p.versions_string(), 0)
        return await self.until_answered(message, p.HelloReply)

    async def until_answered(self, message: p.Message, kind: type) -> Any:
        """Send ``message`` every second until a ``kind`` comes back, as an endpoint's heartbeat does: a message
        written while the connection was dropping is lost (at-most-once per send; the protocol re-sends)."""
        deadline = time.monotonic() + GUARD_S
        while True:
            await self.send(message)
            try:
                return await self.expect(kind, timeout_s=1.0)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def close(self) -> None:
        self.socket.close(linger=0)


async def until(predicate: Callable[[], Awaitable[Any]], what: str, timeout_s: float = GUARD_S) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


class World:
    """A store with a user, a function and registered endpoints; the link; the DEALERs' context."""

    def __init__(self, tmp_path: Path) -> None:
        from parsl_lite.faas.service.store_sqlite import SqliteStore
        self.dir = tmp_path / "service"
        self.store = SqliteStore(tmp_path / "faas.db")   # the link's (through AsyncStore, on its thread)
        self.db = SqliteStore(tmp_path / "faas.db")      # the test's own connection to the same file
        self.owner = self.db.create_user("alice").user_id
        self.function_id = str(uuid.uuid4())
        self.db.add_function(FunctionRecord(self.function_id, self.owner, "double", "", b"BODY", False, (),
                                            "Python X", time.time()))
        self.keys: dict[str, tuple[str, str]] = {}
        self.finals: list[str] = []
        self.astore: Optional[AsyncStore] = None
        self.link: Optional[EndpointLink] = None
        self.ctx: Optional[zmq.asyncio.Context] = None

    def register(self, allowed: tuple[str, ...] = ()) -> str:
        endpoint_id = str(uuid.uuid4())
        self.keys[endpoint_id] = issue_endpoint_keys()
        self.db.add_endpoint(EndpointRecord(endpoint_id, self.owner, f"ep-{endpoint_id[:8]}",
                                               self.keys[endpoint_id][0], False, allowed, (), time.time()))
        return endpoint_id

    def submit(self, endpoint_id: str, n: int) -> list[str]:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        now = time.time()
        self.db.add_tasks([TaskRecord(t, self.owner, self.function_id, endpoint_id, "g", f"args{i}".encode(),
                                         "Python X", WAITING_FOR_EP, now + i * 1e-6) for i, t in enumerate(ids)])
        return ids

    async def start(self, port: int = 0, **options: Any) -> EndpointLink:
        if self.astore is None:
            self.astore = AsyncStore(self.store)
            self.ctx = zmq.asyncio.Context()
        options.setdefault("heartbeat_period_s", 1.0)
        self.link = EndpointLink(self.astore, self.dir, "127.0.0.1", port, on_final=self._on_final, **options)
        await self.link.start()
        return self.link

    async def _on_final(self, ids: list[str]) -> None:
        self.finals.extend(ids)

    def wire(self, endpoint_id: str, keys: Optional[tuple[str, str]] = None,
             identity: Optional[bytes] = None) -> Wire:
        assert self.ctx is not None and self.link is not None
        return Wire(self.ctx, self.link.zmq_url, self.link.service_public_key, endpoint_id,
                    keys or self.keys[endpoint_id], identity)

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()
        if self.ctx is not None:
            self.ctx.destroy(linger=0)
        if self.astore is not None:
            self.astore.close()
        else:
            self.store.close()
        self.db.close()


@pytest.fixture
def world(tmp_path, monkeypatch):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path))
    return World(tmp_path)


def run(world: World, scenario: Callable[[World], Awaitable[None]]) -> None:
    async def main() -> None:
        try:
            await scenario(world)
        finally:
            await world.stop()
    asyncio.run(main())


# ---------------------------------------------------------------- keys

def test_service_keypair_is_made_once_with_a_private_secret_and_reused(tmp_path) -> None:
    public, secret = service_keys(tmp_path / "svc")
    assert len(public) == 40 and len(secret) == 40
    mode = stat.S_IMODE(os.stat(tmp_path / "svc" / "service.key_secret").st_mode)
    assert mode == 0o600
    assert service_keys(tmp_path / "svc") == (public, secret)
    assert secret not in (tmp_path / "svc" / "service.key").read_text()
    a, b = issue_endpoint_keys(), issue_endpoint_keys()
    assert a != b and all(len(k) == 40 for k in a)


def test_a_port_in_use_is_an_error_naming_it(world) -> None:
    async def scenario(w: World) -> None:
        first = await w.start()
        port = int(first.zmq_url.rsplit(":", 1)[1])
        second = EndpointLink(w.astore, w.dir, "127.0.0.1", port, heartbeat_period_s=1.0)
        with pytest.raises(OSError, match=f"tcp://127.0.0.1:{port}"):
            await second.start()
        await second.stop()                                   # idempotent after a failed start
    run(world, scenario)


# ---------------------------------------------------------------- hello

def test_hello_accepted_status_answered_and_endpoint_online(world) -> None:
    async def scenario(w: World) -> None:
        other_function = str(uuid.uuid4())
        ep = w.register(allowed=(w.function_id, other_function))
        link = await w.start()
        assert link.zmq_url.startswith("tcp://127.0.0.1:")
        wire = w.wire(ep, identity=ep.encode())           # as the endpoint daemon sets it
        reply = await wire.hello()
        assert reply.accepted and reply.allowed_functions == (w.function_id, other_function)
        assert reply.heartbeat_period_s == 1.0 and reply.max_result_bytes == link.max_result_bytes
        await wire.send(p.StatusReport({"alive": True, "managers": 3}))
        assert (await wire.expect(p.ServiceHeartbeat)).service_id == link.service_id
        record = await until(lambda: _if(w.db.get_endpoint(ep), lambda r: r.status), "the stored report")
        assert record.connected and record.status["managers"] == 3 and link.is_online(ep)
    run(world, scenario)


async def _if(value: Any, test: Callable[[Any], Any]) -> Any:
    return value if value is not None and test(value) else None


def test_hello_refused_for_another_version_a_foreign_key_an_unknown_id(world) -> None:
    async def scenario(w: World) -> None:
        a, b = w.register(), w.register()
        await w.start()
        reply = await w.wire(a).hello(version=p.PROTOCOL_VERSION + 1)
        assert not reply.accepted
        assert f"version {p.PROTOCOL_VERSION + 1}" in reply.reason and f"version {p.PROTOCOL_VERSION}" in reply.reason
        reply = await w.wire(b, keys=w.keys[a]).hello()          # a's key, speaking as b
        assert not reply.accepted and "CurveZMQ key" in reply.reason and b in reply.reason
        unknown = str(uuid.uuid4())
        reply = await w.wire(unknown, keys=w.keys[a]).hello()
        assert not reply.accepted and "not registered" in reply.reason
        assert not w.link.is_online(a) and not w.link.is_online(b)
        assert not w.db.get_endpoint(a).connected and not w.db.get_endpoint(b).connected
    run(world, scenario)


def test_unregistered_key_gets_no_reply_and_the_link_keeps_working_then_allow_key_lets_it_in(world) -> None:
    async def scenario(w: World) -> None:
        good = w.register()
        await w.start()
        stranger_id, stranger_keys = str(uuid.uuid4()), issue_endpoint_keys()
        stranger = w.wire(stranger_id, keys=stranger_keys)
        await stranger.send(p.EndpointHello(p.PROTOCOL_VERSION, stranger_id, "x", 0))
        await stranger.socket.send_multipart([b"garbage"])
        wire = w.wire(good)
        assert (await wire.hello()).accepted                      # after the stranger's attempts
        await wire.send(p.StatusReport({}))
        await wire.expect(p.ServiceHeartbeat)
        assert await stranger.socket.poll(0) == 0                 # nothing came back to it
        # registered now: its key is let in (a DEALER refused at the handshake does not retry: a new one)
        w.db.add_endpoint(EndpointRecord(stranger_id, w.owner, "late", stranger_keys[0], False, (), (),
                                            time.time()))
        w.link.allow_key(stranger_keys[0])
        stranger.close()
        assert (await w.wire(stranger_id, keys=stranger_keys).hello()).accepted
    run(world, scenario)


def test_a_second_connection_claiming_a_connected_endpoints_identity_gets_nothing(world) -> None:
    async def scenario(w: World) -> None:
        a, b = w.register(), w.register()
        await w.start()
        wire = w.wire(a, identity=a.encode())
        await wire.hello()
        thief = w.wire(a, keys=w.keys[b], identity=a.encode())     # a registered key, a's identity
        await thief.send(p.EndpointHello(p.PROTOCOL_VERSION, a, "x", 0))
        w.submit(a, 1)
        w.link.notify_submitted(a)
        assert len((await wire.expect(p.TaskDelivery)).tasks) == 1   # routed to a, not to the newcomer
        await wire.send(p.StatusReport({}))
        await wire.expect(p.ServiceHeartbeat)
        assert await thief.socket.poll(0) == 0
    run(world, scenario)


def test_malformed_frames_are_dropped_and_the_link_answers_the_next_message(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        await w.start()
        wire = w.wire(ep)
        for frames in ([b"garbage"], [b"endpoint_hello", b"not json"], [b"task_results", b'{"results": 7}'],
                       [b"endpoint_hello", b'{"protocol_version": "1"}'], [b"\xff\xfe", b"{}", b"x"]):
            await wire.socket.send_multipart(frames)
        assert (await wire.hello()).accepted
        assert wire.inbox == []
    run(world, scenario)


# ---------------------------------------------------------------- deliveries

def test_waiting_tasks_are_delivered_at_hello_and_new_ones_on_submission(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        waiting = w.submit(ep, 7)
        await w.start(chunk_size=3, max_outstanding=100)
        wire = w.wire(ep)
        assert (await wire.hello()).accepted
        got = [await wire.expect(p.TaskDelivery) for _ in range(3)]
        assert [len(m.tasks) for m in got] == [3, 3, 1]
        items = [t for m in got for t in m.tasks]
        assert [t.task_id for t in items] == waiting
        assert items[0] == p.TaskItem(waiting[0], w.function_id, b"BODY", b"args0", "Python X", 1)
        await until(lambda: _if(w.db.get_tasks(waiting),
                                lambda rs: {r.state for r in rs.values()} == {WAITING_FOR_LAUNCH}), "dispatched")
        more = w.submit(ep, 2)
        w.link.notify_submitted(ep)
        assert [t.task_id for t in (await wire.expect(p.TaskDelivery)).tasks] == more
        await wire.send(p.TaskStarted((more[0],), 123.0))
        record = await until(lambda: _if(w.db.get_tasks([more[0]])[more[0]], lambda r: r.state == RUNNING),
                             "the task running")
        assert record.started == 123.0
    run(world, scenario)


def test_outstanding_bound_holds_back_deliveries_until_results_come(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        ids = w.submit(ep, 10)
        await w.start(chunk_size=2, max_outstanding=4)
        wire = w.wire(ep)
        await wire.hello()
        first = [t for _ in range(2) for t in (await wire.expect(p.TaskDelivery)).tasks]
        assert [t.task_id for t in first] == ids[:4]
        await wire.send(p.StatusReport({}))       # a round trip: nothing more was sent meanwhile
        await wire.expect(p.ServiceHeartbeat)
        assert not any(isinstance(m, p.TaskDelivery) for m in wire.inbox)
        await wire.send(p.TaskResults(tuple(p.TaskResult(t.task_id, "success", b"1", 1.0, 2.0) for t in first[:2])))
        assert [t.task_id for t in (await wire.expect(p.TaskDelivery)).tasks] == ids[4:6]
    run(world, scenario)


def test_reconnected_endpoint_without_results_gets_its_tasks_again(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        ids = w.submit(ep, 3)
        await w.start()
        wire = w.wire(ep)
        await wire.hello()
        first = (await wire.expect(p.TaskDelivery)).tasks
        assert [(t.task_id, t.attempt) for t in first] == [(t, 1) for t in ids]
        await wire.send(p.TasksAccepted(tuple(ids)))
        wire.close()                                 # the endpoint died holding them
        again = w.wire(ep)                           # its next connection (another routing identity)
        assert (await again.hello()).accepted
        second = (await again.expect(p.TaskDelivery)).tasks
        assert [(t.task_id, t.attempt) for t in second] == [(t, 2) for t in ids]
        await until(lambda: _if(w.db.get_tasks(ids), lambda rs: all(r.attempts == 2 for r in rs.values())),
                    "attempts counted")
    run(world, scenario)


def test_a_task_whose_endpoint_keeps_dying_fails_with_endpoint_lost_naming_it(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        [task_id] = w.submit(ep, 1)
        await w.start(max_retries_on_system_failure=1)
        for attempt in (1, 2):
            wire = w.wire(ep)
            assert (await wire.hello()).accepted
            assert [(t.task_id, t.attempt) for t in (await wire.expect(p.TaskDelivery)).tasks] == [(task_id, attempt)]
            wire.close()                                  # SIGKILLed holding it
        wire = w.wire(ep)
        assert (await wire.hello()).accepted
        record = await until(lambda: _if(w.db.get_tasks([task_id])[task_id], lambda r: r.state == "failed"),
                             "the task failed")
        error = deserialize(record.result)
        assert isinstance(error, EndpointLost) and error.endpoint_id == ep and ep in str(error)
        await until(lambda: _if(w.finals, lambda f: task_id in f), "on_final")
        await wire.send(p.StatusReport({}))               # a round trip: no delivery of it came
        await wire.expect(p.ServiceHeartbeat)
        assert not any(isinstance(m, p.TaskDelivery) for m in wire.inbox)
    run(world, scenario)


def test_a_second_connection_of_an_endpoint_takes_over_and_the_first_is_asked_for_hello(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        [task_id] = w.submit(ep, 1)
        await w.start()
        first = w.wire(ep)
        await first.hello()
        assert (await first.expect(p.TaskDelivery)).tasks[0].attempt == 1
        second = w.wire(ep)                          # e.g. a restart while the old socket still lingers
        assert (await second.hello()).accepted
        assert [(t.task_id, t.attempt) for t in (await second.expect(p.TaskDelivery)).tasks] == [(task_id, 2)]
        await first.send(p.StatusReport({}))
        await first.expect(p.HelloRequired)
        assert w.link.is_online(ep)
    run(world, scenario)


def test_results_stored_acknowledged_and_notified_duplicates_acknowledged_again(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        ids = w.submit(ep, 2)
        await w.start()
        wire = w.wire(ep)
        await wire.hello()
        await wire.expect(p.TaskDelivery)
        results = (p.TaskResult(ids[0], "success", b"value", 1.0, 2.0),
                   p.TaskResult(ids[1], "failed", b"exc", 0.0, 3.0))
        await wire.send(p.TaskResults(results))
        assert set((await wire.expect(p.ResultsStored)).task_ids) == set(ids)
        records = w.db.get_tasks(ids)
        assert (records[ids[0]].state, records[ids[0]].result, records[ids[0]].finished) == (SUCCESS, b"value", 2.0)
        assert (records[ids[1]].state, records[ids[1]].result) == ("failed", b"exc")
        await until(lambda: _if(w.finals, lambda f: set(f) == set(ids)), "on_final for both")
        duplicate = (p.TaskResult(ids[0], "failed", b"other", 5.0, 6.0),)
        await wire.send(p.TaskResults(duplicate))     # it missed the ResultsStored and re-sends
        assert (await wire.expect(p.ResultsStored)).task_ids == (ids[0],)
        assert w.db.get_tasks([ids[0]])[ids[0]].result == b"value"
    run(world, scenario)


def test_results_for_another_endpoints_task_are_not_stored(world) -> None:
    async def scenario(w: World) -> None:
        a, b = w.register(), w.register()
        [bs_task] = w.submit(b, 1)
        await w.start()
        wire = w.wire(a)
        await wire.hello()
        await wire.send(p.TaskResults((p.TaskResult(bs_task, "success", b"forged", 1.0, 2.0),)))
        assert (await wire.expect(p.ResultsStored)).task_ids == (bs_task,)   # dropped, so it stops re-sending
        assert w.db.get_tasks([bs_task])[bs_task].state == WAITING_FOR_EP and w.finals == []
    run(world, scenario)


# ---------------------------------------------------------------- restarts and liveness

def test_link_restart_has_a_new_service_id_and_asks_for_hello_again(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        first = await w.start()
        port = int(first.zmq_url.rsplit(":", 1)[1])
        wire = w.wire(ep)
        await wire.hello()
        await first.stop()
        assert not w.db.get_endpoint(ep).connected
        second = await w.start(port=port)
        assert second.service_id != first.service_id
        assert second.service_public_key == first.service_public_key      # the same keypair from its dir
        reply = await wire.until_answered(p.StatusReport({}), p.HelloRequired)   # it reconnects by itself
        assert second.service_id in reply.reason
        assert (await wire.hello()).accepted
        await wire.send(p.StatusReport({}))
        assert (await wire.expect(p.ServiceHeartbeat)).service_id == second.service_id
    run(world, scenario)


def test_silent_endpoint_goes_offline_in_the_store_and_comes_back_with_its_tasks(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        ids = w.submit(ep, 1)
        link = await w.start(heartbeat_period_s=0.1, heartbeat_threshold_s=0.5)
        wire = w.wire(ep)
        await wire.hello()
        await wire.expect(p.TaskDelivery)
        assert w.db.get_endpoint(ep).connected
        await until(lambda: _if(w.db.get_endpoint(ep), lambda r: not r.connected), "the endpoint offline")
        assert not link.is_online(ep)
        assert w.db.get_tasks(ids)[ids[0]].state == WAITING_FOR_LAUNCH          # still in flight
        await wire.until_answered(p.StatusReport({}), p.HelloRequired)
        assert (await wire.hello()).accepted
        assert [(t.task_id, t.attempt) for t in (await wire.expect(p.TaskDelivery)).tasks] == [(ids[0], 2)]
    run(world, scenario)


def test_bye_records_a_clean_stop(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        link = await w.start()
        wire = w.wire(ep)
        await wire.hello()
        await wire.send(p.EndpointBye("parsl-lite endpoint stop"))
        record = await until(lambda: _if(w.db.get_endpoint(ep), lambda r: r.status.get("stopped")), "the bye")
        assert not record.connected and record.status["reason"] == "parsl-lite endpoint stop"
        assert not link.is_online(ep)
    run(world, scenario)


def test_cancel_is_sent_to_the_online_endpoint(world) -> None:
    async def scenario(w: World) -> None:
        ep = w.register()
        ids = w.submit(ep, 2)
        await w.start()
        wire = w.wire(ep)
        await wire.hello()
        await wire.expect(p.TaskDelivery)
        w.db.cancel_tasks([ids[1]], time.time())
        w.link.notify_cancelled(ep, [ids[1]])
        assert (await wire.expect(p.CancelTasks)).task_ids == (ids[1],)
    run(world, scenario)


# ---------------------------------------------------------------- inside the service process

def test_through_the_service_process_registration_delivery_results_and_a_sigkill(tmp_path, monkeypatch) -> None:
    """Registered over HTTP, tasks submitted over HTTP, the service SIGKILLed holding a delivered task."""
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))
    service = start_service(tmp_path, heartbeat_period=0.5)
    reg = register_endpoint(service)
    function_id = register_function(service)
    ep = reg["endpoint_id"]

    async def scenario() -> None:
        ctx = zmq.asyncio.Context()
        try:
            wire = Wire(ctx, reg["zmq_url"], reg["service_public_key"], ep,
                        (reg["endpoint_public_key"], reg["endpoint_secret_key"]))
            assert (await wire.hello()).accepted
            status, body = submit(service, function_id, ep, n=2)
            assert status == 200, body
            ids = body["task_ids"]
            delivered = [t for t in (await wire.expect(p.TaskDelivery)).tasks]
            assert [(t.task_id, t.attempt, t.function_body) for t in delivered] == [(i, 1, b"function body")
                                                                                   for i in ids]
            await wire.send(p.TaskResults((p.TaskResult(ids[0], "success", b"v", 1.0, 2.0),)))
            assert (await wire.expect(p.ResultsStored)).task_ids == (ids[0],)
            status, task = call(service, "GET", f"/v1/tasks/{ids[0]}")
            assert (status, task["status"]) == (200, "success")
            service.kill()                                       # holding ids[1]
            service.restart()
            await wire.until_answered(p.StatusReport({}), p.HelloRequired)   # it reconnects by itself
            assert (await wire.hello()).accepted
            again = (await wire.expect(p.TaskDelivery)).tasks
            assert [(t.task_id, t.attempt) for t in again] == [(ids[1], 2)]
            await wire.send(p.TaskResults((p.TaskResult(ids[1], "success", b"w", 1.0, 2.0),)))
            assert (await wire.expect(p.ResultsStored)).task_ids == (ids[1],)
            status, task = call(service, "GET", f"/v1/tasks/{ids[1]}")
            assert (status, task["status"]) == (200, "success")
            status, info = call(service, "GET", f"/v1/endpoints/{ep}/status")
            assert info["status"] == "online"
        finally:
            ctx.destroy(linger=0)

    try:
        asyncio.run(scenario())
    finally:
        service.stop()
