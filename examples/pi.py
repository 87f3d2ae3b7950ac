"""Estimate pi with Monte-Carlo apps: the README's example.

Run it with the default config, threads (``python pi.py``), or any config file
(``python pi.py ../configs/local.toml`` for worker processes), or under the CLI
(``parsl-lite run pi.py --config ../configs/local.toml``: the CLI's config wins
over the ``load`` below); the workflow does not change.
"""
import sys

import parsl_lite as parsl
from parsl_lite import python_app


@python_app
def pi(n):
    from random import random
    return 4 * sum(random() ** 2 + random() ** 2 < 1 for _ in range(n)) / n


@python_app
def mean(*xs):
    return sum(xs) / len(xs)


if __name__ == "__main__":
    config = sys.argv[1] if len(sys.argv) > 1 else None
    with parsl.load(config):
        estimates = [pi(10**5) for _ in range(8)]    # AppFutures, returned at once
        print(f"pi is about {mean(*estimates).result():.4f}")
