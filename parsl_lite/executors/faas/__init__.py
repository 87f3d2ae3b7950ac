"""The FaaS executor: a workflow's apps on endpoints of the function service (``executor.py``, ``policies.py``)."""
