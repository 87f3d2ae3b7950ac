"""The FaaS executor in a workflow, against a real service and two real endpoints (issue 11's user lines).

One service and two endpoints (user alice) serve the whole module; each test
loads its own config. Apps are defined as in a user's script (module
``__main__``), so their bodies travel by value to the endpoints.
"""
from __future__ import annotations

import textwrap
import uuid

import pytest

import parsl_lite as parsl
from parsl_lite.config import Config
from parsl_lite.dataflow.loader import DataFlowKernelLoader
from parsl_lite.executors import FuncXExecutor, HighThroughputExecutor, ThreadPoolExecutor
from parsl_lite.executors.faas.errors import EndpointNotAllowed
from parsl_lite.faas import paths

from .faas_endpoint_helpers import start_endpoint
from .faas_helpers import add_user, register_endpoint, start_service
from .test_faas_sdk import user_functions


@pytest.fixture(scope="module")
def fabric(tmp_path_factory):
    """A service, alice's two endpoints (1 worker each) and bob's registered (not running) endpoint."""
    root = tmp_path_factory.mktemp("faas-executor")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(paths.HOME_ENV, str(root / "home"))
        mp.delenv(paths.URL_ENV, raising=False)
        mp.delenv(paths.TOKEN_ENV, raising=False)
        service = start_service(root)
        endpoints = []
        try:
            alice = add_user(service, "alice")
            bob = add_user(service, "bob")
            paths.write_client_file(service.url, alice)     # FuncXClient() finds alice's credentials
            endpoints = [start_endpoint(service, name, alice, workers=1) for name in ("ep1", "ep2")]
            foreign = register_endpoint(service, token=bob, name="bobs")["endpoint_id"]
            yield service, endpoints[0].endpoint_id, endpoints[1].endpoint_id, foreign
        finally:
            stray = [pid for endpoint in endpoints for pid in endpoint.cleanup()]
            service.stop()
            assert not stray, f"endpoint processes left running: {stray}"


@pytest.fixture
def kernel_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    if DataFlowKernelLoader._dfk is not None:   # a failed test must not leave its kernel to the next
        parsl.clear()


def apps():
    return user_functions(WHERE + textwrap.dedent("""
        from parsl_lite import python_app

        @python_app(executors=["funcX"])
        def square(x):
            return x * x

        @python_app(executors=["local"])
        def add_one(x):
            return x + 1

        @python_app(executors=["funcX"])
        def fail(x):
            raise KeyError(f"remote {x}")

        @python_app(executors=["funcX"])
        def nap(x, seconds):
            import time
            time.sleep(seconds)
            return x, where()
    """))


WHERE = """
def where():
    # the worker's pool was started by its endpoint with --logdir under $PARSL_LITE_HOME/endpoints/NAME/
    import os, re, psutil
    for proc in [psutil.Process(os.getpid())] + psutil.Process(os.getpid()).parents():
        found = re.search(r"/endpoints/([^/]+)/", " ".join(proc.cmdline()))
        if found:
            return found.group(1)
    return "local"
"""


def ran_on(future) -> str:
    return future.result(timeout=60)[1]


def test_user_lines_as_written(fabric, kernel_dir):
    _service, ep1, ep2, _foreign = fabric
    fx_config = Config(executors=[
        FuncXExecutor(label="funcX", endpoints=[ep1, ep2]),     # client found as FuncXClient() finds it
        HighThroughputExecutor(label="local"),
    ])
    ns = user_functions(WHERE + textwrap.dedent(f"""
        from parsl_lite import python_app

        @python_app(executors=["funcX"], parsl_resource_specification={{"endpoints": ["{ep1}"]}})
        def foo(x):
            return x * 10, where()
    """))
    foo = ns["foo"]
    with parsl.load(fx_config):
        pinned = [foo(i) for i in range(4)]
        spread = [foo(i, parsl_resource_specification={"endpoints": [ep1, ep2]}) for i in range(4)]
        assert [f.result(timeout=60)[0] for f in pinned + spread] == [0, 10, 20, 30] * 2
        assert {ran_on(f) for f in pinned} == {"ep1"}
        assert {ran_on(f) for f in spread} == {"ep1", "ep2"}     # the call overrides the decorator


def test_mixed_dag_remote_local_remote_and_remote_failure(fabric, kernel_dir):
    _service, ep1, ep2, _foreign = fabric
    ns = apps()
    config = Config(executors=[FuncXExecutor(label="funcX", endpoints=[ep1, ep2], policy="least_loaded"),
                               HighThroughputExecutor(label="local")])
    with parsl.load(config):
        remote = [ns["square"](i) for i in range(5)]
        local = [ns["add_one"](r) for r in remote]            # a remote result feeds a local app
        back = [ns["square"](x) for x in local]               # and a local one a remote app
        assert [f.result(timeout=60) for f in back] == [(i * i + 1) ** 2 for i in range(5)]
        failed = ns["fail"](3)
        with pytest.raises(KeyError, match="remote 3"):       # the original exception, re-raised
            failed.result(timeout=60)


def test_unknown_and_foreign_endpoints_in_config_are_refused_at_load(fabric, kernel_dir):
    _service, ep1, _ep2, foreign = fabric
    for bad in (str(uuid.uuid4()), foreign, "not-an-id"):
        with pytest.raises(EndpointNotAllowed, match=bad):
            parsl.load(Config(executors=[FuncXExecutor(label="funcX", endpoints=[ep1, bad])]))
        if DataFlowKernelLoader._dfk is not None:
            parsl.clear()


