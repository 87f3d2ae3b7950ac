"""Simulated endpoints of the function service: the real wire, no executor, every task answered at once.

A few processes each hold many endpoints, one CurveZMQ DEALER each, and speak
``parsl_lite/faas/protocol.py`` as the real endpoint's session does: the
DEALER's identity is the endpoint id and its keys are those the service issued
at registration (``POST /v1/endpoints`` with the user's token: nothing is
faked on the service's side); ``EndpointHello``, then a ``StatusReport`` every
heartbeat period the ``HelloReply`` names; each ``TaskDelivery`` is answered
with ``TasksAccepted`` and ``TaskResults`` of ``serialize(None)`` at once.
Results stay unacknowledged until ``ResultsStored`` names them and are sent
again after a new hello (``HelloRequired``: the service restarted), as the
real endpoint's spool does.

    fleet = SimFleet(stack, token)           # benchmarks/faas_stack.py's service, a user's token
    ids = fleet.add(100, per_process=25)     # registered through the API; 4 processes; all hellos accepted
    fleet.stats()                            # summed counters of every process (tasks, results, acks, ...)
    fleet.stop()

The child process (``python -m benchmarks.faas_sim IDENTITIES.json``) is
driven over its stdin (``stats``, ``quit``) and answers on stdout, one JSON
line each; its first line is ``{"ready": ...}`` once every hello was accepted.
"""
from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

HELLO_RETRY_S = 3.0
READY_TIMEOUT_S = 60.0
_COUNTERS = ("endpoints", "accepted", "refused", "deliveries", "tasks", "duplicates", "results_sent",
             "results_acked", "resent", "heartbeats_sent", "heartbeats_answered", "hello_required", "malformed")


class _SimEndpoint:
    """One simulated endpoint: its socket, its unacknowledged results, what it has seen."""

    def __init__(self, ctx: Any, identity: dict[str, Any]) -> None:
        self.identity = identity
        self.endpoint_id: str = identity["endpoint_id"]
        self.ctx = ctx
        self.sock: Any = None
        self.accepted = False
        self.hello_sent_at = 0.0
        self.period_s = 5.0
        self.next_report = 0.0
        self.seen: set[str] = set()
        self.unacked: dict[str, Any] = {}

    def connect(self) -> Any:
        """A new DEALER (the old one closed first, linger 0: the service parks a second connection)."""
        import zmq
        if self.sock is not None:
            self.sock.close(linger=0)
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, self.endpoint_id.encode())
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.curve_secretkey = self.identity["endpoint_secret_key"].encode()
        sock.curve_publickey = self.identity["endpoint_public_key"].encode()
        sock.curve_serverkey = self.identity["service_public_key"].encode()
        sock.connect(self.identity["zmq_url"])
        self.sock = sock
        return sock


