"""Two endpoints, one function: send tasks to each and see where each ran.

    python two_endpoints.py ENDPOINT_ID ENDPOINT_ID_2   # or PARSL_LITE_FAAS_ENDPOINT / PARSL_LITE_FAAS_ENDPOINT_2
"""
import os
import sys
import time

from parsl_lite.faas import FuncXClient


def where(x):
    import os
    return x + 1, os.getpid()


if __name__ == "__main__":
    first = sys.argv[1] if len(sys.argv) > 1 else os.environ["PARSL_LITE_FAAS_ENDPOINT"]
    second = sys.argv[2] if len(sys.argv) > 2 else os.environ["PARSL_LITE_FAAS_ENDPOINT_2"]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    fxc = FuncXClient()
    func_id = fxc.register_function(where)
    batch = fxc.create_batch()
    for i in range(n):
        batch.add(i, endpoint_id=first if i % 2 == 0 else second, function_id=func_id)
    task_ids = fxc.batch_run(batch)
    results = {}
    while len(results) < len(task_ids):
        for task_id, task in fxc.get_batch_result(task_ids).items():
            if not task["pending"]:
                results[task_id] = task
        time.sleep(0.1)
    for task_id in task_ids:
        task = results[task_id]
        value, pid = task["result"]
        print(f"task {task_id[:8]} -> {value} on endpoint {task['endpoint_id']} (worker pid {pid})")
    per_endpoint = {ep: sum(1 for t in results.values() if t["endpoint_id"] == ep) for ep in (first, second)}
    print("tasks per endpoint: " + ", ".join(f"{ep}={count}" for ep, count in per_endpoint.items()))
