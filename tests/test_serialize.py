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
from parsl_lite.serialize.facade import serialize_for_transfer
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


def test_function_cache_answers_alternating_functions_and_each_its_own_digest():
    """The last-function shortcut never hands one function another's bytes."""
    cache = FunctionCache()
    first = [cache.get(fn) for fn in (len, abs, len, len, abs)]
    assert first[0] == first[2] == first[3] and first[1] == first[4] and first[0] != first[1]
    store = FunctionStore()
    assert store.add(*first[1])(-3) == 3


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


# ---------------------------------------------------------------- __main__ classes, rebound globals

WORKER_SIDE = r"""
import sys
from parsl_lite.serialize import FunctionStore, serialize, unpack_apply_message
data = sys.stdin.buffer.read()
size = int.from_bytes(data[:8], "big")
func = FunctionStore().add(b"digest", data[8:8 + size])
args, kwargs = unpack_apply_message(data[8 + size:])
sys.stdout.buffer.write(serialize(func(*args, **kwargs)))
"""


def test_main_class_instances_cross_by_value_and_come_home_as_the_users_class(tmp_path):
    """A script (a real ``__main__``) sends a function and an instance of its own class to another process."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(f"""
        import dataclasses, subprocess, sys
        from parsl_lite.serialize import FunctionCache, deserialize, pack_apply_message

        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def __add__(self, other):
                return Point(self.x + other.x, self.y + other.y)

        @dataclasses.dataclass
        class Tagged:
            tag: str
            items: list = dataclasses.field(default_factory=list)

        def shift(p, t):
            return p + Point(10, 10), isinstance(p, Point), [f.name for f in dataclasses.fields(t)], Tagged("made")

        _, body = FunctionCache().get(shift)
        packed = pack_apply_message((Point(1, 2), Tagged("x")), {{}})
        out = subprocess.run([sys.executable, "-c", {WORKER_SIDE!r}], input=len(body).to_bytes(8, "big") + body + packed,
                             capture_output=True, check=True).stdout
        moved, was_point, fields, made = deserialize(out)
        assert type(moved) is Point and (moved.x, moved.y) == (11, 12), vars(moved)
        assert was_point, "the worker saw two different Point classes"
        assert fields == ["tag", "items"]
        assert type(made) is Tagged and made == Tagged("made")
        print("ok")
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_plain_serialize_keeps_main_classes_by_reference(tmp_path):
    """Checkpoints and memo keys want ``__main__.Point`` by name: the next run of the script resolves it."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent("""
        import os
        from parsl_lite.serialize import pack_apply_message, serialize
        class Point:
            pass
        def in_main():
            pass
        assert serialize(Point())[:1] == b"P"
        assert pack_apply_message((Point(),), {})[:1] == b"D"
        assert pack_apply_message(([{"f": in_main}],), {})[:1] == b"D"
        assert pack_apply_message((1, "x", os.path.join), {"k": [2]})[:1] == b"P"   # the fast path stays pickle
        print("ok")
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=50)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_word_main_in_data_stays_on_the_fast_path():
    packed = pack_apply_message(("__main__",), {"__main__": b"__main__"})
    assert packed[:1] == b"P"
    assert unpack_apply_message(packed) == (("__main__",), {"__main__": b"__main__"})


def test_the_fast_path_survives_a_refused_argument_and_big_payloads():
    with pytest.raises(SerializationError):
        pack_apply_message(((x for x in range(2)),), {})
    big = b"x" * (3 << 20)
    assert unpack_apply_message(pack_apply_message((big,), {}))[0][0] == big
    assert unpack_apply_message(pack_apply_message((1,), {})) == ((1,), {})


REBOUND = 1
SHARED = [1]


def _make_helper():
    def helper():
        return REBOUND
    return helper


_helper_reads_rebound = _make_helper()  # not importable by its qualname, so dill sends it by value


def test_rebinding_a_global_makes_a_new_body(monkeypatch):
    cache = FunctionCache()

    def reads_global():  # a local function: dill sends it by value, with REBOUND's value
        return REBOUND

    first = cache.get(reads_global)
    assert cache.get(reads_global)[1] is first[1]  # nothing changed: the very same body
    monkeypatch.setitem(globals(), "REBOUND", 2)
    second = cache.get(reads_global)
    assert second[0] != first[0]
    assert deserialize(first[1])() == 1 and deserialize(second[1])() == 2


def test_rebinding_a_global_of_a_helper_or_a_closure_cell_is_seen(monkeypatch):
    cache = FunctionCache()
    scale = 3

    def through_helper(x):
        return _helper_reads_rebound() * x * scale

    first = cache.get(through_helper)
    monkeypatch.setitem(globals(), "REBOUND", 5)
    second = cache.get(through_helper)
    assert deserialize(second[1])(1) == 15 and second[0] != first[0]
    scale = 4  # noqa: F841 - rebinds the closure cell
    assert deserialize(cache.get(through_helper)[1])(1) == 20


def test_mutation_in_place_is_not_seen_and_importable_functions_are_not_watched():
    from parsl_lite.serialize.globals_watch import watch_for

    cache = FunctionCache()

    def reads_list():
        return list(SHARED)

    first = cache.get(reads_list)
    SHARED.append(2)
    try:
        assert cache.get(reads_list)[1] is first[1]  # documented: same object, same body
    finally:
        SHARED.pop()
    assert watch_for(deserialize) is None  # sent by reference: the worker imports it


_plain = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | st.binary(max_size=8)


@given(st.lists(_plain, max_size=5).map(tuple), st.dictionaries(st.text(max_size=4), _plain, max_size=3))
def test_plain_arguments_skip_the_main_finder_and_give_the_same_bytes(args, kwargs):
    assert pack_apply_message(args, kwargs) == serialize_for_transfer((args, kwargs))
    assert unpack_apply_message(pack_apply_message(args, kwargs)) == (args, kwargs)
