"""``parsl_lite.wait`` and ``as_completed``: the semantics of ``concurrent.futures``, a bar when asked.

Against a real kernel on threads (AppFutures, DataFutures) and plain futures; the
bar's last state is read from the captured stderr (tqdm's terminal bar there).
"""
from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import CancelledError, Future

import pytest

import parsl_lite
from parsl_lite import File, bash_app, python_app
from parsl_lite.progress import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, Completion


@python_app
def square(x):
    return x * x


@python_app
def fail(message):
    raise ValueError(message)


@python_app
def gated(event, value):
    event.wait(30)
    return value


@bash_app
def write(text, outputs=()):
    return f"echo {text} > {outputs[0]}"


def last_bar(err: str) -> str:
    """The last state of the terminal bar (tqdm redraws with carriage returns)."""
    states = [part for part in re.split(r"[\r\n]", err) if "tasks" in part]
    assert states, f"no progress bar in the output: {err!r}"
    return states[-1]


# ---------------------------------------------------------------- the pure counter

def test_completion_rules():
    every = Completion(3, ALL_COMPLETED)
    assert not every.future_done(failed=True) and not every.future_done(failed=False)
    assert every.future_done(failed=False) and (every.finished, every.failed) == (3, 1)
    assert Completion(3, FIRST_COMPLETED).future_done(failed=False)
    first_exc = Completion(3, FIRST_EXCEPTION)
    assert not first_exc.future_done(failed=False)
    assert first_exc.future_done(failed=True)
    assert Completion(0).over          # nothing to wait for: over at once


# ---------------------------------------------------------------- wait

def test_wait_app_futures_with_bar(dfk, capsys):
    futures = [square(i) for i in range(10)]
    done, not_done = parsl_lite.wait(futures, progress=True)
    assert done == set(futures) and not_done == set()
    assert sorted(f.result() for f in done) == [i * i for i in range(10)]
    assert "10/10" in last_bar(capsys.readouterr().err)


def test_no_bar_without_progress(dfk, capsys):
    done, _ = parsl_lite.wait([square(i) for i in range(5)])
    assert len(done) == 5
    assert capsys.readouterr().err == ""


def test_wait_timeout_returns_what_is_done(capsys):
    futures = [Future() for _ in range(5)]
    futures[1].set_result(1)
    futures[3].set_exception(KeyError("x"))
    done, not_done = parsl_lite.wait(futures, timeout=0.2, progress=True)
    assert done == {futures[1], futures[3]}
    assert not_done == {futures[0], futures[2], futures[4]}
    bar = last_bar(capsys.readouterr().err)
    assert "2/5" in bar and "failed=1" in bar


def test_wait_first_completed_blocks_until_one_finishes():
    futures = [Future() for _ in range(3)]
    returned: list = []
    waiter = threading.Thread(target=lambda: returned.append(parsl_lite.wait(futures, return_when=FIRST_COMPLETED)))
    waiter.start()
    futures[2].set_result("third")
    waiter.join(20)
    assert not waiter.is_alive()
    done, not_done = returned[0]
    assert done == {futures[2]} and not_done == {futures[0], futures[1]}


def test_wait_first_exception_and_errors_pass_through(dfk):
    gate = threading.Event()
    slow, bad = gated(gate, "slow"), fail("<bad>")
    done, not_done = parsl_lite.wait([slow, bad], return_when="FIRST_EXCEPTION")   # Dask's string form
    assert done == {bad} and not_done == {slow}
    with pytest.raises(ValueError, match="<bad>"):
        bad.result()
    gate.set()
    assert parsl_lite.wait(slow).done == {slow}      # one future, as distributed.wait takes it


def test_wait_data_futures(dfk, tmp_path):
    apps = [write(f"line{i}", outputs=[File(str(tmp_path / f"out{i}.txt"))]) for i in range(4)]
    data = [app.outputs[0] for app in apps]
    done, not_done = parsl_lite.wait(data)
    assert done == set(data) and not not_done
    assert sorted(open(f.result().filepath).read().strip() for f in done) == [f"line{i}" for i in range(4)]


