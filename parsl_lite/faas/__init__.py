"""The function service in the style of funcX / Globus Compute: register a function once, run it anywhere.

    from parsl_lite.faas import FuncXClient, FuncXExecutor, TaskPending

``service/`` is the HTTP + WebSocket API and its store, ``endpoint/`` the
daemon that runs tasks on a resource through a ``HighThroughputExecutor``,
``sdk/`` the client a script or notebook uses. ``protocol.py`` is the wire
between the service and its endpoints; ``api.py`` the HTTP API's shapes.
"""
from __future__ import annotations

from parsl_lite.lazy import lazy_attributes

_LAZY = {
    "FuncXClient": "parsl_lite.faas.sdk.client", "Client": "parsl_lite.faas.sdk.client",
    "FuncXExecutor": "parsl_lite.faas.sdk.executor", "Executor": "parsl_lite.faas.sdk.executor",
    "TaskPending": "parsl_lite.faas.errors", "MaxResultSizeExceeded": "parsl_lite.faas.errors",
    "FaaSError": "parsl_lite.faas.errors",
}

__getattr__ = lazy_attributes("parsl_lite.faas", globals(), _LAZY)

__all__ = sorted(_LAZY)
