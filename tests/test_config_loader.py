"""Tests of parsl_lite.config_loader: every source kind, and errors that name file, table and key."""
from __future__ import annotations

import textwrap
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from typeguard import TypeCheckError, typechecked

import parsl_lite.executors
import parsl_lite.launchers
import parsl_lite.providers
from parsl_lite.config import Config
from parsl_lite.config_loader import config_from_dict, default_config, load_config
from parsl_lite.dataflow.memoization import BasicMemoizer
from parsl_lite.errors import ConfigurationError
from parsl_lite.executors import ParslExecutor, ThreadPoolExecutor

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load_error(path: Path) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    return info.value


# --- the shipped configs, the pass-through and the default ---


@pytest.mark.parametrize("name,kind,label", [("threads.toml", "ThreadPoolExecutor", "threads"),
                                              ("local.toml", "HighThroughputExecutor", "htex_local"),
                                              ("local.py", "HighThroughputExecutor", "htex_local")])
def test_shipped_configs_load(name: str, kind: str, label: str) -> None:
    config = load_config(str(CONFIGS / name))
    assert isinstance(config, Config)
    [executor] = config.executors
    assert type(executor).__name__ == kind
    assert executor.label == label


def test_threads_toml_sets_its_values() -> None:
    config = load_config(CONFIGS / "threads.toml")
    assert config.executors[0].max_threads == 4
    assert config.strategy == "none"


def test_local_files_match_the_htex_local_module() -> None:
    # configs/local.{toml,py} and parsl_lite.configs.htex_local are one config; keep them from drifting apart.
    from parsl_lite.configs import htex_local

    expected = repr(htex_local.config)
    assert repr(load_config(CONFIGS / "local.toml")) == expected
    assert repr(load_config(CONFIGS / "local.py")) == expected


def test_config_object_passes_through() -> None:
    config = Config(executors=[ThreadPoolExecutor(label="mine")])
    assert load_config(config) is config


def test_one_default_for_no_executors(tmp_path) -> None:
    # load() with nothing, Config(), and a TOML file without [[executors]]: one ThreadPoolExecutor (Parsl's).
    path = tmp_path / "none.toml"
    path.write_text('retries = 1\n')
    from_file = load_config(path)
    config = load_config(None)
    for built in (config, from_file, Config()):
        [executor] = built.executors
        assert type(executor) is ThreadPoolExecutor and executor.label == "threads"
    assert repr(config) == repr(Config()) == repr(default_config())
    assert load_config() is not config
    assert default_config().executors[0] is not config.executors[0]  # fresh, unstarted executors each time


def test_an_empty_executor_list_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigurationError, match="executors") as caught:
        Config(executors=[])
    assert caught.value.field == "executors"
    path = tmp_path / "empty.toml"
    path.write_text("executors = []\n")
    with pytest.raises(ConfigurationError, match="empty.toml.*executors.*empty"):
        load_config(path)


def test_wrong_source_type_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="got int"):
        load_config(3)  # type: ignore[arg-type]


# --- Python config modules ---


def test_python_module_config(tmp_path: Path) -> None:
    path = write(tmp_path, "my_config.py", """
        from parsl_lite.config import Config
        from parsl_lite.executors import ThreadPoolExecutor
        config = Config(executors=[ThreadPoolExecutor(label="py", max_threads=3)], retries=2)
    """)
    config = load_config(path)  # a PathLike works as well as a str
    assert config.retries == 2
    assert config.executors[0].label == "py" and config.executors[0].max_threads == 3


def test_same_named_modules_do_not_shadow_each_other(tmp_path: Path) -> None:
    labels = []
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        labels.append(load_config(write(tmp_path, f"{label}/config.py", f"""
            from parsl_lite.config import Config
            from parsl_lite.executors import ThreadPoolExecutor
            config = Config(executors=[ThreadPoolExecutor(label={label!r})])
        """)).executors[0].label)
    assert labels == ["a", "b"]


def test_module_without_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "empty_config.py", "x = 1\n")
    error = load_error(path)
    assert error.field == str(path)
    assert "no 'config' at all" in str(error)


def test_module_config_of_wrong_type(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "wrong.py", "config = {'executors': []}\n"))
    assert "wrong.py" in error.field and "got dict" in str(error)


def test_module_that_raises_names_the_file_and_keeps_the_cause(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.py", "raise RuntimeError('no cluster here')\n")
    error = load_error(path)
    assert error.field == str(path)
    assert "RuntimeError: no cluster here" in str(error)
    assert isinstance(error.__cause__, RuntimeError)


# --- TOML: the whole layout ---


def test_toml_top_level_memoizer_and_executors(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "full.toml", """
        run_dir = "my_runs"
        retries = 1
        strategy = "simple"
        [memoizer]
        checkpoint_mode = "task_exit"
        [[executors]]
        type = "ThreadPoolExecutor"
        label = "one"
        max_threads = 4
        [[executors]]
        type = "ThreadPoolExecutor"
        label = "two"
    """))
    assert (config.run_dir, config.retries, config.strategy) == ("my_runs", 1, "simple")
    assert isinstance(config.memoizer, BasicMemoizer) and config.memoizer.checkpoint_mode == "task_exit"
    assert [(e.label, e.max_threads) for e in config.executors] == [("one", 4), ("two", 2)]


