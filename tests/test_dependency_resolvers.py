"""``Config(dependency_resolver=...)``: which futures an app call waits for, as Parsl 2026.10.26 has it.

The default (``SHALLOW_DEPENDENCY_RESOLVER``) waits only for futures passed
directly; ``DEEP_DEPENDENCY_RESOLVER`` also for futures inside lists, tuples,
sets and dicts, and passes their results in their place. All through a real
kernel on threads.
"""
from __future__ import annotations

import threading
from collections import namedtuple
from concurrent.futures import Future

import pytest

from parsl_lite import python_app
from parsl_lite.config_loader import config_from_dict
from parsl_lite.dataflow.dependency_resolvers import (
    DEEP_DEPENDENCY_RESOLVER, SHALLOW_DEPENDENCY_RESOLVER, DependencyResolver, deep_traverse_to_gather,
    deep_traverse_to_unwrap,
)
from parsl_lite.dataflow.errors import DependencyError
from parsl_lite.errors import ConfigurationError

Pair = namedtuple("Pair", "left right")


@python_app
def echo(value):
    return value


@python_app
def held(event: threading.Event, value):
    """Returns ``value`` once the test lets it: its dependants must wait for it."""
    event.wait(30)
    return value


@python_app
def boom():
    raise ValueError("inner app failed")


@python_app
def kinds(value):
    """What the app received, with futures named as such (a Future does not pickle into a result)."""
    def describe(v):
        if isinstance(v, Future):
            return "future"
        if isinstance(v, dict):
            return {describe(k): describe(x) for k, x in v.items()}
        if isinstance(v, (list, tuple, set)):
            return type(v)(describe(x) for x in v)
        return v
    return describe(value)


def done(value) -> Future:
    fut: Future = Future()
    fut.set_result(value)
    return fut


@pytest.fixture
def deep(make_dfk):
    return make_dfk(dependency_resolver=DEEP_DEPENDENCY_RESOLVER)


@pytest.mark.parametrize("kind", [list, tuple, set])
def test_deep_waits_for_futures_inside_sequences_and_passes_their_results(deep, kind):
    gate = threading.Event()
    structure = kind([held(gate, 1), held(gate, 2), 3])
    result = echo(structure)
    assert not result.done()  # it waits for the held inner futures
    gate.set()
    assert result.result(timeout=20) == kind([1, 2, 3])


def test_deep_resolves_nested_structures_and_dict_keys_and_values(deep):
    gate = threading.Event()
    inner = held(gate, 7)
    structure = {"k": [30, (inner, {inner})], done("key"): Pair(done(1), [[[[done(2)]]]])}
    result = echo(structure)
    gate.set()
    assert result.result(timeout=20) == {"k": [30, (7, {7})], "key": Pair(1, [[[[2]]]])}


def test_deep_resolves_inside_keyword_arguments_and_inputs(deep):
    value = echo(value={"a": [done(1), echo(2)]})
    assert value.result(timeout=20) == {"a": [1, 2]}
    gathered = kinds(value=[echo([done(3)])])
    assert gathered.result(timeout=20) == [[3]]


def test_default_leaves_futures_inside_structures_as_futures(dfk):
    assert dfk.config.dependency_resolver is None
    structure = {"a": [done(1)], "b": (done(2),), "c": {"d": done(3)}}
    assert kinds(structure).result(timeout=20) == {"a": ["future"], "b": ("future",), "c": {"d": "future"}}
    assert kinds(done(4)).result(timeout=20) == 4  # a future passed directly is still resolved


def test_explicit_shallow_resolver_behaves_as_the_default(make_dfk):
    make_dfk(dependency_resolver=SHALLOW_DEPENDENCY_RESOLVER)
    assert kinds([done(1)]).result(timeout=20) == ["future"]
    assert kinds(value=done(2)).result(timeout=20) == 2


def test_deep_failed_inner_future_gives_dependency_error(deep):
    failed: Future = Future()
    failed.set_exception(RuntimeError("artificial error"))
    result = echo({"x": [1, (failed,)]})
    exc = result.exception(timeout=20)
    assert isinstance(exc, DependencyError)
    assert isinstance(exc.__cause__, RuntimeError)
    assert [str(e) for e, _ in exc.dependent_exceptions_tids] == ["artificial error"]


def test_deep_failed_app_inside_a_list_names_its_task(deep):
    bad = boom()
    result = echo([done(1), {"k": bad}])
    exc = result.exception(timeout=20)
    assert isinstance(exc, DependencyError)
    assert exc.dependent_exceptions_tids == [(bad.exception(), f"task {bad.tid}")]


class Box:
    """A user's container type, taught to the deep resolver by registration."""

    def __init__(self, content):
        self.content = content


