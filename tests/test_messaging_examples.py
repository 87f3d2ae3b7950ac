"""The scripts in examples/messaging/ run as a user runs them, on the local htex, against each backend: our broker
and RabbitMQ."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .messaging_helpers import amqp, broker  # noqa: F401  (fixtures)

@pytest.fixture(params=["broker", "amqp"], ids=["our-broker", "rabbitmq"])
def backend(request):
    """The example's messaging backend: a broker process of ours, or the RabbitMQ server."""
    return request.getfixturevalue(request.param)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "messaging"


def run_example(name: str, cwd: Path) -> list[str]:
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], cwd=cwd, capture_output=True, text=True,
                            timeout=100, env=dict(os.environ))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip().splitlines()


def test_interactive_loads_the_model_once_then_serves_in_milliseconds(backend, tmp_path):
    lines = run_example("interactive.py", tmp_path)
    assert "app says: model loaded" in lines
    first = float(re.search(r"first request: (\d+) ms", "\n".join(lines)).group(1))
    later = float(re.search(r"later requests: median ([\d.]+) ms over 20", "\n".join(lines)).group(1))
    assert later < first                    # the first one waited for the model; not a speed threshold
    assert lines[-1] == "served 21 requests"


def test_pubsub_two_senders_two_listeners_and_a_replaced_listener(backend, tmp_path):
    lines = run_example("pubsub.py", tmp_path)
    assert "channel 3: 15 messages, A 5, B 10" in lines and "channel 5: 15 messages, A 5, B 10" in lines
    assert "part 1: sent 30, heard 30" in lines
    assert re.fullmatch(r"part 2: v1 heard 0\.\.(\d+), v2 heard (\d+)\.\.59, missed 0", lines[-1])


def test_components_front_and_back_end_account_for_every_message(backend, tmp_path):
    lines = run_example("components.py", tmp_path)
    assert "back end scaled to 4 replicas" in lines and "back end scaled to 1 replica" in lines
    assert lines[-1] == "accounted for: 90 of 90 (light 60 in front, heavy 30 in back), missing []"