def test_module_function_strings_become_callables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "my_hooks.py", """
        def cost(exc, record):
            return 0.5
        class Paths:
            @staticmethod
            def autopath(record, kind):
                return kind + ".txt"
    """)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = load_config(write(tmp_path, "hooks.toml", """
        retry_handler = "my_hooks:cost"
        std_autopath = "my_hooks:Paths.autopath"
    """))
    assert config.retry_handler(ValueError(), None) == 0.5
    assert config.std_autopath(None, "stdout") == "stdout.txt"


@pytest.mark.parametrize("spec, says", [
    ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
    ("os.path:no_such_function", "no 'no_such_function'"),
    ("os:sep", "not a callable"),
    ("just_a_name", "'module:function'"),
])
def test_bad_callable_strings_name_the_key(tmp_path: Path, spec: str, says: str) -> None:
    error = load_error(write(tmp_path, "hooks.toml", f'retry_handler = "{spec}"\n'))
    assert error.field.endswith("hooks.toml: top level (Config): retry_handler")
    assert says in str(error)


# --- TOML: errors that name file, table and key ---


def test_unknown_key_names_file_table_key_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", """
        [[executors]]
        type = "ThreadPoolExecutor"
        label = "a"
        [[executors]]
        type = "ThreadPoolExecutor"
        label = "b"
        max_thread = 4
    """)
    error = load_error(path)
    assert error.field == f"{path}: [executors.1] (ThreadPoolExecutor): max_thread"
    assert "did you mean 'max_threads'?" in str(error)
    assert "valid keys: label, max_threads, thread_name_prefix, working_dir" in str(error)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "bad.toml", "retires = 2\n"))
    assert error.field.endswith("bad.toml: top level (Config): retires")
    assert "did you mean 'retries'?" in str(error)


def test_wrong_type_names_file_table_key_and_keeps_typeguard_cause(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", """
        [[executors]]
        type = "ThreadPoolExecutor"
        max_threads = "4"
    """)
    error = load_error(path)
    assert error.field == f"{path}: [executors.0] (ThreadPoolExecutor): max_threads"
    assert "is not an instance of int" in str(error)
    assert isinstance(error.__cause__, TypeCheckError)


def test_wrong_top_level_type(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "bad.toml", 'retries = "1"\n'))
    assert error.field.endswith("bad.toml: top level (Config): retries")
    assert isinstance(error.__cause__, TypeCheckError)


def test_range_error_from_constructor_gets_file_and_table(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", """
        [[executors]]
        type = "ThreadPoolExecutor"
        max_threads = 0
    """)
    error = load_error(path)
    assert error.field == f"{path}: [executors.0] (ThreadPoolExecutor): max_threads"
    assert "must be at least 1" in str(error)
    assert isinstance(error.__cause__, ConfigurationError)


def test_duplicate_labels_are_reported_at_top_level(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "dup.toml", """
        [[executors]]
        type = "ThreadPoolExecutor"
        [[executors]]
        type = "ThreadPoolExecutor"
    """))
    assert error.field.endswith("dup.toml: top level (Config): executors")
    assert "unique" in str(error)


def test_unknown_type_lists_valid_names(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "bad.toml", '[[executors]]\ntype = "ThreadPoolExecuter"\n'))
    assert error.field.endswith("bad.toml: [executors.0]: type")
    assert "unknown type 'ThreadPoolExecuter'" in str(error)
    assert "ThreadPoolExecutor" in str(error).split("valid types:")[1]


def test_missing_type(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "bad.toml", '[[executors]]\nlabel = "x"\n'))
    assert error.field.endswith("bad.toml: [executors.0]")
    assert "missing 'type' key" in str(error)


def test_executors_must_be_an_array_of_tables(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "bad.toml", 'executors = "threads"\n'))
    assert error.field.endswith("top level (Config): executors")
    assert "[[executors]]" in str(error)


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", 'run_dir = "runinfo"\nretries = = 1\n')
    error = load_error(path)
    assert error.field == str(path)
    assert "line 2" in str(error)
    assert error.__cause__ is not None


@pytest.mark.parametrize("name", ["missing.toml", "missing.py"])
def test_missing_file_names_the_path(tmp_path: Path, name: str) -> None:
    error = load_error(tmp_path / name)
    assert error.field == str(tmp_path / name)
    assert "no such config file" in str(error)


def test_unsupported_suffix(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, "config.yaml", "run_dir: x\n"))
    assert "expected a .py module or a .toml file" in str(error)


# --- nested providers and launchers, registered for the test ---


class FakeLauncher:
    @typechecked
    def __init__(self, debug: bool = False) -> None:
        self.debug = debug


class FakeProvider:
    @typechecked
    def __init__(self, init_blocks: int = 1, launcher: Optional[Any] = None,
                 options: Optional[dict] = None, helper: Optional[FakeLauncher] = None) -> None:
        self.init_blocks = init_blocks
        self.launcher = launcher
        self.options = options
        self.helper = helper


class FakePoolExecutor(ParslExecutor):
    @typechecked
    def __init__(self, label: str = "pool", provider: Optional[Any] = None,
                 worker_port_range: tuple[int, int] = (1, 2), tags: Optional[list] = None,
                 on_start: Optional[Callable[[], None]] = None) -> None:
        self.label = label
        self._provider = provider
        self.worker_port_range = worker_port_range
        self.tags = tags
        self.on_start = on_start

    @property
    def provider(self) -> Any:
        return self._provider

    def start(self) -> None:
        pass

    def submit(self, func: Callable, resource_specification: dict, *args: Any, **kwargs: Any) -> Future:
        raise NotImplementedError

    def shutdown(self) -> None:
        pass


@pytest.fixture
def fake_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    for package, cls in [(parsl_lite.executors, FakePoolExecutor),
                         (parsl_lite.providers, FakeProvider),
                         (parsl_lite.launchers, FakeLauncher)]:
        monkeypatch.setattr(package, cls.__name__, cls, raising=False)
        monkeypatch.setattr(package, "__all__", [*package.__all__, cls.__name__])


NESTED = """
    [[executors]]
    type = "FakePoolExecutor"
    label = "pool"
    worker_port_range = [54000, 55000]
    tags = ["a", "b"]
      [executors.provider]
      type = "FakeProvider"
      init_blocks = 2
      options = {type = "not a class, just a dict key"}
        [executors.provider.launcher]
        type = "FakeLauncher"
        debug = true
