"""The SDK's parts that need no service: TASK decoding into funcX's shapes, batches, credentials, errors."""
from __future__ import annotations

import json
import socket
import threading
import traceback
import uuid

import pytest

from parsl_lite.faas import api, paths
from parsl_lite.faas.errors import (CredentialsNotFound, MaxResultSizeExceeded, ServiceError, ServiceUnreachable,
                                    TaskCancelled, TaskPending, TaskPurged)
from parsl_lite.faas.sdk.batch import Batch
from parsl_lite.faas.sdk.batching import Next, SubmitQueue
from parsl_lite.faas.sdk.decode import check_id, decode_task, split_by_bytes, task_exception, task_value
from parsl_lite.faas.sdk.http import resolve_credentials, service_error
from parsl_lite.faas.sdk.results_ws import Backoff
from parsl_lite.faas.sdk.submit import outcome_after_outage
from parsl_lite.serialize import serialize, unpack_apply_message, wrap_current_exception


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(paths.URL_ENV, raising=False)
    monkeypatch.delenv(paths.TOKEN_ENV, raising=False)


def _task(status: str, **extra) -> dict:
    task = {"task_id": str(uuid.uuid4()), "status": status, "pending": status in ("waiting-for-ep", "running"),
            "endpoint_id": str(uuid.uuid4()), "function_id": str(uuid.uuid4()), "task_group_id": str(uuid.uuid4()),
            "timings": {"received": 1.0, "dispatched": 2.0, "started": 3.0, "finished": 4.0}}
    task.update(extra)
    return task


def _failing_function(x):
    raise KeyError(f"no such key {x}")


def _wrapped_failure() -> bytes:
    try:
        _failing_function(7)
    except KeyError:
        return serialize(wrap_current_exception())
    raise AssertionError("unreachable")


# ---------------------------------------------------------------- decoding

def test_pending_task_raises_task_pending_with_funcx_message():
    task = decode_task(_task("waiting-for-ep"))
    assert task["pending"] is True and task["status"] == "waiting-for-ep"
    assert "result" not in task and "exception" not in task
    with pytest.raises(TaskPending) as info:
        task_value(task)
    assert info.value.reason == "waiting-for-ep"
    assert str(info.value) == "Task is pending due to waiting-for-ep"


def test_success_has_funcx_shape_and_timings():
    raw = _task("success", result=api.b64(serialize({"answer": 42})), completion_t=4.0)
    task = decode_task(raw)
    assert {"pending", "status", "result", "completion_t"} <= set(task)
    assert task["pending"] is False and task["result"] == {"answer": 42} and task["completion_t"] == 4.0
    assert task["timings"] == {"received": 1.0, "dispatched": 2.0, "started": 3.0, "finished": 4.0}
    assert task["endpoint_id"] == raw["endpoint_id"]
    assert task_value(task) == {"answer": 42} and task_exception(task) is None


def test_failed_task_reraises_remote_type_and_traceback():
    task = decode_task(_task("failed", exception=api.b64(_wrapped_failure()), completion_t=4.0))
    assert "exception" in task and "result" not in task
    with pytest.raises(KeyError, match="no such key 7") as info:
        task_value(task)
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "_failing_function" in frames  # the remote frame came home
    assert isinstance(task_exception(task), KeyError)


def test_failed_with_a_bare_parsl_lite_error():
    raw = _task("failed", exception=api.b64(serialize(MaxResultSizeExceeded(20, 10))))
    with pytest.raises(MaxResultSizeExceeded, match="result of 20 bytes exceeds the limit of 10 bytes"):
        task_value(decode_task(raw))


@pytest.mark.parametrize("status, error", [("purged", TaskPurged), ("cancelled", TaskCancelled)])
def test_final_states_without_a_result(status, error):
    raw = _task(status, reason=f"it was {status}")
    with pytest.raises(error, match=raw["task_id"]):
        task_value(decode_task(raw))


def test_unknown_task_is_a_404_naming_it():
    task_id = str(uuid.uuid4())
    raw = {"task_id": task_id, "status": "unknown", "pending": False, "reason": f"unknown task id {task_id}"}
    with pytest.raises(ServiceError) as info:
        task_value(decode_task(raw))
    assert info.value.http_status == 404 and task_id in info.value.reason


def test_undecodable_result_becomes_the_exception():
    task = decode_task(_task("success", result="not base64!!"))
    assert task["status"] == "failed"
    with pytest.raises(ValueError, match="field 'result'"):
        task_value(task)


