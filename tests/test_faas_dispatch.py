"""The service's endpoint dispatcher (faas/service/dispatch.py): events in, actions out; no process, socket or clock.

The last tests run the dispatcher against a real SqliteStore (a tiny synchronous shell executes its store
actions), so the rules are checked together with the store's real answers.
"""
from __future__ import annotations

import random
import uuid
from typing import Optional

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from parsl_lite.faas import protocol as p
from parsl_lite.faas.errors import EndpointLost, FaaSError, MaxResultSizeExceeded
from parsl_lite.faas.service import dispatch as d
from parsl_lite.faas.service.store import (FAILED, FINAL_STATES, RUNNING, SUCCESS, WAITING_FOR_EP,
                                           WAITING_FOR_LAUNCH, EndpointRecord, FunctionRecord, Store, TaskRecord)
from parsl_lite.serialize import deserialize

EP = str(uuid.uuid4())
IDENT = EP.encode()
KEY = "k" * 40
OTHER_KEY = "o" * 40
SID = "service-1"


def settings_(**kw) -> d.DispatchSettings:
    base = dict(service_id=SID, heartbeat_period_s=1.0, heartbeat_threshold_s=4.0, max_result_bytes=1000,
                chunk_size=3, max_outstanding=7, max_retries_on_system_failure=2)
    base.update(kw)
    return d.DispatchSettings(**base)


def record(endpoint_id: str = EP, key: str = KEY, allowed: tuple[str, ...] = ()) -> EndpointRecord:
    return EndpointRecord(endpoint_id, "owner", "laptop", key, False, allowed, (), 0.0)


def task(task_id: str, attempts: int = 0, function_id: str = "f1") -> TaskRecord:
    return TaskRecord(task_id, "owner", function_id, EP, "g", b"payload-" + task_id.encode(), "Python X",
                      WAITING_FOR_EP, 0.0, attempts=attempts)


def hello(version: int = p.PROTOCOL_VERSION, endpoint_id: str = EP) -> p.EndpointHello:
    return p.EndpointHello(version, endpoint_id, "Python X", 0)


def msg(message: p.Message, now: float = 10.0, identity: bytes = IDENT, key: str = KEY) -> d.MessageReceived:
    return d.MessageReceived(identity, key, message, now)