"""


def test_nested_provider_and_launcher_are_built(tmp_path: Path, fake_registries: None) -> None:
    [executor] = load_config(write(tmp_path, "nested.toml", NESTED)).executors
    assert isinstance(executor, FakePoolExecutor)
    assert executor.worker_port_range == (54000, 55000)   # list -> tuple: the annotation says tuple
    assert executor.tags == ["a", "b"]                    # list stays list: the annotation says list
    assert isinstance(executor.provider, FakeProvider) and executor.provider.init_blocks == 2
    assert executor.provider.options == {"type": "not a class, just a dict key"}  # dict annotation: kept
    assert isinstance(executor.provider.launcher, FakeLauncher) and executor.provider.launcher.debug is True


def test_errors_in_nested_tables_name_the_nested_table(tmp_path: Path, fake_registries: None) -> None:
    error = load_error(write(tmp_path, "n.toml", NESTED.replace("debug = true", "debugg = true")))
    assert error.field.endswith("n.toml: [executors.0.provider.launcher] (FakeLauncher): debugg")
    error = load_error(write(tmp_path, "n.toml", NESTED.replace("init_blocks = 2", 'init_blocks = "2"')))
    assert error.field.endswith("n.toml: [executors.0.provider] (FakeProvider): init_blocks")
    assert isinstance(error.__cause__, TypeCheckError)


def test_nested_type_resolves_only_in_its_own_registry(tmp_path: Path, fake_registries: None) -> None:
    # A provider name in the launcher slot is unknown there.
    swapped = NESTED.replace('type = "FakeLauncher"', 'type = "FakeProvider"')
    error = load_error(write(tmp_path, "n.toml", swapped))
    assert error.field.endswith("[executors.0.provider.launcher]: type")
    valid = str(error).split("valid types: ")[1]
    assert "FakeLauncher" in valid and "FakeProvider" not in valid
    error = load_error(write(tmp_path, "n.toml", NESTED.replace('type = "FakeProvider"\n', "")))
    assert error.field.endswith("[executors.0.provider]") and "missing 'type' key" in str(error)


def test_typed_table_under_another_key_is_looked_up_in_every_registry(
        tmp_path: Path, fake_registries: None) -> None:
    helper = '\n      [executors.provider.helper]\n      type = "FakeLauncher"\n      debug = true\n'
    [executor] = load_config(write(tmp_path, "h.toml", NESTED + helper)).executors
    assert isinstance(executor.provider.helper, FakeLauncher) and executor.provider.helper.debug is True
    error = load_error(write(tmp_path, "h.toml", NESTED + helper.replace("FakeLauncher", "Nothing")))
    assert error.field.endswith("h.toml: [executors.0.provider.helper]: type")
    assert all(name in str(error) for name in ("ThreadPoolExecutor", "FakeProvider", "FakeLauncher"))


def test_callable_string_in_an_executor(tmp_path: Path, fake_registries: None) -> None:
    [executor] = load_config(write(tmp_path, "c.toml", """
        [[executors]]
        type = "FakePoolExecutor"
        on_start = "os:getcwd"
    """)).executors
    import os
    assert executor.on_start is os.getcwd


def test_config_from_dict_names_its_origin() -> None:
    with pytest.raises(ConfigurationError) as info:
        config_from_dict({"executors": [{"type": "ThreadPoolExecutor", "max_threads": -1}]},
                         origin="endpoint.toml")
    assert info.value.field == "endpoint.toml: [executors.0] (ThreadPoolExecutor): max_threads"
