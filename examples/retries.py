"""Retries: a flaky app that recovers, and one that runs out of retries.

``flaky`` fails its first ``failures`` attempts (it counts them in a file, so
the count holds whichever worker runs the next attempt). With
``Config(retries=2)`` a task may run three times: the one that fails twice
recovers on its third attempt; the one that fails five times gives up after
three, and its future raises the last attempt's exception, as ``result()``
shows. A ``retry_handler`` could instead say how much each failure costs.

Run it with threads (``python retries.py``) or on worker processes
(``python retries.py ../configs/local.toml``). The attempt counts go to
``attempts/`` in the run directory (``runinfo/NNN/``). Run it directly: under
``parsl-lite run --config``, the CLI's config would replace this one, retries and all.
"""
import os
import sys

import parsl_lite as parsl
from parsl_lite import python_app
from parsl_lite.config_loader import load_config

RETRIES = 2


@python_app
def flaky(counter, failures):
    with open(counter, "a") as f:                    # one line per attempt
        f.write("attempt\n")
    with open(counter) as f:
        attempt = len(f.readlines())
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} failed")
    return f"succeeded on attempt {attempt}"


if __name__ == "__main__":
    config = load_config(sys.argv[1] if len(sys.argv) > 1 else None)
    config.retries = RETRIES                         # each task may run 1 + RETRIES times
    with parsl.load(config):
        work = os.path.abspath(os.path.join(parsl.dfk().run_dir, "attempts"))
        os.makedirs(work)
        counters = {name: os.path.join(work, name) for name in ("recovers", "gives_up")}
        recovers = flaky(counters["recovers"], failures=2)
        gives_up = flaky(counters["gives_up"], failures=5)
        print(f"recovers: {recovers.result()}")
        try:
            gives_up.result()
        except RuntimeError as exc:
            print(f"gives up: {type(exc).__name__}: {exc}")
    attempts = {name: len(open(path).readlines()) for name, path in counters.items()}
    print(f"attempts: recovers {attempts['recovers']}, gives up {attempts['gives_up']} (retries={RETRIES})")