@deep_traverse_to_gather.register
def _(box: Box):
    return deep_traverse_to_gather(box.content)


@deep_traverse_to_unwrap.register
def _(box: Box):
    return Box(deep_traverse_to_unwrap(box.content))


def test_users_register_their_own_types_on_the_deep_resolver(deep):
    gate = threading.Event()
    result = python_app(lambda box: box.content * 2)(Box(held(gate, 21)))
    assert not result.done()
    gate.set()
    assert result.result(timeout=20) == 42


def test_a_custom_resolver_is_used(make_dfk):
    seen = []

    def gather(obj):
        return [obj[0]] if isinstance(obj, list) and obj and isinstance(obj[0], Future) else []

    def unwrap(obj):
        seen.append(obj)
        return obj[0].result() if gather(obj) else obj

    make_dfk(dependency_resolver=DependencyResolver(traverse_to_gather=gather, traverse_to_unwrap=unwrap))
    assert echo([done(5), "ignored"]).result(timeout=20) == 5
    assert seen


def test_toml_names_the_resolvers(run_dir):
    assert config_from_dict({"dependency_resolver": "deep"}).dependency_resolver is DEEP_DEPENDENCY_RESOLVER
    assert config_from_dict({"dependency_resolver": "shallow"}).dependency_resolver is SHALLOW_DEPENDENCY_RESOLVER
    spec = "parsl_lite.dataflow.dependency_resolvers:DEEP_DEPENDENCY_RESOLVER"
    assert config_from_dict({"dependency_resolver": spec}).dependency_resolver is DEEP_DEPENDENCY_RESOLVER
    with pytest.raises(ConfigurationError, match="dependency_resolver"):
        config_from_dict({"dependency_resolver": "deeper"})
    with pytest.raises(ConfigurationError, match="dependency_resolver"):
        config_from_dict({"dependency_resolver": "parsl_lite.dataflow.dependency_resolvers:NOPE"})
    with pytest.raises(ConfigurationError, match="dependency_resolver"):
        config_from_dict({"dependency_resolver": "parsl_lite.dataflow.dependency_resolvers:__all__"})


def test_config_repr_names_the_builtin_resolver():
    from parsl_lite.config import Config

    assert "dependency_resolver=DEEP_DEPENDENCY_RESOLVER" in repr(Config(dependency_resolver=DEEP_DEPENDENCY_RESOLVER))



_SHELF_SCRIPT = """
import sys, threading
from concurrent.futures import Future
import parsl_lite
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.dataflow.dependency_resolvers import shallow_traverse_to_gather, shallow_traverse_to_unwrap
from parsl_lite.executors.threads import ThreadPoolExecutor

class Shelf:
    def __init__(self, item):
        self.item = item

shallow_traverse_to_gather.register(Shelf, lambda shelf: [shelf.item])
shallow_traverse_to_unwrap.register(Shelf, lambda shelf: shelf.item.result())

@python_app
def echo(value):
    return value

@python_app
def held(event, value):
    event.wait(30)
    return value

with parsl_lite.load(Config(executors=[ThreadPoolExecutor(max_threads=2)], run_dir=sys.argv[1])):
    gate = threading.Event()
    result = echo(Shelf(held(gate, "on the shelf")))
    gate.set()
    plain = Future()
    plain.set_result(1)
    print(result.result(timeout=20), isinstance(echo([plain]).result(timeout=20)[0], Future))
"""


def test_registrations_on_the_default_resolver_are_honoured(run_dir):
    """In a process of its own: a registration cannot be undone, and would change every later kernel's path."""
    import subprocess
    import sys

    done_ = subprocess.run([sys.executable, "-c", _SHELF_SCRIPT, run_dir], capture_output=True, text=True,
                           timeout=50)
    assert done_.returncode == 0, done_.stderr
    assert done_.stdout.split() == ["on", "the", "shelf", "True"]  # resolved; a list is still not looked into


def test_an_unwrap_that_raises_gives_dependency_error(make_dfk):
    """As Parsl: the exception of the resolver's unwrap, paired with the argument's repr."""
    broken = RuntimeError("cannot unwrap this")

    def unwrap(obj):
        if isinstance(obj, Future):
            return obj.result()
        if obj == "poison":
            raise broken
        return obj

    make_dfk(dependency_resolver=DependencyResolver(SHALLOW_DEPENDENCY_RESOLVER.traverse_to_gather, unwrap))
    both = python_app(lambda a, b: (a, b))
    exc = both(done(1), "poison").exception(timeout=20)  # the future makes it a task with a dependency
    assert isinstance(exc, DependencyError)
    assert exc.dependent_exceptions_tids == [(broken, repr("poison"))]
    assert both(done(1), "fine").result(timeout=20) == (1, "fine")
