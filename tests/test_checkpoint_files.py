"""Checkpoint files: foreign, damaged or torn ones refused by name, or good records kept; and across runs,
written at task exit into ``run_dir/NNN/checkpoint``, found by ``get_all_checkpoints`` /
``get_last_checkpoint`` (Parsl's rules) and reused by the next run, even after a crash."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from parsl_lite.dataflow import checkpoints
from parsl_lite.dataflow.checkpoints import CHECKPOINT_FILE, CheckpointWriter, read_checkpoint, scan
from parsl_lite.dataflow.errors import BadCheckpoint

from .conftest import wait_for
from .test_memoization import KEY_A, KEY_B, KEY_C, ckpt_file, double, hit, record, run, started, write_records


# ---------------------------------------------------------------- file format: corrupt and torn

def _three_records(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint" / CHECKPOINT_FILE
    write_records(path, {KEY_A: b"Pone", KEY_B: b"Ptwo", KEY_C: b"Pthree"})
    return path


@pytest.mark.parametrize("content, reason", [
    (b"\x80\x04\x95 this is a pickle", "not a parsl_lite checkpoint .*looks like a pickle"),
    (b"hello", "not a parsl_lite checkpoint"),
    (checkpoints.MAGIC + b"\x09", "format version 9"),
])
def test_foreign_file_is_bad_checkpoint(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "checkpoint" / CHECKPOINT_FILE
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(BadCheckpoint, match=reason) as info:
        started(tmp_path / "001", checkpoint_files=[str(tmp_path / "checkpoint")])
    assert str(path) in str(info.value)


def test_damage_before_the_end_is_bad_checkpoint(tmp_path: Path) -> None:
    path = _three_records(tmp_path)
    data = bytearray(path.read_bytes())
    data[len(checkpoints.MAGIC) + 1 + 12 + 10] ^= 0xFF  # inside the first record's payload
    path.write_bytes(bytes(data))
    with pytest.raises(BadCheckpoint, match="offset 9") as info:
        read_checkpoint(str(path))
    assert str(path) in str(info.value)
    data = bytearray(_three_records(tmp_path / "h").read_bytes())
    data[len(checkpoints.MAGIC) + 1] ^= 0xFF  # the first record's length
    with pytest.raises(BadCheckpoint, match="damaged record header"):
        scan(bytes(data), "x")


def test_missing_checkpoint_is_bad_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(BadCheckpoint, match="not found") as info:
        started(tmp_path / "001", checkpoint_files=[str(tmp_path / "nowhere")])
    assert "nowhere" in str(info.value)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(BadCheckpoint, match=CHECKPOINT_FILE):
        read_checkpoint(str(tmp_path / "empty_dir"))


@pytest.mark.parametrize("cut", [1, 5, 12, 13, 20])
def test_torn_tail_keeps_good_records_and_warns(tmp_path: Path, cut: int,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = _three_records(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with caplog.at_level(logging.WARNING, logger="parsl_lite.dataflow.checkpoints"):
        records = read_checkpoint(str(path))
    assert records == {KEY_A: b"Pone", KEY_B: b"Ptwo"}
    assert "torn tail" in caplog.text and str(path) in caplog.text


def test_zero_filled_tail_and_bad_last_checksum_are_torn(tmp_path: Path) -> None:
    path = _three_records(tmp_path)
    data = path.read_bytes()
    assert scan(data + bytes(100), "x").records.keys() == {KEY_A, KEY_B, KEY_C}
    flipped = data[:-1] + bytes([data[-1] ^ 0xFF])
    result = scan(flipped, "x")
    assert result.records.keys() == {KEY_A, KEY_B} and "checksum" in (result.torn or "")


def test_empty_or_header_only_files_hold_nothing(tmp_path: Path) -> None:
    assert scan(b"", "x").records == {}
    assert scan(checkpoints.MAGIC[:3], "x").torn is not None
    path = tmp_path / CHECKPOINT_FILE
    CheckpointWriter(str(path)).open()
    assert read_checkpoint(str(path)) == {}


def test_reused_run_dir_is_validated_at_start(tmp_path: Path) -> None:
    path = ckpt_file(tmp_path)
    path.parent.mkdir()
    path.write_bytes(b"some other tool's data")
    with pytest.raises(BadCheckpoint, match="not a parsl_lite checkpoint") as info:
        started(tmp_path, checkpoint_mode="task_exit")
    assert str(path) in str(info.value)


def test_results_after_close_are_not_written(tmp_path: Path) -> None:
    checkpointer = checkpoints.Checkpointer("task_exit", str(tmp_path / "checkpoint"))
    checkpointer.close()
    checkpointer.add(1, KEY_A, "late")
    assert not ckpt_file(tmp_path).exists()
    memoizer = started(tmp_path / "000", checkpoint_mode="manual")
    memoizer.close()
    assert memoizer.checkpoint() is None


def test_writer_reopening_a_torn_file_cuts_the_tail(tmp_path: Path) -> None:
    path = _three_records(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    writer = CheckpointWriter(str(path))
    writer.append("d" * 64, b"Pfour")
    writer.close()
    assert read_checkpoint(str(path)) == {KEY_A: b"Pone", KEY_B: b"Ptwo", "d" * 64: b"Pfour"}


def test_failed_write_is_cut_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / CHECKPOINT_FILE
    writer = CheckpointWriter(str(path))
    writer.append(KEY_A, b"Pone")
    real_pwrite = os.pwrite
    calls = []

    def half_then_fail(fd: int, data: Any, offset: int) -> int:
        calls.append(offset)
        if len(calls) == 1:
            return real_pwrite(fd, bytes(data)[: len(data) // 2], offset)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints.os, "pwrite", half_then_fail)
    with pytest.raises(OSError):
        writer.append(KEY_B, b"P" + b"x" * 100)
    monkeypatch.setattr(checkpoints.os, "pwrite", real_pwrite)
    assert read_checkpoint(str(path)) == {KEY_A: b"Pone"}  # no torn record left behind
    writer.append(KEY_C, b"Pthree")
    writer.close()
    assert read_checkpoint(str(path)) == {KEY_A: b"Pone", KEY_C: b"Pthree"}


def test_unserializable_result_is_skipped(tmp_path: Path) -> None:
    memoizer = started(tmp_path, checkpoint_mode="task_exit")
    bad, good = record(double, 1), record(double, 2)
    run(memoizer, bad, (x for x in []))
    run(memoizer, good, 4)
    assert hit(memoizer, record(double, 1)) is not None  # still memoized in memory
    memoizer.close()
    assert set(read_checkpoint(str(tmp_path / "checkpoint"))) == {good.hashsum}


# ---------------------------------------------------------------- across runs: written at task exit, found, reused

# One script for every run, so the app's memo hash is the same in each: ``crash`` ends the process with
# os._exit while the kernel is loaded (no cleanup, no flush at exit), ``rerun`` loads the checkpoints
# that ``get_last_checkpoint`` or ``get_all_checkpoints`` find and prints which results came from memo.
_RUN_SCRIPT = """
import json, os, sys
import parsl_lite
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.dataflow.memoization import BasicMemoizer
from parsl_lite.executors import ThreadPoolExecutor
from parsl_lite.utils import get_all_checkpoints, get_last_checkpoint

