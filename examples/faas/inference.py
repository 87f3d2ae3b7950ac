"""The funcX paper's Kubernetes inference experiment, on one machine: T(p) for 250 items in p parallel tasks.

    python inference.py --endpoint ENDPOINT_ID --out results/      # or set PARSL_LITE_FAAS_ENDPOINT
    python inference.py --endpoint ID --out OUT --items 40 --max-p 3 --trees 20    # small (the test's size)

A classifier function (``classify``) runs on an endpoint of our function
service whose blocks are Kubernetes pods. It loads a real model: a scikit-learn
random forest trained on the even-numbered samples of ``load_digits`` (a data
set scikit-learn ships), so loading has a real cost C, which each task
measures and reports. It then classifies a list of item ids (indexes into the
data set; the items are odd-numbered samples, which the model never saw) one
at a time, as an inference service answers one request per item, so the time
per inference r is real too.

``items`` (250) are split into p = 1..max_p tasks that run in parallel; for
each p the script records the wall time T(p) from the first submit to the last
result and the time per inference, fits T(p) ≈ C + N·r/p by least squares
(numpy), and writes into ``--out``: ``inference.csv`` and ``inference.md`` (one
row per p, measured against fitted), ``inference.png`` (the plot) and
``predictions.csv`` (every item's class, for every p).

Model loading: the fit's C is a cost each of the p tasks pays once, so by
default each task loads (trains) its model, as a cold servable does. The text
of the paper we could reach (abstracts, through the search tool) does not say
whether its tasks loaded the model per task or kept it warm; we do what the fit
measures and say so. ``--cache`` keeps the model per worker process instead
(the first task in a worker pays C; the output says which tasks did). Before
the timed runs the script waits until the endpoint reports ``max_p`` connected
workers (pods) and runs one untimed warm-up round of ``max_p`` tasks, so that
pod start-up and the first ``import sklearn`` of each worker stay out of T(p).
The script uses the SDK's ``FuncXExecutor``, as a funcX user would.
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from parsl_lite.faas import FuncXClient, FuncXExecutor


def classify(item_ids, trees=100, cache=False):
    """Load the digits model (or reuse this worker's, with ``cache``), then classify each item by itself."""
    import os
    import socket
    import sys
    import time
    import types

    started = time.perf_counter()
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier
    imported = time.perf_counter()
    store = sys.modules.setdefault("_inference_model_cache", types.ModuleType("_inference_model_cache"))
    key = f"digits-rf-{trees}"
    model, data = getattr(store, "models", {}).get(key, (None, None)) if cache else (None, None)
    loaded_here = model is None
    if loaded_here:
        data = load_digits()
        model = RandomForestClassifier(n_estimators=trees, random_state=0, n_jobs=1)
        model.fit(data.data[0::2], data.target[0::2])   # even samples train; items are odd samples
        if cache:
            store.models = {**getattr(store, "models", {}), key: (model, data)}
    loaded = time.perf_counter()
    predictions = [int(model.predict(data.data[i:i + 1])[0]) for i in item_ids]
    done = time.perf_counter()
    return {"predictions": predictions, "import_s": imported - started, "load_s": loaded - imported,
            "infer_s": done - loaded, "loaded_here": loaded_here,
            "worker": f"{socket.gethostname()}:{os.getpid()}"}


def split(items: list[int], p: int) -> list[list[int]]:
    """``items`` in ``p`` contiguous chunks whose sizes differ by at most one."""
    size, extra = divmod(len(items), p)
    chunks, start = [], 0
    for k in range(p):
        end = start + size + (1 if k < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def fit(ps: list[int], times: list[float], n_items: int) -> tuple[float, float, float]:
    """Least squares of T(p) = C + N·r/p; returns ``(C, r, R²)``."""
    import numpy as np

    a = np.column_stack([np.ones(len(ps)), [n_items / p for p in ps]])
    t = np.asarray(times)
    (c, r), *_ = np.linalg.lstsq(a, t, rcond=None)
    residual = t - a @ np.array([c, r])
    spread = float(((t - t.mean()) ** 2).sum())
    r2 = 1.0 - float((residual ** 2).sum()) / spread if spread > 0 else 1.0
    return float(c), float(r), r2


def run_round(fx: FuncXExecutor, items: list[int], p: int, args: argparse.Namespace) -> dict[str, Any]:
    """Submit ``p`` tasks at once, wait for all; the wall time and what the tasks reported."""
    chunks = split(items, p)
    start = time.perf_counter()
    futures = [fx.submit(classify, chunk, args.trees, args.cache) for chunk in chunks]
    results = [f.result(timeout=args.task_timeout) for f in futures]
    wall = time.perf_counter() - start
    predicted = dict(zip(items, (c for r in results for c in r["predictions"])))
    return {"p": p, "wall_s": wall, "results": results, "predicted": predicted}


def wait_for_workers(fxc: FuncXClient, endpoint_id: str, wanted: int, timeout_s: float) -> int:
    """Wait until the endpoint reports ``wanted`` connected workers; their number (error after the timeout)."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while True:
        status = fxc.get_endpoint_status(endpoint_id)
        seen = int((status.get("details") or {}).get("connected_workers") or 0)
        if status.get("status") == "online" and seen >= wanted:
            return seen
        if time.monotonic() > deadline:
            raise SystemExit(f"endpoint {endpoint_id}: {seen} connected workers after {timeout_s:.0f} s, "
                             f"need {wanted} (--max-p) for p tasks in parallel; give the endpoint more "
                             f"blocks or lower --min-workers")
        time.sleep(0.25)


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The warm-up round, then ``repeats`` rounds for each p; per-p rows (median wall time)."""
    items = list(range(1, 2 * args.items, 2))   # odd samples: never seen in training
    fxc = FuncXClient()
    workers = wait_for_workers(fxc, args.endpoint, args.min_workers, args.workers_timeout)
    print(f"endpoint {args.endpoint}: {workers} workers connected")
    rows: list[dict[str, Any]] = []
    with FuncXExecutor(fxc, endpoint_id=args.endpoint) as fx:
        warm = run_round(fx, items, args.max_p, args)
        print(f"warm-up: {args.max_p} tasks in {warm['wall_s']:.2f} s (untimed; first import and load per worker)")
        for p in range(1, args.max_p + 1):
            rounds = [run_round(fx, items, p, args) for _ in range(args.repeats)]
            rows.append(summarize(p, rounds, args))
            row = rows[-1]
            print(f"p={p:2d}  T={row['T_s']:.3f} s  load C={row['load_s']:.3f} s  "
                  f"r={row['per_inference_ms']:.2f} ms  tasks that paid C: {row['paid_load']}/{p * args.repeats}  "
                  f"on {' '.join(row['workers'])}")
    return rows, {"items": items, "warmup_s": warm["wall_s"], "workers": workers}


def summarize(p: int, rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """One table row: median T(p), the tasks' mean load and per-inference times, and every prediction."""
    results = [r for rnd in rounds for r in rnd["results"]]
    loads = [r["load_s"] for r in results if r["loaded_here"]]
    infer = sum(r["infer_s"] for r in results) / (args.items * len(rounds))
    return {"p": p, "tasks": p, "items_per_task": -(-args.items // p),
            "T_s": statistics.median(rnd["wall_s"] for rnd in rounds),
            "load_s": statistics.mean(loads) if loads else 0.0, "paid_load": len(loads),
            "per_inference_ms": infer * 1000, "workers_used": len({r["worker"] for r in results}),
            "workers": sorted({r["worker"] for r in results}),
            "predicted": rounds[-1]["predicted"]}


COLUMNS = ["p", "tasks", "items_per_task", "T_s", "T_fit_s", "residual_s", "speedup", "load_s",
           "per_inference_ms", "workers_used"]


def write_outputs(out: Path, rows: list[dict[str, Any]], args: argparse.Namespace, extra: dict[str, Any]) -> str:
    """The CSV, the markdown table, the predictions and the plot; returns the markdown."""
    c, r, r2 = fit([row["p"] for row in rows], [row["T_s"] for row in rows], args.items)
    for row in rows:
        row["T_fit_s"] = c + args.items * r / row["p"]
        row["residual_s"] = row["T_s"] - row["T_fit_s"]
        row["speedup"] = rows[0]["T_s"] / row["T_s"]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "inference.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    with open(out / "predictions.csv", "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["p", "item", "predicted"])
        writer.writerows([row["p"], item, cls] for row in rows for item, cls in sorted(row["predicted"].items()))
    head = (f"N = {args.items} items, p = 1..{args.max_p}, {args.trees} trees, model "
            f"{'cached per worker' if args.cache else 'loaded per task'}, median of {args.repeats}; "
            f"fit T(p) = C + N·r/p: C = {c:.3f} s, r = {r * 1000:.2f} ms, R² = {r2:.3f}; the tasks' own timings "
            f"at p = 1: C = {rows[0]['load_s']:.3f} s, r = {rows[0]['per_inference_ms']:.2f} ms; "
            f"warm-up ({args.max_p} tasks, untimed) {extra['warmup_s']:.1f} s on {extra['workers']} workers")
    lines = [head, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[k]) for k in COLUMNS) + " |" for row in rows]
    markdown = "\n".join(lines) + "\n"
    (out / "inference.md").write_text(markdown)
    plot(out / "inference.png", rows, c, r, args)
    return markdown


def _cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def plot(path: Path, rows: list[dict[str, Any]], c: float, r: float, args: argparse.Namespace) -> None:
    """Measured T(p) as points, the fitted C + N·r/p as a curve."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ps = [row["p"] for row in rows]
    grid = np.linspace(1, max(ps), 200)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(ps, [row["T_s"] for row in rows], "o", label="measured T(p)")
    ax.plot(grid, c + args.items * r / grid, "-", label=f"fit: C={c:.2f} s + N·r/p, r={r * 1000:.1f} ms")
    c1, r1 = rows[0]["load_s"], rows[0]["per_inference_ms"] / 1000   # what the tasks measured at p = 1
    ax.plot(grid, c1 + args.items * r1 / grid, "--", label=f"C + N·r/p from the tasks' timings at p=1")
    ax.set_xlabel("parallel tasks p")
    ax.set_ylabel("wall time (s)")
    ax.set_title(f"{args.items} digit inferences on pods")
    ax.set_xticks(ps)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=os.environ.get("PARSL_LITE_FAAS_ENDPOINT"),
                        help="endpoint id (default: $PARSL_LITE_FAAS_ENDPOINT)")
    parser.add_argument("--out", type=Path, required=True, help="directory for the table, plot and predictions")
    parser.add_argument("--items", type=int, default=250, help="items to classify (N, at most 898)")
    parser.add_argument("--max-p", type=int, default=10, help="largest number of parallel tasks")
    parser.add_argument("--trees", type=int, default=100, help="trees in the forest (sets C and r)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds per p (the table has the median)")
    parser.add_argument("--cache", action="store_true", help="keep the model per worker process")
    parser.add_argument("--min-workers", type=int, help="wait for this many workers (default: --max-p)")
    parser.add_argument("--workers-timeout", type=float, default=120.0, help="seconds to wait for them")
    parser.add_argument("--task-timeout", type=float, default=600.0, help="seconds to wait for a task")
    args = parser.parse_args(argv)
    if not args.endpoint:
        parser.error("--endpoint: give the endpoint id (or set PARSL_LITE_FAAS_ENDPOINT)")
    for name in ("items", "max_p", "trees", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(args, name)}")
    if args.items > 898:
        parser.error(f"--items: the digits data set has 898 held-out samples, got {args.items}")
    if args.max_p > args.items:
        parser.error(f"--max-p: at most --items ({args.items}), got {args.max_p}")
    args.min_workers = args.max_p if args.min_workers is None else args.min_workers
    return args


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    table_rows, facts = measure(arguments)
    print(write_outputs(arguments.out, table_rows, arguments, facts))
    print(f"wrote {arguments.out / 'inference.csv'}, inference.md, inference.png, predictions.csv")
