"""What a script's (or notebook's) own ``__main__`` does on a real high-throughput executor.

Each test writes a script and runs it in a subprocess, so that ``__main__`` is
the user's script, as it is for a user, and the workers lack it.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PRELUDE = """
import json, sys
import parsl_lite as parsl
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.providers import LocalProvider

def config():
    executor = HighThroughputExecutor(label="htex", max_workers_per_node=1, heartbeat_period=1,
                                      heartbeat_threshold=5, provider=LocalProvider(init_blocks=1, max_blocks=1))
    return Config(executors=[executor], run_dir=sys.argv[1], strategy="none")
"""


def run_script(tmp_path, body: str) -> dict:
    script = tmp_path / "script.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "runinfo")], capture_output=True, text=True,
                          timeout=55, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_instance_of_a_main_class_is_an_argument_and_a_result(tmp_path):
    seen = run_script(tmp_path, """
        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def norm1(self):
                return abs(self.x) + abs(self.y)

        class Odd(Exception):
            pass

        @python_app
        def shift(p, dx):
            return Point(p.x + dx, p.y), isinstance(p, Point), p.norm1()

        @python_app
        def refuse(p):
            raise Odd(f"odd point {p.x}")

        with parsl.load(config()):
            moved, was_point, norm = shift(Point(1, -2), 10).result(timeout=30)
            try:
                refuse(Point(3, 0)).result(timeout=30)
                caught = "nothing"
            except Odd as exc:
                caught = str(exc)
        print(json.dumps({"result_is_point": type(moved) is Point, "xy": [moved.x, moved.y],
                          "argument_was_point": was_point, "norm": norm, "caught": caught}))
    """)
    assert seen == {"result_is_point": True, "xy": [11, -2], "argument_was_point": True, "norm": 3,
                    "caught": "odd point 3"}


def test_a_rebound_global_reaches_the_workers(tmp_path):
    seen = run_script(tmp_path, """
        OFFSET = 1

        @python_app
        def add(x):
            return x + OFFSET

        with parsl.load(config()):
            before = add(1).result(timeout=30)
            OFFSET = 100          # a notebook re-running the cell
            after = add(1).result(timeout=30)
        print(json.dumps({"before": before, "after": after}))
    """)
    assert seen == {"before": 2, "after": 101}