def of(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def sent(actions: list, kind: type) -> list:
    return [a.message for a in actions if isinstance(a, d.Send) and isinstance(a.message, kind)]


def connect(disp: d.Dispatcher, now: float = 10.0, in_flight: tuple = (), allowed: tuple = ()) -> list:
    """Hello, the endpoint's record, its tasks in flight: the actions after InFlightLoaded."""
    first = disp.handle(msg(hello(), now))
    assert first == [d.LookUpEndpoint(IDENT, KEY, hello())]
    accepted = disp.handle(d.EndpointLookedUp(IDENT, KEY, hello(), record(allowed=allowed), now))
    assert sent(accepted, p.HelloReply)[0].accepted
    assert of(accepted, d.LoadInFlight) == [d.LoadInFlight(EP)]
    return disp.handle(d.InFlightLoaded(EP, in_flight, now))


def fetched(disp: d.Dispatcher, tasks: list[TaskRecord], now: float = 10.0) -> list:
    return disp.handle(d.TasksFetched(EP, tuple(tasks), {"f1": b"BODY"}, now))


# ---------------------------------------------------------------- hello

def test_message_without_hello_gets_hello_required() -> None:
    disp = d.Dispatcher(settings_())
    for message in (p.StatusReport({"alive": True}), p.TasksAccepted(("t",)), p.TaskResults(())):
        actions = disp.handle(msg(message))
        [reply] = sent(actions, p.HelloRequired)
        assert SID in reply.reason and len(actions) == 1
    assert disp.handle(msg(p.EndpointBye("stopping"))) == []   # nothing to say to a leaving endpoint


def test_hello_of_another_version_is_refused_naming_both_versions() -> None:
    disp = d.Dispatcher(settings_())
    [action] = disp.handle(msg(hello(version=p.PROTOCOL_VERSION + 7)))
    assert isinstance(action, d.Send) and isinstance(action.message, p.HelloReply)
    assert not action.message.accepted
    assert f"version {p.PROTOCOL_VERSION + 7}" in action.message.reason
    assert f"version {p.PROTOCOL_VERSION}" in action.message.reason
    assert not disp.is_online(EP)


@pytest.mark.parametrize("case", ["unknown", "wrong_key"])
def test_hello_refused_with_the_reason(case: str) -> None:
    disp = d.Dispatcher(settings_())
    identity, key, rec = IDENT, KEY, record()
    if case == "unknown":
        rec = None
    else:
        key = OTHER_KEY          # another registered endpoint's key, naming this endpoint
    actions = disp.handle(d.EndpointLookedUp(identity, key, hello(), rec, 10.0))
    [reply] = sent(actions, p.HelloReply)
    assert len(actions) == 1 and not reply.accepted and EP in reply.reason
    assert {"unknown": "not registered", "wrong_key": "CurveZMQ key"}[case] in reply.reason
    assert not disp.is_online(EP)
    assert sent(disp.handle(msg(p.StatusReport({}), identity=identity, key=key)), p.HelloRequired)


def test_accepted_hello_replies_records_online_and_sends_allowed_functions() -> None:
    disp = d.Dispatcher(settings_(heartbeat_period_s=2.5, heartbeat_threshold_s=9.0, max_result_bytes=123))
    disp.handle(msg(hello()))
    actions = disp.handle(d.EndpointLookedUp(IDENT, KEY, hello(), record(allowed=("f1", "f2")), 10.0))
    [reply] = sent(actions, p.HelloReply)
    assert reply == p.HelloReply(True, "", 2.5, 9.0, 123, ("f1", "f2"))
    assert of(actions, d.RecordSeen) == [d.RecordSeen(EP, 10.0, True, None)]
    assert disp.is_online(EP)


def test_a_new_connection_of_the_endpoint_replaces_the_old_one() -> None:
    """The key says who it is; the routing identity is only the connection (the ROUTER may assign it)."""
    disp = d.Dispatcher(settings_())
    connect(disp)
    fetched(disp, [task("t0")])
    other = b"\x00k\x8bE\x12"                 # a ROUTER-assigned routing id
    disp.handle(msg(hello(), identity=other))
    actions = disp.handle(d.EndpointLookedUp(other, KEY, hello(), record(), 11.0))
    assert sent(actions, p.HelloReply)[0].accepted and all(a.identity == other for a in of(actions, d.Send))
    assert disp.session(EP).identity == other and disp.session(EP).outstanding == set()
    assert sent(disp.handle(msg(p.StatusReport({}))), p.HelloRequired)          # the old connection
    assert sent(disp.handle(msg(p.StatusReport({}), identity=other)), p.ServiceHeartbeat)
    assert disp.handle(d.Tick(11.0 + 3.9)) == []                                 # the old one is not tracked


def test_a_message_with_another_key_than_the_hello_needs_its_own_hello() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    assert sent(disp.handle(msg(p.StatusReport({}), key=OTHER_KEY)), p.HelloRequired)
    assert sent(disp.handle(msg(p.StatusReport({}))), p.ServiceHeartbeat)


# ---------------------------------------------------------------- deliveries

def test_waiting_tasks_delivered_at_hello_in_chunks_within_the_outstanding_bound() -> None:
    disp = d.Dispatcher(settings_(chunk_size=3, max_outstanding=7))
    assert of(connect(disp), d.FetchTasks) == [d.FetchTasks(EP, 3)]
    actions = fetched(disp, [task(f"t{i}") for i in range(3)])
    assert of(actions, d.MarkDispatched) == [d.MarkDispatched(("t0", "t1", "t2"), 10.0)]
    [delivery] = sent(actions, p.TaskDelivery)
    assert [t.task_id for t in delivery.tasks] == ["t0", "t1", "t2"]
    assert delivery.tasks[0] == p.TaskItem("t0", "f1", b"BODY", b"payload-t0", "Python X", 1)
    assert actions.index(of(actions, d.MarkDispatched)[0]) < actions.index(of(actions, d.Send)[0])
    assert of(actions, d.FetchTasks) == [d.FetchTasks(EP, 3)]       # a full fetch: there may be more
    actions = fetched(disp, [task(f"t{i}") for i in range(3, 6)])
    assert of(actions, d.FetchTasks) == []       # room for 1 < a chunk while 6 are out: wait
    assert len(disp.session(EP).outstanding) == 6
    actions = disp.handle(d.ResultsSaved(IDENT, EP, ("t0", "t1"), ()))
    assert of(actions, d.FetchTasks) == [d.FetchTasks(EP, 3)]       # room for 3 again


def test_a_chunk_closes_at_its_byte_bound() -> None:
    disp = d.Dispatcher(settings_(chunk_size=10, max_outstanding=10, chunk_bytes=30))
    connect(disp)
    actions = fetched(disp, [task(f"t{i}") for i in range(5)])   # each task: 4 + 10 bytes
    assert [len(m.tasks) for m in sent(actions, p.TaskDelivery)] == [3, 2]


def test_a_fetch_of_fewer_than_asked_stops_fetching_until_a_submission() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    assert of(fetched(disp, [task("t0")]), d.FetchTasks) == []
    assert disp.handle(d.Submitted(EP)) == [d.FetchTasks(EP, 3)]
    assert disp.handle(d.Submitted(EP)) == []                    # one fetch out at a time
    assert of(fetched(disp, []), d.FetchTasks) == [d.FetchTasks(EP, 3)]   # the submission during the fetch
    assert of(fetched(disp, []), d.FetchTasks) == []


def test_submitted_for_an_offline_endpoint_waits_for_its_hello() -> None:
    disp = d.Dispatcher(settings_())
    assert disp.handle(d.Submitted(EP)) == []
    assert of(connect(disp), d.FetchTasks) == [d.FetchTasks(EP, 3)]


def test_task_whose_function_is_missing_fails_instead_of_blocking() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    actions = disp.handle(d.TasksFetched(EP, (task("t0"), task("t1", function_id="gone")), {"f1": b"B"}, 10.0))
    [fail] = of(actions, d.FailTasks)
    assert fail.task_ids == ("t1",) and isinstance(deserialize(fail.result), FaaSError)
    assert of(actions, d.NotifyFinal) == [d.NotifyFinal(("t1",))]
    assert [t.task_id for t in sent(actions, p.TaskDelivery)[0].tasks] == ["t0"]


def test_task_started_marks_only_tasks_delivered_to_this_endpoint() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    fetched(disp, [task("t0")])
    assert disp.handle(msg(p.TaskStarted(("t0", "not-mine"), 12.5))) == [d.MarkRunning(("t0",), 12.5)]
    assert disp.handle(msg(p.TaskStarted(("not-mine",), 12.5))) == []
    assert disp.handle(msg(p.TasksAccepted(("t0",)))) == []


def test_cancelled_tasks_are_named_to_the_endpoint_and_free_their_room() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    fetched(disp, [task("t0"), task("t1")])
    actions = disp.handle(d.Cancelled(EP, ("t1",)))
    assert sent(actions, p.CancelTasks) == [p.CancelTasks(("t1",))]
    assert disp.session(EP).outstanding == {"t0"}
    assert disp.handle(d.Cancelled(str(uuid.uuid4()), ("x",))) == []   # an offline endpoint: nothing to send


# ---------------------------------------------------------------- results

def result(task_id: str, payload: bytes = b"42", state: str = "success") -> p.TaskResult:
    return p.TaskResult(task_id, state, payload, 11.0, 12.0)


def test_results_are_stored_then_acknowledged_then_notified() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    fetched(disp, [task("t0"), task("t1")])
    [store] = disp.handle(msg(p.TaskResults((result("t0"), result("t1", b"E", "failed")))))
    assert store == d.StoreResults(IDENT, EP, (("t0", "success", b"42", 11.0, 12.0),
                                               ("t1", "failed", b"E", 11.0, 12.0)), frozenset())
    actions = disp.handle(d.ResultsSaved(IDENT, EP, ("t0", "t1"), ()))
    assert actions[:2] == [d.Send(IDENT, p.ResultsStored(("t0", "t1"))), d.NotifyFinal(("t0", "t1"))]
    assert disp.session(EP).outstanding == set()


def test_duplicate_and_unknown_results_are_verified_and_still_acknowledged() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    fetched(disp, [task("t0")])
    disp.handle(msg(p.TaskResults((result("t0"),))))
    disp.handle(d.ResultsSaved(IDENT, EP, ("t0",), ()))
    # the endpoint missed the ResultsStored and sends t0 again, with a result for a task it never had
    [store] = disp.handle(msg(p.TaskResults((result("t0"), result("forged")))))
    assert store.verify == frozenset({"t0", "forged"})
    actions = disp.handle(d.ResultsSaved(IDENT, EP, ("t0",), ("forged",)))
    assert sent(actions, p.ResultsStored) == [p.ResultsStored(("t0", "forged"))]   # both: stop re-sending
    assert of(actions, d.NotifyFinal) == [d.NotifyFinal(("t0",))]


def test_a_result_over_the_limit_is_stored_as_max_result_size_exceeded() -> None:
    disp = d.Dispatcher(settings_(max_result_bytes=10))
    connect(disp)
    fetched(disp, [task("t0")])
    [store] = disp.handle(msg(p.TaskResults((result("t0", b"x" * 11),))))
    task_id, state, blob, _, _ = store.rows[0]
    error = deserialize(blob)
    assert (task_id, state) == ("t0", "failed") and isinstance(error, MaxResultSizeExceeded)
    assert (error.size, error.limit) == (11, 10)


# ---------------------------------------------------------------- status, bye, liveness

def test_status_report_is_stored_and_answered_with_the_service_id() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    actions = disp.handle(msg(p.StatusReport({"alive": True, "managers": 2}), now=11.0))
    assert actions == [d.RecordSeen(EP, 11.0, True, {"alive": True, "managers": 2}),
                       d.Send(IDENT, p.ServiceHeartbeat(SID))]


def test_bye_marks_the_endpoint_stopped_not_lost() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    disp.handle(msg(p.StatusReport({"managers": 1})))
    [seen] = disp.handle(msg(p.EndpointBye("parsl-lite endpoint stop"), now=12.0))
    assert (seen.endpoint_id, seen.at, seen.connected) == (EP, 12.0, False)
    assert seen.status == {"managers": 1, "alive": False, "stopped": True, "reason": "parsl-lite endpoint stop"}
    assert not disp.is_online(EP)


def test_silent_endpoint_goes_offline_after_the_threshold_only() -> None:
    disp = d.Dispatcher(settings_(heartbeat_threshold_s=4.0))
    connect(disp, now=10.0)
    disp.handle(msg(p.StatusReport({}), now=13.0))
    assert disp.handle(d.Tick(17.0)) == []                     # 4 s silent: not past the threshold
    assert disp.handle(d.Tick(17.5)) == [d.RecordSeen(EP, 13.0, False, None)]
    assert not disp.is_online(EP)
    assert disp.handle(d.Tick(30.0)) == []                     # said once
    assert sent(disp.handle(msg(p.StatusReport({}), now=31.0)), p.HelloRequired)


def test_lost_endpoint_gets_its_tasks_again_at_its_next_hello_with_the_next_attempt() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp, now=10.0)
    first = sent(fetched(disp, [task("t0"), task("t1")]), p.TaskDelivery)[0]
    assert [t.attempt for t in first.tasks] == [1, 1]
    disp.handle(d.Tick(100.0))                                  # lost, holding t0 and t1
    actions = connect(disp, now=101.0, in_flight=(("t0", 1), ("t1", 1)))
    assert of(actions, d.Requeue) == [d.Requeue(("t0", "t1"))]
    assert of(actions, d.FetchTasks) == [d.FetchTasks(EP, 3)]
    assert actions.index(of(actions, d.Requeue)[0]) < actions.index(of(actions, d.FetchTasks)[0])
    again = sent(fetched(disp, [task("t0", attempts=1), task("t1", attempts=1)], 101.0), p.TaskDelivery)[0]
    assert [(t.task_id, t.attempt) for t in again.tasks] == [("t0", 2), ("t1", 2)]


