"""The launchers: Simple, Wrapped, SingleNode (this node) and Srun (Slurm).

Each copy a launcher starts gets ``PARSL_LAUNCHER_RANK`` (0-based) and
``PARSL_LAUNCHER_COUNT`` in its environment. These are not Parsl's
``PARSL_WORKER_RANK``/``PARSL_WORKER_COUNT``: the worker pool sets those for
each worker process it starts, and one name should not mean two things.
Like Parsl's launchers, ours also export ``CORES`` (the cores on the node).
"""
from __future__ import annotations

import logging
import shlex

from typeguard import typechecked

from parsl_lite.launchers.base import Launcher

logger = logging.getLogger(__name__)


class SimpleLauncher(Launcher):
    """Runs the command once, as it is: for commands that start their own copies.

    Args:
        debug: accepted for Parsl compatibility; this launcher prints nothing.
    """

    @typechecked
    def __init__(self, debug: bool = True) -> None:
        super().__init__(debug=debug)

    def __call__(self, command: str, tasks_per_node: int, nodes_per_block: int, script_dir: str = "") -> str:
        self._check_arguments(command, tasks_per_node, nodes_per_block)
        if tasks_per_node > 1 or nodes_per_block > 1:
            logger.warning("SimpleLauncher starts one copy of the command, not %d x %d; "
                           "expect fewer workers than asked for", tasks_per_node, nodes_per_block)
        return command


class WrappedLauncher(Launcher):
    """Puts ``prepend`` in front of the command, e.g. a container runtime invocation.

    Args:
        prepend: text placed before the command (``"docker run img"``, ``"time"``).
        debug: accepted for Parsl compatibility.
    """

    @typechecked
    def __init__(self, prepend: str, debug: bool = True) -> None:
        super().__init__(debug=debug)
        self.prepend = prepend

    def __call__(self, command: str, tasks_per_node: int, nodes_per_block: int, script_dir: str = "") -> str:
        self._check_arguments(command, tasks_per_node, nodes_per_block)
        if tasks_per_node > 1 or nodes_per_block > 1:
            logger.warning("WrappedLauncher starts one copy of the command, not %d x %d",
                           tasks_per_node, nodes_per_block)
        return f"{self.prepend} {command}"


_SINGLE_NODE = """\
export CORES=$(getconf _NPROCESSORS_ONLN)
export PARSL_LAUNCHER_COUNT={count}
[[ "{debug}" == "1" ]] && echo "parsl_lite launcher: $CORES cores, starting $PARSL_LAUNCHER_COUNT copies"
_parsl_lite_command() {{
{command}
}}
_parsl_lite_pids=()
for (( _rank = 0; _rank < PARSL_LAUNCHER_COUNT; _rank++ )); do
    ( export PARSL_LAUNCHER_RANK=$_rank; _parsl_lite_command ) &
    _parsl_lite_pids+=($!)
done
_first_failure=0
_failed=0
for _pid in "${{_parsl_lite_pids[@]}}"; do
    if wait "$_pid"; then :; else
        _code=$?
        _failed=$((_failed + 1))
        [[ $_first_failure == 0 ]] && _first_failure=$_code
    fi
done
[[ "{debug}" == "1" ]] && echo "parsl_lite launcher: all copies done, $_failed failed"
if (( _failed > 0 )) && {{ [[ "{fail_on_any}" == "1" ]] || (( _failed == PARSL_LAUNCHER_COUNT )); }}; then
    exit $_first_failure
fi
exit 0
"""


class SingleNodeLauncher(Launcher):
    """Starts ``tasks_per_node * nodes_per_block`` copies in the background on this node.

    The job waits for all copies. Its exit code is the first failing copy's
    exit code when the job counts as failed, so the block's status says why.

    Args:
        debug: print the core count and a summary into the job's stdout.
        fail_on_any: fail the job if any copy fails. By default (as in Parsl)
            the job fails only if every copy failed, because a block whose
            other copies kept working did do its job.
    """

    @typechecked
    def __init__(self, debug: bool = True, fail_on_any: bool = False) -> None:
        super().__init__(debug=debug)
        self.fail_on_any = fail_on_any

    def __call__(self, command: str, tasks_per_node: int, nodes_per_block: int, script_dir: str = "") -> str:
        self._check_arguments(command, tasks_per_node, nodes_per_block)
        return _SINGLE_NODE.format(count=tasks_per_node * nodes_per_block, command=command,
                                   debug=int(self.debug), fail_on_any=int(self.fail_on_any))


class SrunLauncher(Launcher):
    """Starts the copies across the nodes of a Slurm allocation with one ``srun``.

    The command is passed to ``bash -c`` quoted, so it reaches every task
    exactly as written (no file on a shared filesystem is needed); inside,
    ``PARSL_LAUNCHER_RANK``/``COUNT`` come from Slurm's ``SLURM_PROCID`` and
    ``SLURM_NTASKS``.

    Args:
        debug: print the cores and nodes Slurm reports into the job's stdout.
        overrides: extra ``srun`` arguments, placed before the command.
    """

    @typechecked
    def __init__(self, debug: bool = True, overrides: str = "") -> None:
        super().__init__(debug=debug)
        self.overrides = overrides

    def __call__(self, command: str, tasks_per_node: int, nodes_per_block: int, script_dir: str = "") -> str:
        self._check_arguments(command, tasks_per_node, nodes_per_block)
        inner = ('export PARSL_LAUNCHER_RANK=$SLURM_PROCID PARSL_LAUNCHER_COUNT=$SLURM_NTASKS\n'
                 + command)
        srun = (f"srun --ntasks={tasks_per_node * nodes_per_block} --ntasks-per-node={tasks_per_node} -l"
                + (f" {self.overrides}" if self.overrides else "")
                + f" bash -c {shlex.quote(inner)}")
        lines = ["export CORES=$SLURM_CPUS_ON_NODE", "export NODES=$SLURM_JOB_NUM_NODES"]
        if self.debug:
            lines.append('echo "parsl_lite launcher: $CORES cores per node, $NODES nodes"')
        lines.append(srun)
        return "\n".join(lines) + "\n"
