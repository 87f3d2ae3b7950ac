"""``FuncXExecutor``: 50 tasks submitted like a ``concurrent.futures`` pool, sent in batches, timed.

    python executor_batch.py ENDPOINT_ID [N]    # or set PARSL_LITE_FAAS_ENDPOINT
"""
import os
import sys
import time

from parsl_lite.faas import FuncXClient, FuncXExecutor


def cube(x):
    return x ** 3


if __name__ == "__main__":
    ep_id = sys.argv[1] if len(sys.argv) > 1 else os.environ["PARSL_LITE_FAAS_ENDPOINT"]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    fxc = FuncXClient()
    start = time.perf_counter()
    with FuncXExecutor(fxc, endpoint_id=ep_id, batch_enabled=True, batch_interval=1.0, batch_size=20) as fx:
        futures = [fx.submit(cube, i) for i in range(n)]      # returns at once; batches of 20 go out
        submitted = time.perf_counter() - start
        results = [f.result() for f in futures]
    elapsed = time.perf_counter() - start
    print(f"submitted {n} tasks in {submitted * 1000:.1f} ms; all {len(results)} results in {elapsed:.2f} s "
          f"({n / elapsed:.0f} tasks/s), task group {fx.task_group_id}")
    print(f"sum of cubes of 0..{n - 1} = {sum(results)}")