run_dir, counter, action, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

@python_app(cache=True)
def square(x):
    with open(counter, "a") as f:
        f.write(".")
    return x * x

found = {"last": get_last_checkpoint, "all": get_all_checkpoints}.get(action, lambda _: [])(run_dir)
memoizer = BasicMemoizer(checkpoint_mode="task_exit", checkpoint_files=found)
with parsl_lite.load(Config(executors=[ThreadPoolExecutor()], run_dir=run_dir, memoizer=memoizer)) as dfk:
    futures = [square(i) for i in range(n)]
    print(json.dumps([[f.result(timeout=20) for f in futures], [f.task_status() for f in futures], found]),
          flush=True)
    if action == "crash":
        os._exit(3)
"""


def _run(run_dir: Path, counter: Path, action: str, n: int) -> list:
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _RUN_SCRIPT, str(run_dir), str(counter), action, str(n)],
                          capture_output=True, text=True, timeout=50)
    assert done.returncode == (3 if action == "crash" else 0), done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _count(counter: Path) -> int:
    return len(counter.read_text()) if counter.exists() else 0


def test_task_exit_checkpoint_is_on_disk_while_the_kernel_runs(run_dir: str) -> None:
    import parsl_lite
    from parsl_lite import python_app
    from parsl_lite.config import Config
    from parsl_lite.dataflow.memoization import BasicMemoizer
    from parsl_lite.executors import ThreadPoolExecutor
    from parsl_lite.utils import get_all_checkpoints, get_last_checkpoint

    @python_app(cache=True)
    def triple(x: int) -> int:
        return 3 * x

    config = Config(executors=[ThreadPoolExecutor()], run_dir=run_dir,
                    memoizer=BasicMemoizer(checkpoint_mode="task_exit"))
    with parsl_lite.load(config) as dfk:
        assert triple(2).result(timeout=20) == 6
        expected = os.path.abspath(os.path.join(dfk.run_dir, "checkpoint"))
        assert dfk.run_dir == os.path.join(run_dir, "000")
        assert get_all_checkpoints(run_dir) == get_last_checkpoint(run_dir) == [expected]
        wait_for(lambda: len(read_checkpoint(expected)) == 1, what="the result written at task exit")


def test_crashed_run_checkpoints_are_found_and_reused(run_dir: str, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    values, states, _ = _run(Path(run_dir), counter, "crash", 4)  # run 000 dies without cleanup
    assert values == [0, 1, 4, 9] and _count(counter) == 4
    first = os.path.abspath(os.path.join(run_dir, "000", "checkpoint"))
    values, states, found = _run(Path(run_dir), counter, "last", 6)  # run 001 reuses 000's
    assert found == [first]
    assert values == [0, 1, 4, 9, 16, 25]
    assert states == ["memo_done"] * 4 + ["exec_done"] * 2
    assert _count(counter) == 6  # only 4 and 5 ran


def test_last_checkpoint_steps_over_a_run_without_one_and_all_covers_every_run(run_dir: str,
                                                                                 tmp_path: Path) -> None:
    counter = tmp_path / "count"
    _run(Path(run_dir), counter, "crash", 2)                   # 000: squares of 0, 1
    os.makedirs(os.path.join(run_dir, "001"))                  # a run that died before any checkpoint
    _, states, found = _run(Path(run_dir), counter, "last", 3)  # 002: finds 000 (Parsl steps over 001)
    assert found == [os.path.abspath(os.path.join(run_dir, "000", "checkpoint"))]
    assert states == ["memo_done", "memo_done", "exec_done"]
    # 002's checkpoint holds only what 002 computed (incremental), so the last one alone misses 0 and 1 ...
    _, states, found = _run(Path(run_dir), counter, "last", 3)
    assert found == [os.path.abspath(os.path.join(run_dir, "002", "checkpoint"))]
    assert states == ["exec_done", "exec_done", "memo_done"]
    # ... while every run's together has all of them.
    _, states, found = _run(Path(run_dir), counter, "all", 3)
    assert len(found) == 3 and states == ["memo_done"] * 3
