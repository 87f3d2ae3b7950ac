"""Turns what the user passes to ``parsl_lite.load`` into a :class:`Config`.

A source is a ``Config`` (used as is), a Python module defining ``config``
(Parsl's way), a TOML file, or ``None`` for the default, ``Config()``: one
``ThreadPoolExecutor``, as in Parsl (a TOML file without ``[[executors]]``
gets the same; ``parsl_lite.configs.htex_local`` has worker processes). TOML
builds the very same objects a Python config would, without code::

    run_dir = "runinfo"                 # top-level keys: Config arguments
    retries = 1
    retry_handler = "mypkg.retry:cost"  # callables as "module:function"
    dependency_resolver = "deep"        # "shallow" (default), "deep", or "module:RESOLVER"

    [memoizer]                          # BasicMemoizer unless ``type`` says otherwise
    checkpoint_mode = "task_exit"

    [[executors]]                       # ``type``: a name in parsl_lite.executors.__all__
    type = "HighThroughputExecutor"
    label = "htex"
    worker_port_range = [54000, 55000]  # arrays become tuples where the annotation wants one
      [executors.provider]              # -> parsl_lite.providers
      type = "LocalProvider"
        [executors.provider.launcher]   # -> parsl_lite.launchers
        type = "SingleNodeLauncher"

Type names are looked up in each package's ``__all__`` at load time, so classes
added later need no change here. Every mistake is refused before anything
starts, as a :class:`~parsl_lite.errors.ConfigurationError` whose ``field``
names file, table (arrays count from 0, as ``config.executors[0]``), class and
key: ``configs/bad.toml: [executors.0] (ThreadPoolExecutor): max_thread``.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import itertools
import logging
import os
import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Union

from typeguard import TypeCheckError

from parsl_lite.config import Config
from parsl_lite.errors import ConfigurationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - setup.cfg installs tomli on 3.10
    import tomli as tomllib

logger = logging.getLogger(__name__)

ConfigSource = Union[Config, str, "os.PathLike[str]", None]  # what ``load`` accepts


class _Registry(NamedTuple):
    """Where the classes for one kind of table are found."""

    module: str                  # its ``__all__`` lists the valid ``type`` names
    default_type: Optional[str]  # used when the table has no ``type`` key
    many: bool = False           # an array of tables (``[[executors]]``)


# Keyed by the TOML key (= constructor parameter) that holds such a table.
_REGISTRIES: dict[str, _Registry] = {
    "executors": _Registry("parsl_lite.executors", None, many=True),
    "provider": _Registry("parsl_lite.providers", None),
    "launcher": _Registry("parsl_lite.launchers", None),
    "memoizer": _Registry("parsl_lite.dataflow.memoization", "BasicMemoizer"),
    "monitoring": _Registry("parsl_lite.monitoring", "MonitoringHub"),
}
# A table with a ``type`` under any other key is looked for in these, in order.
_SEARCHED_FOR_OTHER_KEYS = ("executors", "provider", "launcher")

_TYPECHECK_ARGUMENT = re.compile(r'argument "([^"]+)"')
_module_ids = itertools.count()


@dataclass(frozen=True)
class _Where:
    """The place in a config file that an error is about."""

    origin: str
    table: tuple[str, ...] = ()
    type_name: Optional[str] = None

    def error(self, reason: Optional[str], key: Optional[str] = None) -> ConfigurationError:
        table = f"[{'.'.join(self.table)}]" if self.table else "top level"
        field = f"{self.origin}: {table}" + (f" ({self.type_name})" if self.type_name else "")
        return ConfigurationError(f"{field}: {key}" if key else field, reason)


def load_config(source: ConfigSource = None) -> Config:
    """Return the Config that ``source`` describes, fully built and validated.

    Args:
        source: a ``Config``; a path to a ``.py`` module defining ``config``;
            a path to a ``.toml`` file; or ``None`` for :func:`default_config`.

    Raises:
        ConfigurationError: the file is missing, unreadable or invalid; the
            message names the file and, for TOML, the table and key.
    """
    if source is None:
        return default_config()
    if isinstance(source, Config):
        return source
    if not isinstance(source, (str, os.PathLike)):
        expected = "a Config, a path to a .py or .toml file, or None"
        raise ConfigurationError("config", f"expected {expected}; got {type(source).__name__}")
    origin = os.fsdecode(source)
    path = Path(origin)
    if not path.is_file():
        reason = "not a file" if path.exists() else f"no such config file (in {Path.cwd()})"
        raise ConfigurationError(origin, reason)
    reader = {".toml": _config_from_toml, ".py": _config_from_module}.get(path.suffix.lower())
    if reader is None:
        raise ConfigurationError(origin, "unsupported config file; expected a .py module or a .toml file")
    config = reader(path, origin)
    logger.info("loaded config %s with executors %s", origin, [e.label for e in config.executors])
    return config


def default_config() -> Config:
    """The config used when ``load`` gets nothing: ``Config()``, one ``ThreadPoolExecutor``.

    Parsl's default, and the same as a TOML file with no ``[[executors]]``:
    one rule for "no executors given". Built on each call, so every caller
    gets fresh, unstarted executors.
    """
    return config_from_dict({}, origin="<default config>")


def config_from_dict(data: Mapping[str, Any], origin: str = "<dict>") -> Config:
    """Build a Config from parsed TOML, or any mapping of that layout (module docstring).

    Args:
        data: top-level keys are ``Config`` arguments.
        origin: what error messages call the source, usually the file name.

    Raises:
        ConfigurationError: naming ``origin``, the table and the key at fault.
    """
    return _construct(Config, dict(data), _Where(origin, (), "Config"))


def _config_from_toml(path: Path, origin: str) -> Config:
    try:
        with open(path, "rb") as stream:
            data = tomllib.load(stream)
    except tomllib.TOMLDecodeError as exc:  # its message carries line and column
        raise ConfigurationError(origin, f"invalid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigurationError(origin, f"cannot read: {exc.strerror or exc}") from exc
    return config_from_dict(data, origin)


def _config_from_module(path: Path, origin: str) -> Config:
    """Import ``path`` as a fresh module and return its ``config``.

    Each load gets its own module name, so two ``config.py`` files from
    different directories never shadow each other. The module stays in
    ``sys.modules`` so that functions and classes defined in it pickle by reference.
    """
    stem = re.sub(r"\W", "_", path.stem)
    name = f"_parsl_lite_config_{next(_module_ids)}_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(origin, "cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigurationError(origin, f"importing it raised {type(exc).__name__}: {exc}") from exc
    config = getattr(module, "config", None)
    if not isinstance(config, Config):
        got = type(config).__name__ if hasattr(module, "config") else "no 'config' at all"
        raise ConfigurationError(origin, f"must define a module-level 'config' that is a Config; got {got}")
    return config


def _build(table: Mapping[str, Any], kinds: tuple[str, ...], path: tuple[str, ...], origin: str) -> Any:
    """Build the object a table describes, its ``type`` looked up in the registries of ``kinds``."""
    where = _Where(origin, path)
    type_name = table.get("type", _REGISTRIES[kinds[0]].default_type if len(kinds) == 1 else None)
    kwargs = {key: value for key, value in table.items() if key != "type"}
    for kind in kinds:  # the named class alone: listing them all would import every optional client
        found = _registry_class(_REGISTRIES[kind], type_name, where) if isinstance(type_name, str) else None
        if found is not None:
            return _construct(found, kwargs, _Where(origin, path, type_name))
    classes: dict[str, type] = {}
    for kind in reversed(kinds):  # the first registry wins a name clash
        classes.update(_registry_classes(_REGISTRIES[kind], where))
    if type_name is None:
        raise where.error(f"missing 'type' key; one of: {_listing(classes)}")
    if not isinstance(type_name, str) or type_name not in classes:
        raise where.error(f"unknown type {type_name!r}; valid types: {_listing(classes)}", "type")
    return _construct(classes[type_name], kwargs, _Where(origin, path, type_name))


def _construct(cls: Callable[..., Any], kwargs: dict[str, Any], where: _Where) -> Any:
    """Check keys, convert values, then call ``cls``, mapping its errors to ours.

    Keys are checked against the signature before anything is built, so a
    misspelt key is reported as such rather than as a puzzling TypeError.
    """
    _check_keys(cls, kwargs, where)
    hints = _type_hints(cls)
    arguments = {key: _convert(key, value, hints.get(key), where) for key, value in kwargs.items()}
    try:
        return cls(**arguments)
    except TypeCheckError as exc:
        match = _TYPECHECK_ARGUMENT.search(str(exc))
        raise where.error(str(exc), match.group(1) if match else None) from exc
    except ConfigurationError as exc:  # a range check; its field is the key
        raise where.error(exc.reason, exc.field) from exc
    except (TypeError, ValueError) as exc:
        raise where.error(f"{type(exc).__name__}: {exc}") from exc


def _check_keys(cls: Callable[..., Any], kwargs: Mapping[str, Any], where: _Where) -> None:
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]  # drop self
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    valid = [p.name for p in named]
    for key in kwargs:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            raise where.error(f"unknown key{guess}; valid keys: {_listing(valid)}", key)
    for parameter in named:
        if parameter.default is parameter.empty and parameter.name not in kwargs:
            raise where.error("missing required key", parameter.name)


def _convert(key: str, value: Any, hint: Any, where: _Where) -> Any:
    """Turn a TOML value into what the parameter ``key`` (annotated ``hint``) takes."""
    if key == "dependency_resolver" and isinstance(value, str) and not where.table:
        return _dependency_resolver(value, where)
    registry = _REGISTRIES.get(key)
    path = where.table + (key,)
    if registry is not None and registry.many:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise where.error(f"must be an array of tables, written [[{key}]]", key)
        return [_build(item, (key,), path + (str(n),), where.origin) for n, item in enumerate(value)]
    if isinstance(value, dict):
        if registry is not None:
            return _build(value, (key,), path, where.origin)
        if "type" in value and not _accepts(hint, dict):  # e.g. a provider's channel: any registry
            return _build(value, _SEARCHED_FOR_OTHER_KEYS, path, where.origin)
        return value
    if isinstance(value, list) and _accepts(hint, tuple) and not _accepts(hint, list):
        return tuple(value)
    if isinstance(value, str) and _accepts(hint, types.FunctionType) and not _accepts(hint, str):
        return _import_callable(value, key, where)
    return value


def _dependency_resolver(name: str, where: _Where) -> Any:
    """``"shallow"`` / ``"deep"`` name Parsl's two resolvers; ``"module:NAME"`` imports one of the user's."""
    from parsl_lite.dataflow import dependency_resolvers as resolvers

    named = {"shallow": resolvers.SHALLOW_DEPENDENCY_RESOLVER, "deep": resolvers.DEEP_DEPENDENCY_RESOLVER}
    if name.lower() in named:
        return named[name.lower()]
    if ":" not in name:
        raise where.error(f"expected 'shallow', 'deep' or 'module:NAME' of a DependencyResolver, got {name!r}",
                          "dependency_resolver")
    module_name, _, attribute = name.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:
        raise where.error(f"cannot import {name!r}: {exc}", "dependency_resolver") from exc
    return target  # Config's typeguard check names a wrong type


def _accepts(hint: Any, kind: type) -> bool:
    """Whether an annotation admits instances of ``kind``; unknown hints admit nothing."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is Union or origin is getattr(types, "UnionType", Union):
        return any(_accepts(arg, kind) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return any(isinstance(arg, kind) for arg in typing.get_args(hint))
    target = origin or hint
    try:
        return isinstance(target, type) and issubclass(kind, target)
    except TypeError:  # e.g. a Protocol that is not runtime-checkable
        return False


def _type_hints(cls: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls.__init__)
    except Exception:  # an unresolvable forward reference: convert nothing, let typeguard judge
        logger.debug("cannot resolve the annotations of %r", cls, exc_info=True)
        return {}


def _import_callable(spec: str, key: str, where: _Where) -> Callable[..., Any]:
    """Resolve ``"package.module:function"`` (the function part may be dotted)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise where.error(f"expected a callable as 'module:function', got {spec!r}", key)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise where.error(f"cannot import {module_name!r} for {spec!r}: {exc}", key) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as exc:
            raise where.error(f"{spec!r}: no {part!r} in {module_name!r}", key) from exc
    if not callable(target):
        raise where.error(f"{spec!r} is a {type(target).__name__}, not a callable", key)
    return target


def _registry_class(registry: _Registry, name: str, where: _Where) -> Optional[type]:
    """The concrete class ``name`` of a registry, importing only its module; None if it offers none."""
    try:
        module = importlib.import_module(registry.module)
    except ImportError as exc:
        raise where.error(f"{registry.module} is not available: {exc}") from exc
    names = getattr(module, "__all__", None)
    if names is not None and name not in names:
        return None
    cls = getattr(module, name, None)
    if names is None and getattr(cls, "__module__", None) != module.__name__:
        return None
    return cls if isinstance(cls, type) and not inspect.isabstract(cls) else None


def _registry_classes(registry: _Registry, where: _Where) -> dict[str, type]:
    """What a registry offers now: the concrete classes its package exports, by name."""
    try:
        module = importlib.import_module(registry.module)
    except ImportError as exc:
        raise where.error(f"{registry.module} is not available: {exc}") from exc
    names = getattr(module, "__all__", None)
    if names is None:  # a plain module: the public classes it defines
        names = [name for name, obj in vars(module).items()
                 if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__]
    # Base classes such as ParslExecutor are exported too, but cannot be built.
    classes = {name: getattr(module, name, None) for name in names}
    return {name: cls for name, cls in classes.items()
            if isinstance(cls, type) and not inspect.isabstract(cls)}


def _listing(names: Iterable[str]) -> str:
    return ", ".join(names) or "(none available yet)"
