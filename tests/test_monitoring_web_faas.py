"""The web view of a workflow on the function service: its endpoint, and the tasks it ran, in Chromium.

A real service and a real endpoint daemon (tests/faas_helpers.py, faas_endpoint_helpers.py); the
workflow runs in this process on the FaaS executor with monitoring on; the web view is the
in-process server of test_monitoring_web_server.py, the page headless Chromium.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import parsl_lite as parsl
from parsl_lite import python_app
from parsl_lite.config import Config
from parsl_lite.executors import FuncXExecutor
from parsl_lite.monitoring import MonitoringHub
from tests.conftest import wait_for
from tests.faas_endpoint_helpers import faas_endpoints  # noqa: F401  (the fixture: endpoints stopped after)
from tests.faas_helpers import faas_service  # noqa: F401  (the fixture: a service, PARSL_LITE_HOME in tmp)
from tests.test_monitoring_web import browser, save_screenshot, sql  # noqa: F401  (browser: the fixture)
from tests.test_monitoring_web_server import ServerThread


@python_app
def cube(x: int) -> int:
    return x ** 3


def test_the_page_shows_the_endpoint_and_its_tasks(tmp_path: Path, faas_service: Any, faas_endpoints: Any,
                                                     browser: Any) -> None:
    endpoint = faas_endpoints(faas_service, "webview", faas_service.admin_token, workers=2)
    url = f"sqlite:///{tmp_path / 'monitoring.db'}"
    config = Config(executors=[FuncXExecutor(label="funcX", endpoints=[endpoint.endpoint_id])],
                    monitoring=MonitoringHub(logging_endpoint=url, batching_interval=0.02),
                    run_dir=str(tmp_path / "runinfo"))
    with parsl.load(config) as dfk:
        assert [cube(i).result(timeout=60) for i in range(6)] == [i ** 3 for i in range(6)]
        run_id = dfk.run_id
    srv = ServerThread(url, run_id)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(srv.url)
        text = wait_for(lambda: endpoint.endpoint_id in page.inner_text("#endpoints") and
                        page.inner_text("#endpoints"), timeout_s=30, what="the endpoint on the page")
        assert "online" in text
        wait_for(lambda: page.inner_text("#run-state") == "completed", what="the run's end on the page")
        assert page.inner_text("#counts [data-state=exec_done] .n") == "6"
        assert "funcX" in page.inner_text("#executors")
        assert page.locator("#stream svg rect").count() == 6
        lanes = set(page.locator("#stream text.lane").all_text_contents())   # a lane per worker of the endpoint
        assert lanes == {w for (w,) in sql(tmp_path / "monitoring.db", "SELECT DISTINCT worker FROM pl_try")}
        save_screenshot(page, tmp_path, "monitor_web_faas.png")
    finally:
        srv.stop()
