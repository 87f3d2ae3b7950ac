"""Ready-made configs under Parsl's module names: ``from parsl_lite.configs.htex_local import config``.

- :mod:`parsl_lite.configs.local_threads`: one ``ThreadPoolExecutor`` (what
  ``parsl_lite.load()`` uses with no config).
- :mod:`parsl_lite.configs.htex_local`: a ``HighThroughputExecutor`` with one
  block of worker processes on this machine (as ``configs/local.toml``).

As in Parsl, each module's ``config`` is one object, built on import: load it
once per process, or ``importlib.reload`` the module for a fresh one (an
htex whose kernel was cleaned up does not start again).
"""
