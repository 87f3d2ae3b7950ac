"""Memoization and checkpoints through the kernel: a re-run skips what already finished."""
from __future__ import annotations

import os

import pytest

import parsl_lite
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.dataflow.errors import BadCheckpoint
from parsl_lite.dataflow.memoization import BasicMemoizer
from parsl_lite.executors import ThreadPoolExecutor
from parsl_lite.utils import get_all_checkpoints


def counting_app(counter_file):
    @python_app(cache=True)
    def square(x):
        with open(counter_file, "a") as f:
            f.write(".")
        return x * x

    return square


def runs(counter_file) -> int:
    return len(open(counter_file).read()) if os.path.exists(counter_file) else 0


def config(run_dir, **memo):
    return Config(executors=[ThreadPoolExecutor()], run_dir=run_dir, memoizer=BasicMemoizer(**memo))


def test_cached_app_runs_once_per_argument(run_dir, tmp_path):
    square = counting_app(str(tmp_path / "count"))
    with parsl_lite.load(config(run_dir)):
        first = [square(3).result(timeout=10) for _ in range(3)]
        assert square(4).result(timeout=10) == 16
        again = square(3)
        assert again.result(timeout=10) == 9
        assert again.task_status() == "memo_done"
    assert first == [9, 9, 9]
    assert runs(tmp_path / "count") == 2


def test_memoize_false_turns_caching_off(run_dir, tmp_path):
    square = counting_app(str(tmp_path / "count"))
    with parsl_lite.load(config(run_dir, memoize=False)):
        for _ in range(3):
            square(2).result(timeout=10)
    assert runs(tmp_path / "count") == 3


def test_rerun_after_a_crash_skips_finished_tasks(run_dir, tmp_path):
    counter = str(tmp_path / "count")
    square = counting_app(counter)
    with parsl_lite.load(config(run_dir, checkpoint_mode="task_exit")):
        assert [square(i).result(timeout=10) for i in range(5)] == [0, 1, 4, 9, 16]
    assert runs(counter) == 5
    with parsl_lite.load(config(run_dir, checkpoint_mode="task_exit", checkpoint_files=get_all_checkpoints(run_dir))):
        futs = [square(i) for i in range(7)]
        assert [f.result(timeout=10) for f in futs] == [0, 1, 4, 9, 16, 25, 36]
        assert [f.task_status() for f in futs[:5]] == ["memo_done"] * 5
    assert runs(counter) == 7  # only 5 and 6 ran again


def test_a_checkpoint_mode_without_files_reuses_every_earlier_run_as_parsl(run_dir, tmp_path):
    counter = str(tmp_path / "count")
    square = counting_app(counter)
    with parsl_lite.load(config(run_dir, checkpoint_mode="task_exit")):
        assert [square(i).result(timeout=10) for i in range(3)] == [0, 1, 4]
    with parsl_lite.load(config(run_dir, checkpoint_mode="task_exit")):  # checkpoint_files left out
        futs = [square(i) for i in range(4)]
        assert [f.result(timeout=10) for f in futs] == [0, 1, 4, 9]
        assert [f.task_status() for f in futs] == ["memo_done"] * 3 + ["exec_done"]
    with parsl_lite.load(config(run_dir, checkpoint_mode="task_exit", checkpoint_files=[])):  # [] reuses none
        assert square(0).result(timeout=10) == 0
    assert runs(counter) == 5


def test_manual_checkpoint_writes_on_request(run_dir, tmp_path):
    square = counting_app(str(tmp_path / "count"))
    with parsl_lite.load(config(run_dir, checkpoint_mode="manual")) as dfk:
        square(2).result(timeout=10)
        path = dfk.checkpoint()
        assert path and os.path.exists(path)
    assert get_all_checkpoints(run_dir)


def test_corrupt_checkpoint_is_refused_with_its_name(run_dir, tmp_path):
    square = counting_app(str(tmp_path / "count"))
    with parsl_lite.load(config(run_dir, checkpoint_mode="task_exit")):
        square(2).result(timeout=10)
    [checkpoint_dir] = get_all_checkpoints(run_dir)
    for name in os.listdir(checkpoint_dir):
        with open(os.path.join(checkpoint_dir, name), "wb") as f:
            f.write(b"this is not a checkpoint at all")
    with pytest.raises(BadCheckpoint, match=checkpoint_dir):
        parsl_lite.load(config(run_dir, checkpoint_files=[checkpoint_dir]))
    with parsl_lite.load(config(run_dir)):  # nothing else is lost: a fresh load still works
        assert square(3).result(timeout=10) == 9
