"""The root of every exception parsl_lite raises, and the cross-layer ones.

Each layer defines its own exceptions beside it (``app/errors.py``,
``dataflow/errors.py``, ...); all of them derive from :class:`ParslError`, so a
user can catch everything of ours with one ``except``.
"""
from __future__ import annotations


class ParslError(Exception):
    """Base class of all parsl_lite exceptions."""


class ConfigurationError(ParslError):
    """A configuration value is wrong. The message names the field.

    Args:
        field: the config field (or ``file:table.key`` for a config file).
        reason: what is wrong with it.
    """

    def __init__(self, field: str, reason: str | None = None) -> None:
        self.field = field
        self.reason = reason
        super().__init__(field if reason is None else f"{field}: {reason}")


ConfigError = ConfigurationError


class NoDataFlowKernelError(ParslError):
    """An app was called before any DataFlowKernel was loaded."""


class InternalConsistencyError(ParslError):
    """parsl_lite found its own bookkeeping broken: a bug, please report it."""


class OptionalModuleMissing(ParslError):
    """A feature needs an optional package that is not installed."""

    def __init__(self, module_names: list[str], reason: str) -> None:
        self.module_names = module_names
        self.reason = reason
        super().__init__(f"missing optional module(s) {module_names}: {reason}")


class SerializationError(ParslError):
    """An object could not be serialized; the message names which one and its type."""

    def __init__(self, what: str, reason: str = "") -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"cannot serialize {what}" + (f": {reason}" if reason else ""))


class DeserializationError(ParslError):
    """Bytes could not be turned back into an object."""