def test_unknown_and_foreign_endpoints_in_a_spec_fail_the_future(fabric, kernel_dir):
    _service, ep1, _ep2, foreign = fabric
    ns = apps()
    with parsl.load(Config(executors=[FuncXExecutor(label="funcX", endpoints=[ep1])])):
        for bad in (str(uuid.uuid4()), foreign):
            future = ns["square"](2, parsl_resource_specification={"endpoints": [ep1, bad]})
            with pytest.raises(EndpointNotAllowed, match=bad):
                future.result(timeout=30)
        assert ns["square"](3).result(timeout=60) == 9


def test_endpoints_on_a_non_faas_executor_are_refused_naming_the_key(fabric, kernel_dir):
    _service, ep1, _ep2, _foreign = fabric
    ns = user_functions("""
        from parsl_lite import python_app

        @python_app(executors=["threads"])
        def t(x):
            return x

        @python_app(executors=["local"])
        def h(x):
            return x
    """)
    config = Config(executors=[ThreadPoolExecutor(label="threads"), HighThroughputExecutor(label="local")])
    with parsl.load(config):
        for app in (ns["t"], ns["h"]):
            with pytest.raises(Exception, match="'endpoints'.*only a FaaSExecutor"):
                app(1, parsl_resource_specification={"endpoints": [ep1]}).result(timeout=30)
        assert ns["h"](5).result(timeout=30) == 5


def test_example_workflow_pi_on_two_endpoints_mean_local(fabric, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    _service, ep1, ep2, _foreign = fabric
    script = Path(__file__).resolve().parents[1] / "examples" / "faas" / "workflow.py"
    env = {k: v for k, v in os.environ.items() if k not in (paths.URL_ENV, paths.TOKEN_ENV)}
    done = subprocess.run([sys.executable, str(script), ep1, ep2, "4", "2000"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == f"4 pi tasks: 2 on {ep1}, 2 on {ep2}; mean on 'local'"
    assert 2.5 < float(lines[-1].rsplit(" ", 1)[1]) < 3.8


def test_toml_type_faas_executor(tmp_path):
    from parsl_lite.config_loader import load_config
    from parsl_lite.executors import FaaSExecutor

    ep = str(uuid.uuid4())
    path = tmp_path / "fx.toml"
    path.write_text(textwrap.dedent(f"""
        retries = 2
        [[executors]]
        type = "FaaSExecutor"
        label = "funcX"
        endpoints = ["{ep}"]
        policy = "least_loaded"
        batch_size = 64
        offline_timeout = 5.0
    """))
    config = load_config(str(path))
    (executor,) = config.executors
    assert isinstance(executor, FaaSExecutor) and FuncXExecutor is FaaSExecutor
    assert (executor.endpoints, executor.policy, executor.batch_size) == ([ep], "least_loaded", 64)
    assert executor.offline_timeout == 5.0
    path.write_text(path.read_text().replace('"least_loaded"', '"fastest"'))
    with pytest.raises(Exception, match="fastest"):
        load_config(str(path))


def test_kernel_listeners_see_which_endpoint_ran_each_task(fabric, kernel_dir):
    _service, ep1, ep2, _foreign = fabric
    ns = apps()
    events = []
    dfk = parsl.load(Config(executors=[FuncXExecutor(label="funcX", endpoints=[ep1, ep2])]))
    dfk.add_listener(events.append)
    with dfk:
        futures = [ns["square"](i) for i in range(4)]
        assert [f.result(timeout=60) for f in futures] == [0, 1, 4, 9]
    placed = {e.task_id: (e.executor, e.detail["endpoint_id"], e.detail["ok"])
              for e in events if getattr(e, "what", "") == "task_placed"}
    assert placed == {f.tid: ("funcX", ep, True) for f, ep in zip(futures, [ep1, ep2, ep1, ep2])}


def test_files_by_path_between_an_endpoint_and_a_local_app(fabric, kernel_dir):
    from parsl_lite import File

    _service, ep1, ep2, _foreign = fabric
    ns = user_functions("""
        from parsl_lite import python_app

        @python_app(executors=["funcX"])
        def write(text, outputs=()):
            with open(outputs[0].filepath, "w") as f:
                f.write(text)
            return len(text)

        @python_app(executors=["local"])
        def shout(inputs=(), outputs=()):
            with open(inputs[0].filepath) as f, open(outputs[0].filepath, "w") as g:
                g.write(f.read().upper())

        @python_app(executors=["funcX"])
        def read(inputs=()):
            with open(inputs[0].filepath) as f:
                return f.read()
    """)
    config = Config(executors=[FuncXExecutor(label="funcX", endpoints=[ep1, ep2]),
                               HighThroughputExecutor(label="local")])
    with parsl.load(config):
        written = ns["write"]("hello", outputs=[File(str(kernel_dir / "a.txt"))])
        loud = ns["shout"](inputs=[written.outputs[0]], outputs=[File(str(kernel_dir / "b.txt"))])
        assert ns["read"](inputs=[loud.outputs[0]]).result(timeout=60) == "HELLO"
        assert written.result() == 5


def test_an_app_on_all_executors_with_endpoints_goes_to_the_faas_executor(fabric, kernel_dir):
    _service, ep1, ep2, _foreign = fabric
    ns = user_functions(WHERE + textwrap.dedent("""
        from parsl_lite import python_app

        @python_app
        def anywhere(x):
            return x, where()
    """))
    config = Config(executors=[HighThroughputExecutor(label="local"), ThreadPoolExecutor(label="threads"),
                               FuncXExecutor(label="funcX", endpoints=[ep1, ep2])])
    with parsl.load(config):
        futures = [ns["anywhere"](i, parsl_resource_specification={"endpoints": [ep2]}) for i in range(6)]
        assert [f.result(timeout=60) for f in futures] == [(i, "ep2") for i in range(6)]
