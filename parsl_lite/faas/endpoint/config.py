"""An endpoint's ``config.toml``: an ``[endpoint]`` table, then the executor in the ``configs/*.toml`` schema.

    $PARSL_LITE_HOME/endpoints/NAME/config.toml

    strategy = "simple"                       # Config's keys (before any table): how blocks scale

    [endpoint]
    service_url = "http://127.0.0.1:8765"    # default: client.json's
    heartbeat_period = 2.0                   # default: what the service says in its HelloReply
    heartbeat_threshold = 10.0
    max_retries_on_system_failure = 3
    allowed_functions = []                   # function ids; empty: any

    [[executors]]                             # exactly one HighThroughputExecutor
    type = "HighThroughputExecutor"
      [executors.provider]
      type = "LocalProvider"

Everything outside ``[endpoint]`` goes through :func:`parsl_lite.config_loader.config_from_dict`,
so the executor table means exactly what it means in a workflow's config, and
a wrong field is refused the same way, naming the file, the table and the key.
"""
from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Optional

from parsl_lite.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - setup.cfg installs tomli on 3.10
    import tomli as tomllib

CONFIG_FILE = "config.toml"


@dataclass(frozen=True)
class EndpointSettings:
    """The ``[endpoint]`` table.

    Args:
        service_url: the service's HTTP URL (registration); None: the one in ``client.json``.
        heartbeat_period: seconds between status reports; None: the service's.
        heartbeat_threshold: seconds of silence from the service before the endpoint calls itself
            Disconnected; None: the service's.
        max_retries_on_system_failure: a task delivered more than 1 + this many times (its endpoint
            died holding it each time) fails with ``EndpointLost`` instead of running again.
        allowed_functions: function ids this endpoint runs (checked here and by the service); empty: any.
        public: anyone may send tasks to it (registration).
        shared_with: usernames that may send tasks to it besides its owner (registration).
    """

    service_url: Optional[str] = None
    heartbeat_period: Optional[float] = None
    heartbeat_threshold: Optional[float] = None
    max_retries_on_system_failure: int = 3
    allowed_functions: tuple[str, ...] = ()
    public: bool = False
    shared_with: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.service_url is not None and not self.service_url.startswith(("http://", "https://")):
            raise ConfigurationError("service_url", f"must be an http:// or https:// URL, got {self.service_url!r}")
        for name in ("heartbeat_period", "heartbeat_threshold"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigurationError(name, f"must be > 0 seconds, got {value}")
        if (self.heartbeat_period is not None and self.heartbeat_threshold is not None
                and self.heartbeat_threshold <= self.heartbeat_period):
            raise ConfigurationError("heartbeat_threshold", f"must be greater than heartbeat_period "
                                     f"({self.heartbeat_period}), got {self.heartbeat_threshold}")
        if self.max_retries_on_system_failure < 0:
            raise ConfigurationError("max_retries_on_system_failure",
                                     f"must be >= 0, got {self.max_retries_on_system_failure}")


_TYPES: dict[str, tuple[type, ...]] = {
    "service_url": (str,), "heartbeat_period": (int, float), "heartbeat_threshold": (int, float),
    "max_retries_on_system_failure": (int,), "allowed_functions": (list,), "public": (bool,),
    "shared_with": (list,),
}


@dataclass(frozen=True)
class EndpointConfig:
    """A loaded ``config.toml``: the endpoint's settings and the workflow ``Config`` holding its executor."""

    settings: EndpointSettings
    config: Any  # parsl_lite.config.Config, with exactly one HighThroughputExecutor
    path: Path

    @property
    def executor(self) -> Any:
        return self.config.executors[0]


def settings_from_table(table: Any, origin: str) -> EndpointSettings:
    """Check the ``[endpoint]`` table's keys and types, naming ``origin`` and the key at fault."""
    where = f"{origin}: [endpoint]"
    if not isinstance(table, dict):
        raise ConfigurationError(where, "must be a table")
    valid = [f.name for f in fields(EndpointSettings)]
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigurationError(f"{where}: {key}", f"unknown key{guess}; valid keys: {', '.join(valid)}")
        if type(value) is bool and bool not in _TYPES[key] or not isinstance(value, _TYPES[key]):
            expected = " or ".join(t.__name__ for t in _TYPES[key])
            raise ConfigurationError(f"{where}: {key}", f"expected {expected}, got {type(value).__name__}")
        if isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise ConfigurationError(f"{where}: {key}", "expected a list of strings")
            value = tuple(value)
        values[key] = value
    try:
        return EndpointSettings(**values)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc.field}", exc.reason) from exc