def test_check_id_names_the_argument():
    good = str(uuid.uuid4())
    assert check_id(good, "endpoint_id") == good
    assert check_id(uuid.UUID(good), "endpoint_id") == good
    with pytest.raises(ValueError, match="endpoint_id is required"):
        check_id(None, "endpoint_id")
    with pytest.raises(ValueError, match="function_id 'abc' is not a UUID"):
        check_id("abc", "function_id")
    with pytest.raises(ValueError, match="task_id: expected a UUID string, got int"):
        check_id(5, "task_id")


# ---------------------------------------------------------------- batches

def test_batch_add_and_requests():
    ep, fn = str(uuid.uuid4()), str(uuid.uuid4())
    batch = Batch(str(uuid.uuid4()))
    batch.add(1, 2, endpoint_id=ep, function_id=fn, scale=3)
    batch.add(endpoint_id=ep, function_id=fn)
    [(count, body)] = list(batch.requests("Python 3, parsl_lite 0"))
    assert count == 2 and body["task_group_id"] == batch.task_group_id and body["versions"] == "Python 3, parsl_lite 0"
    first = body["tasks"][0]
    assert first["function_id"] == fn and first["endpoint_id"] == ep
    assert unpack_apply_message(api.unb64(first["payload"], "payload")) == ((1, 2), {"scale": 3})


def test_batch_refuses_payload_over_limit_before_sending():
    batch = Batch(str(uuid.uuid4()), payload_limit=1000)
    with pytest.raises(MaxResultSizeExceeded) as info:
        batch.add(b"x" * 2000, endpoint_id=str(uuid.uuid4()), function_id=str(uuid.uuid4()))
    assert info.value.what == "payload" and info.value.limit == 1000 and info.value.size > 2000
    assert "payload of" in str(info.value) and "limit of 1000 bytes" in str(info.value)
    assert len(batch) == 0


def test_batch_add_names_missing_ids():
    batch = Batch(str(uuid.uuid4()))
    with pytest.raises(ValueError, match="endpoint_id is required"):
        batch.add(1, function_id=str(uuid.uuid4()))
    with pytest.raises(ValueError, match="function_id 'f' is not a UUID"):
        batch.add(1, endpoint_id=str(uuid.uuid4()), function_id="f")


def test_big_batches_split_by_request_bytes():
    batch = Batch(str(uuid.uuid4()), payload_limit=3000)
    ep, fn = str(uuid.uuid4()), str(uuid.uuid4())
    for _ in range(5):
        batch.add(b"y" * 1000, endpoint_id=ep, function_id=fn)
    counts = [count for count, _body in batch.requests("v", max_request_bytes=4096 + 3200)]
    assert counts == [2, 2, 1]
    bodies = [body for _count, body in batch.requests("v", max_request_bytes=4096 + 3200)]
    assert all(len(json.dumps(body)) <= 4096 + 3200 for body in bodies)
    assert [count for count, _body in batch.requests("v")] == [5]   # default: a 3000-byte limit's request size


def test_split_by_bytes():
    assert list(split_by_bytes("abcde", [1, 1, 5, 1, 1], 3)) == [["a", "b"], ["c"], ["d", "e"]]
    assert list(split_by_bytes("abc", [1, 1, 1], 100, max_items=2)) == [["a", "b"], ["c"]]
    assert list(split_by_bytes([], [], 3)) == []


def test_submit_queue_arms_the_timer_once_and_sends_full_batches():
    queue = SubmitQueue(batch_size=3)
    assert [queue.add(i) for i in range(7)] == [Next.ARM_TIMER, Next.NOTHING, Next.SEND_FULL,
                                                 Next.NOTHING, Next.NOTHING, Next.SEND_FULL, Next.NOTHING]
    assert queue.take(full_only=True) == [[0, 1, 2], [3, 4, 5]]
    assert len(queue) == 1 and queue.timer_armed      # 6 waits for the timer armed at 0
    assert queue.take() == [[6]] and not queue.timer_armed
    assert queue.add(7) is Next.ARM_TIMER             # a new batch, a new interval


def test_submit_queue_full_batch_empties_the_timer():
    queue = SubmitQueue(batch_size=2)
    queue.add("a")
    assert queue.add("b") is Next.SEND_FULL
    assert queue.take(full_only=True) == [["a", "b"]] and not queue.timer_armed
    assert queue.take() == []


def test_submit_queue_without_batching_and_clear():
    queue = SubmitQueue(batch_size=10, batch_enabled=False)
    assert queue.add(1) is Next.SEND_ALL and queue.add(2) is Next.SEND_ALL
    assert queue.take() == [[1, 2]]
    batched = SubmitQueue(batch_size=2)
    for i in range(5):
        batched.add(i)
    assert batched.take() == [[0, 1], [2, 3], [4]]
    batched.add(9)
    assert batched.clear() == [9] and len(batched) == 0 and not batched.timer_armed
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        SubmitQueue(batch_size=0)


