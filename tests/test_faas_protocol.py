"""The service <-> endpoint wire (faas/protocol.py): decode(encode(m)) == m for every message; bad frames raise
MalformedMessage and nothing else."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from parsl_lite.faas import protocol as p
from parsl_lite.faas.errors import MalformedMessage

text = st.text(max_size=40)
ids = st.lists(text, max_size=5).map(tuple)
blob = st.binary(max_size=64)
num = st.floats(allow_nan=False, allow_infinity=False)
items = st.builds(p.TaskItem, text, text, blob, blob, text, st.integers(0, 2**31))
results = st.builds(p.TaskResult, text, st.sampled_from(["success", "failed"]), blob, num, num)
report = st.dictionaries(text, st.one_of(st.integers(-1000, 1000), text, st.booleans(), st.none()), max_size=5)

messages = st.one_of(
    st.builds(p.EndpointHello, st.integers(0, 100), text, text, st.integers(0, 10**6)),
    st.builds(p.StatusReport, report),
    st.builds(p.TasksAccepted, ids),
    st.builds(p.TaskStarted, ids, num),
    st.builds(p.TaskResults, st.lists(results, max_size=5).map(tuple)),
    st.builds(p.EndpointBye, text),
    st.builds(p.HelloReply, st.booleans(), text, num, num, st.integers(0, 2**40), ids),
    st.builds(p.ServiceHeartbeat, text),
    st.builds(p.TaskDelivery, st.lists(items, max_size=5).map(tuple)),
    st.builds(p.ResultsStored, ids),
    st.builds(p.CancelTasks, ids),
    st.builds(p.HelloRequired, text),
)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_every_message_round_trips(message: p.Message) -> None:
    frames = p.encode(message)
    assert frames[0] == type(message).kind.encode()
    assert p.decode(frames) == message


def test_bytes_travel_as_frames_of_their_own_never_in_the_header() -> None:
    delivery = p.TaskDelivery((p.TaskItem("t", "f", b"BODY", b"ARGS", "v", 1),))
    frames = p.encode(delivery)
    assert frames[2:] == [b"BODY", b"ARGS"]
    assert json.loads(frames[1]) == {"tasks": [["t", "f", None, None, "v", 1]]}


def test_a_body_shared_by_a_deliverys_tasks_travels_once() -> None:
    body = b"BODY"
    delivery = p.TaskDelivery(tuple(p.TaskItem(f"t{i}", "f", body, b"A%d" % i, "v", 1) for i in range(3)))
    frames = p.encode(delivery)
    assert frames[2:] == [b"BODY", b"A0", b"A1", b"A2"]
    assert [row[2] for row in json.loads(frames[1])["tasks"]] == [None, 0, 0]
    assert p.decode(frames) == delivery
    with pytest.raises(MalformedMessage, match=r"tasks\[0\].function_body: refers to payload frame 5"):
        p.decode([b"task_delivery", b'{"tasks": [["t", "f", 5, null, "v", 1]]}', b"A"])


@pytest.mark.parametrize("frames, says", [
    ([b"task_results"], "at least 2"),
    ([b"nope", b"{}"], "unknown message kind"),
    ([b"endpoint_bye", b"not json"], "not JSON"),
    ([b"endpoint_bye", b"[1]"], "JSON object"),
    ([b"endpoint_bye", b'{"reason": "x", "more": 1}'], "fields"),
    ([b"endpoint_bye", b'{"reason": 7}'], "expected str"),
    ([b"task_started", b'{"task_ids": ["a"], "at": true}'], "expected float"),
    ([b"endpoint_hello", b'{"protocol_version": 1.5, "endpoint_id": "e", "versions": "v", "pending_results": 0}'],
     "expected int"),
    ([b"tasks_accepted", b'{"task_ids": ["a", 3]}'], "list of strings"),
    ([b"task_results", b'{"results": 7}'], "expected a list"),
    ([b"task_results", b'{"results": [["t", "success", null, 1.0]]}'], "expected 5 fields"),
    ([b"task_results", b'{"results": [["t", "maybe", null, 1.0, 2.0]]}', b"x"], "state must be one of"),
    ([b"task_results", b'{"results": [["t", "success", null, "1", 2.0]]}', b"x"], "expected float"),
    ([b"task_results", b'{"results": [["t", "success", null, 1.0, 2.0]]}'], "payload frame missing"),
    ([b"task_results", b'{"results": [["t", "success", null, 1.0, 2.0]]}', b"x", b"extra"], "payload frames"),
])
def test_malformed_frames_are_named(frames: list[bytes], says: str) -> None:
    with pytest.raises(MalformedMessage, match=says):
        p.decode(frames)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=6), messages)
def test_arbitrary_frames_decode_or_raise_malformed_message_only(junk: list[bytes], message: p.Message) -> None:
    for frames in (junk, p.encode(message)[:2] + junk, [p.encode(message)[0]] + junk):
        try:
            p.decode(frames)
        except MalformedMessage:
            pass
