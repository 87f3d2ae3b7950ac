"""What the executor tells the interchange process at start, as one typed, validated object."""
from __future__ import annotations

import json
import random
import socket
from dataclasses import asdict, dataclass, field
from typing import Optional

from parsl_lite.errors import ConfigurationError
from parsl_lite.executors.htex.wire_auth import new_secret


def check_port_range(field: str, port_range: tuple[int, int]) -> None:
    """Raise ``ConfigurationError`` naming ``field`` unless ``low < high`` within 1..65535."""
    low, high = port_range
    if not 0 < low < high < 65536:
        raise ConfigurationError(field, f"need low < high in 1..65535, got {low}-{high}")


@dataclass(frozen=True)
class InterchangeSettings:
    """The interchange's configuration; sent as JSON on its stdin.

    Attributes:
        client_address: where the executor connects (loopback: same machine).
        worker_address: the interface worker pools connect to (``0.0.0.0`` for all).
        worker_port: a fixed worker port, or None to pick one from the range.
        worker_port_range: ports to try for the worker socket.
        interchange_port_range: ports to try for the client socket.
        heartbeat_period_s: how often pools heartbeat, and the interchange checks them.
        heartbeat_threshold_s: silence after which a pool is declared lost.
        prefetch_capacity: tasks a worker may hold beyond the one it runs.
        max_batch: most tasks sent to one worker at once when the queue is deep.
        cert_dir: CurveZMQ keys, or None for plain TCP.
        logdir: where ``interchange.log`` goes.
        parent_pid: the executor's process; the interchange exits when it is gone.
        secret: the run's secret (hex, see ``wire_auth.py``): every message to the
            interchange must prove it knows it. Never shown in a repr or a log.
        debug: log at DEBUG.
    """

    client_address: str
    worker_address: str
    worker_port: Optional[int]
    worker_port_range: tuple[int, int]
    interchange_port_range: tuple[int, int]
    heartbeat_period_s: float
    heartbeat_threshold_s: float
    prefetch_capacity: int
    max_batch: int
    cert_dir: Optional[str]
    logdir: str
    parent_pid: int
    secret: str = field(default_factory=new_secret, repr=False)  # made fresh with the settings, at start
    debug: bool = False

    def __post_init__(self) -> None:
        check_port_range("worker_port_range", self.worker_port_range)
        check_port_range("interchange_port_range", self.interchange_port_range)
        if self.heartbeat_period_s <= 0:
            raise ConfigurationError("heartbeat_period", f"must be > 0, got {self.heartbeat_period_s}")
        if self.heartbeat_threshold_s <= self.heartbeat_period_s:
            raise ConfigurationError("heartbeat_threshold", f"must be greater than heartbeat_period "
                                     f"({self.heartbeat_period_s}), got {self.heartbeat_threshold_s}")
        if self.prefetch_capacity < 0:
            raise ConfigurationError("prefetch_capacity", f"must be >= 0, got {self.prefetch_capacity}")
        if self.max_batch < 1:
            raise ConfigurationError("max_batch", f"must be >= 1, got {self.max_batch}")
        try:
            key_bytes = len(bytes.fromhex(self.secret))
        except ValueError:
            key_bytes = 0
        if key_bytes < 16:
            raise ConfigurationError("secret", "must be at least 16 bytes, as hex (see wire_auth.new_secret)")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "InterchangeSettings":
        data = json.loads(text)
        data["worker_port_range"] = tuple(data["worker_port_range"])
        data["interchange_port_range"] = tuple(data["interchange_port_range"])
        return cls(**data)


def pick_free_port(address: str, port_range: tuple[int, int], tries: int = 20) -> Optional[int]:
    """A port of ``port_range`` that is free on ``address`` now, or None if none of ``tries`` was.

    Chosen ahead so that pools can be started before the interchange listens
    (they dial until it does). Another process may take it meanwhile; the
    interchange then fails to bind it and the executor starts one that picks
    its own port (``HighThroughputExecutor._start_interchange``).
    """
    low, high = port_range
    for _ in range(tries):
        port = random.randint(low, high - 1)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((address, port))
            except OSError:
                continue
        return port
    return None