def test_outcome_of_a_submission_broken_by_an_outage():
    assert outcome_after_outage(known=10, count=5, group_size=15) == "stored"
    assert outcome_after_outage(known=10, count=5, group_size=10) == "not_stored"
    assert outcome_after_outage(known=10, count=5, group_size=12) == "unknown"
    assert outcome_after_outage(known=0, count=3, group_size=0) == "not_stored"


def test_backoff_doubles_to_a_cap_and_resets():
    backoff = Backoff(first_s=0.1, max_s=0.5)
    assert [backoff.next_delay() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    backoff.reset()
    assert backoff.next_delay() == 0.1


# ---------------------------------------------------------------- credentials and errors

def test_no_credentials_says_how_to_get_them():
    from parsl_lite.faas import FuncXClient
    with pytest.raises(CredentialsNotFound, match="parsl-lite service start") as info:
        FuncXClient()
    assert "PARSL_LITE_FAAS_URL" in str(info.value) and str(paths.client_file()) in str(info.value)


def test_credentials_from_env_then_file(monkeypatch):
    paths.write_client_file("http://127.0.0.1:1/", "file-token")
    assert resolve_credentials(None, None) == ("http://127.0.0.1:1", "file-token")
    monkeypatch.setenv(paths.URL_ENV, "http://127.0.0.1:2")
    monkeypatch.setenv(paths.TOKEN_ENV, "env-token")
    assert resolve_credentials(None, None) == ("http://127.0.0.1:2", "env-token")
    assert resolve_credentials("http://h:3", "arg") == ("http://h:3", "arg")


def test_file_token_is_not_sent_to_another_service(monkeypatch):
    paths.write_client_file("http://127.0.0.1:1", "file-token")
    assert resolve_credentials("http://127.0.0.1:1/", None) == ("http://127.0.0.1:1", "file-token")
    with pytest.raises(CredentialsNotFound, match="no function service token"):
        resolve_credentials("http://elsewhere:2", None)


def test_bad_credentials_file_is_named():
    path = paths.client_file()
    path.parent.mkdir(parents=True)
    path.write_text("[1, 2]")
    with pytest.raises(CredentialsNotFound, match="client.json"):
        resolve_credentials(None, None)


def test_service_error_keeps_the_services_reason():
    error = service_error(404, "Not Found", b'{"error": "not_found", "reason": "unknown function id abc"}')
    assert (error.http_status, error.code, error.reason) == (404, "not_found", "unknown function id abc")
    raw = service_error(502, "Bad Gateway", b"<html>proxy</html>")
    assert raw.http_status == 502 and "proxy" in raw.reason


def test_unreachable_service_is_named():
    from parsl_lite.faas import FuncXClient
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    before = {t for t in threading.enumerate() if t.name == "parsl-lite-faas-client"}
    with pytest.raises(ServiceUnreachable, match=f"127.0.0.1:{port}.*parsl-lite service start"):
        FuncXClient(service_url=f"http://127.0.0.1:{port}", token="t")
    left = {t for t in threading.enumerate() if t.name == "parsl-lite-faas-client"} - before
    assert not left, "the failed client's I/O thread was left running"


def test_close_stops_the_io_thread():
    from parsl_lite.faas import FuncXClient
    fxc = FuncXClient(service_url="http://127.0.0.1:1", token="t", do_version_check=False)
    thread = fxc._io._thread
    assert thread.is_alive()
    fxc.close()
    assert not thread.is_alive() and fxc._io.loop.is_closed()
    fxc.close()                                   # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        fxc.whoami()


def test_coalesced_batches_go_in_runs_that_fit_one_request():
    from parsl_lite.faas.sdk.client import _one_request_runs
    group = str(uuid.uuid4())

    def batch(n: int, payload: bytes = b"x" * 30) -> tuple:
        b = Batch(group)
        for _ in range(n):
            b.add_packed(group, group, payload)
        return (b, [None] * n)

    small = [batch(3) for _ in range(4)]
    assert [len(run) for run in _one_request_runs(small, 1 << 20)] == [4]          # all in one request
    per_batch = small[0][0].encoded_bytes()
    limit = 4096 + 2 * per_batch                                                    # body overhead + two batches
    assert [len(run) for run in _one_request_runs(small, limit)] == [2, 2]
    assert [len(run) for run in _one_request_runs(small, 1 << 20, max_tasks=7)] == [2, 2]
    big = batch(2, b"x" * 5000)
    assert [len(run) for run in _one_request_runs([small[0], big, small[1]], 4096 + 100)] == [1, 1, 1]
