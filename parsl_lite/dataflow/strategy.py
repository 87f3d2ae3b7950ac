"""Moved to :mod:`parsl_lite.jobs.strategy` (beside the job states); this import path still works."""
from parsl_lite.jobs.strategy import (  # noqa: F401
    STRATEGIES, Action, BlockExecutor, BlockSnapshot, ExecutorSnapshot, ScaleIn, ScaleOut, Strategy,
)

__all__ = ["STRATEGIES", "Action", "BlockExecutor", "BlockSnapshot", "ExecutorSnapshot", "ScaleIn", "ScaleOut",
           "Strategy"]
