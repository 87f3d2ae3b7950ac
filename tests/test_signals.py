"""Ctrl-C and SIGTERM against a real script in a subprocess.

Each script prints "ready" once its main thread is inside the blocking call
under test (a watcher thread looks at the main thread's stack), then gets
SIGINT or SIGTERM. ``proc.wait(timeout=...)`` only guards against a hang;
what is asserted is that it exits, how, and that none of its child processes
(interchange, pools, workers) is left.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from parsl_lite.config import Config
from parsl_lite.dataflow.kernel import DataFlowKernel
from parsl_lite.dataflow.signals import EXIT_CODE, SigtermCleanup
from parsl_lite.executors import ThreadPoolExecutor
from .conftest import wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HANG_GUARD_S = 30  # a hang fails the test; how fast it exits is measured, not asserted

PRELUDE = '''
import signal, sys, threading, time
import parsl_lite
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.executors import ThreadPoolExecutor

def announce_when_blocked_in(name):
    """Print 'ready' once the main thread is inside a function called `name`."""
    main = threading.main_thread().ident
    def watch():
        while True:
            frame = sys._current_frames().get(main)
            while frame is not None:
                if frame.f_code.co_name == name:
                    print("ready", flush=True)
                    return
                frame = frame.f_back
            time.sleep(0.01)
    threading.Thread(target=watch, name="watcher", daemon=True).start()

@python_app
def hold(seconds):
    import time
    time.sleep(seconds)
    return seconds

def threads(**kwargs):
    return Config(executors=[ThreadPoolExecutor(max_threads=2)], run_dir="runinfo", strategy="none", **kwargs)

def htex(**kwargs):
    from parsl_lite.executors.htex.executor import HighThroughputExecutor
    from parsl_lite.providers import LocalProvider
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=2, heartbeat_period=1,
                                      heartbeat_threshold=3,
                                      provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1))
    return Config(executors=[executor], run_dir="runinfo", strategy="none", **kwargs)
'''


class Script:
    """A workflow script running in its own process, its output read line by line."""

    def __init__(self, tmp_path, body: str, argv_prefix: tuple = ()) -> None:
        path = tmp_path / "workflow.py"
        path.write_text(PRELUDE + textwrap.dedent(body))
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.proc = subprocess.Popen([sys.executable, *argv_prefix, str(path)], cwd=str(tmp_path), env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.children: list[psutil.Process] = []

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("<eof>")

    def wait_for(self, wanted: str) -> None:
        while True:
            line = self.lines.get(timeout=HANG_GUARD_S)
            if line == wanted:
                break
            if line == "<eof>":
                raise AssertionError(f"script ended before printing {wanted!r}: {self.proc.stderr.read()}")
        self.children = psutil.Process(self.proc.pid).children(recursive=True)

    def signal_and_wait(self, signum: int) -> tuple[int, str, float]:
        start = time.monotonic()
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=HANG_GUARD_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the script did not exit within {HANG_GUARD_S} s of signal {signum}")
        elapsed = time.monotonic() - start
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read(), elapsed

    def assert_no_child_left(self, deadline_s: float = 15.0) -> None:
        """Every process it had started is gone (zombies waiting for init count as gone)."""
        try:
            wait_for(lambda: not any(_alive(p) for p in self.children), deadline_s,
                     what="the script's child processes to exit")
        except AssertionError:
            alive = [p for p in self.children if _alive(p)]
            described = [(p.pid, " ".join(p.cmdline())) for p in alive]
            self.kill()
            raise AssertionError(f"left running after the script exited: {described}") from None

    def kill(self) -> None:
        for proc in [*self.children, psutil.Process(self.proc.pid)]:
            try:
                proc.kill()
            except psutil.Error:
                pass


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def interrupted(tmp_path, body: str, argv_prefix: tuple = ()) -> Script:
    script = Script(tmp_path, body, argv_prefix)
    script.wait_for("ready")
    code, stderr, elapsed = script.signal_and_wait(signal.SIGINT)
    assert code != 0 and "KeyboardInterrupt" in stderr, (code, stderr)
    print(f"exited {elapsed:.2f} s after SIGINT")  # shown with -s; the figure the report quotes
    return script


# ---------------------------------------------------------------- Ctrl-C, threads

CTRL_C_CASES = {
    "wait_for_current_tasks": '''
        with parsl_lite.load(CONFIG):
            hold(60)
            announce_when_blocked_in("wait_for_current_tasks")
            parsl_lite.wait_for_current_tasks()
    ''',
    "result": '''
        with parsl_lite.load(CONFIG):
            fut = hold(60)
            announce_when_blocked_in("result")
            fut.result()
    ''',
    "wait_for_room": '''
        with parsl_lite.load(CONFIG_WITH(max_pending_tasks=2)):
            hold(60)
            hold(60)
            announce_when_blocked_in("_wait_for_room")
            hold(60)
    ''',
    "exit_mode_wait": '''
        with parsl_lite.load(CONFIG_WITH(exit_mode="wait")):
            hold(60)
            announce_when_blocked_in("wait_for_current_tasks")
    ''',
}


@pytest.mark.parametrize("case", sorted(CTRL_C_CASES))
def test_ctrl_c_stops_blocking_calls_on_threads(tmp_path, case):
    body = "CONFIG = threads()\nCONFIG_WITH = threads\n" + textwrap.dedent(CTRL_C_CASES[case])
    interrupted(tmp_path, body)


def test_ctrl_c_stops_a_slow_load(tmp_path):
    body = '''
        class SlowToStart(ThreadPoolExecutor):
            def start(self):
                threading.Event().wait()  # a provider that never answers, say

        announce_when_blocked_in("start")
        parsl_lite.load(Config(executors=[SlowToStart()], run_dir="runinfo"))
    '''
    interrupted(tmp_path, body)


def test_ctrl_c_under_parsl_lite_run(tmp_path):
    body = '''
        hold(60)
        announce_when_blocked_in("wait_for_current_tasks")
        parsl_lite.wait_for_current_tasks()
    '''
    interrupted(tmp_path, body, argv_prefix=("-m", "parsl_lite.cli", "run", "--config", f"{ROOT}/configs/threads.toml"))


# ---------------------------------------------------------------- Ctrl-C and SIGTERM, htex

@pytest.mark.parametrize("case", ["wait_for_current_tasks", "result"])
def test_ctrl_c_on_htex_stops_and_leaves_no_process(tmp_path, case):
    warm_up = "with parsl_lite.load(CONFIG):\n    hold(0).result()  # workers up, then one busy when interrupted\n"
    body = "CONFIG = htex()\nCONFIG_WITH = htex\n" + textwrap.dedent(CTRL_C_CASES[case]).replace(
        "with parsl_lite.load(CONFIG):\n", warm_up)
    script = interrupted(tmp_path, body)
    assert script.children, "the htex script had started no process"
    script.assert_no_child_left()


def test_sigterm_runs_cleanup_on_htex_and_leaves_no_process(tmp_path):
    body = '''
        with parsl_lite.load(htex()):
            hold(0).result()
            fut = hold(60)
            announce_when_blocked_in("result")
            fut.result()
    '''
    script = Script(tmp_path, body)
    script.wait_for("ready")
    assert script.children
    code, stderr, elapsed = script.signal_and_wait(signal.SIGTERM)
    print(f"exited {elapsed:.2f} s after SIGTERM")
    assert code == EXIT_CODE, stderr
    script.assert_no_child_left()
    [log] = list(tmp_path.glob("runinfo/*/parsl.log"))
    assert "kernel cleanup done" in log.read_text()


def test_sigterm_chains_the_previous_handler_and_cleans_up(tmp_path):
    body = '''
        signal.signal(signal.SIGTERM, lambda signum, frame: print("theirs ran", flush=True))
        with parsl_lite.load(threads()):
            fut = hold(60)
            announce_when_blocked_in("result")
            fut.result()
        print("not reached", flush=True)
    '''
    script = Script(tmp_path, body)
    script.wait_for("ready")
    code, stderr, _ = script.signal_and_wait(signal.SIGTERM)
    assert code == EXIT_CODE, stderr
    assert script.lines.get(timeout=HANG_GUARD_S) == "theirs ran"
    assert script.lines.get(timeout=HANG_GUARD_S) == "<eof>"
    [log] = list(tmp_path.glob("runinfo/*/parsl.log"))
    assert "kernel cleanup done" in log.read_text()


# ---------------------------------------------------------------- the handler's life, in this process

def test_the_kernel_installs_its_handler_and_restores_the_previous_one(run_dir):
    def previous(signum, frame):
        pass

    original = signal.signal(signal.SIGTERM, previous)
    try:
        dfk = DataFlowKernel(Config(executors=[ThreadPoolExecutor(max_threads=1)], run_dir=run_dir))
        assert isinstance(signal.getsignal(signal.SIGTERM), SigtermCleanup)
        dfk.cleanup()
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, original)


def test_an_ignored_sigterm_stays_ignored(run_dir):
    original = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        dfk = DataFlowKernel(Config(executors=[ThreadPoolExecutor(max_threads=1)], run_dir=run_dir))
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
        dfk.cleanup()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, original)


def test_ctrl_c_stops_a_load_whose_provider_hangs_and_leaves_no_process(tmp_path):
    body = '''
        from parsl_lite.executors.htex.executor import HighThroughputExecutor
        from parsl_lite.providers import LocalProvider

        class HangingProvider(LocalProvider):
            def submit(self, *args, **kwargs):
                threading.Event().wait()  # an sbatch that never returns, say

        executor = HighThroughputExecutor(label="htex", provider=HangingProvider(init_blocks=1, max_blocks=1))
        announce_when_blocked_in("submit")
        parsl_lite.load(Config(executors=[executor], run_dir="runinfo", strategy="none"))
    '''
    script = interrupted(tmp_path, body)
    assert script.children, "the interchange had not started"
    script.assert_no_child_left()


def test_a_sigterm_during_cleanup_waits_for_it_then_reaches_the_previous_handler():
    received = []
    original = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        handler = SigtermCleanup()
        handler.install()
        handler.cleaning()
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread: deferred, no SystemExit
        wait_for(lambda: handler._deferred, 10, "the handler to see the signal")
        assert received == []
        handler.restore()  # the previous handler is back, and gets the deferred signal
        wait_for(lambda: received == [signal.SIGTERM], 10, "the deferred SIGTERM")
    finally:
        signal.signal(signal.SIGTERM, original)


def test_a_kernel_loaded_off_the_main_thread_leaves_sigterm_alone(run_dir):
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def load_and_look():
        dfk = DataFlowKernel(Config(executors=[ThreadPoolExecutor(max_threads=1)], run_dir=run_dir))
        seen.append(signal.getsignal(signal.SIGTERM))
        dfk.cleanup()

    thread = threading.Thread(target=load_and_look)
    thread.start()
    thread.join(30)
    assert seen == [before] and signal.getsignal(signal.SIGTERM) == before
