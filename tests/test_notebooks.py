"""The notebooks of ``examples/notebooks/`` run cell by cell in a real Jupyter kernel (nbclient + ipykernel).

The kernel is this venv's Python (a kernelspec written into a temporary
``JUPYTER_DATA_DIR``), so the notebooks run our code; Jupyter's, IPython's and
matplotlib's directories and ``PARSL_LITE_HOME`` are temporary too, so nothing
is written under the real home. A cell tagged ``parameters`` (papermill's
convention) is followed by a cell of the test's values. A cell that raises
fails the test with the cell's index, its first line and its error. After
each test no process is left in the notebook's working directory (the kernel,
the htex it started, Dask's workers).
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

import nbformat
import psutil
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError
from nbformat.v4 import new_code_cell, new_notebook

from parsl_lite.faas import paths

from .conftest import wait_for

NOTEBOOKS = Path(__file__).resolve().parents[1] / "examples" / "notebooks"
KERNEL_NAME = "parsl-lite-test"
CELL_TIMEOUT_S = 50
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_HOME_DIRS = [Path.home() / name for name in (".ipython", ".jupyter", ".local/share/jupyter")]


class NotebookFailed(AssertionError):
    """A cell of a notebook raised or timed out; the message names the cell."""


@pytest.fixture
def jupyter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Temporary Jupyter/IPython/matplotlib dirs and PARSL_LITE_HOME, this venv's kernel; the notebooks' cwd."""
    for var, sub in (("JUPYTER_CONFIG_DIR", "jupyter/config"), ("JUPYTER_DATA_DIR", "jupyter/data"),
                     ("JUPYTER_RUNTIME_DIR", "jupyter/runtime"), ("IPYTHONDIR", "ipython"), ("MPLCONFIGDIR", "mpl"),
                     ("DASK_CONFIG", "dask")):
        (tmp_path / sub).mkdir(parents=True)
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    spec = tmp_path / "jupyter/data/kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "parsl_lite (test venv)", "language": "python"}))
    work = tmp_path / "work"
    work.mkdir()
    absent = [path for path in _HOME_DIRS if not path.exists()]
    yield work
    assert not [str(path) for path in absent if path.exists()], "a notebook wrote under the real home"
    try:
        wait_for(lambda: not _running_in(work), 20, "the kernel and what it started (htex, Dask) to exit")
    except AssertionError:
        stray = _running_in(work)
        for proc in stray:
            proc.kill()
        raise AssertionError(f"processes left running in {work} (killed now): {[p.pid for p in stray]}") from None