def load_endpoint_config(path: Path) -> EndpointConfig:
    """Read and check an endpoint's ``config.toml``; nothing is started.

    A relative ``run_dir`` is taken from the file's directory (default: ``runinfo`` there).

    Raises:
        ConfigurationError: the file is missing or invalid; the message names the file and the field.
    """
    from parsl_lite.config_loader import config_from_dict
    from parsl_lite.executors import HighThroughputExecutor

    origin = str(path)
    try:
        with open(path, "rb") as stream:
            data = tomllib.load(stream)
    except FileNotFoundError:
        raise ConfigurationError(origin, "no such endpoint config (run `parsl-lite endpoint configure NAME`)") \
            from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(origin, f"invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigurationError(origin, f"cannot read: {exc.strerror or exc}") from exc
    settings = settings_from_table(data.pop("endpoint", {}), origin)
    if "executors" not in data:
        raise ConfigurationError(f"{origin}: executors", "missing: give one [[executors]] table with "
                                 "type = \"HighThroughputExecutor\"")
    run_dir = data.get("run_dir", "runinfo")
    if isinstance(run_dir, str) and not os.path.isabs(run_dir):
        data["run_dir"] = str(path.parent / run_dir)
    config = config_from_dict(data, origin)
    executors = config.executors
    if len(executors) != 1 or not isinstance(executors[0], HighThroughputExecutor):
        kinds = [type(e).__name__ for e in executors]
        raise ConfigurationError(f"{origin}: executors", f"an endpoint runs exactly one HighThroughputExecutor, "
                                 f"got {kinds}")
    return EndpointConfig(settings, config, path)


def default_config_text(name: str, cores: Optional[int] = None) -> str:
    """The commented ``config.toml`` that ``parsl-lite endpoint configure NAME`` writes."""
    cores = cores or os.cpu_count() or 1
    return f'''# Endpoint {name!r} of the parsl_lite function service.
# Start it with `parsl-lite endpoint start {name}`; after editing, `parsl-lite endpoint restart {name}`.

# How blocks scale (the same keys as a workflow's Config): out under load, in when idle.
strategy = "simple"
max_idletime = 120.0
strategy_period = 5

[endpoint]
# service_url = "http://127.0.0.1:8765"   # default: the service_url of $PARSL_LITE_HOME/faas/client.json
# heartbeat_period = 2.0                  # seconds between status reports (default: the service's)
# heartbeat_threshold = 10.0              # silence before this endpoint says Disconnected (default: the service's)
max_retries_on_system_failure = 3         # a task re-delivered more often (this endpoint died holding it) fails
allowed_functions = []                    # function ids this endpoint runs; empty: any its users may run

# The executor, in the same schema as configs/*.toml: one HighThroughputExecutor and its provider.
# Blocks as Kubernetes pods or Slurm jobs: type = "KubernetesProvider" (image, namespace, max_mem, ...) or
# "SlurmProvider" (partition, cores_per_node, walltime, ...); examples in docs/faas.md, "Endpoints on Kubernetes
# and Slurm". `parsl-lite endpoint status NAME` shows the blocks as they come and go.
[[executors]]
type = "HighThroughputExecutor"
label = "htex_{name.replace("-", "_")}"
max_workers_per_node = {cores}            # workers on this machine (its cores)
  [executors.provider]
  type = "LocalProvider"
  init_blocks = 1
  min_blocks = 0
  max_blocks = 1
'''
