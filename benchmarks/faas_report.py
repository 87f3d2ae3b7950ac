"""RESULTS.md's summary of the ``faas`` group against TARGETS.md (the function service, issue 10).

The case tables themselves are the generic ones (:mod:`benchmarks.report`);
this adds, before them, one row per target, each from the same selected
records: the round trip of each client against 5 ms and against our htex p50
+ 4 ms of the same run, throughput of 10,000 no-ops against 5,000/s, nothing
lost across a SIGKILL of the service, and the per-task cost of the service at
1 and at N simulated endpoints.
"""
from __future__ import annotations

import statistics
from typing import Any

from benchmarks.faas_adapters import GROUP

Record = dict[str, Any]

REFERENCE = "parsl_lite-htex-ref"
CLIENTS = ("parsl_lite-faas-sync", "parsl_lite-faas-async", "parsl_lite-faas-executor",
           "parsl_lite-faas-executor-b1000", "parsl_lite-faas-workflow", "parsl_lite-faas-sim")
SCALE_FLAT = 1.25
"""``faas_scale``: per-task service CPU at N endpoints within this factor of 1 endpoint counts as flat."""


def _median(recs: list[Record], adapter: str, figure: str) -> float | None:
    """Median of ``figure`` over the records of ``adapter`` that measured it (failed ones left out)."""
    found = [float(rec["figures"][figure]) for rec in recs
             if rec["adapter"] == adapter and "error" not in rec and figure in rec.get("figures", {})]
    return statistics.median(found) if found else None


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "**not met**")


def _latency_rows(by_case: dict[str, list[Record]]) -> list[tuple[str, str, str, str, bool | None]]:
    from benchmarks.report import params_groups
    rows = []
    for params, prs in params_groups(by_case.get("faas_latency", [])):
        htex = _median(prs, REFERENCE, "p50_ms")
        for adapter in CLIENTS:
            p50, p95 = _median(prs, adapter, "p50_ms"), _median(prs, adapter, "p95_ms")
            if p50 is None:
                continue
            limit = 5.0 if htex is None else min(5.0, htex + 4.0)
            against = "" if htex is None else f"; htex p50 {htex:.3g} ms"
            rows.append((f"round trip p50, {adapter.removeprefix('parsl_lite-')}", params,
                         "≤ 5 ms and ≤ htex p50 + 4 ms", f"{p50:.3g} ms (p95 {p95:.3g} ms{against})", p50 <= limit))
    return rows


def _throughput_rows(by_case: dict[str, list[Record]]) -> list[tuple[str, str, str, str, bool | None]]:
    from benchmarks.report import params_groups
    rows = []
    for params, prs in params_groups(by_case.get("faas_throughput", [])):
        htex = _median(prs, REFERENCE, "throughput_per_s")
        for adapter in CLIENTS:
            rate = _median(prs, adapter, "throughput_per_s")
            if rate is None:
                continue
            against = "" if htex is None else f" (htex {htex:,.0f}/s: {rate / htex:.2g}×)"
            if adapter == "parsl_lite-faas-workflow":   # TARGETS.md: the FaaS executor inside a workflow
                rows.append(("throughput, FaaS executor in a workflow / htex", params, "≥ 0.5× the local htex",
                             f"{rate:,.0f}/s{against}", None if htex is None else rate >= 0.5 * htex))
                continue
            rows.append((f"throughput, {adapter.removeprefix('parsl_lite-')}", params, "≥ 5,000 tasks/s",
                         f"{rate:,.0f}/s{against}", rate >= 5000))
    for params, prs in params_groups(by_case.get("faas_restart", [])):
        for adapter in CLIENTS:
            lost, failed = _median(prs, adapter, "lost_tasks"), _median(prs, adapter, "failed_tasks")
            if lost is None or failed is None:
                continue
            rate = _median(prs, adapter, "throughput_per_s") or 0.0
            restart = _median(prs, adapter, "restart_s")
            mine = [rec for rec in prs if rec["adapter"] == adapter and "error" not in rec]
            worst = [(rec["figures"]["lost_tasks"], rec["figures"]["failed_tasks"]) for rec in mine]
            kinds = sorted({k.removeprefix("failed_") for rec in mine for k in rec["figures"]
                            if k.startswith("failed_") and k != "failed_tasks"})
            runs = f" ({sum(1 for lo, fa in worst if lo or fa)} of {len(worst)} runs lost or failed some" \
                + (f": {', '.join(kinds)}" if kinds else "") + ")" if len(worst) > 1 else ""
            ok = all(lo == 0 and fa == 0 for lo, fa in worst)
            rows.append((f"service SIGKILLed midway, {adapter.removeprefix('parsl_lite-')}", params,
                         "0 tasks lost (each ends with its result)",
                         f"median {lost:.0f} lost, {failed:.0f} failed{runs}; {rate:,.0f}/s incl. a "
                         f"{restart or 0:.2g} s restart", ok))
    return rows


