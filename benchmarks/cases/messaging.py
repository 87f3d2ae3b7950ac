"""Messaging (issue 13, "Measure"): topics and queues through our broker, beside their floors, in one run.

``python -m benchmarks.cases.messaging [--n N] [--amqp-url URL] [--repeats R] [--label L]`` (from the
repository root, with ``.venv``: it has pika and Dask). Each repeat is one record in
``records/messaging.jsonl`` (the load average before and after, the commit, the machine), and
``python -m benchmarks report`` shows the latest run in RESULTS.md's Messaging section
(``benchmarks/messaging_report.py``). ``--no-record`` only prints; ``--out FILE`` also writes the
figures as JSON.

- ``topic_*``: 1 KB messages, one publisher (this process) and one subscriber
  (a child process). Throughput: the publisher sends ``n`` as fast as it can,
  the subscriber counts what arrives between the first and the last;
  what the high-water marks dropped is reported as ``lost``. Latency: one
  message per millisecond carrying ``time.monotonic_ns()`` (one clock for the
  whole machine), p50 of arrival minus send. The floor: a bare pyzmq PUB/SUB
  pair, same sizes, same processes.
- ``queue_*``: put -> get -> ack of 1 KB messages through ``msg.queue``, in
  batches of 100 (``put_many``, ``get_many``, ``ack_many``) and one at a
  time (and the same on RabbitMQ with ``--amqp-url``); the floor: a bare SQLite (WAL, synchronous=NORMAL) insert/commit
  then select/delete/commit loop in batches of 100; and Dask's
  ``distributed.Queue`` (one at a time: it has no batches) where it imports.
- ``queue_concurrent{K}_*`` (``--clients K``, default 4): K client processes at once, each put -> get ->
  ack on its own queue (batches of 100, then one at a time), total msgs/s.
- ``restart``: 2,000 messages queued, the broker SIGKILLed and restarted,
  then every message read back (``restart_lost`` must be 0).
- ``rabbitmq_*`` (with ``--amqp-url``): the same queue loop and the same topic pair (fewer messages:
  ``--amqp-n``) through the same API on RabbitMQ.

Not registered in the adapter runner (``benchmarks/cases/__init__.py``): the
cases there run apps through adapters, this one runs no apps.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

BODY = b"x" * 1024

_SUBSCRIBER = textwrap.dedent("""
    import json, sys, time
    mode, kind, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "zmq":
        import zmq
        sock = zmq.Context().socket(zmq.SUB); sock.rcvhwm = 10000
        sock.connect(sys.argv[4]); sock.subscribe(b"")
        recv = lambda: sock.recv()
        print("ready", flush=True)
        while sock.poll(100) == 0: pass     # the pair's slow joiner: the parent sends probes until one arrives
        sock.recv()
        print("joined", flush=True)
    else:
        from parsl_lite import messaging as msg
        sub = msg.subscribe("bench")
        recv = lambda: sub.get(timeout=5)
        print("ready", flush=True)
    got, lat, first, last = 0, [], None, None
    while True:
        m = recv()
        now = time.monotonic_ns()
        if m is None or m == b"end" or m == "end":
            break
        if m == b"warm":                    # the publisher's first message, not one of the n
            continue
        if first is None:
            first = time.perf_counter()
        last = time.perf_counter()
        got += 1
        if mode == "latency":
            lat.append((now - int.from_bytes(m[:8], "little")) / 1e6)
    print(json.dumps({"got": got, "seconds": (last or 0) - (first or 0), "lat_ms": lat}), flush=True)
