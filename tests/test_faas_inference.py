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
import gzip
import importlib.util
import os
import re
import struct
import subprocess
import sys
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from parsl_lite.faas import paths

from .faas_cluster_helpers import all_endpoint_pods, cluster_endpoints, k8s_endpoint_config  # noqa: F401 (fixture)
from .faas_helpers import client_home_service

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "faas" / "inference.py"
PODS = 2
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("faas_inference_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_labels() -> list[int]:
    """The digits data set's labels, read from the file scikit-learn ships (importing sklearn takes seconds)."""
    [package] = importlib.util.find_spec("sklearn").submodule_search_locations
    with gzip.open(Path(package) / "datasets" / "data" / "digits.csv.gz", "rt") as stream:
        return [int(float(row[-1])) for row in csv.reader(stream)]


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` of a valid PNG: signature, every chunk's CRC, IHDR first, IDAT inflates, IEND last."""
    assert data.startswith(PNG_SIGNATURE), data[:8]
    at, kinds, image = len(PNG_SIGNATURE), [], b""
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        body, (crc,) = data[at + 8:at + 8 + length], struct.unpack(">I", data[at + 8 + length:at + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in chunk {kind!r}"
        kinds.append(kind)
        image += body if kind == b"IDAT" else b""
        at += 12 + length
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and zlib.decompress(image), kinds
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_inference_on_pods_classifies_every_item_and_fits(k8s, tmp_path, monkeypatch, cluster_endpoints):
    with client_home_service(tmp_path, monkeypatch) as service:
        text = k8s_endpoint_config(service.url, k8s, "pods", workers=1, init_blocks=PODS, min_blocks=PODS,
                                   max_blocks=PODS, max_idletime=60.0)
        endpoint = cluster_endpoints(service, "pods", service.admin_token, text)
        out = tmp_path / "out"
        env = {**os.environ, paths.HOME_ENV: str(paths.home())}
        done = subprocess.run([sys.executable, str(EXAMPLE), "--endpoint", endpoint.endpoint_id, "--out", str(out),
                               "--items", "40", "--max-p", str(PODS), "--trees", "20", "--workers-timeout", "40"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        pods = all_endpoint_pods(k8s, "pods")
    assert done.returncode == 0, done.stdout + done.stderr
    labels = digits_labels()
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
    assert png_size((out / "inference.png").read_bytes()) == (600, 400)
    hosts = set(re.findall(r"on (\S+?):\d+", done.stdout))
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


def test_classify_loads_per_task_unless_cached():
    classify = _example().classify
    first, again = classify([1, 3], trees=3, cache=True), classify([5], trees=3, cache=True)
    assert (first["loaded_here"], again["loaded_here"]) == (True, False)   # the worker process kept it
    assert classify([1], trees=3)["loaded_here"] and classify([1], trees=3)["loaded_here"]   # each task loads
    assert len(first["predictions"]) == 2 and all(0 <= c <= 9 for c in first["predictions"] + again["predictions"])
    assert first["load_s"] > 0 and first["infer_s"] > 0
