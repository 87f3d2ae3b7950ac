"""A front end and a back end of replicated workers, pulling from their queues; N changes while it runs.

The front end (one replica) reads every document from ``front``: a light one
it handles itself and stores in the ``results`` table; a heavy one it forwards
to ``back``. The back end runs N replicas of a slower worker on ``back``,
storing their results in the same table; N goes 2 -> 4 -> 1 while it runs.
At the end both are drained and every document is accounted for.

Start a broker first (``parsl-lite broker start``), then ``python components.py``; or run it on RabbitMQ:
``PARSL_LITE_BROKER_URL=amqp://user:pass@host:5672/%2F python components.py``.
"""
import time
import uuid

import parsl_lite as parsl
from parsl_lite import messaging as msg

from _config import config

RUN = uuid.uuid4().hex[:6]
FRONT, BACK, RESULTS = f"front-{RUN}", f"back-{RUN}", f"results-{RUN}"


def front_end(doc, back=BACK, results=RESULTS):
    from parsl_lite import messaging as msg
    if doc["kind"] == "heavy":
        msg.queue(back).put(doc)
        return "forwarded"
    msg.table(results).put(str(doc["id"]), {"by": "front", "value": doc["id"] * 2})
    return "light"


def back_end(doc, results=RESULTS):
    import time

    from parsl_lite import messaging as msg
    time.sleep(0.05)                                   # the heavy part
    msg.table(results).put(str(doc["id"]), {"by": "back", "value": doc["id"] ** 2})
    return doc["id"]


def wait_until(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


if __name__ == "__main__":
    docs = [{"id": i, "kind": "heavy" if i % 3 == 0 else "light"} for i in range(90)]
    with parsl.load(config(workers=6)):
        msg.queue(FRONT).put_many(docs)
        back = msg.component("back", back_end, BACK, replicas=2, executor="htex")
        front = msg.component("front", front_end, FRONT, replicas=1, executor="htex")
        table = msg.table(RESULTS)
        wait_until(lambda: len(table.scan()) >= 20, "20 results")
        back.scale(4)
        print("back end scaled to 4 replicas", flush=True)
        wait_until(lambda: len(table.scan()) >= 60, "60 results")
        back.scale(1)
        print("back end scaled to 1 replica", flush=True)
        front_reports = front.stop(timeout=120)        # drains front: every heavy doc is in back now
        back_reports = back.stop(timeout=120)
    rows = table.scan()
    light = sum(r["results"].count("light") for r in front_reports)
    heavy = sum(r["handled"] for r in back_reports)
    print(f"back-end replicas: {[r['handled'] for r in back_reports]}")
    missing = sorted(set(range(90)) - {int(k) for k in rows})
    print(f"accounted for: {len(rows)} of {len(docs)} (light {light} in front, heavy {heavy} in back), "
          f"missing {missing}")
    for name in (FRONT, BACK):
        msg.delete_queue(name)
