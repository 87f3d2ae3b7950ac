"""The function service's HTTP API against a real service process: every route, and what each refuses."""
from __future__ import annotations

import asyncio
import json
import uuid

from parsl_lite.faas import api
from parsl_lite.faas.service import cli
from tests.faas_helpers import (  # noqa: F401 (fixture)
    add_user, call, module_service, register_function, start_service, unique,
)

B = api.b64


# ---------------------------------------------------------------- the process


def test_service_file_and_version_need_no_token(module_service):
    info = cli.running_service(module_service.dir)
    assert info["url"] == module_service.url and info["pid"] == module_service.pid
    status, body = call(module_service, "GET", "/v1/version", token="")
    assert status == 200
    assert body["api"] == "v1" and body["payload_limit"] == api.DEFAULT_PAYLOAD_LIMIT
    assert module_service.url.startswith("http://127.0.0.1:")


def test_sigterm_is_a_clean_stop(tmp_path):
    service = start_service(tmp_path)
    assert service.stop() == 0
    assert not (service.dir / "service.json").exists()
    assert "service stopped" in (service.dir / "service.log").read_text()


# ---------------------------------------------------------------- tokens


BAD_HEADERS = [(None, "missing_token"), ("Basic abc", "malformed_token"), ("Bearer", "malformed_token"),
               ("Bearer not-a-token", "bad_token")]


def test_a_missing_or_wrong_token_is_401_saying_why(module_service):
    for header, code in BAD_HEADERS:
        headers = {"Authorization": header} if header else {}
        for method, path in (("GET", "/v1/whoami"), ("GET", f"/v1/tasks/{uuid.uuid4()}"), ("POST", "/v1/submit"),
                             ("GET", "/v1/endpoints"), ("POST", "/v1/functions")):
            status, body = call(module_service, method, path, {} if method == "POST" else None, token="",
                                headers=headers)
            assert status == 401 and body["error"] == code, (header, path, body)
            assert body["reason"]


def test_whoami_and_users(module_service):
    status, me = call(module_service, "GET", "/v1/whoami")
    assert status == 200 and me["username"] == "admin" and me["is_admin"]
    name = unique("alice")
    token = add_user(module_service, name)
    status, alice = call(module_service, "GET", "/v1/whoami", token=token)
    assert (status, alice["username"], alice["is_admin"]) == (200, name, False)
    status, body = call(module_service, "POST", "/v1/users", {"username": name})
    assert status == 409 and name in body["reason"]
    status, body = call(module_service, "POST", "/v1/users", {"username": unique("bob")}, token=token)
    assert status == 403 and "admin" in body["reason"]


# ---------------------------------------------------------------- bad bodies


def test_malformed_json_is_400(module_service):
    for raw, needle in ((b"{not json", "malformed JSON"), (b"[1, 2]", "expected a JSON object"), (b"", "empty")):
        for path in ("/v1/functions", "/v1/submit", "/v1/endpoints", "/v1/batch_status", "/v1/users"):
            status, body = call(module_service, "POST", path, raw=raw)
            assert status == 400 and needle in body["reason"], (path, body)


BAD_FUNCTIONS = [
    ({"function_code": B(b"x")}, "'function_name': missing"),
    ({"function_name": 3, "function_code": B(b"x")}, "'function_name': expected a string"),
    ({"function_name": "f"}, "'function_code': missing"),
    ({"function_name": "f", "function_code": "%%%"}, "'function_code': not valid base64"),
    ({"function_name": "f", "function_code": B(b"x"), "public": "yes"}, "'public': expected true or false"),
    ({"function_name": "f", "function_code": B(b"x"), "shared_with": ["nobody"]}, "'shared_with[0]': no user"),
]


def test_register_function_names_the_bad_field(module_service):
    for fields, named in BAD_FUNCTIONS:
        status, body = call(module_service, "POST", "/v1/functions", fields)
        assert status == 400 and named in body["reason"], body


# ---------------------------------------------------------------- functions


