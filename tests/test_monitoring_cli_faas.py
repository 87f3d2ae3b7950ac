"""``monitor`` and ``report`` of a workflow on the function service: the endpoint's status and its workers."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import parsl_lite as parsl
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.executors import FuncXExecutor
from parsl_lite.monitoring import MonitoringHub, queries
from tests.faas_endpoint_helpers import faas_endpoints  # noqa: F401  (the fixture: endpoints stopped after)
from tests.faas_helpers import faas_service  # noqa: F401  (the fixture: a service, PARSL_LITE_HOME in tmp)

from .monitoring_cli_helpers import cli


@python_app
def cube(x: int) -> int:
    return x ** 3


def test_monitor_shows_the_endpoint_and_the_report_its_workers(tmp_path: Path, faas_service: Any,
                                                               faas_endpoints: Any) -> None:
    endpoint = faas_endpoints(faas_service, "moncli", faas_service.admin_token, workers=2)
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    config = Config(executors=[FuncXExecutor(label="funcX", endpoints=[endpoint.endpoint_id])],
                    monitoring=MonitoringHub(logging_endpoint=url), run_dir=str(tmp_path / "runinfo"))
    with parsl.load(config) as dfk:
        assert [cube(i).result(timeout=60) for i in range(6)] == [i ** 3 for i in range(6)]
        run_id = dfk.run_id
    shown = cli(tmp_path, "monitor", "--once", "--db", url)
    assert shown.returncode == 0, shown.stderr
    assert "endpoints" in shown.stdout and endpoint.endpoint_id in shown.stdout and "online" in shown.stdout
    assert "exec_done 6" in shown.stdout and "funcX" in shown.stdout
    with queries.open_store(url) as db:
        (seen,) = queries.read_snapshot(db, run_id).endpoints
        workers = {w for (w,) in db.query("SELECT DISTINCT worker FROM pl_try WHERE run_id = ?", (run_id,))}
    assert seen["endpoint_id"] == endpoint.endpoint_id and seen["executor"] == "funcX"
    done = cli(tmp_path, "report", run_id, "--db", url, "-o", "faas.html")
    assert done.returncode == 0, done.stderr
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', (tmp_path / "faas.html").read_text(),
                                re.S).group(1))
    assert len(data["stream"]["s"]) == 6 and {w.split("/", 1)[1] for w in data["stream"]["workers"]} == workers
