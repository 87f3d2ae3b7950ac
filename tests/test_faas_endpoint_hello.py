"""The endpoint's session keeps one hello outstanding: a burst of HelloRequired gets one hello.

After a service restart, every message the endpoint had on the way gets a
HelloRequired. Each hello the service accepts re-delivers every task the
endpoint holds and counts an attempt, so answering each HelloRequired with a
hello used up tasks' retries and failed them with a false EndpointLost. The
session runs here against a real ZMQ ROUTER with CurveZMQ, standing where the
service's is; no executor is needed for the hello conversation.
"""
from __future__ import annotations

import threading

import zmq

from parsl_lite.faas import protocol as p
from parsl_lite.faas.endpoint.config import EndpointSettings
from parsl_lite.faas.endpoint.session import Session


def test_a_burst_of_hello_required_gets_one_hello(tmp_path):
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.curve_server = True
    router.curve_secretkey = server_secret
    router.curve_publickey = server_public
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    identity = {"endpoint_id": "4f6b1d0e-0000-4000-8000-000000000001", "zmq_url": f"tcp://127.0.0.1:{port}",
                "endpoint_public_key": client_public.decode(), "endpoint_secret_key": client_secret.decode(),
                "service_public_key": server_public.decode()}
    session = Session(identity, EndpointSettings(heartbeat_period=0.5, heartbeat_threshold=30.0), None, tmp_path)
    runner = threading.Thread(target=session.run, daemon=True)
    runner.start()
    try:
        assert router.poll(30_000), "no hello from the endpoint"
        route, *frames = router.recv_multipart()
        assert isinstance(p.decode(frames), p.EndpointHello)
        for _ in range(6):   # one per message the restarted service did not know
            router.send_multipart([route, *p.encode(p.HelloRequired("the service restarted"))])
        router.send_multipart([route, *p.encode(p.HelloReply(True, "", 0.5, 30.0, 1 << 20, ()))])
        hellos = 0
        while True:          # ZMQ keeps the order: the report after the HelloReply comes after every answer
            assert router.poll(30_000), "no status report after the HelloReply"
            message = p.decode(router.recv_multipart()[1:])
            hellos += isinstance(message, p.EndpointHello)
            if isinstance(message, p.StatusReport):
                break
        assert hellos == 0, f"{hellos} more hellos for one burst of HelloRequired"
    finally:
        session.stop()
        runner.join(timeout=30)
        session.finish()     # closes its sockets and context (a context left to the garbage collector blocks it)
        router.close()
        context.term()
