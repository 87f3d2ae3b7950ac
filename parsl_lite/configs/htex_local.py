"""Apps in worker processes on this machine: ``from parsl_lite.configs.htex_local import config``.

Parsl's ``parsl.configs.htex_local``: a ``HighThroughputExecutor`` labelled
``htex_local``, one core per worker, one block from a ``LocalProvider``
(``init_blocks=1, max_blocks=1``); the same as ``configs/local.toml``.
"""
from parsl_lite.config import Config
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.providers import LocalProvider

config = Config(
    executors=[
        HighThroughputExecutor(
            label="htex_local",
            cores_per_worker=1,
            provider=LocalProvider(init_blocks=1, max_blocks=1),
        )
    ],
)