def _scale_rows(by_case: dict[str, list[Record]]) -> list[tuple[str, str, str, str, bool | None]]:
    from benchmarks.report import params_groups
    groups = params_groups(by_case.get("faas_scale", []))
    by_n = {prs[0]["params"]["endpoints"]: (params, prs) for params, prs in groups if prs}
    one = by_n.get(1)
    rows = []
    for count, (params, prs) in sorted(by_n.items()):
        adapter = "parsl_lite-faas-sim"
        rate, cpu = _median(prs, adapter, "dispatch_rate_per_s"), _median(prs, adapter, "service_cpu_us_per_task")
        rss = _median(prs, adapter, "service_rss_mib_peak")
        if rate is None or cpu is None:
            continue
        base = _median(one[1], adapter, "service_cpu_us_per_task") if one else None
        flat = None if base is None or count == 1 else cpu / base <= SCALE_FLAT
        vs = "" if base is None or count == 1 else f"; {cpu / base:.2g}× the 1-endpoint cost"
        rows.append((f"{count} simulated endpoint(s)", params, f"per-task cost flat (≤ {SCALE_FLAT:g}× of 1)",
                     f"{rate:,.0f} tasks/s, service {cpu:.0f} µs CPU/task, RSS {rss or 0:.0f} MiB{vs}", flat))
    return rows


def _routing_rows(by_case: dict[str, list[Record]]) -> list[tuple[str, str, str, str, bool | None]]:
    """``faas_routing``: the makespans of both policies (issue 11 asks how far one beats the other: no target)."""
    from benchmarks.report import params_groups
    rows = []
    adapter = "parsl_lite-faas-routing"
    for params, prs in params_groups(by_case.get("faas_routing", [])):
        rr, ll = _median(prs, adapter, "makespan_round_robin_s"), _median(prs, adapter, "makespan_least_loaded_s")
        if rr is None or ll is None:
            continue
        ideal, share = _median(prs, adapter, "ideal_s"), _median(prs, adapter, "small_share_least_loaded")
        rows.append(("least_loaded vs round_robin, endpoints of 1 and 4 workers", params, "reported (makespan)",
                     f"round_robin {rr:.2f} s, least_loaded {ll:.2f} s: **{rr / ll:.2f}×** (ideal {ideal or 0:.2f} s; "
                     f"least_loaded sent {100 * (share or 0):.0f}% to the 1-worker endpoint)", None))
    return rows


def render_targets(by_case: dict[str, list[Record]]) -> list[str]:
    """The ``faas`` group's section against TARGETS.md.

    Args:
        by_case: the selected records (:func:`benchmarks.report.selected_records`) of each case of
            the ``faas`` group.

    Returns:
        Markdown lines (none if nothing was measured).
    """
    rows = _latency_rows(by_case) + _throughput_rows(by_case) + _scale_rows(by_case) + _routing_rows(by_case)
    if not rows:
        return []
    lines = [
        f"## Targets — {GROUP} group (the function service)",
        "",
        "The service end to end on loopback (real service and endpoint processes, `benchmarks/faas_adapters.py`)",
        "against `shared/TARGETS.md`, from the same records as the `faas_*` tables below; medians. "
        "`sim` is the service alone",
        "(simulated endpoints answering at once); `hop_*` figures in the `faas_latency` table say where the time goes.",
        "",
        "| what | params | target | measured | verdict |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {what} | {params} | {target} | {measured} | {_verdict(ok)} |"
              for what, params, target, measured, ok in rows]
    return lines + [""]
