"""The DataFlowKernel: task graph, launches, retries, memoization."""