class SimProcessLoop:
    """The loop of one simulator process: every endpoint's socket and stdin in one poller."""

    def __init__(self, identities: list[dict[str, Any]]) -> None:
        import zmq

        from parsl_lite.faas import protocol
        from parsl_lite.faas.errors import MalformedMessage
        from parsl_lite.serialize import serialize
        self.zmq = zmq
        self.malformed = MalformedMessage
        self.p = protocol
        self.none = serialize(None)
        self.versions = protocol.versions_string()
        self.ctx = zmq.Context()
        self.poller = zmq.Poller()
        self.endpoints = [_SimEndpoint(self.ctx, identity) for identity in identities]
        self.by_socket: dict[Any, _SimEndpoint] = {}
        self.counts = dict.fromkeys(_COUNTERS, 0)
        self.counts["endpoints"] = len(self.endpoints)
        self.ready_said = False

    def _open(self, ep: _SimEndpoint) -> None:
        if ep.sock is not None:
            self.poller.unregister(ep.sock)
            del self.by_socket[ep.sock]
        sock = ep.connect()
        self.poller.register(sock, self.zmq.POLLIN)
        self.by_socket[sock] = ep
        self._hello(ep)

    def _hello(self, ep: _SimEndpoint) -> None:
        ep.accepted = False
        ep.hello_sent_at = time.monotonic()
        self._send(ep, self.p.EndpointHello(self.p.PROTOCOL_VERSION, ep.endpoint_id, self.versions, len(ep.unacked)))

    def _send(self, ep: _SimEndpoint, message: Any) -> None:
        ep.sock.send_multipart(self.p.encode(message), copy=False)

    def _report(self) -> dict[str, Any]:
        return {"alive": True, "managers": 1, "connected_workers": 1, "idle_workers": 1, "pending_tasks": 0,
                "outstanding_tasks": 0, "blocks": {"0": "RUNNING"}, "provider_type": "simulated",
                "walltime_left_s": None, "timestamp": time.time()}

    def _on_message(self, ep: _SimEndpoint, frames: list) -> None:
        p = self.p
        try:
            message = p.decode(frames)
        except self.malformed:
            self.counts["malformed"] += 1
            return
        if isinstance(message, p.TaskDelivery):
            self._on_delivery(ep, message)
        elif isinstance(message, p.ResultsStored):
            for task_id in message.task_ids:
                if ep.unacked.pop(task_id, None) is not None:
                    self.counts["results_acked"] += 1
        elif isinstance(message, p.ServiceHeartbeat):
            self.counts["heartbeats_answered"] += 1
        elif isinstance(message, p.HelloReply):
            self._on_hello_reply(ep, message)
        elif isinstance(message, p.HelloRequired):
            self.counts["hello_required"] += 1
            self._hello(ep)

    def _on_hello_reply(self, ep: _SimEndpoint, reply: Any) -> None:
        if not reply.accepted:
            self.counts["refused"] += 1
            print(json.dumps({"refused": ep.endpoint_id, "reason": reply.reason}), flush=True)
            return
        ep.accepted = True
        self.counts["accepted"] += 1
        ep.period_s = reply.heartbeat_period_s
        ep.next_report = time.monotonic() + ep.period_s
        self._send(ep, self.p.StatusReport(self._report()))
        self.counts["heartbeats_sent"] += 1
        if ep.unacked:  # results the previous service instance never acknowledged
            self.counts["resent"] += len(ep.unacked)
            self._send(ep, self.p.TaskResults(tuple(ep.unacked.values())))

    def _on_delivery(self, ep: _SimEndpoint, delivery: Any) -> None:
        p = self.p
        self.counts["deliveries"] += 1
        ids = tuple(t.task_id for t in delivery.tasks)
        self.counts["tasks"] += len(ids)
        self._send(ep, p.TasksAccepted(ids))
        now = time.time()
        results = []
        for task_id in ids:
            if task_id in ep.seen:
                self.counts["duplicates"] += 1
            ep.seen.add(task_id)
            result = p.TaskResult(task_id, "success", self.none, now, now)
            ep.unacked[task_id] = result
            results.append(result)
        self._send(ep, p.TaskResults(tuple(results)))
        self.counts["results_sent"] += len(results)

    def _tick(self) -> None:
        """Heartbeats that are due; hellos unanswered for a while are sent again on a new socket."""
        now = time.monotonic()
        for ep in self.endpoints:
            if ep.accepted:
                if now >= ep.next_report:
                    ep.next_report = now + ep.period_s
                    self._send(ep, self.p.StatusReport(self._report()))
                    self.counts["heartbeats_sent"] += 1
            elif now - ep.hello_sent_at > HELLO_RETRY_S:
                self._open(ep)  # libzmq does not retry a refused CurveZMQ handshake by itself
        if not self.ready_said and all(ep.accepted for ep in self.endpoints):
            self.ready_said = True
            print(json.dumps({"ready": len(self.endpoints)}), flush=True)

    def _on_command(self) -> bool:
        line = sys.stdin.readline().strip()
        if line == "stats":
            print(json.dumps({"stats": self.counts,
                              "unacked": sum(len(ep.unacked) for ep in self.endpoints)}), flush=True)
            return True
        return False  # "quit" or EOF (the parent is gone)

    def run(self) -> None:
        """Until ``quit`` (or EOF) on stdin."""
        zmq = self.zmq
        for ep in self.endpoints:
            self._open(ep)
        stdin = sys.stdin.fileno()
        self.poller.register(stdin, zmq.POLLIN)
        try:
            while True:
                for sock, _ in self.poller.poll(100):
                    if sock == stdin:
                        if not self._on_command():
                            return
                        continue
                    ep = self.by_socket.get(sock)
                    while ep is not None:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=True)
                        except zmq.Again:
                            break
                        self._on_message(ep, frames)
                self._tick()
        finally:
            for ep in self.endpoints:
                if ep.sock is not None:
                    ep.sock.close(linger=0)
            self.ctx.term()


