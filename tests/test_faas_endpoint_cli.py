"""The endpoint's command line against a real service (restart, delete, a deleted endpoint), and its limits."""
from __future__ import annotations

import pytest

from parsl_lite.faas import FuncXClient, paths
from parsl_lite.faas.errors import MaxResultSizeExceeded
from tests.faas_endpoint_helpers import faas_endpoints  # noqa: F401 (fixture)
from tests.faas_helpers import call, faas_service, start_service  # noqa: F401 (fixture)
from tests.test_faas_endpoint_e2e import _cli, _result


def make_bytes(n):
    return b"x" * n


def test_restart_keeps_the_id_and_delete_unregisters_and_removes_the_directory(faas_service, faas_endpoints):
    ep = faas_endpoints(faas_service, "doomed", faas_service.admin_token)
    restarted = _cli("restart", "doomed")
    assert restarted.returncode == 0 and restarted.stdout.strip() == ep.endpoint_id   # same id, new process
    assert int((ep.directory / "endpoint.pid").read_text()) != ep.pid
    done = _cli("delete", "doomed")
    assert done.returncode == 0, done.stderr
    assert ep.endpoint_id in done.stdout and not ep.directory.exists() and not ep.alive()
    assert call(faas_service, "GET", f"/v1/endpoints/{ep.endpoint_id}")[0] == 404
    assert _cli("delete", "doomed").returncode == 1   # no such endpoint any more


def test_an_endpoint_deleted_at_the_service_fails_to_start_saying_why(faas_service, faas_endpoints):
    ep = faas_endpoints(faas_service, "orphan", faas_service.admin_token)
    assert ep.stop() == 0
    assert call(faas_service, "DELETE", f"/v1/endpoints/{ep.endpoint_id}")[0] == 200
    done = _cli("start", "orphan")
    assert done.returncode == 1
    assert "the service refused this endpoint" in done.stderr and ep.endpoint_id in done.stderr
    assert _cli("list").stdout.splitlines()[1].split()[:3] == ["orphan", ep.endpoint_id, "Stopped"]



def test_a_result_over_the_services_limit_fails_naming_size_and_limit(tmp_path, monkeypatch, faas_endpoints):
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    monkeypatch.delenv(paths.URL_ENV, raising=False)
    monkeypatch.delenv(paths.TOKEN_ENV, raising=False)
    service = start_service(tmp_path, payload_limit=50_000)   # HelloReply tells the endpoint the limit
    try:
        paths.write_client_file(service.url, service.admin_token)
        ep = faas_endpoints(service, "strict", service.admin_token)
        fxc = FuncXClient()
        func_id = fxc.register_function(make_bytes)
        assert _result(fxc, fxc.run(1000, endpoint_id=ep.endpoint_id, function_id=func_id)) == b"x" * 1000
        with pytest.raises(MaxResultSizeExceeded) as info:
            _result(fxc, fxc.run(60_000, endpoint_id=ep.endpoint_id, function_id=func_id))
        assert info.value.limit == 50_000 and info.value.size > 60_000
        assert "exceeds the limit of 50000 bytes" in str(info.value)
        ep.stop()
    finally:
        service.stop()


def test_start_while_the_service_is_down_times_out_with_3_and_connects_later(faas_service, faas_endpoints):
    from tests.conftest import wait_for

    ep = faas_endpoints(faas_service, "early", faas_service.admin_token)
    assert ep.stop() == 0
    faas_service.kill()
    done = _cli("start", "early", "--timeout", "5")
    assert done.returncode == 3 and "not connected after 5 s" in done.stderr
    wait_for(lambda: _cli("list").stdout.splitlines()[1].split()[2] == "Disconnected", 20, "list to say Disconnected")
    ep.pid = int((ep.directory / "endpoint.pid").read_text())
    ep._remember()
    faas_service.restart()
    wait_for(lambda: ep.status_file().get("state") == "Running", 30, "the endpoint to connect by itself")
    ep.wait_online()


def test_an_endpoint_pointed_at_another_service_registers_there(faas_service, faas_endpoints, tmp_path):
    ep = faas_endpoints(faas_service, "mover", faas_service.admin_token)
    assert ep.stop() == 0
    other = start_service(tmp_path / "elsewhere")
    try:
        config = ep.directory / "config.toml"
        config.write_text(config.read_text().replace(faas_service.url, other.url))
        ep.service, ep.token = other, other.admin_token
        old_id = ep.endpoint_id
        ep.start()                                   # registers with the other service, comes online there
        assert ep.endpoint_id != old_id
        assert call(other, "GET", f"/v1/endpoints/{ep.endpoint_id}")[0] == 200
        assert ep.stop() == 0
    finally:
        other.stop()
