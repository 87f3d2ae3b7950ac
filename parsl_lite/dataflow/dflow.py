"""Parsl's import path for the kernel classes."""
from parsl_lite.dataflow.kernel import DataFlowKernel
from parsl_lite.dataflow.loader import DataFlowKernelLoader

__all__ = ["DataFlowKernel", "DataFlowKernelLoader"]
