"""Two senders, two listeners, channels 3 and 5; then a listener replaced by a new version, nothing missed.

Part 1: sender A publishes every 0.2 s and sender B every 0.1 s, each
alternating channels 3 and 5; one listener app per channel; once the senders
are done, a "Stop" on each channel ends the listeners, which return what they
heard. Part 2: a listener on channel 7 is replaced while a sender streams: the
new version subscribes (live when ``subscribe`` returns), then a stop for the
old one's id ends only the old one. Together they heard every message.

Start a broker first (``parsl-lite broker start``), then ``python pubsub.py``; or run it on RabbitMQ:
``PARSL_LITE_BROKER_URL=amqp://user:pass@host:5672/%2F python pubsub.py``.
"""
import time
import uuid

import parsl_lite as parsl
from parsl_lite import messaging as msg
from parsl_lite import python_app

from _config import config


@python_app
def listener(topic, listener_id):
    from parsl_lite import messaging as msg
    seen = []
    for m in msg.subscribe(topic, listener_id=listener_id):   # ends on a "Stop" for its topic or its id
        seen.append(m)
    return seen


@python_app
def sender(name, channels, period_s, count):
    import time

    from parsl_lite import messaging as msg
    for i in range(count):
        msg.publish(channels[i % len(channels)], (name, i))
        time.sleep(period_s)
    return count


def listening(topic: str, n: int) -> None:
    """Wait until ``n`` listeners of ``topic`` are subscribed (the broker's stats say so)."""
    while msg.stats()["topics"]["listeners"].get(topic, 0) < n:
        time.sleep(0.05)


if __name__ == "__main__":
    run = uuid.uuid4().hex[:6]
    three, five, seven = f"3-{run}", f"5-{run}", f"7-{run}"
    with parsl.load(config()):
        heard = {three: listener(three, "l3"), five: listener(five, "l5")}
        listening(three, 1)
        listening(five, 1)
        senders = [sender("A", [three, five], 0.2, 10), sender("B", [three, five], 0.1, 20)]
        sent = sum(s.result() for s in senders)
        for channel in (three, five):
            msg.publish(channel, "Stop")
        for channel, future in heard.items():
            seen = future.result()
            print(f"channel {channel[0]}: {len(seen)} messages, "
                  f"A {sum(1 for n, _ in seen if n == 'A')}, B {sum(1 for n, _ in seen if n == 'B')}")
        total = sum(len(f.result()) for f in heard.values())
        print(f"part 1: sent {sent}, heard {total}")

        old = listener(seven, "v1")
        listening(seven, 1)
        for i in range(30):
            msg.publish(seven, i)
            time.sleep(0.01)
        new = listener(seven, "v2")                     # the new version ...
        listening(seven, 2)                             # ... is live: now stop the old one
        for i in range(30, 40):
            msg.publish(seven, i)
        msg.stop(seven, listener_id="v1")
        for i in range(40, 60):
            msg.publish(seven, i)
        msg.stop(seven, listener_id="v2")
        seen_old, seen_new = old.result(), new.result()
    missed = sorted(set(range(60)) - set(seen_old) - set(seen_new))
    print(f"part 2: v1 heard {seen_old[0]}..{seen_old[-1]}, v2 heard {seen_new[0]}..{seen_new[-1]}, missed {len(missed)}")
