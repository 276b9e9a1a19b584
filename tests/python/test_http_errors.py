"""Failures over HTTP: every one leaves as the same JSON error body with the
right status, and no input, however malformed, gives a 500."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import assert_error, bearer, create_key, well_formed_key, with_checksum


async def test_request_without_authorization_header_is_unauthenticated(client):
    response = await client.get("/v1/account")
    assert_error(response, 401, "unauthenticated", None)
    assert response.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer:", "Bearer-Token"])
async def test_a_valid_key_under_another_scheme_is_unauthenticated(client, account, scheme):
    response = await client.get("/v1/account", headers={"Authorization": f"{scheme} {account.secret_key}"})
    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer    ", ""])
async def test_bearer_without_a_key_is_unauthenticated(client, value):
    response = await client.get("/v1/account", headers={"Authorization": value})
    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: "lic_sk_xyz",
        lambda key: key[:-1],  # one character short
        lambda key: key + "0",  # one character long
        lambda key: key.upper(),  # keys are lowercase hex
        lambda key: "lic_ak_" + key[7:],  # a kind the format does not know
        lambda key: key.replace("lic_sk_", "sk_live_"),
        lambda key: key + "\u00e9",
    ],
    ids=["garbage", "short", "long", "uppercase", "unknown-prefix", "stripe-prefix", "non-ascii"],
)
async def test_malformed_key_is_unauthenticated(client, account, mangle):
    header = f"Bearer {mangle(account.secret_key)}".encode()
    response = await client.get("/v1/account", headers={"Authorization": header})
    assert_error(response, 401, "unauthenticated")


@pytest.mark.parametrize("position", [7, 20, 45, 60, -1])
async def test_key_with_one_changed_character_fails_its_checksum(client, account, position):
    key = account.secret_key
    changed = "0" if key[position] != "0" else "1"
    mistyped = key[:position] + changed + (key[position + 1 :] if position != -1 else "")
    response = await client.get("/v1/account", headers=bearer(mistyped))
    error = assert_error(response, 401, "unauthenticated")
    assert "mistyped" in error["message"]


async def test_well_formed_key_that_was_never_issued_is_unauthenticated(client, account):
    for key in (well_formed_key(account.id), well_formed_key(), well_formed_key(account.id, "lic_pk_")):
        assert with_checksum(key[:-8]) == key
        response = await client.get("/v1/account", headers=bearer(key))
        error = assert_error(response, 401, "unauthenticated")
        assert "mistyped" not in error["message"]  # it passed the checksum and was looked up


async def test_the_checksum_helper_matches_the_keys_the_database_issues(account):
    assert with_checksum(account.secret_key[:-8]) == account.secret_key


async def test_expired_key_is_unauthenticated(client, account, database_url):
    extra = await create_key(client, account.headers)
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "update lic.api_keys set expires_at = now() - interval '1 second' where id = %s", (extra["id"],)
        )
    response = await client.get("/v1/account", headers=bearer(extra["secret"]))
    error = assert_error(response, 401, "unauthenticated")
    assert "expired" in error["message"]
    assert (await client.get("/v1/account", headers=account.headers)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/account", None),
        ("POST", "/v1/api_keys", {"kind": "secret"}),
        ("GET", "/v1/api_keys", None),
        ("GET", "/v1/api_keys/{id}", None),
        ("POST", "/v1/api_keys/{id}/roll", None),
        ("DELETE", "/v1/api_keys/{id}", None),
    ],
)
async def test_publishable_key_is_forbidden_on_secret_only_routes(client, account, method, path, body):
    publishable = await create_key(client, account.headers, "publishable")
    response = await client.request(
        method, path.format(id=publishable["id"]), headers=bearer(publishable["secret"]), json=body
    )
    assert_error(response, 403, "forbidden")
    assert response.json()["error"]["type"] == "permission_error"
    # Nothing was done on its behalf: the account still has exactly its two keys, none revoked.
    listed = (await client.get("/v1/api_keys", headers=account.headers)).json()["data"]
    assert len(listed) == 2
    assert all(key["revoked_at"] is None for key in listed)


async def test_malformed_json_is_a_400(client, account):
    response = await client.post(
        "/v1/api_keys",
        headers={**account.headers, "Content-Type": "application/json"},
        content=b'{"kind": "secret"',
    )
    assert_error(response, 400, "invalid_request", None)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"kind": 5}, "kind"),
        ({"kind": "restricted"}, "kind"),
        ({"kind": "secret", "name": 7}, "name"),
        ({"kind": "secret", "name": ["a"]}, "name"),
        ({"kind": "secret", "colour": "red"}, "colour"),
        ({}, "kind"),
        ({"name": "no kind"}, "kind"),
    ],
    ids=["int-kind", "unknown-kind", "int-name", "list-name", "unknown-field", "empty", "missing-kind"],
)
async def test_invalid_body_is_a_422_naming_the_parameter(client, account, body, param):
    response = await client.post("/v1/api_keys", headers=account.headers, json=body)
    assert_error(response, 422, "invalid_parameter", param)


@pytest.mark.parametrize("body", [[], "secret", 1, None, True])
async def test_body_that_is_not_an_object_is_a_422(client, account, body):
    response = await client.post("/v1/api_keys", headers=account.headers, content=json.dumps(body).encode())
    assert_error(response, 422, "invalid_parameter", None)


async def test_missing_body_is_a_422(client, account):
    response = await client.post("/v1/api_keys", headers=account.headers)
    error = assert_error(response, 422, "invalid_parameter", None)
    assert "body" in error["message"]


async def test_value_the_database_rejects_is_a_422_not_a_500(client, account):
    response = await client.post(
        "/v1/api_keys", headers=account.headers, json={"kind": "secret", "name": "x" * 201}
    )
    error = assert_error(response, 422, "invalid_parameter")
    assert "lic." not in error["message"]  # internal names stay inside


async def test_nul_character_in_a_string_is_a_422_not_a_500(client, account):
    response = await client.post(
        "/v1/api_keys", headers=account.headers, json={"kind": "secret", "name": "a\x00b"}
    )
    assert_error(response, 422, "invalid_parameter")


async def test_invalid_uuid_in_path_is_a_route_not_found(client, account):
    response = await client.get("/v1/api_keys/not-a-uuid", headers=account.headers)
    assert_error(response, 404, "route_not_found", None)


async def test_unknown_id_in_path_is_resource_missing(client, account):
    response = await client.get(f"/v1/api_keys/{uuid.uuid4()}", headers=account.headers)
    assert_error(response, 404, "resource_missing", "id")


# "/" is the console's (test_console.py: it redirects there).
@pytest.mark.parametrize("path", ["/v1", "/v1/nope", "/v2/account", "/v1/account/extra"])
async def test_unknown_route_is_a_404_with_the_error_body(client, account, path):
    response = await client.get(path, headers=account.headers)
    assert_error(response, 404, "route_not_found", None)


async def test_unknown_route_is_a_404_even_without_a_key(client):
    assert_error(await client.get("/v1/nope"), 404, "route_not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/v1/api_keys", {"GET", "POST"}),
        ("PATCH", "/v1/account", {"GET"}),
        ("POST", "/v1/account", {"GET"}),
        ("GET", "/v1/api_keys/{id}/roll", {"POST"}),
    ],
)
async def test_wrong_method_is_a_405_with_allow(client, account, method, path, allowed):
    response = await client.request(method, path.format(id=uuid.uuid4()), headers=account.headers)
    assert_error(response, 405, "method_not_allowed")
    assert {m.strip() for m in response.headers["allow"].split(",")} >= allowed


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
api_key_bodies = st.fixed_dictionaries(
    {"kind": st.sampled_from(["secret", "publishable"])}, optional={"name": st.text() | json_values}
) | st.dictionaries(st.sampled_from(["kind", "name", "expires_at", "Kind"]), json_values)
raw_bodies = st.one_of(
    json_values.map(lambda value: json.dumps(value).encode()),
    api_key_bodies.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=64),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=raw_bodies)
async def test_no_request_body_makes_create_api_key_answer_500(client, account, body):
    response = await client.post(
        "/v1/api_keys", headers={**account.headers, "Content-Type": "application/json"}, content=body
    )
    assert response.status_code < 500, response.text
    if response.status_code != 201:
        assert_error(response, response.status_code, response.json()["error"]["code"])
        assert response.status_code in {400, 422}
