"""Apps on threads of this process: ``from parsl_lite.configs.local_threads import config``.

Parsl's ``parsl.configs.local_threads``: one ``ThreadPoolExecutor`` with its
defaults, which is also what ``Config()`` and ``parsl_lite.load()`` with no
config give. No workers to start, no serialization; CPU-bound pure-Python
apps want :mod:`parsl_lite.configs.htex_local` instead.
"""
from parsl_lite.config import Config
from parsl_lite.executors.threads import ThreadPoolExecutor

config = Config(executors=[ThreadPoolExecutor()])
