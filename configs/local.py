"""Worker processes on this machine, as a Python config module (Parsl's way).

Load it with ``parsl_lite.load("configs/local.py")``; the loader imports this
file and uses its module-level ``config``. It matches ``configs/local.toml``
and ``parsl_lite.configs.htex_local``: one block of worker processes on this
machine, one worker per core.
"""
from parsl_lite.config import Config
from parsl_lite.executors import HighThroughputExecutor
from parsl_lite.providers import LocalProvider

config = Config(
    executors=[HighThroughputExecutor(label="htex_local", cores_per_worker=1, provider=LocalProvider(init_blocks=1, max_blocks=1))],
    run_dir="runinfo",
)
