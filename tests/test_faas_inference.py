"""``examples/faas/inference.py`` at a small size, against a real service and an endpoint whose blocks are pods.

The endpoint runs an htex whose provider is the ``KubernetesProvider`` of the
test backend (``k8s`` fixture): two pods of one worker each, this machine's
Python mounted into them. The example runs as a user runs it (a subprocess,
its classifier travelling by value from its ``__main__``); the test then reads
what it wrote: every item's class (checked against the data set's labels), the
table (one row per p, with the fit's columns) and the PNG.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from parsl_lite.faas import paths
from parsl_lite.providers.kubernetes import host_python_mounts

from .conftest import wait_for
from .faas_endpoint_helpers import Endpoint
from .faas_helpers import client_home_service

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "faas" / "inference.py"
PODS = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("faas_inference_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def k8s_endpoint_config(service_url: str, k8s: dict[str, str], directory: Path, app_label: str) -> str:
    """An endpoint config.toml: an htex of ``PODS`` pods (one worker each) on the test backend."""
    mounts = host_python_mounts() + [f"{directory}:{directory}"]   # the run dir: CurveZMQ keys, pool logs
    return "\n".join([
        'strategy = "simple"', "max_idletime = 60.0", "strategy_period = 0.5", "",
        "[endpoint]", f"service_url = {json.dumps(service_url)}", "heartbeat_period = 0.5",
        "heartbeat_threshold = 3.0", "",
        "[[executors]]", 'type = "HighThroughputExecutor"', 'label = "htex_k8s"',
        f"address = {json.dumps(k8s['K8S_HOST_ADDR_FROM_PODS'])}", "max_workers_per_node = 1",
        "heartbeat_period = 2", "heartbeat_threshold = 20",
        "  [executors.provider]", '  type = "KubernetesProvider"',
        f"  image = {json.dumps(k8s['K8S_IMAGE_HOST'])}", f"  namespace = {json.dumps(k8s['K8S_NAMESPACE'])}",
        f"  kubeconfig = {json.dumps(k8s['KUBECONFIG'])}",
        f"  init_blocks = {PODS}", f"  min_blocks = {PODS}", f"  max_blocks = {PODS}",
        '  init_cpu = "100m"', "  max_cpu = 1", '  init_mem = "200Mi"', '  max_mem = "1Gi"',
        f"  host_path_volumes = {json.dumps(mounts)}", f'  labels = {{ app = "{app_label}" }}', "",
    ])


def _pods(k8s: dict[str, str], app_label: str) -> list[Any]:
    from kubernetes import client, config
    api = client.CoreV1Api(config.new_client_from_config(config_file=k8s["KUBECONFIG"]))
    return api.list_namespaced_pod(k8s["K8S_NAMESPACE"], label_selector=f"app={app_label}").items


@pytest.fixture
def pod_endpoint(k8s, tmp_path, monkeypatch) -> Iterator[tuple[Endpoint, str]]:
    """A service and an endpoint of ``PODS`` pods; at the end both stopped, no process and no pod left."""
    app_label = f"plite-inference-{uuid.uuid4().hex[:8]}"
    with client_home_service(tmp_path, monkeypatch) as service:
        directory = paths.endpoint_dir("pods")
        directory.mkdir(parents=True)
        (directory / "config.toml").write_text(k8s_endpoint_config(service.url, k8s, directory, app_label))
        endpoint = Endpoint(service, "pods", service.admin_token, directory)
        try:
            yield endpoint.start(), app_label
        finally:
            stray = endpoint.cleanup()
            wait_for(lambda: all(p.metadata.deletion_timestamp or p.status.phase in ("Succeeded", "Failed")
                                 for p in _pods(k8s, app_label)), 30, "the endpoint's pods deleted")
            assert not stray, f"endpoint processes left running (killed now): {stray}"


def test_inference_on_pods_classifies_every_item_and_fits(pod_endpoint, k8s, tmp_path):
    endpoint, app_label = pod_endpoint
    out = tmp_path / "out"
    env = {**os.environ, paths.HOME_ENV: str(paths.home())}
    done = subprocess.run([sys.executable, str(EXAMPLE), "--endpoint", endpoint.endpoint_id, "--out", str(out),
                           "--items", "40", "--max-p", str(PODS), "--trees", "20", "--workers-timeout", "40"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    from sklearn.datasets import load_digits
    labels = load_digits().target
    with open(out / "predictions.csv") as stream:
        rows = list(csv.DictReader(stream))
    items = list(range(1, 80, 2))
    for p in range(1, PODS + 1):
        predicted = {int(r["item"]): int(r["predicted"]) for r in rows if int(r["p"]) == p}
        assert sorted(predicted) == items, f"p={p}: not every item got a class"
        accuracy = sum(predicted[i] == labels[i] for i in items) / len(items)
        assert accuracy >= 0.8, f"p={p}: accuracy {accuracy:.2f} against the data set's labels"
    with open(out / "inference.csv") as stream:
        table = list(csv.DictReader(stream))
    assert [int(r["p"]) for r in table] == list(range(1, PODS + 1))
    assert set(_example().COLUMNS) <= set(table[0]), table[0]
    assert all(float(r["T_s"]) > 0 and float(r["T_fit_s"]) > 0 and float(r["load_s"]) > 0 for r in table), table
    assert "fit T(p) = C + N·r/p" in (out / "inference.md").read_text()
    png = (out / "inference.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE)
    import matplotlib.image
    assert matplotlib.image.imread(str(out / "inference.png")).shape[:2] == (400, 600)
    hosts = set(re.findall(r"on (\S+?):\d+", done.stdout))
    pods = {p.metadata.name for p in _pods(k8s, app_label)}
    assert hosts and hosts <= pods, (hosts, pods, done.stdout)   # the tasks ran in the endpoint's pods


def test_fit_recovers_c_and_r_and_split_is_even():
    example = _example()
    ps = list(range(1, 11))
    c, r, r2 = example.fit(ps, [1.5 + 250 * 0.004 / p for p in ps], 250)
    assert (round(c, 6), round(r, 6), round(r2, 6)) == (1.5, 0.004, 1.0)
    chunks = example.split(list(range(250)), 3)
    assert [len(c) for c in chunks] == [84, 83, 83] and sum(chunks, []) == list(range(250))


@pytest.mark.parametrize("words, field", [(["--max-p", "0"], "--max-p"), (["--items", "900"], "--items"),
                                          (["--items", "4", "--max-p", "5"], "--max-p")])
def test_bad_arguments_name_the_flag(tmp_path, words, field):
    done = subprocess.run([sys.executable, str(EXAMPLE), "--endpoint", str(uuid.uuid4()), "--out", str(tmp_path),
                           *words], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and field in done.stderr, done.stderr
