"""``AppFuture._repr_html_``: what a notebook shows for a future (task id, app, state, executor, duration or error)."""
from __future__ import annotations

import re
import threading

import pytest

from parsl_lite import File, bash_app

from .test_progress import fail, gated, square, write


@bash_app
def refuse(outputs=()):
    return "echo '<b>no</b>' >&2; exit 3"


def rows(html_text: str) -> dict[str, str]:
    return dict(re.findall(r"<th[^>]*>(.*?)</th><td[^>]*>(.*?)</td>", html_text))


def test_done_future_shows_its_duration(dfk):
    fut = square(4)
    assert fut.result() == 16
    shown = rows(fut._repr_html_())
    assert shown["task"] == str(fut.tid) and shown["app"] == "square"
    assert shown["state"] == "exec_done" and shown["executor"] == fut.task_record.executor != ""
    assert re.fullmatch(r"\d+\.\d{3} s", shown["duration"]), shown
    assert "error" not in shown


def test_failed_future_shows_its_error_escaped(dfk):
    fut = fail("<script>alert('x')</script> & more")
    with pytest.raises(ValueError):
        fut.result()
    text = fut._repr_html_()
    assert "<script>" not in text
    assert rows(text)["error"] == "ValueError: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more"
    assert rows(text)["state"] == "failed" and "duration" not in rows(text)


def test_unfinished_future_shows_state_only(dfk):
    gate = threading.Event()
    fut = gated(gate, 1)
    shown = rows(fut._repr_html_())
    assert shown["state"] in ("pending", "launched", "running") and set(shown) == {"task", "app", "state", "executor"}
    gate.set()
    assert fut.result() == 1


def test_data_future_shows_file_task_and_error(dfk, tmp_path):
    good = write("x", outputs=[File(str(tmp_path / "good.txt"))]).outputs[0]
    bad = refuse(outputs=[File(str(tmp_path / "bad.txt"))]).outputs[0]
    assert good.result().filepath.endswith("good.txt")
    with pytest.raises(Exception):
        bad.result()
    shown = rows(good._repr_html_())
    assert shown["file"].endswith("good.txt") and shown["task"] == str(good.tid) and shown["state"] == "finished"
    failed = rows(bad._repr_html_())
    assert failed["error"].startswith("BashExitFailure") and "<" not in failed["error"], failed
