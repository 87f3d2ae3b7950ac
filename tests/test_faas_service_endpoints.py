"""``/v1/endpoints`` of a real service: registration and its keys, who sees and sends to what, deletion."""
from __future__ import annotations

import uuid

import zmq.auth

from parsl_lite.faas import api
from parsl_lite.faas.errors import EndpointLost
from parsl_lite.serialize import deserialize
from parsl_lite.faas.service.store import FAILED, open_store
from tests.faas_helpers import (  # noqa: F401 (fixture)
    add_user, call, module_service, register_endpoint, register_function, submit, unique,
)


def test_register_issues_curve_keys_and_reregistering_keeps_the_id(module_service):
    name = unique("laptop")
    first = register_endpoint(module_service, name=name)
    assert len(first["endpoint_public_key"]) == 40 and len(first["endpoint_secret_key"]) == 40
    public, _ = zmq.auth.load_certificate(str(module_service.dir / "service.key"))
    assert first["service_public_key"] == public.decode()
    assert first["zmq_url"] == module_service.zmq_url and first["name"] == name
    again = register_endpoint(module_service, name=name)               # same owner + name
    assert again["endpoint_id"] == first["endpoint_id"]
    assert again["endpoint_public_key"] != first["endpoint_public_key"]
    desk = unique("desk")
    renamed = register_endpoint(module_service, name=desk, endpoint_id=first["endpoint_id"])
    assert renamed["endpoint_id"] == first["endpoint_id"]
    status, body = call(module_service, "GET", f"/v1/endpoints/{first['endpoint_id']}")
    assert status == 200 and body["name"] == desk and body["owner"] == "admin" and body["status"] == "offline"
    store = open_store(module_service.db_url)
    try:
        assert store.get_endpoint(first["endpoint_id"]).public_key == renamed["endpoint_public_key"]
    finally:
        store.close()


def test_reregistering_someone_elses_or_an_unknown_endpoint(module_service):
    alice, bob = add_user(module_service, unique("alice")), add_user(module_service, unique("bob"))
    endpoint_id = register_endpoint(module_service, alice)["endpoint_id"]
    status, body = call(module_service, "POST", "/v1/endpoints", {"name": "x", "endpoint_id": endpoint_id}, token=bob)
    assert status == 403 and endpoint_id in body["reason"]
    unknown = str(uuid.uuid4())
    status, body = call(module_service, "POST", "/v1/endpoints", {"name": "x", "endpoint_id": unknown}, token=bob)
    assert status == 404 and unknown in body["reason"]
    status, body = call(module_service, "POST", "/v1/endpoints", {"name": "x", "endpoint_id": "nope"}, token=bob)
    assert status == 400 and "'endpoint_id'" in body["reason"]
    # the same name by another owner is another endpoint
    assert register_endpoint(module_service, bob)["endpoint_id"] != endpoint_id


def test_register_names_bad_fields(module_service):
    cases = [({}, "'name': missing"), ({"name": ""}, "'name': empty"), ({"name": "a", "public": 1}, "'public'"),
             ({"name": "a", "allowed_functions": "f"}, "'allowed_functions': expected a list"),
             ({"name": "a", "allowed_functions": ["f"]}, "'allowed_functions[0]'"),
             ({"name": "a", "shared_with": ["ghost"]}, "'shared_with[0]': no user named 'ghost'")]
    for fields, named in cases:
        status, body = call(module_service, "POST", "/v1/endpoints", fields)
        assert status == 400 and named in body["reason"], (fields, body)
    unknown = str(uuid.uuid4())
    status, body = call(module_service, "POST", "/v1/endpoints", {"name": "a", "allowed_functions": [unknown]})
    assert status == 404 and unknown in body["reason"]


def test_who_sees_and_sends_to_an_endpoint(module_service):
    names = [unique(n) for n in ("alice", "bob", "carol")]
    alice, bob, carol = (add_user(module_service, n) for n in names)
    function_id = register_function(module_service, alice, public=True)
    private = register_endpoint(module_service, alice, name="private")["endpoint_id"]
    shared = register_endpoint(module_service, alice, name="shared", shared_with=[names[1]])["endpoint_id"]
    public = register_endpoint(module_service, alice, name="public", public=True)["endpoint_id"]

    def listed(token):
        status, body = call(module_service, "GET", "/v1/endpoints", token=token)
        assert status == 200
        return {e["endpoint_id"] for e in body["endpoints"]}

    assert listed(alice) == {private, shared, public}
    assert listed(bob) == {shared, public}
    assert listed(carol) == {public}
    for endpoint_id, allowed in ((private, {alice}), (shared, {alice, bob}), (public, {alice, bob, carol})):
        for token in (alice, bob, carol):
            status, body = submit(module_service, function_id, endpoint_id, token)
            assert (status == 200) == (token in allowed), (endpoint_id, body)
            if status != 200:
                assert status == 403 and endpoint_id in body["reason"]
            code = call(module_service, "GET", f"/v1/endpoints/{endpoint_id}/status", token=token)[0]
            assert code == (200 if token in allowed else 403)


def test_status_of_an_endpoint_that_never_connected(module_service):
    endpoint_id = register_endpoint(module_service, name=unique("laptop"))["endpoint_id"]
    status, body = call(module_service, "GET", f"/v1/endpoints/{endpoint_id}/status")
    assert status == 200 and body == {"status": "offline", "details": {}, "last_seen": None}
    unknown = str(uuid.uuid4())
    status, body = call(module_service, "GET", f"/v1/endpoints/{unknown}/status")
    assert status == 404 and unknown in body["reason"]


def test_allowed_functions_are_checked_at_submit(module_service):
    allowed = register_function(module_service)
    other = register_function(module_service)
    endpoint_id = register_endpoint(module_service, name=unique("laptop"), allowed_functions=[allowed])["endpoint_id"]
    assert submit(module_service, allowed, endpoint_id)[0] == 200
    status, body = submit(module_service, other, endpoint_id)
    assert status == 403 and body["error"] == "function_not_allowed"
    assert other in body["reason"] and endpoint_id in body["reason"] and "allowed_functions" in body["reason"]


def test_delete_only_by_the_owner_and_its_tasks_fail(module_service):
    names = [unique("alice"), unique("bob")]
    alice, bob = (add_user(module_service, n) for n in names)
    function_id = register_function(module_service, alice, public=True)
    endpoint_id = register_endpoint(module_service, alice, shared_with=[names[1]])["endpoint_id"]
    status, submitted = submit(module_service, function_id, endpoint_id, bob, n=3)
    assert status == 200
    status, body = call(module_service, "DELETE", f"/v1/endpoints/{endpoint_id}", token=bob)
    assert status == 403 and "owner" in body["reason"]
    assert call(module_service, "DELETE", f"/v1/endpoints/{endpoint_id}", token=alice) == (200, {"deleted": True})
    status, body = call(module_service, "POST", "/v1/batch_status", {"task_ids": submitted["task_ids"]}, token=bob)
    for task in body["results"].values():
        assert task["status"] == FAILED and not task["pending"]
        lost = deserialize(api.unb64(task["exception"], "exception"))
        assert isinstance(lost, EndpointLost) and endpoint_id in str(lost) and "deleted" in str(lost)
    status, body = call(module_service, "GET", f"/v1/endpoints/{endpoint_id}", token=alice)
    assert status == 404 and endpoint_id in body["reason"]
    assert call(module_service, "DELETE", f"/v1/endpoints/{endpoint_id}", token=alice)[0] == 404