def test_a_task_lost_too_often_fails_with_endpoint_lost() -> None:
    disp = d.Dispatcher(settings_(max_retries_on_system_failure=2))
    actions = connect(disp, in_flight=(("t0", 3), ("t1", 2)))
    [fail] = of(actions, d.FailTasks)
    assert fail.task_ids == ("t0",)
    error = deserialize(fail.result)
    assert isinstance(error, EndpointLost) and error.endpoint_id == EP
    assert "max_retries_on_system_failure=2" in str(error)
    assert of(actions, d.NotifyFinal) == [d.NotifyFinal(("t0",))]
    assert of(actions, d.Requeue) == [d.Requeue(("t1",))]


def test_a_second_hello_on_a_live_session_starts_it_afresh() -> None:
    disp = d.Dispatcher(settings_())
    connect(disp)
    fetched(disp, [task("t0")])
    actions = connect(disp, now=11.0, in_flight=(("t0", 1),))   # the endpoint restarted before it was missed
    assert of(actions, d.Requeue) == [d.Requeue(("t0",))]
    assert disp.session(EP).outstanding == set()


# ---------------------------------------------------------------- against a real store

class Shell:
    """The smallest synchronous shell: executes the dispatcher's actions on a real store, keeps the sends."""

    def __init__(self, store: Store, disp: d.Dispatcher) -> None:
        self.store, self.disp = store, disp
        self.outbox: list[p.Message] = []
        self.finals: list[str] = []

    def feed(self, event: d.Event) -> None:
        queue = [event]
        while queue:
            for action in self.disp.handle(queue.pop(0)):
                follow = self._do(action)
                if follow is not None:
                    queue.append(follow)

    def _do(self, a: d.Action) -> Optional[d.Event]:   # noqa: C901 - one line per action kind
        s, now = self.store, 50.0
        if isinstance(a, d.Send):
            self.outbox.append(a.message)
        elif isinstance(a, d.LookUpEndpoint):
            return d.EndpointLookedUp(a.identity, a.key, a.hello, s.get_endpoint(a.hello.endpoint_id), now)
        elif isinstance(a, d.RecordSeen):
            s.set_endpoint_seen(a.endpoint_id, a.at, a.connected, a.status)
        elif isinstance(a, d.LoadInFlight):
            return d.InFlightLoaded(a.endpoint_id, tuple((t.task_id, t.attempts)
                                                         for t in s.tasks_in_flight(a.endpoint_id)), now)
        elif isinstance(a, d.Requeue):
            s.requeue(a.task_ids)
        elif isinstance(a, d.FailTasks):
            s.fail_tasks(a.task_ids, a.result, a.at)
        elif isinstance(a, d.FetchTasks):
            tasks = s.tasks_to_deliver(a.endpoint_id, a.limit)
            bodies = {t.function_id: s.get_function(t.function_id).body for t in tasks}
            return d.TasksFetched(a.endpoint_id, tuple(tasks), bodies, now)
        elif isinstance(a, d.MarkDispatched):
            s.mark_dispatched(a.task_ids, a.at)
        elif isinstance(a, d.MarkRunning):
            s.mark_running(a.task_ids, a.at)
        elif isinstance(a, d.StoreResults):
            mine = {t for t, r in s.get_tasks(a.verify).items() if r.endpoint_id == a.endpoint_id}
            rows = [r for r in a.rows if r[0] not in a.verify or r[0] in mine]
            final = tuple(s.set_results(rows)) if rows else ()
            return d.ResultsSaved(a.identity, a.endpoint_id, final,
                                  tuple(r[0] for r in a.rows if r[0] in a.verify and r[0] not in mine))
        elif isinstance(a, d.NotifyFinal):
            self.finals.extend(a.task_ids)
        return None

    def deliveries(self) -> list[p.TaskItem]:
        items = [t for m in self.outbox if isinstance(m, p.TaskDelivery) for t in m.tasks]
        self.outbox = [m for m in self.outbox if not isinstance(m, p.TaskDelivery)]
        return items


