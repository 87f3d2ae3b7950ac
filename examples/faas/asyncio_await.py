"""``await`` results in asyncio: the asynchronous client's ``run`` returns an awaitable.

In a notebook cell ``result = await fxc.run(...)`` works as it is; a script
runs its coroutine in the client's loop (``fxc.loop.run_until_complete``).

    python asyncio_await.py ENDPOINT_ID [N]     # or set PARSL_LITE_FAAS_ENDPOINT
"""
import asyncio
import os
import sys
import time

from parsl_lite.faas import FuncXClient


def square(x):
    return x * x


async def main(fxc, ep_id, n):
    func_id = fxc.register_function(square)
    one = await fxc.run(7, endpoint_id=ep_id, function_id=func_id)
    print(f"await fxc.run(7) -> {one}")
    start = time.perf_counter()
    squares = await asyncio.gather(*(fxc.run(i, endpoint_id=ep_id, function_id=func_id) for i in range(n)))
    print(f"{n} tasks awaited together in {time.perf_counter() - start:.2f} s")
    return sum(squares)


if __name__ == "__main__":
    ep_id = sys.argv[1] if len(sys.argv) > 1 else os.environ["PARSL_LITE_FAAS_ENDPOINT"]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    fxc = FuncXClient(asynchronous=True)
    total = fxc.loop.run_until_complete(main(fxc, ep_id, n))
    print(f"sum of squares of 0..{n - 1} = {total}")
