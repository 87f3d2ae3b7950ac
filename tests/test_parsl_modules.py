"""Parsl's ready-made modules: ``parsl.configs.local_threads``, ``parsl.configs.htex_local``, ``parsl.addresses``.

Addresses are checked against this machine's real interfaces and routing
table; ``address_by_query`` against real HTTP servers on loopback (nothing
here may leave the machine).
"""
from __future__ import annotations

import http.server
import os
import platform
import socket
import subprocess
import sys
import threading

import psutil
import pytest

import parsl_lite
from parsl_lite import addresses
from parsl_lite.addresses import (
    AddressNotFound, address_by_hostname, address_by_interface, address_by_query, address_by_route,
    get_all_addresses, get_any_address,
)
from parsl_lite.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- configs

def test_local_threads_is_one_thread_pool_and_runs_apps(tmp_path, monkeypatch):
    from parsl_lite.configs.local_threads import config
    from parsl_lite.executors import ThreadPoolExecutor

    monkeypatch.chdir(tmp_path)  # its run_dir is Parsl's default, ./runinfo
    assert isinstance(config, Config)
    [executor] = config.executors
    assert type(executor) is ThreadPoolExecutor
    assert repr(config) == repr(Config())  # the same as the default
    double = parsl_lite.python_app(lambda x: 2 * x)
    for _ in range(2):  # a module-level config can be loaded again after cleanup
        with parsl_lite.load(config):
            assert double(21).result(timeout=10) == 42


def test_htex_local_is_parsls_and_runs_apps_in_worker_processes(tmp_path):
    from parsl_lite.configs.htex_local import config
    from parsl_lite.executors.htex.executor import HighThroughputExecutor

    [executor] = config.executors
    assert type(executor) is HighThroughputExecutor and executor.label == "htex_local"
    assert executor.cores_per_worker == 1
    assert (executor.provider.init_blocks, executor.provider.max_blocks) == (1, 1)
    # Run it in a process of its own: its module-level executor is started once per process.
    script = tmp_path / "wf.py"
    script.write_text("import os\nimport parsl_lite\nfrom parsl_lite.configs.htex_local import config\n"
                      "pid = parsl_lite.python_app(lambda: __import__('os').getpid())\n"
                      "with parsl_lite.load(config):\n    print('worker', pid().result(timeout=60), os.getpid())\n")
    result = subprocess.run([sys.executable, str(script)], cwd=str(tmp_path), capture_output=True, text=True,
                            timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    _, worker, me = result.stdout.split()
    assert worker != me


# ---------------------------------------------------------------- addresses

def ipv4_of_every_interface() -> dict[str, str]:
    return {name: entry.address for name, entries in psutil.net_if_addrs().items()
            for entry in entries if entry.family == socket.AF_INET}


def test_address_by_interface_reads_the_named_interface():
    assert address_by_interface("lo") == "127.0.0.1"
    for name, address in ipv4_of_every_interface().items():
        assert address_by_interface(name) == address


def test_address_by_interface_names_what_is_there_when_asked_for_a_missing_one():
    with pytest.raises(AddressNotFound, match=r"no network interface 'nosuch0'.*'lo'") as caught:
        address_by_interface("nosuch0")
    assert isinstance(caught.value, OSError)


def test_address_by_hostname_is_what_the_name_resolves_to():
    assert address_by_hostname() == socket.gethostbyname(platform.node())


def write_route_table(path, rows):
    header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    path.write_text(header + "".join("\t".join(row) + "\n" for row in rows))


def test_address_by_route_takes_the_default_routes_interface(tmp_path, monkeypatch):
    table = tmp_path / "route"
    write_route_table(table, [
        ("lo", "0000007F", "00000000", "0001", "0", "0", "0", "000000FF", "0", "0", "0"),    # not a default
        ("nosuch0", "00000000", "0100A8C0", "0003", "0", "0", "100", "00000000", "0", "0", "0"),  # higher metric
        ("lo", "00000000", "00000000", "0003", "0", "0", "10", "00000000", "0", "0", "0"),
    ])
    monkeypatch.setattr(addresses, "_ROUTE_TABLE", str(table))
    assert address_by_route() == "127.0.0.1"


def test_address_by_route_without_a_default_route_says_so(tmp_path, monkeypatch):
    table = tmp_path / "route"
    write_route_table(table, [("lo", "0000007F", "00000000", "0001", "0", "0", "0", "000000FF", "0", "0", "0")])
    monkeypatch.setattr(addresses, "_ROUTE_TABLE", str(table))
    with pytest.raises(AddressNotFound, match="no default route"):
        address_by_route()


def test_address_by_route_on_this_machine():
    try:
        found = address_by_route()
    except AddressNotFound as exc:  # a machine without a default route
        assert "no default route" in str(exc)
    else:
        assert found in ipv4_of_every_interface().values()


class AnswerHandler(http.server.BaseHTTPRequestHandler):
    body = b"203.0.113.7"

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def answering_server(monkeypatch):
    """A real HTTP server on loopback that answers like ipify; the query URL points at it."""
    server = http.server.HTTPServer(("127.0.0.1", 0), AnswerHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PARSL_LITE_ADDRESS_QUERY_URL", f"http://127.0.0.1:{server.server_port}/")
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_address_by_query_returns_what_the_service_says(answering_server, monkeypatch):
    assert address_by_query(timeout=10) == "203.0.113.7"
    monkeypatch.setattr(AnswerHandler, "body", b'{"ip": "198.51.100.4"}')
    assert address_by_query(timeout=10) == "198.51.100.4"
    monkeypatch.setattr(AnswerHandler, "body", b"<html>rate limited</html>")
    with pytest.raises(AddressNotFound, match="not an IPv4 address"):
        address_by_query(timeout=10)


def test_address_by_query_with_nothing_listening_fails_clearly(monkeypatch):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("PARSL_LITE_ADDRESS_QUERY_URL", f"http://127.0.0.1:{port}/")
    with pytest.raises(AddressNotFound, match=rf"127.0.0.1:{port}.*refused"):
        address_by_query(timeout=10)


def test_address_by_query_gives_up_on_a_silent_service(monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection (in the kernel) and never answers
    monkeypatch.setenv("PARSL_LITE_ADDRESS_QUERY_URL", f"http://127.0.0.1:{listener.getsockname()[1]}/")
    try:
        with pytest.raises(AddressNotFound, match="0.5 s"):
            address_by_query(timeout=0.5)
    finally:
        listener.close()


def test_get_all_addresses_gathers_every_way(answering_server):
    found = get_all_addresses()
    assert set(ipv4_of_every_interface().values()) <= found
    assert "203.0.113.7" in found and address_by_hostname() in found


def test_get_any_address_is_one_of_them(answering_server):
    assert get_any_address() in get_all_addresses()
