"""The launcher interface: how one job of a provider starts the workers of a block.

A provider's job runs a shell script on the first node of its allocation. The
launcher turns the executor's worker command into the shell text that starts
``tasks_per_node`` copies on each of ``nodes_per_block`` nodes (in the
background on one node, through ``srun`` on Slurm, ...). Launchers only build
strings; they run nothing, so they are tested by running what they return.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from parsl_lite.launchers.errors import LauncherError
from parsl_lite.representation import RepresentationMixin


class Launcher(RepresentationMixin, ABC):
    """Wraps a command so that a job starts the right number of copies of it.

    Args:
        debug: print what the wrapper does (core count, copies started) into
            the job's stdout, which helps when a block fails to start.
    """

    def __init__(self, debug: bool = True) -> None:
        self.debug = debug

    @abstractmethod
    def __call__(self, command: str, tasks_per_node: int, nodes_per_block: int, script_dir: str = "") -> str:
        """Return the shell text that runs ``command`` as many times as asked.

        Args:
            command: the worker command (may span several lines).
            tasks_per_node: copies to start on each node.
            nodes_per_block: nodes in the block.
            script_dir: where the job's files go; accepted for launchers
                written against Parsl's interface, unused by ours.

        Raises:
            LauncherError: an empty command or a count below 1.
        """

    def __eq__(self, other: object) -> bool:
        # Launchers are plain settings; equal settings mean the same launcher.
        # This also keeps a default launcher out of a provider's repr.
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self), tuple(sorted((k, repr(v)) for k, v in vars(self).items()))))

    def _check_arguments(self, command: str, tasks_per_node: Any, nodes_per_block: Any) -> None:
        """Refuse what would make a broken job script, before any job is submitted."""
        if not isinstance(command, str) or not command.strip():
            raise LauncherError(type(self).__name__, f"the command must be a non-empty string, got {command!r}")
        for name, value in (("tasks_per_node", tasks_per_node), ("nodes_per_block", nodes_per_block)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise LauncherError(type(self).__name__, f"{name} must be an int >= 1, got {value!r}")
