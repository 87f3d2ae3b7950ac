"""The issue's lines from a notebook: a real kernel of this venv (nbclient), the broker found through
PARSL_LITE_HOME, a listener app on threads inside the notebook."""
from __future__ import annotations

from nbformat.v4 import new_code_cell, new_notebook

from .messaging_helpers import broker  # noqa: F401  (fixture)
from .test_notebooks import jupyter, outputs, run_notebook  # noqa: F401  (fixture)

CELLS = [
    """
import parsl_lite as parsl
from parsl_lite import messaging as msg, python_app

@python_app
def listener(topic, listener_id):
    seen = []
    for m in msg.subscribe(topic, listener_id=listener_id):
        seen.append(m)
    return seen
""",
    """
import time
dfk = parsl.load()
heard = listener("nb", "nb-1")
while msg.stats()["topics"]["listeners"].get("nb", 0) < 1:
    time.sleep(0.05)
msg.publish("nb", {"x": 1})
msg.stop("nb", listener_id="nb-1")
print("heard", heard.result(timeout=30))
""",
    """
q = msg.queue("front")
q.put({"action": "forward", "doc": 7})
m = q.get(timeout=5)
m.ack()
print("got", m.body, len(q))
dfk.cleanup()
""",
]


def test_the_lines_run_in_a_notebook(broker, jupyter):
    book = run_notebook(new_notebook(cells=[new_code_cell(c.strip()) for c in CELLS]), jupyter, "messaging")
    text = "".join(outputs(book, "text/plain") + [o.get("text", "") for c in book.cells
                                                  for o in c.get("outputs", []) if o.get("name") == "stdout"])
    assert "heard [{'x': 1}]" in text
    assert "got {'action': 'forward', 'doc': 7} 0" in text