def test_functions_own_shared_public_and_others(module_service):
    names = [unique(n) for n in ("alice", "bob", "carol")]
    alice, bob, carol = (add_user(module_service, n) for n in names)
    private = register_function(module_service, alice, description="mine")
    shared = register_function(module_service, alice, shared_with=[names[1]])
    public = register_function(module_service, alice, public=True)
    status, body = call(module_service, "GET", f"/v1/functions/{private}", token=alice)
    assert status == 200 and body["owner"] == names[0] and body["description"] == "mine"
    assert body["function_name"] == "double" and body["public"] is False
    status, body = call(module_service, "GET", f"/v1/functions/{private}", token=bob)
    assert status == 403 and private in body["reason"]
    assert call(module_service, "GET", f"/v1/functions/{shared}", token=bob)[0] == 200
    assert call(module_service, "GET", f"/v1/functions/{shared}", token=carol)[0] == 403
    assert call(module_service, "GET", f"/v1/functions/{public}", token=carol)[0] == 200
    unknown = str(uuid.uuid4())
    status, body = call(module_service, "GET", f"/v1/functions/{unknown}", token=alice)
    assert status == 404 and unknown in body["reason"]


def test_a_function_body_over_the_limit_is_413(tmp_path):
    service = start_service(tmp_path, payload_limit=1000)
    try:
        status, body = call(service, "POST", "/v1/functions",
                            {"function_name": "big", "function_code": B(b"x" * 1001)})
        assert status == 413 and "1001 bytes" in body["reason"] and "1000 bytes" in body["reason"]
    finally:
        assert service.stop() == 0


def test_unknown_route_and_method_are_json(module_service):
    status, body = call(module_service, "GET", "/v1/nothing")
    assert status == 404 and body["error"] == "not_found"
    status, body = call(module_service, "DELETE", "/v1/whoami")
    assert status == 405 and "DELETE" in body["reason"]
    status, body = call(module_service, "GET", "/v1/tasks/not-an-id")
    assert status == 404 and "not-an-id" in body["reason"]


def test_both_listeners_bind_loopback_only(module_service):
    import psutil
    listening = [c for c in psutil.Process(module_service.pid).net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN]
    ports = {c.laddr.port for c in listening}
    assert module_service.port in ports
    if module_service.zmq_url:
        assert module_service.endpoint_port in ports
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}


async def _ws_events(service, autoping=True, then=None):
    import aiohttp
    kinds = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(service.url + "/v1/ws", autoping=autoping, heartbeat=None,
                                      headers={"Authorization": f"Bearer {service.admin_token}"}) as ws:
            if then is not None:
                await asyncio.get_running_loop().run_in_executor(None, then)
            while True:
                msg = await asyncio.wait_for(ws.receive(), 30)
                kinds.append((msg.type, msg.data))
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return kinds, ws.close_code


def test_a_websocket_client_that_stops_answering_pings_is_dropped(tmp_path):
    import aiohttp
    service = start_service(tmp_path, heartbeat_period=0.3)
    try:
        kinds, _ = asyncio.run(_ws_events(service, autoping=False))
        assert kinds[0][0] == aiohttp.WSMsgType.PING            # it pinged, got no pong, and closed
        assert kinds[-1][0] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    finally:
        assert service.stop() == 0


def test_sigterm_closes_websockets_going_away(tmp_path):
    import aiohttp
    service = start_service(tmp_path)
    try:
        kinds, _ = asyncio.run(_ws_events(service, then=service.stop))
        assert kinds[-1] == (aiohttp.WSMsgType.CLOSE, aiohttp.WSCloseCode.GOING_AWAY), kinds
    finally:
        assert service.stop() == 0


def test_a_chunked_body_over_the_limit_is_413(tmp_path):
    import http.client
    from urllib.parse import urlsplit
    service = start_service(tmp_path, payload_limit=1000)
    try:
        limit = call(service, "GET", "/v1/version", token="")[1]["max_request_bytes"]
        conn = http.client.HTTPConnection(urlsplit(service.url).hostname, service.port, timeout=30)
        chunks = (b"x" * 65536 for _ in range(limit // 65536 + 2))        # no Content-Length: read until too big
        conn.request("POST", "/v1/submit", body=chunks, encode_chunked=True,
                     headers={"Authorization": f"Bearer {service.admin_token}"})
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 413 and f"the limit of {limit} bytes" in body["reason"], body
        conn.close()
    finally:
        assert service.stop() == 0


def test_the_server_refuses_a_bad_option_naming_it(tmp_path):
    import subprocess
    import sys
    for option, value, named in (("--port", "70000", "port"), ("--result-ttl", "0", "result_ttl_s"),
                                 ("--payload-limit", "-1", "payload_limit")):
        done = subprocess.run([sys.executable, "-m", "parsl_lite.faas.service.server", "--dir", str(tmp_path),
                               option, value], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and named in done.stderr, done.stderr
