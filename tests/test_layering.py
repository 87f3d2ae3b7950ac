"""The imports hold shared/DESIGN.md's layers (rule 1): nothing below imports above.

Every module under ``parsl_lite/`` is parsed with ``ast``; its imports, at
module level and inside functions (a lazy import is still a dependency), and
module paths handed as strings to ``lazy_attributes`` or ``import_module``, are
collected with relative imports resolved. The rules are checked against that
graph, and each rule is shown to catch a planted violation, so the test can fail.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Optional

import pytest

from parsl_lite.config import Config
from parsl_lite.executors import HighThroughputExecutor, ThreadPoolExecutor

PACKAGE = Path(__file__).resolve().parent.parent / "parsl_lite"

# Top to bottom; a module may import only its own layer or those below it.
LAYERS = ("parsl_lite.app", "parsl_lite.dataflow", "parsl_lite.executors", "parsl_lite.jobs",
          "parsl_lite.providers")

# What providers implement and report: the one thing they may take from the layer above.
INTERFACE = ("parsl_lite.jobs.provider", "parsl_lite.jobs.states")

# Calls that import the module paths given as strings (PEP 562 lazy attributes, importlib).
DYNAMIC_IMPORTERS = ("lazy_attributes", "import_module")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every ``parsl_lite`` name ``source`` imports, as dotted paths (``from a import b`` gives ``a`` and ``a.b``)."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            found.add(origin)
            found.update(f"{origin}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and _call_name(node) in DYNAMIC_IMPORTERS:
            found.update(c.value for arg in node.args for c in ast.walk(arg)
                         if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return {name for name in found if name == "parsl_lite" or name.startswith("parsl_lite.")}


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        graph[name] = imports_of(path.read_text(), name, path.name == "__init__.py")
    return graph


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_of(name: str) -> Optional[int]:
    for index, prefix in enumerate(LAYERS):
        if within(name, prefix):
            return index
    return None


def violations(graph: dict[str, set[str]]) -> Iterator[str]:
    """Each import that breaks a rule, as ``'importer -> imported: rule'``."""
    for module, imported in sorted(graph.items()):
        for target in sorted(imported):
            for rule in _broken_rules(module, target):
                yield f"{module} -> {target}: {rule}"
    for a, b in (("parsl_lite.dataflow.kernel", "parsl_lite.dataflow.loader"),):
        if _imports_module(graph, a, b) and _imports_module(graph, b, a):
            yield f"{a} <-> {b}: import cycle"


def _imports_module(graph: dict[str, set[str]], importer: str, module: str) -> bool:
    return any(within(target, module) for target in graph.get(importer, ()))


def _broken_rules(module: str, target: str) -> Iterator[str]:
    mine, theirs = layer_of(module), layer_of(target)
    implements = within(module, "parsl_lite.providers") and any(
        within(target, interface) for interface in INTERFACE)
    if mine is not None and theirs is not None and theirs < mine and not implements:
        yield f"{LAYERS[mine]} imports from the layer above it ({LAYERS[theirs]})"
    if within(module, "parsl_lite.executors") and within(target, "parsl_lite.providers"):
        yield "an executor knows the provider interface (parsl_lite.jobs), never a provider"
    if within(module, "parsl_lite.dataflow"):
        if within(target, "parsl_lite.executors") and not within(target, "parsl_lite.executors.base"):
            yield "the kernel knows only the executor interface (parsl_lite.executors.base)"
        if within(target, "parsl_lite.providers"):
            yield "the kernel knows no provider"
    for poller in ("parsl_lite.jobs.strategy", "parsl_lite.jobs.job_status_poller", "parsl_lite.jobs.states",
                   "parsl_lite.dataflow.strategy", "parsl_lite.dataflow.job_status_poller"):
        if within(module, poller) and within(target, "parsl_lite.providers"):
            yield "the strategy and the poller know job states and the provider interface (jobs/) only"


def test_every_module_parses_and_the_layers_exist():
    graph = import_graph()
    assert len(graph) > 50
    for prefix in LAYERS:
        assert any(within(name, prefix) for name in graph), prefix


def test_the_imports_follow_the_layers():
    broken = list(violations(import_graph()))
    assert not broken, "imports against shared/DESIGN.md rule 1:\n" + "\n".join(broken)


@pytest.mark.parametrize("module, source, expected", [
    ("parsl_lite.executors.htex.executor", "def f():\n    from parsl_lite.providers import LocalProvider\n",
     "never a provider"),
    ("parsl_lite.dataflow.kernel", "from ..app.errors import AppException\n", "layer above"),
    ("parsl_lite.dataflow.kernel", "import parsl_lite.executors.htex.executor\n", "only the executor interface"),
    ("parsl_lite.jobs.strategy", "from parsl_lite.providers.base import JobState\n", "the poller know"),
    ("parsl_lite.providers.local", "from parsl_lite.jobs import strategy\n", "layer above"),
    ("parsl_lite.executors.htex.executor", "importlib.import_module('parsl_lite.providers.local')\n",
     "never a provider"),
    ("parsl_lite.dataflow.kernel", "__getattr__ = lazy_attributes('x', {}, {'A': 'parsl_lite.app.app'})\n",
     "layer above"),
    ("parsl_lite.providers.local", "from parsl_lite.executors.base import ParslExecutor\n", "layer above"),
    ("parsl_lite.jobs.job_status_poller", "from parsl_lite.dataflow.kernel import DataFlowKernel\n", "layer above"),
])
def test_a_planted_violation_is_caught(module, source, expected):
    graph = import_graph()
    graph[module] = graph.get(module, set()) | imports_of(source, module)
    assert any(expected in line for line in violations(graph))


def test_a_kernel_loader_cycle_is_caught():
    graph = import_graph()
    graph["parsl_lite.dataflow.kernel"].add("parsl_lite.dataflow.loader.DataFlowKernelLoader")
    assert any("import cycle" in line for line in violations(graph))


def test_relative_imports_resolve():
    assert "parsl_lite.app.errors.X" in imports_of("from ..app.errors import X", "parsl_lite.dataflow.kernel")
    assert "parsl_lite.jobs.states" in imports_of("from .states import JobState", "parsl_lite.jobs", is_package=True)


def test_htex_gets_its_default_provider_from_the_config():
    """No provider import in htex: ``HighThroughputExecutor()`` alone has none; in a Config it gets a LocalProvider."""
    from parsl_lite.jobs.provider import ExecutionProvider
    from parsl_lite.providers import LocalProvider

    bare = HighThroughputExecutor(label="htex")
    assert bare.provider is None
    Config(executors=[bare, ThreadPoolExecutor(label="threads")])
    assert isinstance(bare.provider, LocalProvider) and isinstance(bare.provider, ExecutionProvider)
    mine = LocalProvider(init_blocks=0)
    chosen = HighThroughputExecutor(label="htex", provider=mine)
    Config(executors=[chosen])
    assert chosen.provider is mine


def test_parsl_import_paths_still_work():
    from parsl_lite.dataflow.job_status_poller import JobStatusPoller
    from parsl_lite.dataflow.strategy import Strategy
    from parsl_lite.jobs import JobState as neutral_state
    from parsl_lite.jobs.job_status_poller import JobStatusPoller as poller
    from parsl_lite.jobs.strategy import Strategy as strategy
    from parsl_lite.providers import ExecutionProvider, JobState
    from parsl_lite.providers.base import ExecutionProvider as base_provider
    from parsl_lite.jobs.provider import ExecutionProvider as neutral_provider

    assert JobStatusPoller is poller and Strategy is strategy and JobState is neutral_state
    assert ExecutionProvider is base_provider is neutral_provider


def test_the_loader_forgets_a_kernel_cleaned_up_directly(tmp_path):
    """The kernel no longer imports the loader: the loader's cleanup listener does the forgetting."""
    import parsl_lite
    from parsl_lite.errors import NoDataFlowKernelError

    dfk = parsl_lite.load(Config(executors=[ThreadPoolExecutor(label="threads")], run_dir=str(tmp_path)))
    try:
        assert parsl_lite.dfk() is dfk
        dfk.cleanup()
        with pytest.raises(NoDataFlowKernelError, match="Must first load config"):
            parsl_lite.dfk()
        again = parsl_lite.load(Config(executors=[ThreadPoolExecutor(label="threads")], run_dir=str(tmp_path)))
        assert again is not dfk
    finally:
        parsl_lite.clear()
