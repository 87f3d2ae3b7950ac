"""The serialization module alone, and through a kernel whose executor leaves the process."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parsl_lite import python_app
from parsl_lite.errors import DeserializationError, SerializationError
from parsl_lite.serialize import (
    FunctionCache, FunctionStore, RemoteExceptionWrapper, deserialize, pack_apply_message, serialize,
    unpack_apply_message, wrap_current_exception,
)
from parsl_lite.serialize.remote_error import RemoteTaskError

from .process_pool_executor import ProcessPoolTestExecutor

json_like = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
                         lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20)


@given(json_like)
def test_round_trip_of_plain_data(value):
    assert deserialize(serialize(value)) == value


def test_lambdas_and_closures_survive():
    offset = 10
    fn = deserialize(serialize(lambda x: x + offset))
    assert fn(1) == 11


def test_unpicklable_argument_is_named():
    gen = (x for x in range(3))
    with pytest.raises(SerializationError, match=r"argument 'guard' of type generator"):
        pack_apply_message((1, 2), {"guard": gen})
    with pytest.raises(SerializationError, match=r"positional argument 1 of type generator"):
        pack_apply_message((1, gen), {})


def test_arguments_round_trip():
    args, kwargs = unpack_apply_message(pack_apply_message((1, [2]), {"k": "v"}))
    assert args == (1, [2]) and kwargs == {"k": "v"}


def test_garbage_bytes_are_a_clear_error():
    with pytest.raises(DeserializationError, match="unknown serialization header"):
        deserialize(b"Xgarbage")
    with pytest.raises(DeserializationError, match="cannot deserialize"):
        deserialize(b"P\x80\x05garbage")


def test_function_cache_serializes_once_and_names_by_digest():
    cache = FunctionCache()

    def f(x):
        return x * 2

    digest1, body1 = cache.get(f)
    digest2, body2 = cache.get(f)
    assert digest1 == digest2 and body1 is body2
    store = FunctionStore()
    store.add(digest1, body1)
    assert store.get(digest1)(21) == 42
    with pytest.raises(KeyError):
        store.get(b"unknown")


def test_remote_exception_reraises_with_type_and_traceback():
    def inner():
        raise KeyError("missing-key")

    try:
        inner()
    except KeyError:
        wrapper = wrap_current_exception()
    wrapper = deserialize(serialize(wrapper))
    assert isinstance(wrapper, RemoteExceptionWrapper)
    with pytest.raises(KeyError, match="missing-key") as info:
        wrapper.reraise()
    assert any(entry.name == "inner" for entry in info.traceback)


def test_exception_that_cannot_unpickle_becomes_remote_task_error():
    class Local(Exception):
        def __init__(self, a, b):
            super().__init__(a)

    try:
        raise Local("x", "y")
    except Local:
        wrapper = wrap_current_exception()
    with pytest.raises(RemoteTaskError, match="Local: x"):
        wrapper.reraise()


def test_functions_defined_in_main_run_in_another_process(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path.parent)!r})
        from parsl_lite.serialize import serialize
        def in_main(x):
            return x + 1
        sys.stdout.buffer.write(serialize(in_main))
    """))
    blob = subprocess.run([sys.executable, str(script)], capture_output=True, check=True).stdout
    assert deserialize(blob)(41) == 42


# ---------------------------------------------------------------- through the kernel

@pytest.fixture
def proc_dfk(make_dfk):
    executor = ProcessPoolTestExecutor()
    make_dfk(executors=[executor])
    return executor


def test_unpicklable_argument_fails_the_future_at_once(proc_dfk):
    @python_app
    def use(x, guard=None):
        return x

    fut = use(1, guard=(x for x in range(3)))
    assert fut.done()
    with pytest.raises(SerializationError, match="argument 'guard' of type generator"):
        fut.result()
    assert use(2).result(timeout=30) == 2  # nothing else is affected


def test_function_body_crosses_once_and_exceptions_come_home(proc_dfk):
    scale = 3
    times = python_app(lambda x: x * scale)
    assert [times(i).result(timeout=30) for i in range(4)] == [0, 3, 6, 9]
    assert proc_dfk.bodies_sent == 1

    @python_app
    def fails():
        raise ArithmeticError("far away")

    with pytest.raises(ArithmeticError, match="far away"):
        fails().result(timeout=30)