@pytest.fixture
def real_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path))
    from parsl_lite.faas.service.store_sqlite import SqliteStore
    store = SqliteStore(tmp_path / "faas.db")
    user = store.create_user("alice")
    store.add_function(FunctionRecord("f1", user.user_id, "f", "", b"BODY", False, (), "Python X", 0.0))
    store.add_endpoint(EndpointRecord(EP, user.user_id, "laptop", KEY, False, (), (), 0.0))
    yield store, user.user_id
    store.close()


def submit(store: Store, owner: str, n: int) -> list[str]:
    ids = [str(uuid.uuid4()) for _ in range(n)]
    store.add_tasks([TaskRecord(t, owner, "f1", EP, "g", b"args", "Python X", WAITING_FOR_EP, float(i))
                     for i, t in enumerate(ids)])
    return ids


def test_with_a_real_store_a_lost_endpoint_gets_every_task_once_more_and_all_finish(real_store) -> None:
    store, owner = real_store
    disp = d.Dispatcher(settings_(chunk_size=4, max_outstanding=9))
    shell = Shell(store, disp)
    ids = submit(store, owner, 25)
    shell.feed(msg(hello()))
    first = shell.deliveries()
    assert len(first) == 8 and all(t.attempt == 1 for t in first)    # two chunks; room for 1 < a chunk
    shell.feed(msg(p.TaskStarted((first[0].task_id,), 51.0)))
    assert store.get_tasks([first[0].task_id])[first[0].task_id].state == RUNNING
    shell.feed(d.Tick(1000.0))                                         # lost holding 8 tasks
    assert not store.get_endpoint(EP).connected
    assert {r.state for r in store.get_tasks(ids).values()} == {WAITING_FOR_EP, WAITING_FOR_LAUNCH, RUNNING}
    shell.feed(msg(hello(), now=1001.0))
    again = shell.deliveries()
    assert {t.task_id for t in again} == {t.task_id for t in first} and all(t.attempt == 2 for t in again)
    done: set[str] = set()
    while len(done) < len(ids):
        batch = again or shell.deliveries()
        again = []
        assert batch, "no delivery while tasks are pending"
        shell.feed(msg(p.TaskResults(tuple(result(t.task_id) for t in batch)), now=1002.0))
        done.update(t.task_id for t in batch)
    assert store.count_tasks()[SUCCESS] == 25 and sorted(shell.finals) == sorted(ids)
    acked = {t for m in shell.outbox if isinstance(m, p.ResultsStored) for t in m.task_ids}
    assert acked == set(ids)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_any_mix_of_losses_duplicates_and_results_ends_with_every_task_final_once(real_store, seed) -> None:
    """Invariants: never more than max_outstanding out; every task ends final; nothing delivered after."""
    store, owner = real_store
    rng = random.Random(seed)
    disp = d.Dispatcher(settings_(chunk_size=3, max_outstanding=5, max_retries_on_system_failure=1))
    shell = Shell(store, disp)
    ids = submit(store, owner, 12)
    held: dict[str, p.TaskItem] = {}
    now = 100.0
    shell.feed(msg(hello(), now))
    for _ in range(400):
        now += 1.0
        held.update({t.task_id: t for t in shell.deliveries()})
        assert len(disp.session(EP).outstanding if disp.is_online(EP) else ()) <= 5
        choice = rng.random()
        if not disp.is_online(EP):
            shell.feed(msg(hello(), now))
        elif choice < 0.1:
            shell.feed(d.Tick(now + 10.0))          # lost; the endpoint may or may not have kept its tasks
            if rng.random() < 0.5:
                held.clear()
        elif held:
            some = rng.sample(sorted(held), k=rng.randint(1, len(held)))
            shell.feed(msg(p.TaskResults(tuple(result(t) for t in some)), now))
            for t in some:
                if rng.random() < 0.8:              # sometimes the endpoint keeps re-sending it
                    held.pop(t)
        elif store.count_tasks()[WAITING_FOR_EP] == 0 and not store.tasks_in_flight(EP):
            break
        else:
            shell.feed(d.Submitted(EP))
    records = store.get_tasks(ids)
    assert all(r.state in FINAL_STATES for r in records.values()), {r.state for r in records.values()}
    failed = [r for r in records.values() if r.state == FAILED]
    assert all(isinstance(deserialize(r.result), EndpointLost) for r in failed)
    assert set(shell.finals) == set(ids)
