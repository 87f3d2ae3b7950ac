"""``parsl-lite report RUN -o report.html`` on real monitored runs: one self-contained page with the plots' data."""
from __future__ import annotations

import json
import re

import pytest

from parsl_lite.monitoring import queries

from .monitoring_cli_helpers import cli, run_workflow


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PARSL_LITE_HOME", str(tmp_path / "home"))


def embedded_data(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    assert found, "the report's data block"
    return json.loads(found.group(1))


def test_report_of_an_htex_run_is_one_self_contained_page_with_the_plots_data(tmp_path):
    facts = run_workflow(tmp_path, "ok", "htex", n=30)   # 30 squares + 3 divisions (one by zero)
    done = cli(tmp_path, "report", facts["run_id"], "-o", "out/report.html")
    assert done.returncode == 2 and "out/report.html" in done.stderr   # no such directory: named, usage error
    done = cli(tmp_path, "report", facts["run_id"][:6], "-o", "report.html")
    assert done.returncode == 0, done.stderr
    page = (tmp_path / "report.html").read_text()
    # self-contained: nothing to fetch (no URL of any scheme, no src/href to a file)
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""\b(src|href)\s*=|url\(|@import""", page), "no external resources"
    assert "<canvas" in page and page.count("<script") == 2
    data = embedded_data(page)
    assert data["run"]["run_id"] == facts["run_id"] and data["run"]["state"] == "failed"
    assert data["counts"]["exec_done"] == facts["tasks"] - 1 and data["counts"]["failed"] == 1
    stream = data["stream"]   # Gantt: one bar per try, on a worker row
    assert len(stream["s"]) == facts["tasks"] == len(stream["w"]) == len(stream["d"])
    assert all(d >= 0 for d in stream["d"]) and sum(stream["f"]) == 1 and stream["workers"]
    assert sorted(stream["apps"]) == ["divide", "square"]
    over_time = data["states_over_time"]   # the last bin: every task in its final state
    assert over_time["series"]["exec_done"][-1] == facts["tasks"] - 1
    assert over_time["series"]["failed"][-1] == 1
    waiting = [sum(over_time["series"].get(s, [0] * len(over_time["t"]))[i] for s in ("pending", "launched", "running"))
               for i in range(len(over_time["t"]))]
    assert max(waiting) > 0 and waiting[-1] == 0   # tasks were in flight, then none
    apps = {a["app"]: a for a in data["apps"]}
    assert apps["square"]["count"] == 30 and apps["divide"]["count"] == 3
    assert sum(apps["square"]["hist"]) == 30 and apps["square"]["p50"] <= apps["square"]["max"]
    assert data["failures"][0]["error"] == "ZeroDivisionError: division by zero"
    resources = data["resources"]   # the pool's two workers, sampled every 0.2 s while they ran
    assert len(resources) == 2 and set(resources) == {w.split("/", 1)[1] for w in stream["workers"] if "/" in w}
    for series in resources.values():
        assert len(series["t"]) == len(series["cpu"]) == len(series["rss_mb"]) >= 1
        assert all(mb > 1 for mb in series["rss_mb"])
    assert "ZeroDivisionError: division by zero" in page   # the failures table, as text
    # the same run in the monitor's snapshot: the executor's worker pool and its block
    with queries.open_store(queries.resolve_store_url(None, str(tmp_path))) as db:
        (htex,) = queries.read_snapshot(db, facts["run_id"]).executors
    assert htex.label == "htex" and htex.tasks == facts["tasks"]
    assert [n["worker_count"] for n in htex.nodes] == [2] and {b["block_id"] for b in htex.blocks} == {"0"}
    shown = cli(tmp_path, "monitor", "--once", facts["run_id"])
    assert shown.returncode == 0 and htex.nodes[0]["uid"][:8] in shown.stdout and "0:" in shown.stdout


def test_report_draws_in_a_browser_without_errors(tmp_path):
    facts = run_workflow(tmp_path, "ok", "threads", n=10)
    done = cli(tmp_path, "report", facts["run_id"], "-o", "r.html")
    assert done.returncode == 0, done.stderr
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("requestfailed", lambda req: errors.append("request " + req.url))
            page.goto((tmp_path / "r.html").as_uri())
            page.wait_for_function("document.getElementById('stream').height > 40")
            drawn = page.evaluate("""() => ['stream', 'states', 'cpu', 'rss', 'apps'].map(id => {
                const c = document.getElementById(id), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let coloured = 0; for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] !== d[i + 1] || d[i + 1] !== d[i + 2])) coloured++;
                return coloured; })""")
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert drawn[0] > 0 and drawn[1] > 0 and drawn[4] > 0   # task bars, state lines, duration histograms


def test_report_on_an_unknown_run_id_is_a_clear_error(tmp_path):
    facts = run_workflow(tmp_path, "clean", "threads", n=2)
    done = cli(tmp_path, "report", "no-such-run", "-o", "r.html")
    assert done.returncode == 2
    assert "'no-such-run' is not a run" in done.stderr and facts["run_id"] in done.stderr
    assert not (tmp_path / "r.html").exists()
    missing = cli(tmp_path, "report", "x", "--db", str(tmp_path / "none.db"))
    assert missing.returncode == 3 and "none.db" in missing.stderr
    usage = cli(tmp_path, "report")
    assert usage.returncode == 2 and "RUN" in usage.stderr
