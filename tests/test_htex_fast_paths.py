"""The htex wire's fast paths give the same bytes and behaviour as the general ones they stand in for."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from parsl_lite.executors.htex.codec import dumps
from parsl_lite.executors.htex.messages import ResultBatch, ResultMessage, TaskBatch, TaskMessage, decode, encode

digest = st.sampled_from([b"\x01" * 32, b"\x02" * 32, b"", b"\xff"])
task = st.builds(TaskMessage, st.integers(0, 2**40), digest, st.none() | st.binary(max_size=8), st.binary(max_size=8),
                 st.just({}))


@given(st.lists(task, min_size=1, max_size=6).map(tuple))
def test_a_formatted_task_header_is_the_compact_json_of_the_general_path(tasks):
    frames = encode(TaskBatch(tasks))
    unique = list(dict.fromkeys(t.fn_digest for t in tasks))
    bodies = [i for i, t in enumerate(tasks) if t.fn_body is not None]
    assert frames[0].split(b"\n", 2)[1] == dumps([len(tasks), [d.hex() for d in unique], bodies, []])
    assert decode(frames) == TaskBatch(tasks)


@given(st.integers(1, 5))
def test_a_formatted_result_header_is_the_compact_json_of_the_general_path(n):
    frames = encode(ResultBatch(tuple(ResultMessage(i, "ok", b"x") for i in range(n))))
    assert frames[0].split(b"\n", 2)[1] == dumps([n])
