"""Tests of memoization (hashing, the memo table) and checkpoints (file format, modes, run helpers)."""
from __future__ import annotations

import enum
import importlib
import logging
import os
import subprocess
import sys
import threading
from collections import namedtuple
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typeguard import TypeCheckError

from parsl_lite.dataflow.checkpoints import CHECKPOINT_FILE, CheckpointWriter, read_checkpoint
from parsl_lite.dataflow.graph import TaskId, TaskRecord
from parsl_lite.dataflow.memoization import BasicMemoizer, id_for_memo, make_hash
from parsl_lite.errors import ConfigurationError
from parsl_lite.utils import get_all_checkpoints, get_last_checkpoint

from .conftest import wait_for

KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64


def double(x: Any, scale: int = 1, verbose: bool = False) -> Any:
    return x * 2 * scale


def other(x: Any) -> Any:
    return x


def record(func: Callable = double, *args: Any, ignore: tuple = (), memoize: bool = True,
           task_id: int = 0, **kwargs: Any) -> TaskRecord:
    rec = TaskRecord(TaskId(task_id), func.__name__, memoize=memoize)
    rec.func, rec.args, rec.kwargs, rec.ignore_for_cache = func, args, kwargs, ignore
    return rec


def started(run_dir: Path, **kwargs: Any) -> BasicMemoizer:
    memoizer = BasicMemoizer(**kwargs)
    memoizer.start(run_dir=str(run_dir))
    return memoizer


def run(memoizer: BasicMemoizer, rec: TaskRecord, result: Any) -> None:
    """What the kernel does for a task that missed and then succeeded."""
    assert memoizer.check_memo(rec) is None
    memoizer.update_memo_result(rec, result)


def hit(memoizer: BasicMemoizer, rec: TaskRecord) -> Optional[Any]:
    future = memoizer.check_memo(rec)
    if future is None:
        return None
    assert isinstance(future, Future) and future.done()
    return ("hit", future.result())


def ckpt_file(run_dir: Path) -> Path:
    return run_dir / "checkpoint" / CHECKPOINT_FILE


def write_records(path: Path, records: dict[str, bytes]) -> None:
    writer = CheckpointWriter(str(path))
    for key, blob in records.items():
        writer.append(key, blob)
    writer.close()


# ---------------------------------------------------------------- hashing and the memo table

def test_same_call_hits_and_sets_hashsum(tmp_path: Path) -> None:
    memoizer = started(tmp_path)
    first = record(double, 3, scale=2)
    run(memoizer, first, 12)
    assert isinstance(first.hashsum, str) and len(first.hashsum) == 64
    again = record(double, 3, scale=2, task_id=1)
    assert hit(memoizer, again) == ("hit", 12)
    assert again.hashsum == first.hashsum


def test_record_without_kwargs_hashes_like_empty_kwargs() -> None:
    bare = TaskRecord(TaskId(0), "double", memoize=True)
    bare.func, bare.args = double, (1,)
    assert make_hash(bare) == make_hash(record(double, 1))


def test_different_args_kwargs_or_function_miss(tmp_path: Path) -> None:
    memoizer = started(tmp_path)
    run(memoizer, record(double, 3, scale=2), 12)
    assert memoizer.check_memo(record(double, 4, scale=2)) is None
    assert memoizer.check_memo(record(double, 3, scale=3)) is None
    assert memoizer.check_memo(record(double, 3)) is None
    assert memoizer.check_memo(record(other, 3, scale=2)) is None
    assert memoizer.check_memo(record(double, 3.0, scale=2)) is None  # 3 == 3.0, but not the same call
    assert memoizer.check_memo(record(double, True, scale=2)) is None


def test_failures_are_memoized_for_the_run_but_never_checkpointed(tmp_path: Path) -> None:
    memoizer = started(tmp_path, checkpoint_mode="task_exit")
    rec = record(double, 1)
    assert memoizer.check_memo(rec) is None
    error = ValueError("boom")
    memoizer.update_memo_exception(rec, error)
    again = memoizer.check_memo(record(double, 1))
    assert again is not None and again.exception() is error  # Parsl: the same exception object
    memoizer.close()
    assert not ckpt_file(tmp_path).exists()