""")


def _subscriber(mode: str, kind: str, n: int, address: str = "", env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _SUBSCRIBER, mode, kind, str(n), address],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _result(proc: subprocess.Popen) -> dict[str, Any]:
    out = json.loads(proc.stdout.readlines()[-1])
    proc.wait(60)
    return out


def _figures(prefix: str, n: int, thr: dict[str, Any], lat: dict[str, Any]) -> dict[str, float]:
    lats = sorted(lat["lat_ms"])
    return {f"{prefix}_msgs_per_s": thr["got"] / thr["seconds"] if thr["seconds"] else 0.0,
            f"{prefix}_lost": float(n - thr["got"]),
            f"{prefix}_p50_ms": statistics.median(lats) if lats else float("nan"),
            f"{prefix}_p95_ms": lats[int(0.95 * (len(lats) - 1))] if lats else float("nan")}


def _stamped(i: int) -> bytes:
    return time.monotonic_ns().to_bytes(8, "little") + BODY[8:]


def topic_ours(n: int, samples: int, client: Any = None, env: dict[str, str] | None = None,
               prefix: str = "topic") -> dict[str, float]:
    """Through ``msg.publish``/``msg.subscribe`` (``client``: this process's; ``env``: the subscriber's)."""
    from parsl_lite import messaging as msg
    sub = _subscriber("throughput", "ours", n, env=env)
    msg.publish("bench", b"warm", client=client)
    for _ in range(n):
        msg.publish("bench", BODY, client=client)
    time.sleep(0.5)
    msg.publish("bench", b"end", client=client)
    thr = _result(sub)
    sub = _subscriber("latency", "ours", samples, env=env)
    for i in range(samples):
        msg.publish("bench", _stamped(i), client=client)
        time.sleep(0.001)
    msg.publish("bench", b"end", client=client)
    return _figures(prefix, n, thr, _result(sub))


def topic_zmq(n: int, samples: int) -> dict[str, float]:
    import zmq
    pub = zmq.Context.instance().socket(zmq.PUB)
    pub.sndhwm = 10000
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    results = []
    for mode, count in (("throughput", n), ("latency", samples)):
        sub = _subscriber(mode, "zmq", count, f"tcp://127.0.0.1:{port}")
        while True:      # probes until the subscriber has joined (its first message is dropped, by design)
            pub.send(b"probe")
            line = sub.stdout.readline() if _readable(sub) else ""
            if line.strip() == "joined":
                break
        for i in range(count):
            pub.send(BODY if mode == "throughput" else _stamped(i))
            if mode == "latency":
                time.sleep(0.001)
        time.sleep(0.5)
        pub.send(b"end")
        results.append(_result(sub))
    pub.close(0)
    return _figures("zmq_topic", n, *results)


def _readable(proc: subprocess.Popen) -> bool:
    import select
    return bool(select.select([proc.stdout], [], [], 0.01)[0])


def queue_ours(n: int, batch: int = 100, singles: int = 2000, client: Any = None,
               prefix: str = "queue") -> dict[str, float]:
    from parsl_lite.messaging.queues import Queue
    q = Queue(f"bench-{os.getpid()}", client=client)
    t0 = time.perf_counter()
    for _ in range(n // batch):
        q.put_many([BODY] * batch)
        got = q.get_many(batch, timeout=5)
        assert len(got) == batch and q.ack_many(got) == batch
    batched = (n // batch * batch) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(singles):
        q.put(BODY)
        assert q.get(timeout=5).ack()
    single = singles / (time.perf_counter() - t0)
    if client is not None:
        q.delete()
    return {f"{prefix}_batch100_msgs_per_s": batched, f"{prefix}_single_msgs_per_s": single}


def _concurrent_client(index: int, mode: str, rounds: int, start: Any, out: Any) -> None:
    """One of :func:`queue_concurrent`'s processes: its own queue, ``rounds`` batches of 100 (or singles)."""
    from parsl_lite.messaging.queues import Queue
    q = Queue(f"bench-concurrent-{os.getpid()}-{index}")
    start.wait()
    t0 = time.perf_counter()
    for _ in range(rounds):
        if mode == "batch100":
            q.put_many([BODY] * 100)
            q.ack_many(q.get_many(100, timeout=5))
        else:
            q.put(BODY)
            q.get(timeout=5).ack()
    out.put(time.perf_counter() - t0)
    q.delete()


