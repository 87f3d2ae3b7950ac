"""The default local config, as a Python config module (Parsl's way).

Load it with ``parsl_lite.load("configs/local.py")``; the loader imports this
file and uses its module-level ``config``. It matches ``configs/local.toml``.

For now apps run on threads of this process. Once HighThroughputExecutor and
LocalProvider exist, this becomes a worker pool on this machine::

    from parsl_lite.executors import HighThroughputExecutor
    from parsl_lite.providers import LocalProvider

    config = Config(executors=[HighThroughputExecutor(
        label="htex_local", max_workers_per_node=4,
        provider=LocalProvider(init_blocks=1, max_blocks=1))])
"""
from parsl_lite.config import Config
from parsl_lite.executors import ThreadPoolExecutor

config = Config(
    executors=[ThreadPoolExecutor(label="threads")],
    run_dir="runinfo",
)
