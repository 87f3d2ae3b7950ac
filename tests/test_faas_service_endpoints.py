"""``/v1/endpoints`` of a real service: registration and its keys, who sees and sends to what, deletion."""
from __future__ import annotations

import uuid

import zmq.auth

from parsl_lite.faas import api
from parsl_lite.faas.errors import EndpointLost
from parsl_lite.serialize import deserialize
from parsl_lite.faas.service.store import FAILED, open_store
from tests.faas_helpers import (  # noqa: F401 (fixture)
    add_user, call, faas_service, register_endpoint, register_function, submit,
)


def test_register_issues_curve_keys_and_reregistering_keeps_the_id(faas_service):
    first = register_endpoint(faas_service)
    assert len(first["endpoint_public_key"]) == 40 and len(first["endpoint_secret_key"]) == 40
    public, _ = zmq.auth.load_certificate(str(faas_service.dir / "service.key"))
    assert first["service_public_key"] == public.decode()
    assert first["zmq_url"] == faas_service.zmq_url and first["name"] == "laptop"
    again = register_endpoint(faas_service)                          # same owner + name
    assert again["endpoint_id"] == first["endpoint_id"]
    assert again["endpoint_public_key"] != first["endpoint_public_key"]
    renamed = register_endpoint(faas_service, name="desk", endpoint_id=first["endpoint_id"])
    assert renamed["endpoint_id"] == first["endpoint_id"]
    status, body = call(faas_service, "GET", f"/v1/endpoints/{first['endpoint_id']}")
    assert status == 200 and body["name"] == "desk" and body["owner"] == "admin" and body["status"] == "offline"
    store = open_store(faas_service.db_url)
    try:
        assert store.get_endpoint(first["endpoint_id"]).public_key == renamed["endpoint_public_key"]
    finally:
        store.close()


def test_reregistering_someone_elses_or_an_unknown_endpoint(faas_service):
    alice, bob = add_user(faas_service, "alice"), add_user(faas_service, "bob")
    endpoint_id = register_endpoint(faas_service, alice)["endpoint_id"]
    status, body = call(faas_service, "POST", "/v1/endpoints", {"name": "x", "endpoint_id": endpoint_id}, token=bob)
    assert status == 403 and endpoint_id in body["reason"]
    unknown = str(uuid.uuid4())
    status, body = call(faas_service, "POST", "/v1/endpoints", {"name": "x", "endpoint_id": unknown}, token=bob)
    assert status == 404 and unknown in body["reason"]
    status, body = call(faas_service, "POST", "/v1/endpoints", {"name": "x", "endpoint_id": "nope"}, token=bob)
    assert status == 400 and "'endpoint_id'" in body["reason"]
    # the same name by another owner is another endpoint
    assert register_endpoint(faas_service, bob)["endpoint_id"] != endpoint_id


def test_register_names_bad_fields(faas_service):
    cases = [({}, "'name': missing"), ({"name": ""}, "'name': empty"), ({"name": "a", "public": 1}, "'public'"),
             ({"name": "a", "allowed_functions": "f"}, "'allowed_functions': expected a list"),
             ({"name": "a", "allowed_functions": ["f"]}, "'allowed_functions[0]'"),
             ({"name": "a", "shared_with": ["ghost"]}, "'shared_with[0]': no user named 'ghost'")]
    for fields, named in cases:
        status, body = call(faas_service, "POST", "/v1/endpoints", fields)
        assert status == 400 and named in body["reason"], (fields, body)
    unknown = str(uuid.uuid4())
    status, body = call(faas_service, "POST", "/v1/endpoints", {"name": "a", "allowed_functions": [unknown]})
    assert status == 404 and unknown in body["reason"]


def test_who_sees_and_sends_to_an_endpoint(faas_service):
    alice, bob, carol = (add_user(faas_service, n) for n in ("alice", "bob", "carol"))
    function_id = register_function(faas_service, alice, public=True)
    private = register_endpoint(faas_service, alice, name="private")["endpoint_id"]
    shared = register_endpoint(faas_service, alice, name="shared", shared_with=["bob"])["endpoint_id"]
    public = register_endpoint(faas_service, alice, name="public", public=True)["endpoint_id"]

    def listed(token):
        status, body = call(faas_service, "GET", "/v1/endpoints", token=token)
        assert status == 200
        return {e["endpoint_id"] for e in body["endpoints"]}

    assert listed(alice) == {private, shared, public}
    assert listed(bob) == {shared, public}
    assert listed(carol) == {public}
    for endpoint_id, allowed in ((private, {alice}), (shared, {alice, bob}), (public, {alice, bob, carol})):
        for token in (alice, bob, carol):
            status, body = submit(faas_service, function_id, endpoint_id, token)
            assert (status == 200) == (token in allowed), (endpoint_id, body)
            if status != 200:
                assert status == 403 and endpoint_id in body["reason"]
            code = call(faas_service, "GET", f"/v1/endpoints/{endpoint_id}/status", token=token)[0]
            assert code == (200 if token in allowed else 403)


def test_status_of_an_endpoint_that_never_connected(faas_service):
    endpoint_id = register_endpoint(faas_service)["endpoint_id"]
    status, body = call(faas_service, "GET", f"/v1/endpoints/{endpoint_id}/status")
    assert status == 200 and body == {"status": "offline", "details": {}, "last_seen": None}
    unknown = str(uuid.uuid4())
    status, body = call(faas_service, "GET", f"/v1/endpoints/{unknown}/status")
    assert status == 404 and unknown in body["reason"]


def test_allowed_functions_are_checked_at_submit(faas_service):
    allowed = register_function(faas_service)
    other = register_function(faas_service)
    endpoint_id = register_endpoint(faas_service, allowed_functions=[allowed])["endpoint_id"]
    assert submit(faas_service, allowed, endpoint_id)[0] == 200
    status, body = submit(faas_service, other, endpoint_id)
    assert status == 403 and body["error"] == "function_not_allowed"
    assert other in body["reason"] and endpoint_id in body["reason"] and "allowed_functions" in body["reason"]


def test_delete_only_by_the_owner_and_its_tasks_fail(faas_service):
    alice, bob = add_user(faas_service, "alice"), add_user(faas_service, "bob")
    function_id = register_function(faas_service, alice, public=True)
    endpoint_id = register_endpoint(faas_service, alice, shared_with=["bob"])["endpoint_id"]
    status, submitted = submit(faas_service, function_id, endpoint_id, bob, n=3)
    assert status == 200
    status, body = call(faas_service, "DELETE", f"/v1/endpoints/{endpoint_id}", token=bob)
    assert status == 403 and "owner" in body["reason"]
    assert call(faas_service, "DELETE", f"/v1/endpoints/{endpoint_id}", token=alice) == (200, {"deleted": True})
    status, body = call(faas_service, "POST", "/v1/batch_status", {"task_ids": submitted["task_ids"]}, token=bob)
    for task in body["results"].values():
        assert task["status"] == FAILED and not task["pending"]
        lost = deserialize(api.unb64(task["exception"], "exception"))
        assert isinstance(lost, EndpointLost) and endpoint_id in str(lost) and "deleted" in str(lost)
    status, body = call(faas_service, "GET", f"/v1/endpoints/{endpoint_id}", token=alice)
    assert status == 404 and endpoint_id in body["reason"]
    assert call(faas_service, "DELETE", f"/v1/endpoints/{endpoint_id}", token=alice)[0] == 404
