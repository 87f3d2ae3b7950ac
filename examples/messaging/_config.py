"""The examples' config: one local block of worker processes, more workers than cores (they mostly wait)."""
from parsl_lite.config import Config
from parsl_lite.executors.htex.executor import HighThroughputExecutor
from parsl_lite.providers import LocalProvider


def config(workers: int = 6, run_dir: str = "runinfo") -> Config:
    return Config(executors=[HighThroughputExecutor(label="htex", max_workers_per_node=workers, cores_per_worker=0.1,
                                                    provider=LocalProvider(init_blocks=1, max_blocks=1))],
                  run_dir=run_dir)