def test_memoize_off_globally_or_per_app(tmp_path: Path) -> None:
    off = started(tmp_path, memoize=False)
    rec = record(double, 1)
    assert off.check_memo(rec) is None and rec.hashsum is None
    off.update_memo_result(rec, 2)
    assert off.check_memo(record(double, 1)) is None
    on = started(tmp_path)
    rec = record(double, 1, memoize=False)
    assert on.check_memo(rec) is None and rec.hashsum is None


def _hash_of_module_f(directory: Path, body: str) -> str:
    """Write a module, import it afresh and hash a call of its ``f``, as a new run would."""
    (directory / "memo_mod_under_test.py").write_text(body)
    sys.modules.pop("memo_mod_under_test", None)
    importlib.invalidate_caches()
    module = importlib.import_module("memo_mod_under_test")
    try:
        return make_hash(record(module.f, 1))
    finally:
        sys.modules.pop("memo_mod_under_test", None)


def test_changed_source_misses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # no stale .pyc when two versions share an mtime
    v1 = _hash_of_module_f(tmp_path, "def f(x):\n    return x + 1\n")
    v1_again = _hash_of_module_f(tmp_path, "def f(x):\n    return x + 1\n")
    v2 = _hash_of_module_f(tmp_path, "def f(x):\n    return x + 2\n")
    assert v1 == v1_again
    assert v1 != v2


def test_functions_without_source_hash_by_code() -> None:
    def compile_f(body: str) -> Callable:
        namespace: dict = {}
        exec(f"def f(x):\n    return {body}\n", namespace)
        return namespace["f"]

    assert make_hash(record(compile_f("x + 1"), 1)) == make_hash(record(compile_f("x + 1"), 1))
    assert make_hash(record(compile_f("x + 1"), 1)) != make_hash(record(compile_f("x + 2"), 1))
    assert make_hash(record(compile_f("x + 1"), 1)) != make_hash(record(compile_f("x - 1"), 1))


def test_closure_values_are_part_of_the_hash() -> None:
    def make_adder(n: Any) -> Callable:
        def add(x: Any) -> Any:
            return x + n
        return add

    assert make_hash(record(make_adder(1), 5)) == make_hash(record(make_adder(1), 5))
    assert make_hash(record(make_adder(1), 5)) != make_hash(record(make_adder(2), 5))
    assert make_hash(record(make_adder([1, 2]), 5)) != make_hash(record(make_adder([1, 3]), 5))


def test_recursive_closure_and_defaults() -> None:
    def outer() -> Callable:
        def fact(n: int) -> int:
            return 1 if n == 0 else n * fact(n - 1)
        return fact

    assert make_hash(record(outer(), 3)) == make_hash(record(outer(), 3))

    def with_default(limit: int) -> Callable:
        def f(x: int, cap: int = limit) -> int:
            return min(x, cap)
        return f

    assert make_hash(record(with_default(1), 3)) != make_hash(record(with_default(2), 3))


def test_ignore_for_cache(tmp_path: Path) -> None:
    memoizer = started(tmp_path)
    run(memoizer, record(double, 2, verbose=True, ignore=("verbose",)), 4)
    assert hit(memoizer, record(double, 2, verbose=False, ignore=("verbose",))) == ("hit", 4)
    assert hit(memoizer, record(double, 2, ignore=("verbose",))) == ("hit", 4)
    assert memoizer.check_memo(record(double, 2, verbose=False)) is None  # not ignored: a different call
    assert memoizer.check_memo(record(double, 2, scale=3, ignore=("verbose",))) is None