def queue_concurrent(clients: int, batches: int, singles: int) -> dict[str, float]:
    """``clients`` processes at once, each put -> get -> ack on a queue of its own: total msgs/s (what a
    broker that commits the requests of one loop turn together gains shows only here)."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    figures = {}
    for mode, rounds, per in (("batch100", batches, 100), ("single", singles, 1)):
        start, out = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_concurrent_client, args=(i, mode, rounds, start, out)) for i in range(clients)]
        for proc in procs:
            proc.start()
        time.sleep(2.0)                                   # the clients import and connect before the clock starts
        t0 = time.perf_counter()
        start.set()
        for _ in procs:
            out.get(timeout=600)
        wall = time.perf_counter() - t0
        for proc in procs:
            proc.join(60)
        figures[f"queue_concurrent{clients}_{mode}_msgs_per_s"] = clients * rounds * per / wall
    return figures


def queue_sqlite(n: int, directory: Path, batch: int = 100) -> dict[str, float]:
    db = sqlite3.connect(str(directory / "bare.db"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE m (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB)")
    t0 = time.perf_counter()
    for _ in range(n // batch):
        db.execute("BEGIN")
        for _ in range(batch):
            db.execute("INSERT INTO m (body) VALUES (?)", (BODY,))
        db.execute("COMMIT")
        db.execute("BEGIN")
        rows = db.execute("SELECT seq, body FROM m ORDER BY seq LIMIT ?", (batch,)).fetchall()
        db.executemany("DELETE FROM m WHERE seq = ?", ((r[0],) for r in rows))
        db.execute("COMMIT")
    rate = (n // batch * batch) / (time.perf_counter() - t0)
    db.close()
    return {"sqlite_batch100_msgs_per_s": rate}


def queue_dask(n: int) -> dict[str, float]:
    try:
        from distributed import Client, LocalCluster, Queue
    except ImportError:
        return {}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        q = Queue("bench", client=client)
        t0 = time.perf_counter()
        for _ in range(n):
            q.put(BODY)
            q.get()
        return {"dask_queue_single_msgs_per_s": n / (time.perf_counter() - t0)}


def restart(broker_dir: Path, n: int = 2000) -> dict[str, float]:
    from parsl_lite import messaging as msg
    from parsl_lite.messaging import cli
    q = msg.queue("restart")
    ids = set()
    for _ in range(n // 100):
        ids.update(q.put_many([BODY] * 100))
    info = cli.running_broker(broker_dir)
    os.kill(info["pid"], signal.SIGKILL)
    cli.wait_started(broker_dir, cli.launch(broker_dir))
    got = set()
    while True:
        batch = q.get_many(100, timeout=2)
        if not batch:
            break
        got.update(m.message_id for m in batch)
        q.ack_many(batch)
    return {"restart_lost": float(len(ids - got))}


def measure(args: argparse.Namespace) -> dict[str, float]:
    """One run of every figure, side by side (a broker of ours in a temporary home)."""
    from parsl_lite import messaging as msg
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PARSL_LITE_HOME"] = tmp
        from parsl_lite.messaging import cli
        broker_dir = Path(tmp) / "broker"
        cli.wait_started(broker_dir, cli.launch(broker_dir))
        figures: dict[str, float] = {}
        try:
            figures.update(topic_zmq(args.n, args.samples))
            figures.update(topic_ours(args.n, args.samples))
            figures.update(queue_sqlite(args.queue_n, Path(tmp)))
            figures.update(queue_ours(args.queue_n))
            if args.clients > 1:
                figures.update(queue_concurrent(args.clients, args.queue_n // 100 // args.clients, 500))
            if args.amqp_url:
                figures.update(rabbitmq(args))
            figures.update(queue_dask(2000))
            figures.update(restart(broker_dir))
        finally:
            info = cli.running_broker(broker_dir)
            if info:
                os.kill(info["pid"], signal.SIGTERM)
            msg.reset_default_client()  # its exported address names this broker: the next repeat starts anew
    return figures


def rabbitmq(args: argparse.Namespace) -> dict[str, float]:
    """The queue and topic figures through the same API on RabbitMQ; none (and a warning) when pika is
    missing from this venv or the server does not answer: the rest of the run still counts."""
    try:
        from parsl_lite.messaging.amqp import AmqpClient
        from parsl_lite.messaging.paths import URL_ENV
        amqp = AmqpClient(args.amqp_url, "--amqp-url")
        figures = queue_ours(args.queue_n, singles=500, client=amqp, prefix="rabbitmq_queue")
        figures.update(topic_ours(args.amqp_n, args.samples, client=amqp, env={URL_ENV: args.amqp_url},
                                  prefix="rabbitmq_topic"))
        amqp.close()
        return figures
    except Exception as exc:
        print(f"RabbitMQ not measured ({type(exc).__name__}: {exc}); pika is in .venv, not .venv-bench",
              file=sys.stderr)
        return {}


def record(args: argparse.Namespace, run_id: str, repeat: int) -> dict[str, Any]:
    """One repeat as a record of ``records/messaging.jsonl`` (the fields every record has: records.py)."""
    import platform

    from benchmarks import records
    rec: dict[str, Any] = {
        "case": CASE, "library": "parsl_lite", "adapter": "parsl_lite-messaging", "executor": CASE,
        "run_id": run_id, "repeat": repeat, "label": args.label, "python": platform.python_version(),
        "params": {"n": args.n, "queue_n": args.queue_n, "samples": args.samples, "amqp_n": args.amqp_n,
                   "clients": args.clients, "rabbitmq": bool(args.amqp_url)},
        "timestamp": records.now_iso(), "loadavg_before": records.loadavg(), "git_commit": records.git_commit(),
        "git_dirty": records.git_dirty(), "machine": records.machine(),
    }
    started = time.perf_counter()
    try:
        rec["figures"] = measure(args)
    except Exception as exc:                # recorded, not lost
        rec["error"] = f"{type(exc).__name__}: {exc}"
    rec["wall_s"] = round(time.perf_counter() - started, 2)
    rec["loadavg_after"] = records.loadavg()
    return rec


CASE = "messaging"


def main(argv: list[str] | None = None) -> int:
    from benchmarks import records
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cases.messaging")
    parser.add_argument("--n", type=int, default=200_000, help="topic messages for the throughput (default %(default)s)")
    parser.add_argument("--queue-n", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=2000, help="latency samples")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here (JSON)")
    parser.add_argument("--amqp-url", default=os.environ.get("AMQP_URL", ""),
                        help="also measure the queue and topics on this RabbitMQ server (default $AMQP_URL)")
    parser.add_argument("--amqp-n", type=int, default=20_000, help="topic messages on RabbitMQ (default %(default)s)")
    parser.add_argument("--clients", type=int, default=4,
                        help="also this many queue clients at once, each on its own queue (default %(default)s; 1: not)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--label", default=None, help="a name for this run in RESULTS.md")
    parser.add_argument("--records-dir", type=Path, default=records.RECORDS_DIR)
    parser.add_argument("--no-record", action="store_true", help="print the figures only")
    args = parser.parse_args(argv)
    run_id, failed, figures = records.new_run_id(), 0, {}
    for repeat in range(args.repeats):
        rec = record(args, run_id, repeat)
        if not args.no_record:
            records.append(args.records_dir, rec)
        if "error" in rec:
            failed += 1
            print(f"repeat {repeat}: {rec['error']}", file=sys.stderr)
            continue
        figures = rec["figures"]
        print(f"repeat {repeat} (load {rec['loadavg_before'][0]:.2f} -> {rec['loadavg_after'][0]:.2f}):")
        for name, value in figures.items():
            print(f"  {name:36s} {value:14.3f}")
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
