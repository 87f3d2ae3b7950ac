"""The ``TaskPending`` polling loop: ask for the result until the task is done, printing its status.

    python polling.py ENDPOINT_ID [SECONDS]     # or set PARSL_LITE_FAAS_ENDPOINT
"""
import os
import sys
import time

from parsl_lite.faas import FuncXClient, TaskPending


def slow_double(x, seconds):
    import time
    time.sleep(seconds)
    return x * 2


if __name__ == "__main__":
    ep_id = sys.argv[1] if len(sys.argv) > 1 else os.environ["PARSL_LITE_FAAS_ENDPOINT"]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    fxc = FuncXClient()
    func_id = fxc.register_function(slow_double)
    task_id = fxc.run(21, seconds, endpoint_id=ep_id, function_id=func_id)
    seen = []
    while True:
        try:
            result = fxc.get_result(task_id)
            break
        except TaskPending as pending:           # "Task is pending due to waiting-for-ep", ...
            if pending.reason not in seen:
                seen.append(pending.reason)
                print(pending)
            time.sleep(0.2)
    timings = fxc.get_task(task_id)["timings"]
    print(f"ran for {timings['finished'] - timings['started']:.2f} s on the endpoint")
    print(f"pending states seen: {', '.join(seen)}; result: {result}")
