"""Register a function once, run it on an endpoint, get its result.

    parsl-lite service start && parsl-lite endpoint configure laptop && parsl-lite endpoint start laptop
    python sum.py ENDPOINT_ID          # or set PARSL_LITE_FAAS_ENDPOINT
"""
import os
import sys
import time

from parsl_lite.faas import FuncXClient, TaskPending


def total(items):
    return sum(items)


if __name__ == "__main__":
    ep_id = sys.argv[1] if len(sys.argv) > 1 else os.environ["PARSL_LITE_FAAS_ENDPOINT"]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    fxc = FuncXClient()                                # the service URL and token from client.json
    func_id = fxc.register_function(total, description="sums a list")
    task_id = fxc.run(list(range(1, n + 1)), endpoint_id=ep_id, function_id=func_id)
    while True:
        try:
            result = fxc.get_result(task_id)
            break
        except TaskPending:
            time.sleep(0.05)
    print(f"sum of 1..{n} = {result}")
