"""Talk to a running app: it loads a slow model once, then serves requests in milliseconds.

The app trains a real scikit-learn model when it starts (several seconds: the
"slow-to-load model"), says "model loaded" on the replies topic, then answers
"classify" requests from the ``requests`` queue until a "quit" request, and
returns how many it served. The script sends its first request at once (it
waits in the durable queue while the model loads), then more: the first takes
the loading time, the later ones milliseconds.

Start a broker first (``parsl-lite broker start``), then ``python interactive.py``; or run it on RabbitMQ:
``PARSL_LITE_BROKER_URL=amqp://user:pass@host:5672/%2F python interactive.py``.
"""
import statistics
import time
import uuid

import parsl_lite as parsl
from parsl_lite import messaging as msg
from parsl_lite import python_app

from _config import config


@python_app
def model_server(requests: str, replies: str):
    """Load the model once, then serve requests until "quit"; streams informational messages to ``replies``."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from parsl_lite import messaging as msg
    msg.publish(replies, {"info": "loading the model"})
    x, y = make_classification(n_samples=8_000, n_features=40, random_state=0)
    model = RandomForestClassifier(n_estimators=40, random_state=0).fit(x, y)
    msg.publish(replies, {"info": "model loaded"})
    queue, served = msg.queue(requests), 0
    while True:
        m = queue.get(timeout=1)
        if m is None:
            continue
        request = m.body
        if request["action"] == "quit":
            m.ack()
            msg.publish(replies, {"info": f"quitting after {served} requests"})
            return served
        label = int(model.predict([request["features"]])[0])
        msg.publish(replies, {"id": request["id"], "label": label})
        m.ack()
        served += 1


def ask(queue, replies, request_id: int, features) -> tuple[int, float]:
    """Send one request and wait for its answer (printing informational messages as they stream in)."""
    start = time.perf_counter()
    queue.put({"action": "classify", "id": request_id, "features": features})
    while True:
        reply = replies.get(timeout=120)
        if reply is None:
            raise TimeoutError(f"no answer to request {request_id}")
        if "info" in reply:
            print(f"app says: {reply['info']}", flush=True)
        elif reply["id"] == request_id:
            return reply["label"], time.perf_counter() - start


if __name__ == "__main__":
    run = uuid.uuid4().hex[:8]
    requests, replies_topic = f"requests-{run}", f"replies-{run}"
    queue = msg.queue(requests)
    replies = msg.subscribe(replies_topic)            # live before the app can say anything
    with parsl.load(config()):
        server = model_server(requests, replies_topic)
        features = [[0.1 * ((i * k) % 7) for k in range(40)] for i in range(21)]
        label, first = ask(queue, replies, 0, features[0])
        later = [ask(queue, replies, i, features[i])[1] for i in range(1, 21)]
        queue.put({"action": "quit"})
        served = server.result(timeout=120)
    replies.close()
    msg.delete_queue(requests)
    print(f"first request: {first * 1e3:.0f} ms (includes loading the model)")
    print(f"later requests: median {statistics.median(later) * 1e3:.1f} ms over {len(later)}")
    print(f"served {served} requests")