def test_wait_nothing():
    assert parsl_lite.wait([]) == (set(), set())


def test_a_cancelled_future_is_done_not_failed():
    """FIRST_EXCEPTION is not met by a cancellation (as in concurrent.futures): the wait goes on."""
    from .conftest import wait_for

    cancelled, pending = Future(), Future()
    assert cancelled.cancel()
    returned: list = []
    waiter = threading.Thread(target=lambda: returned.append(
        parsl_lite.wait([cancelled, pending], return_when=FIRST_EXCEPTION)))
    waiter.start()
    wait_for(lambda: pending._done_callbacks, what="the wait to watch the pending future")
    pending.set_result(1)
    waiter.join(20)
    assert returned[0].done == {cancelled, pending}
    (fut, value), = parsl_lite.as_completed([cancelled], with_results=True)
    assert fut is cancelled and isinstance(value, CancelledError)


# ---------------------------------------------------------------- as_completed

def test_as_completed_yields_in_completion_order():
    a, b, c = Future(), Future(), Future()
    c.set_result("c")
    order = []
    for fut in parsl_lite.as_completed([a, b, c]):
        order.append(fut.result())
        if fut is c:
            b.set_result("b")
        elif fut is b:
            a.set_result("a")
    assert order == ["c", "b", "a"]


def test_as_completed_app_futures_with_bar(dfk, capsys):
    futures = [square(i) for i in range(8)]
    seen = [fut for fut in parsl_lite.as_completed(futures, progress=True)]
    assert set(seen) == set(futures) and len(seen) == 8
    assert "8/8" in last_bar(capsys.readouterr().err)


def test_as_completed_timeout_message():
    futures = [Future() for _ in range(3)]
    futures[0].set_result(0)
    futures[2].set_result(2)
    it = parsl_lite.as_completed(futures, timeout=0.2)
    assert {next(it), next(it)} == {futures[0], futures[2]}
    with pytest.raises(TimeoutError, match=r"^1 \(of 3\) futures unfinished$"):
        next(it)


def test_as_completed_with_results_raises_or_yields_the_error(dfk):
    futures = [square(3), fail("nope")]
    parsl_lite.wait(futures)
    pairs = dict(parsl_lite.as_completed(futures, with_results=True, raise_errors=False))
    assert pairs[futures[0]] == 9
    assert isinstance(pairs[futures[1]], ValueError) and str(pairs[futures[1]]) == "nope"
    with pytest.raises(ValueError, match="nope"):
        for _ in parsl_lite.as_completed(futures, with_results=True):
            pass


def test_as_completed_data_futures(dfk, tmp_path):
    app = write("hello", outputs=[File(str(tmp_path / "hello.txt"))])
    (fut,) = list(parsl_lite.as_completed(app.outputs))
    assert isinstance(fut.result(), File) and open(fut.result().filepath).read() == "hello\n"


def test_breaking_out_closes_the_bar(capsys):
    futures = [Future() for _ in range(4)]
    for fut in futures:
        fut.set_result(None)
    it = parsl_lite.as_completed(futures, progress=True)
    next(it)
    it.close()
    assert "1/4" in last_bar(capsys.readouterr().err)


def test_as_completed_add_while_iterating_dask_style(dfk, capsys):
    """A dynamic workflow: each finished square below 100 submits the next; the bar's total grows."""
    seq = parsl_lite.as_completed([square(2)], progress=True)
    results = []
    for fut in seq:
        results.append(fut.result())
        if fut.result() < 100:
            seq.add(square(fut.result()))
    assert results == [4, 16, 256] and seq.is_empty() and seq.count() == 0
    assert "3/3" in last_bar(capsys.readouterr().err)


