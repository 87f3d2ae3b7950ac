"""A checkpointed workflow, re-run after a crash, skips what already finished.

Each app has ``cache=True`` and the memoizer writes every result to this run's
checkpoint as the task finishes (``checkpoint_mode="task_exit"``). Every run
starts from ``checkpoint_files=get_all_checkpoints()``: the results of earlier
runs under ``runinfo/``. So after a crash, the next run takes the finished
tasks' results from the checkpoint and runs only the rest.

Try it (runs are numbered under ``runinfo/`` here; every earlier run's results count)::

    python checkpoint_rerun.py --crash      # dies hard (os._exit) after stage 1
    python checkpoint_rerun.py              # stage 1 from the checkpoint; runs the rest

Add a config path for worker processes (``../configs/local.toml``). Each run
prints how many tasks ran and how many came from the checkpoint. Run it directly:
under ``parsl-lite run --config``, the CLI's config would replace this one, memoizer and all.
"""
import argparse
import os

import parsl_lite as parsl
from parsl_lite import python_app
from parsl_lite.config_loader import load_config
from parsl_lite.dataflow.memoization import BasicMemoizer
from parsl_lite.utils import get_all_checkpoints

SIMULATIONS = 6


@python_app(cache=True)
def simulate(seed):
    import random
    import time
    time.sleep(0.1)                                   # stands for real work
    return random.Random(seed).random()


@python_app(cache=True)
def analyse(value):
    return round(value * 100, 3)


@python_app(cache=True)
def summarise(*scores):
    return round(sum(scores), 3)


def report(futures):
    """Count the tasks that ran and those whose result came from a checkpoint."""
    states = [f.task_status() for f in futures]
    return states.count("exec_done"), states.count("memo_done")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", help="a config file (default: threads)")
    parser.add_argument("--crash", action="store_true", help="exit hard once stage 1 has finished")
    args = parser.parse_args()
    config = load_config(args.config)
    config.memoizer = BasicMemoizer(checkpoint_mode="task_exit",
                                    checkpoint_files=get_all_checkpoints(config.run_dir))
    with parsl.load(config):
        stage1 = [simulate(seed) for seed in range(SIMULATIONS)]
        for future in stage1:
            future.result()
        if args.crash:
            print(f"crashing after stage 1: {SIMULATIONS} tasks finished", flush=True)
            os._exit(3)                                # no cleanup: as a killed job or a lost node
        stage2 = [analyse(value) for value in stage1]
        summary = summarise(*stage2)
        result = summary.result()
    ran, reused = report(stage1 + stage2 + [summary])
    print(f"summary {result}: {ran} tasks ran, {reused} came from the checkpoint")
