"""The pi/mean workflow (examples/pi.py) across the function service: pi on two endpoints, mean local.

    python workflow.py ENDPOINT_ID ENDPOINT_ID_2 [TASKS [SAMPLES]]
    # or PARSL_LITE_FAAS_ENDPOINT / PARSL_LITE_FAAS_ENDPOINT_2; the service from client.json

One DAG: the pi apps run on the endpoints (task i on endpoint i % 2, chosen per
call with ``parsl_resource_specification``), their futures go to ``mean``, which
runs on the local high-throughput executor.
"""
import os
import sys

import parsl_lite as parsl
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.executors import FuncXExecutor, HighThroughputExecutor


@python_app(executors=["funcX"])
def pi(n):
    from random import random
    return 4 * sum(random() ** 2 + random() ** 2 < 1 for _ in range(n)) / n


@python_app(executors=["local"])
def mean(*xs):
    return sum(xs) / len(xs)


if __name__ == "__main__":
    first = sys.argv[1] if len(sys.argv) > 1 else os.environ["PARSL_LITE_FAAS_ENDPOINT"]
    second = sys.argv[2] if len(sys.argv) > 2 else os.environ["PARSL_LITE_FAAS_ENDPOINT_2"]
    tasks = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    samples = int(sys.argv[4]) if len(sys.argv) > 4 else 10**5
    endpoints = [first, second]
    config = Config(executors=[FuncXExecutor(label="funcX", endpoints=endpoints),
                               HighThroughputExecutor(label="local")])
    with parsl.load(config):
        estimates = [pi(samples, parsl_resource_specification={"endpoints": [endpoints[i % 2]]})
                     for i in range(tasks)]
        print(f"{tasks} pi tasks: {(tasks + 1) // 2} on {first}, {tasks // 2} on {second}; mean on 'local'")
        print(f"pi is about {mean(*estimates).result():.4f}")