class _DuckFile:
    """Looks like parsl_lite's File to the hasher: a ``url`` and a ``filepath``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()  # unpicklable: only the url may be used

    @property
    def filepath(self) -> str:
        return self.url


def test_files_are_identified_by_path(tmp_path: Path) -> None:
    from parsl_lite.data_provider.files import File

    memoizer = started(tmp_path)
    run(memoizer, record(double, File("/data/a.txt"), outputs=[File("/out/a.txt")]), "A")
    assert hit(memoizer, record(double, File("/data/a.txt"), outputs=[File("/out/a.txt")])) == ("hit", "A")
    assert memoizer.check_memo(record(double, File("/data/b.txt"), outputs=[File("/out/a.txt")])) is None
    assert memoizer.check_memo(record(double, File("/data/a.txt"), outputs=[File("/out/b.txt")])) is None
    assert id_for_memo(_DuckFile("/data/a.txt")) == id_for_memo(File("/data/a.txt"))
    assert id_for_memo(_DuckFile("/data/a.txt")) != id_for_memo("/data/a.txt")


def test_unencodable_argument_raises_value_error(tmp_path: Path) -> None:
    memoizer = started(tmp_path)
    rec = record(double, (x for x in []))
    with pytest.raises(ValueError, match="cannot encode a generator for memoization"):
        memoizer.check_memo(rec)  # Parsl fails such a task; the kernel turns this into its failure
    assert rec.hashsum is None
    memoizer.update_memo_result(rec, 1)  # no hashsum: ignored, no error
    looped: list = []
    looped.append(looped)
    with pytest.raises(RecursionError):
        memoizer.check_memo(record(other, looped))


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1


Point = namedtuple("Point", "x y")


def test_encodings_distinguish_types_and_subclasses() -> None:
    values = [1, 1.0, True, "1", b"1", [1], (1,), {1}, frozenset({1}), {1: 1}, None, Color.RED, Level.LOW,
              Point(1, 2), (1, 2), Color, 1 + 0j, bytearray(b"1"), float("nan")]
    encoded = [id_for_memo(v) for v in values]
    assert len(set(encoded)) == len(values)
    assert id_for_memo(float("nan")) == id_for_memo(float("nan"))
    assert id_for_memo(10**5000) != id_for_memo(10**5000 + 1)  # beyond int->str digit limits
    assert id_for_memo(-1) != id_for_memo(255)


def test_hash_is_stable_across_processes() -> None:
    value = {"b": {"x", "y", "z"}, "a": [1, 2.5, None, ("t", b"u")], "f": frozenset({"p", "q"})}
    code = ("from parsl_lite.dataflow.memoization import id_for_memo; import hashlib; "
            f"print(hashlib.sha256(id_for_memo({value!r})).hexdigest())")
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(), st.binary())
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=5), inner, max_size=4),
                            st.frozensets(st.integers(), max_size=4)),
    max_leaves=20)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _values, max_size=6), st.randoms())
def test_dict_key_order_does_not_matter(mapping: dict, rnd: Any) -> None:
    items = list(mapping.items())
    rnd.shuffle(items)
    shuffled = dict(items)
    assert id_for_memo(shuffled) == id_for_memo(mapping)
    assert id_for_memo({"k": shuffled}) == id_for_memo({"k": mapping})


@settings(max_examples=200, deadline=None)
@given(_values, _values)
def test_encoding_is_equal_exactly_for_equal_values(a: Any, b: Any) -> None:
    # Over these types (no NaN, no int/float/bool mixing inside the strategy's equal pairs) equality
    # of encodings implies equality of values, and encoding a value twice gives the same bytes.
    assert id_for_memo(a) == id_for_memo(a)
    if id_for_memo(a) == id_for_memo(b):
        assert a == b and type(a) is type(b)


@settings(max_examples=100, deadline=None)
@given(st.sets(st.text(max_size=6), max_size=8), st.randoms())
def test_set_order_does_not_matter(items: set, rnd: Any) -> None:
    as_list = list(items)
    rnd.shuffle(as_list)
    assert id_for_memo(set(as_list)) == id_for_memo(items)


# ---------------------------------------------------------------- checkpoints across runs

def test_checkpoint_reloads_in_a_new_run(tmp_path: Path) -> None:
    runinfo = tmp_path / "runinfo"
    first = started(runinfo / "000", checkpoint_mode="task_exit")
    run(first, record(double, 1), {"value": 2})
    run(first, record(double, 2), 4)
    failed = record(double, 3)
    assert first.check_memo(failed) is None
    first.update_memo_exception(failed, RuntimeError("x"))
    first.close()

    second = started(runinfo / "001", checkpoint_files=get_all_checkpoints(str(runinfo)))
    assert hit(second, record(double, 1)) == ("hit", {"value": 2})
    assert hit(second, record(double, 2)) == ("hit", 4)
    assert second.check_memo(record(double, 3)) is None  # a re-run retries failures
    second.close()


def test_newer_checkpoint_wins_and_files_may_be_named_directly(tmp_path: Path) -> None:
    key = make_hash(record(double, 1))
    from parsl_lite.serialize import serialize
    write_records(tmp_path / "000" / "checkpoint" / CHECKPOINT_FILE, {key: serialize("old")})
    write_records(tmp_path / "001" / "checkpoint" / CHECKPOINT_FILE, {key: serialize("new")})
    memoizer = started(tmp_path / "002", checkpoint_files=get_all_checkpoints(str(tmp_path)))
    assert hit(memoizer, record(double, 1)) == ("hit", "new")
    direct = started(tmp_path / "003", checkpoint_files=[str(tmp_path / "000" / "checkpoint" / CHECKPOINT_FILE)])
    assert hit(direct, record(double, 1)) == ("hit", "old")


def test_undecodable_checkpointed_result_is_a_miss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    key = make_hash(record(double, 1))
    write_records(tmp_path / "000" / "checkpoint" / CHECKPOINT_FILE, {key: b"?not a serialized blob"})
    memoizer = started(tmp_path / "001", checkpoint_files=[str(tmp_path / "000" / "checkpoint")])
    with caplog.at_level(logging.WARNING):
        assert memoizer.check_memo(record(double, 1)) is None
    assert "unusable" in caplog.text


def test_mode_task_exit_writes_each_result_at_once(tmp_path: Path) -> None:
    memoizer = started(tmp_path, checkpoint_mode="task_exit")
    rec = record(double, 1)
    run(memoizer, rec, 2)
    assert set(read_checkpoint(str(tmp_path / "checkpoint"))) == {rec.hashsum}  # before close
    run(memoizer, record(double, 2), 4)
    assert len(read_checkpoint(str(tmp_path / "checkpoint"))) == 2
    memoizer.close()


def test_mode_dfk_exit_writes_at_close(tmp_path: Path) -> None:
    memoizer = started(tmp_path, checkpoint_mode="dfk_exit")
    rec = record(double, 1)
    run(memoizer, rec, 2)
    assert not ckpt_file(tmp_path).exists()
    memoizer.close()
    assert set(read_checkpoint(str(tmp_path / "checkpoint"))) == {rec.hashsum}
    memoizer.close()  # idempotent


def test_mode_manual_writes_only_on_checkpoint(tmp_path: Path) -> None:
    memoizer = started(tmp_path, checkpoint_mode="manual")
    first, second = record(double, 1), record(double, 2)
    run(memoizer, first, 2)
    assert not ckpt_file(tmp_path).exists()
    assert memoizer.checkpoint() == str((tmp_path / "checkpoint").resolve())
    assert set(read_checkpoint(str(tmp_path / "checkpoint"))) == {first.hashsum}
    run(memoizer, second, 4)
    memoizer.close()
    assert set(read_checkpoint(str(tmp_path / "checkpoint"))) == {first.hashsum}


def test_manual_checkpoint_with_nothing_new_still_gives_a_loadable_dir(tmp_path: Path) -> None:
    memoizer = started(tmp_path / "000", checkpoint_mode="manual")
    path = memoizer.checkpoint()
    assert path is not None and read_checkpoint(path) == {}
    memoizer.close()


def test_mode_periodic_writes_from_a_timer_thread(tmp_path: Path) -> None:
    memoizer = started(tmp_path, checkpoint_mode="periodic", checkpoint_period="00:00:01")
    rec = record(double, 1)
    run(memoizer, rec, 2)
    wait_for(lambda: ckpt_file(tmp_path).exists() and read_checkpoint(str(tmp_path / "checkpoint")), 8,
             "the periodic checkpoint")
    run(memoizer, record(double, 2), 4)
    memoizer.close()  # stops the thread and writes what is left
    assert len(read_checkpoint(str(tmp_path / "checkpoint"))) == 2
    assert not [t for t in threading.enumerate() if t.name == "parsl_lite-checkpoint"]


def test_mode_none_writes_nothing(tmp_path: Path) -> None:
    memoizer = started(tmp_path)
    run(memoizer, record(double, 1), 2)
    assert memoizer.checkpoint() is None
    memoizer.close()
    assert not (tmp_path / "checkpoint").exists()


def test_concurrent_tasks_all_checkpointed(tmp_path: Path) -> None:
    memoizer = started(tmp_path, checkpoint_mode="task_exit")

    def worker(base: int) -> None:
        for i in range(50):
            rec = record(double, base + i, task_id=base + i)
            if memoizer.check_memo(rec) is None:
                memoizer.update_memo_result(rec, (base + i) * 2)

    threads = [threading.Thread(target=worker, args=(n * 25,)) for n in range(8)]  # overlapping ranges
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    memoizer.close()
    assert len(read_checkpoint(str(tmp_path / "checkpoint"))) == 7 * 25 + 50  # each key once


# ---------------------------------------------------------------- run directories

def test_get_all_and_last_checkpoint_order(tmp_path: Path) -> None:
    assert get_all_checkpoints(str(tmp_path / "missing")) == []
    assert get_last_checkpoint(str(tmp_path / "missing")) == []
    for name in ("000", "001", "002", "1000", "999"):
        (tmp_path / name).mkdir()
    for name in ("000", "002", "1000", "999"):
        (tmp_path / name / "checkpoint").mkdir()
    (tmp_path / "notes.txt").write_text("not a run")
    expected = [str((tmp_path / n / "checkpoint").resolve()) for n in ("000", "002", "999", "1000")]
    assert get_all_checkpoints(str(tmp_path)) == expected
    assert get_last_checkpoint(str(tmp_path)) == [expected[-1]]
    (tmp_path / "1001").mkdir()  # the latest run wrote no checkpoint: Parsl steps over it
    assert get_last_checkpoint(str(tmp_path)) == [expected[-1]]
    (tmp_path / "2000x").mkdir()
    (tmp_path / "2000x" / "checkpoint").mkdir()  # not a run number: never the last run
    assert get_last_checkpoint(str(tmp_path)) == [expected[-1]]


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize("kwargs", [
    {"checkpoint_mode": "sometimes"},
    {"checkpoint_period": 60},
    {"memoize": "yes"},
    {"checkpoint_files": [1, 2]},
])
def test_wrong_types_raise_typecheckerror(kwargs: dict) -> None:
    with pytest.raises(TypeCheckError):
        BasicMemoizer(**kwargs)


@pytest.mark.parametrize("kwargs, field", [
    ({"checkpoint_mode": "periodic"}, "checkpoint_period"),
    ({"checkpoint_mode": "periodic", "checkpoint_period": "30"}, "checkpoint_period"),
    ({"checkpoint_mode": "periodic", "checkpoint_period": "00:61:00"}, "checkpoint_period"),
    ({"checkpoint_mode": "periodic", "checkpoint_period": "00:00:00"}, "checkpoint_period"),
    ({"checkpoint_files": "runinfo/000/checkpoint"}, "checkpoint_files"),
    ({"checkpoint_files": [""]}, "checkpoint_files"),
])
def test_bad_values_raise_configuration_error(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        BasicMemoizer(**kwargs)
    assert info.value.field == field


def test_repr_and_restart(tmp_path: Path) -> None:
    memoizer = BasicMemoizer(checkpoint_mode="periodic", checkpoint_period="01:00:00")
    assert repr(memoizer) == "BasicMemoizer(checkpoint_period='01:00:00', checkpoint_mode='periodic')"
    memoizer.start(run_dir=str(tmp_path / "000"))
    memoizer.close()
    memoizer.start(run_dir=str(tmp_path / "001"))  # a config loaded a second time
    memoizer.close()
