"""The pi workflow on a Slurm cluster, as a Python config module (Parsl's way).

Load it with ``parsl_lite.load("configs/slurm.py")`` (or run
``python examples/pi.py configs/slurm.py``). It matches ``configs/slurm.toml``:
blocks of one 1-CPU batch job each, up to two, whose worker pools connect back
to this machine; a task whose block dies runs once more.
"""
from parsl_lite.config import Config
from parsl_lite.executors import HighThroughputExecutor
from parsl_lite.launchers import SingleNodeLauncher
from parsl_lite.providers import SlurmProvider

config = Config(
    executors=[HighThroughputExecutor(
        label="htex_slurm",
        max_workers_per_node=1,
        provider=SlurmProvider(
            # partition="debug", account="my_project", qos="normal",
            nodes_per_block=1,
            cores_per_node=1,
            exclusive=False,
            init_blocks=1,
            min_blocks=0,
            max_blocks=2,
            walltime="00:10:00",
            worker_init="",  # e.g. "source ~/venvs/parsl/bin/activate"
            cmd_timeout=10,
            launcher=SingleNodeLauncher(),
        ),
    )],
    run_dir="runinfo",
    retries=1,
)