class SimFleet:
    """Simulated endpoints of one user on one service, in processes of their own (started by pid, ended by pid).

    Args:
        stack: a :class:`benchmarks.faas_stack.FaasStack` whose service runs.
        token: the user whose endpoints they are (registered with this token).
    """

    def __init__(self, stack: Any, token: str) -> None:
        self.stack = stack
        self.token = token
        self.endpoint_ids: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def register(self, count: int) -> list[dict[str, Any]]:
        """``count`` new endpoints through ``POST /v1/endpoints``: their identities (id and keys)."""
        first = len(self.endpoint_ids)
        identities = [self.stack.call("POST", "/endpoints", {"name": f"sim{first + i}"}, token=self.token)
                      for i in range(count)]
        self.endpoint_ids.extend(i["endpoint_id"] for i in identities)
        return identities

    def add(self, count: int, per_process: int = 25) -> list[str]:
        """Register ``count`` endpoints and start them, ``per_process`` to a process; wait until all said hello.

        Returns:
            The new endpoints' ids.

        Raises:
            RuntimeError: a process exited, was refused, or did not get every hello accepted in time.
        """
        identities = self.register(count)
        started = []
        for start in range(0, count, per_process):
            path = Path(self.stack.root) / f"sim{len(self.procs)}.json"
            path.write_text(json.dumps(identities[start:start + per_process]))
            proc = subprocess.Popen([sys.executable, "-m", "benchmarks.faas_sim", str(path)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
            self.procs.append(proc)
            started.append(proc)
        for proc in started:
            line = self._read(proc, READY_TIMEOUT_S)
            if "ready" not in line:
                raise RuntimeError(f"simulator {proc.pid}: {line}")
        return [i["endpoint_id"] for i in identities]

    @staticmethod
    def _read(proc: subprocess.Popen, timeout_s: float) -> dict[str, Any]:
        """The next JSON line of ``proc`` (``{"error": ...}`` if it exits or says nothing in time)."""
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout_s)
        if not ready:
            return {"error": f"nothing within {timeout_s:g} s"}
        line = proc.stdout.readline()
        if not line:
            return {"error": f"exited with {proc.wait()}"}
        return json.loads(line)

    def stats(self) -> dict[str, int]:
        """Every counter summed over the processes (``unacked``: results still not acknowledged)."""
        total = dict.fromkeys((*_COUNTERS, "unacked"), 0)
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("stats\n")
            proc.stdin.flush()
            reply = self._read(proc, 30)
            if "stats" not in reply:
                raise RuntimeError(f"simulator {proc.pid}: {reply}")
            for key, value in reply["stats"].items():
                total[key] += value
            total["unacked"] += reply["unacked"]
        return total

    def pids(self) -> list[int]:
        """The simulator processes' pids."""
        return [proc.pid for proc in self.procs]

    def stop(self) -> None:
        """``quit`` every process and wait (SIGKILL by pid after 10 s)."""
        for proc in self.procs:
            try:
                assert proc.stdin is not None
                proc.stdin.write("quit\n")
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs = []


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m benchmarks.faas_sim IDENTITIES.json``: run those endpoints until ``quit``."""
    args = sys.argv[1:] if argv is None else argv
    identities = json.loads(Path(args[0]).read_text())
    SimProcessLoop(identities).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