def test_as_completed_batches_count_and_errors_that_do_not_end_it():
    a, b, c, d = futures = [Future() for _ in range(4)]
    seq = parsl_lite.as_completed(futures, with_results=True)
    assert seq.count() == 4 and not seq.has_ready() and seq.next_batch(block=False) == []
    a.set_result(0)
    c.set_result(2)
    assert seq.next_batch() == [(a, 0), (c, 2)] and seq.count() == 2
    b.set_exception(KeyError("lost"))
    with pytest.raises(KeyError, match="lost"):      # raise_errors: raised when reached...
        next(seq)
    assert seq.count() == 1                          # ...and the iteration goes on (Dask's)
    d.set_result(3)
    assert list(seq.batches()) == [[(d, 3)]] and seq.is_empty()
    assert repr(seq) == "<AsCompleted: 0 of 4 to return>"


def test_async_for_does_not_block_the_loop(capsys):
    """``b`` is finished by a task of the same loop: a blocking wait would time out instead."""
    async def main() -> list:
        a, b = Future(), Future()
        a.set_result(1)

        async def finish_b() -> None:
            b.set_result(2)

        got, tasks = [], []
        async for fut in parsl_lite.as_completed([a, b], timeout=10, progress=True):
            got.append(fut.result())
            if fut is a:
                tasks.append(asyncio.get_running_loop().create_task(finish_b()))
        return got

    assert asyncio.run(main()) == [1, 2]
    assert "2/2" in last_bar(capsys.readouterr().err)


def test_async_for_app_futures_and_timeout(dfk):
    async def main() -> tuple[list, str]:
        results = [fut.result() async for fut in parsl_lite.as_completed([square(i) for i in range(5)])]
        try:
            async for _ in parsl_lite.as_completed([Future()], timeout=0.1):
                pass
        except TimeoutError as err:
            return results, str(err)
        return results, "no timeout"

    results, message = asyncio.run(main())
    assert sorted(results) == [0, 1, 4, 9, 16] and message == "1 (of 1) futures unfinished"


def test_a_cancelled_async_wait_loses_no_future():
    async def main() -> Future:
        fut = Future()
        seq = parsl_lite.as_completed([fut])
        waiting = asyncio.ensure_future(seq.__anext__())
        await asyncio.sleep(0)                 # let it start waiting
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        fut.set_result("kept")
        return await seq.__anext__()

    assert asyncio.run(main()).result() == "kept"


# ---------------------------------------------------------------- bad input, before anything waits

def test_bad_input_names_the_argument():
    ok = Future()
    with pytest.raises(TypeError, match=r"fs\[1\] is a int"):
        parsl_lite.wait([ok, 3])
    with pytest.raises(TypeError, match="fs must be a future or an iterable"):
        parsl_lite.wait(42)
    with pytest.raises(ValueError, match="return_when must be one of"):
        parsl_lite.wait([ok], return_when="SOMETIMES")
    with pytest.raises(TypeError, match="timeout must be a number"):
        parsl_lite.wait([ok], timeout="10")
    with pytest.raises(TypeError, match=r"fs\[0\] is a str"):   # at the call, not at the first next()
        parsl_lite.as_completed(["x"])


def test_ctrl_c_stops_a_wait(tmp_path):
    """SIGINT (Ctrl-C, a notebook's interrupt) raises KeyboardInterrupt out of a blocked ``wait``."""
    import signal
    import subprocess
    import sys

    script = tmp_path / "blocked.py"
    script.write_text(
        "import sys\nfrom concurrent.futures import CancelledError, Future\nimport parsl_lite\n"
        "try:\n    print('waiting', flush=True)\n    parsl_lite.wait([Future()], progress=True)\n"
        "except KeyboardInterrupt:\n    print('interrupted', flush=True)\n    sys.exit(3)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3 and out.strip() == "interrupted", (proc.returncode, out, err)