def _running_in(directory: Path) -> list[psutil.Process]:
    """Processes whose working directory is ``directory`` (the kernel, and what it started there)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.status() != psutil.STATUS_ZOMBIE and proc.cwd() == str(directory):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return found


def inject_parameters(book: Any, parameters: dict[str, Any]) -> int:
    """Insert a cell of ``name = value`` lines after the cell tagged ``parameters`` (papermill-style); its index."""
    tagged = [i for i, cell in enumerate(book.cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise AssertionError("the notebook has no cell tagged 'parameters' to override")
    cell = new_code_cell("\n".join(f"{name} = {value!r}" for name, value in parameters.items()))
    cell.metadata["tags"] = ["injected-parameters"]
    book.cells.insert(tagged[0] + 1, cell)
    return tagged[0] + 1


def _failure(name: str, index: int, cell: Any, err: Exception, timeout_s: float) -> NotebookFailed:
    first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    if isinstance(err, CellTimeoutError):
        return NotebookFailed(f"{name}: cell {index} ({first!r}) timed out after {timeout_s} s")
    detail = _ANSI.sub("", getattr(err, "traceback", "") or str(err)).strip()
    what = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', '')}"
    return NotebookFailed(f"{name}: cell {index} ({first!r}) raised {what}\n{detail[-3000:]}")


def run_notebook(book: Any, cwd: Path, name: str = "notebook", parameters: Optional[dict[str, Any]] = None,
                 timeout_s: float = CELL_TIMEOUT_S) -> Any:
    """Execute ``book`` (a notebook node or a path) cell by cell in cwd; return the executed notebook.

    Raises:
        NotebookFailed: naming the first cell that raised (its index in the file, first line, error).
    """
    if isinstance(book, Path):
        name, book = book.name, nbformat.read(book, as_version=4)
    injected = inject_parameters(book, parameters) if parameters else len(book.cells)
    client = NotebookClient(book, timeout=timeout_s, kernel_name=KERNEL_NAME, store_widget_state=True,
                            resources={"metadata": {"path": str(cwd)}})
    with client.setup_kernel():
        for index, cell in enumerate(book.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except (CellExecutionError, CellTimeoutError) as err:
                where = index - (index > injected)  # the index in the file, without the injected cell
                raise _failure(name, where, cell, err, timeout_s) from None
        client.set_widgets_metadata()
    return book


def outputs(book: Any, mime: str) -> list[str]:
    """Every output of ``mime`` type in the executed notebook, as text."""
    found = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if mime in data:
                found.append(data[mime] if isinstance(data[mime], str) else json.dumps(data[mime]))
            elif mime == "stream" and out.get("output_type") == "stream":
                found.append(out["text"])
    return found


def widget_texts(book: Any) -> list[str]:
    """The text values of the widgets the kernel left (tqdm's widget keeps its count in an HTML widget)."""
    state = book.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
    return [str(model["state"].get("value", "")) for model in state.values() if model["model_name"] == "HTMLModel"]


# ---------------------------------------------------------------- the notebooks

def test_quickstart(jupyter):
    book = run_notebook(NOTEBOOKS / "quickstart.ipynb", jupyter)
    tables = outputs(book, "text/html")
    assert any("parsl-lite-appfuture" in t and "exec_done" in t for t in tables), tables
    assert any("ZeroDivisionError: division by zero" in t for t in tables), "the failed future's table"
    assert any("htex_local" in t for t in tables), "the htex future's table names its executor"
    bars = widget_texts(book)
    for count in ("50/50", "20/20", "30/30"):     # the three progress widgets, each at its final count
        assert any(count in text for text in bars), (count, bars)
    assert (jupyter / "hello.txt").read_text() == "HELLO\n"


def test_pi_blocks_small(jupyter):
    blocks = [1, 2, 5, 10]
    book = run_notebook(NOTEBOOKS / "pi_blocks.ipynb", jupyter,
                        parameters={"n_estimates": 10, "n_points": 1000, "blocks": blocks, "workers": 2})
    assert outputs(book, "image/png"), "no plot"
    table = "".join(outputs(book, "stream"))
    rows = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s*$", table, re.M)
    assert [int(b) for b, _, _ in rows] == blocks, table


def test_faas(jupyter, tmp_path, monkeypatch):
    from .faas_endpoint_helpers import start_endpoint
    from .faas_helpers import client_home_service

    with client_home_service(tmp_path, monkeypatch) as service:   # PARSL_LITE_HOME: the kernel's too
        endpoint = start_endpoint(service, "notebook", service.admin_token, workers=2)
        try:
            book = run_notebook(NOTEBOOKS / "faas.ipynb", jupyter, parameters={"endpoint_id": endpoint.endpoint_id})
        finally:
            stray = endpoint.cleanup()
        assert not stray, f"endpoint processes left running: {stray}"
    printed = "".join(outputs(book, "stream"))
    assert "Task is pending due to" in printed, printed
    assert any("50/50" in text for text in widget_texts(book))


def test_a_raising_cell_is_reported(jupyter):
    book = new_notebook(cells=[new_code_cell("import sys, parsl_lite\nprint(sys.executable, parsl_lite.__file__)"),
                               new_code_cell("# divide\ny = 1 / 0"), new_code_cell("print('after')")])
    with pytest.raises(NotebookFailed) as failed:
        run_notebook(book, jupyter, name="raising.ipynb")
    message = str(failed.value)
    assert message.startswith("raising.ipynb: cell 1 ('# divide') raised ZeroDivisionError: division by zero"), message
    assert "y = 1 / 0" in message     # the traceback shows the line
    assert not book.cells[2].outputs and book.cells[2].execution_count is None   # nothing ran after it
    import parsl_lite   # the kernel was this venv's Python, running this checkout's parsl_lite
    assert book.cells[0].outputs[0]["text"].split() == [sys.executable, parsl_lite.__file__]


def test_a_raising_cell_after_the_parameters_keeps_its_index(jupyter):
    cell = new_code_cell("n = 1")
    cell.metadata["tags"] = ["parameters"]
    book = new_notebook(cells=[cell, new_code_cell("assert n == 1, f'n is {n}'")])
    with pytest.raises(NotebookFailed, match=r"^params.ipynb: cell 1 \(\"assert n == 1, f'n is \{n\}'\"\) raised "
                                              r"AssertionError: n is 2\n"):
        run_notebook(book, jupyter, name="params.ipynb", parameters={"n": 2})


def test_a_hanging_cell_is_reported(jupyter):
    book = new_notebook(cells=[new_code_cell("import time\ntime.sleep(60)")])
    with pytest.raises(NotebookFailed, match=r"^hanging.ipynb: cell 0 \('import time'\) timed out after 2 s$"):
        run_notebook(book, jupyter, name="hanging.ipynb", timeout_s=2)


def test_notebooks_are_committed_clean():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        for index, cell in enumerate(book.cells):
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name}: cell {index} has outputs"
        assert "widgets" not in book.metadata, path.name
