"""Running it: health, request ids, the access log, metrics, the per-key rate
limit and the OpenAPI document."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
from litestar.testing import AsyncTestClient

from licentric.app import create_app
from licentric.observability import JsonFormatter

from support import assert_error, bearer, create_key

GENERATED_ID = re.compile(r"^req_[0-9a-f]{32}$")


async def test_healthz_answers_without_a_key(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path", "authorized"),
    [
        ("GET", "/healthz", False),
        ("GET", "/v1/account", True),
        ("GET", "/v1/account", False),  # 401
        ("GET", "/v1/nope", False),  # 404 for no route
        ("DELETE", "/v1/account", True),  # 405
        ("GET", "/metrics", False),
        ("GET", "/schema/openapi.json", False),
    ],
)
async def test_every_response_carries_a_request_id(client, account, method, path, authorized):
    response = await client.request(method, path, headers=account.headers if authorized else {})
    assert GENERATED_ID.match(response.headers["x-request-id"])


async def test_each_request_gets_its_own_id(client):
    ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


@pytest.mark.parametrize("given", ["abc-123", "9f0c1d2e.trace:span_7", "x" * 128, str(uuid.uuid4())])
async def test_well_formed_incoming_request_id_is_echoed(client, account, given):
    response = await client.get("/v1/nope", headers={"X-Request-Id": given})
    assert response.headers["x-request-id"] == given


@pytest.mark.parametrize("given", ["", "has space", "x" * 129, "semi;colon", 'quote"d', "ünï"])
async def test_malformed_incoming_request_id_is_replaced(client, given):
    response = await client.get("/healthz", headers={"X-Request-Id": given.encode()})
    assert GENERATED_ID.match(response.headers["x-request-id"])


@pytest.fixture
def access_log_lines() -> Iterator[io.StringIO]:
    """What the access logger writes, formatted as the app formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("licentric.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_each_request_writes_one_json_access_log_line_with_its_request_id(
    client, account, access_log_lines
):
    ok = await client.get("/v1/account", headers={**account.headers, "X-Request-Id": "trace-me-1"})
    missing = await client.get("/v1/nope")
    denied = await client.get("/v1/account")
    lines = [json.loads(line) for line in access_log_lines.getvalue().splitlines()]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/v1/account", 200),
        ("GET", "/v1/nope", 404),
        ("GET", "/v1/account", 401),
    ]
    assert [line["request_id"] for line in lines] == [
        "trace-me-1",
        missing.headers["x-request-id"],
        denied.headers["x-request-id"],
    ]
    assert ok.status_code == 200
    for line in lines:
        assert line["logger"] == "licentric.access"
        assert line["level"] == "info"
        assert isinstance(line["duration_ms"], float | int)
        assert line["time"].endswith("Z")
    # Keys never reach the log.
    assert account.secret_key not in access_log_lines.getvalue()


async def test_the_app_logs_json_from_the_root_logger(settings):
    create_app(settings)
    assert any(isinstance(handler.formatter, JsonFormatter) for handler in logging.getLogger().handlers)


def request_count(metrics: str, method: str, path: str, status: int) -> float:
    labels = f'app_name="licentric",method="{method}",path="{path}",status_code="{status}"'
    pattern = re.compile(rf"^licentric_requests_total\{{{re.escape(labels)}\}} (\S+)$", re.MULTILINE)
    found = pattern.search(metrics)
    return float(found.group(1)) if found else 0.0


async def test_metrics_count_requests_by_route_template_and_status(client, account):
    before = (await client.get("/metrics")).text
    key = await create_key(client, account.headers)
    await client.get(f"/v1/api_keys/{key['id']}", headers=account.headers)
    await client.get(f"/v1/api_keys/{uuid.uuid4()}", headers=account.headers)
    await client.get("/v1/account")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    assert "# TYPE licentric_requests_total counter" in after
    assert "licentric_request_duration_seconds_bucket" in after
    template = "/v1/api_keys/{api_key_id}"
    for method, path, status in (
        ("POST", "/v1/api_keys", 201),
        ("GET", template, 200),
        ("GET", template, 404),
        ("GET", "/v1/account", 401),
    ):
        assert request_count(after, method, path, status) == request_count(before, method, path, status) + 1
    # Ids are grouped under the route, not one series per id.
    assert key["id"] not in after


async def test_metrics_do_not_count_themselves(client):
    await client.get("/metrics")
    assert 'path="/metrics"' not in (await client.get("/metrics")).text


@pytest.fixture
async def limited_client(settings) -> AsyncIterator[AsyncTestClient]:
    # A secret key of its own keys the client address hash, so the failed authentications of other tests
    # (all from the test client's one address, counted in the shared database) do not count here.
    limited = replace(settings, rate_limit_per_minute=3, secret_key=os.urandom(32))
    async with AsyncTestClient(app=create_app(limited)) as test_client:
        yield test_client


async def test_fourth_request_in_a_minute_with_one_key_is_rate_limited(limited_client, client, account):
    limited_key = bearer((await create_key(client, account.headers))["secret"])
    for _ in range(3):
        assert (await limited_client.get("/v1/account", headers=limited_key)).status_code == 200
    response = await limited_client.get("/v1/account", headers=limited_key)
    error = assert_error(response, 429, "rate_limited", None)
    assert response.json()["error"]["type"] == "rate_limit_error"
    assert 0 < int(response.headers["retry-after"]) <= 60
    assert error["message"]
    # Limited per key: another key of the same account (used once, to make this one) is unaffected.
    assert (await limited_client.get("/v1/account", headers=account.headers)).status_code == 200
    # Limited on every route, not per route.
    assert_error(await limited_client.get("/v1/api_keys", headers=limited_key), 429, "rate_limited")


async def test_requests_without_a_key_are_rate_limited_by_address_and_counted(limited_client):
    def refused(metrics: str) -> float:
        found = re.search(r"^licentric_rate_limited_total (\S+)$", metrics, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    before = (await limited_client.get("/metrics")).text
    statuses = [(await limited_client.get("/v1/account")).status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    assert refused((await limited_client.get("/metrics")).text) == refused(before) + 1


async def test_health_metrics_and_schema_are_never_rate_limited(limited_client):
    for path in ("/healthz", "/metrics", "/schema/openapi.json"):
        assert [(await limited_client.get(path)).status_code for _ in range(5)] == [200] * 5


@pytest.fixture(scope="module")
def openapi(settings) -> dict:
    return create_app(settings).openapi_schema.to_schema()


EXPECTED_OPERATIONS = {
    ("get", "/healthz"): "getHealth",
    ("get", "/v1/account"): "getAccount",
    ("get", "/v1/agents"): "listAgents",
    ("post", "/v1/agents"): "createAgent",
    ("get", "/v1/agents/me"): "getCurrentAgent",
    ("post", "/v1/usage/events"): "ingestUsageEvents",
    ("post", "/v1/budgets/check"): "checkBudget",
    ("get", "/v1/budgets"): "listBudgets",
    ("post", "/v1/budgets"): "createBudget",
    ("get", "/v1/budgets/{budget_id}"): "getBudget",
    ("post", "/v1/budgets/{budget_id}"): "updateBudget",
    ("delete", "/v1/budgets/{budget_id}"): "deleteBudget",
    ("get", "/v1/meters"): "listMeters",
    ("post", "/v1/meters"): "createMeter",
    ("get", "/v1/meters/{meter_id}"): "getMeter",
    ("post", "/v1/meters/{meter_id}"): "updateMeter",
    ("post", "/v1/meters/{meter_id}/archive"): "archiveMeter",
    ("get", "/v1/usage"): "getUsage",
    ("get", "/v1/agents/{agent_id}"): "getAgent",
    ("post", "/v1/agents/{agent_id}"): "updateAgent",
    ("post", "/v1/agents/{agent_id}/revoke"): "revokeAgent",
    ("post", "/v1/agents/{agent_id}/roll"): "rollAgentToken",
    ("get", "/v1/api_keys"): "listApiKeys",
    ("post", "/v1/api_keys"): "createApiKey",
    ("delete", "/v1/api_keys/{api_key_id}"): "revokeApiKey",
    ("get", "/v1/api_keys/{api_key_id}"): "getApiKey",
    ("post", "/v1/api_keys/{api_key_id}/roll"): "rollApiKey",
    ("get", "/v1/customers"): "listCustomers",
    ("post", "/v1/customers"): "createCustomer",
    ("get", "/v1/customers/{customer_id}"): "getCustomer",
    ("post", "/v1/customers/{customer_id}"): "updateCustomer",
    ("get", "/v1/entitlements"): "listEntitlements",
    ("post", "/v1/entitlements"): "createEntitlement",
    ("post", "/v1/entitlements/check"): "checkEntitlement",
    ("get", "/v1/entitlements/{entitlement_id}"): "getEntitlement",
    ("post", "/v1/entitlements/{entitlement_id}"): "updateEntitlement",
    ("get", "/v1/events"): "listEvents",
    ("get", "/v1/events/{event_id}"): "getEvent",
    ("get", "/v1/license_policies"): "listLicensePolicies",
    ("post", "/v1/license_policies"): "createLicensePolicy",
    ("get", "/v1/license_policies/{license_policy_id}"): "getLicensePolicy",
    ("post", "/v1/license_policies/{license_policy_id}"): "updateLicensePolicy",
    ("post", "/v1/license_policies/{license_policy_id}/archive"): "archiveLicensePolicy",
    ("delete", "/v1/license_policies/{license_policy_id}/entitlements/{code}"): "detachEntitlement",
    ("put", "/v1/license_policies/{license_policy_id}/entitlements/{code}"): "attachEntitlement",
    ("get", "/v1/licenses"): "listLicenses",
    ("post", "/v1/licenses"): "createLicense",
    ("post", "/v1/licenses/validate"): "validateLicense",
    ("get", "/v1/licenses/{license_id}"): "getLicense",
    ("post", "/v1/licenses/{license_id}"): "updateLicense",
    ("post", "/v1/licenses/{license_id}/cancel"): "cancelLicense",
    ("post", "/v1/licenses/{license_id}/change_policy"): "changeLicensePolicy",
    ("get", "/v1/licenses/{license_id}/entitlements"): "listLicenseEntitlements",
    ("delete", "/v1/licenses/{license_id}/entitlements/{code}"): "removeLicenseEntitlement",
    ("put", "/v1/licenses/{license_id}/entitlements/{code}"): "setLicenseEntitlement",
    ("post", "/v1/licenses/{license_id}/billing_portal_session"): "createBillingPortalSession",
    ("get", "/v1/licenses/{license_id}/machines"): "listMachines",
    ("post", "/v1/licenses/{license_id}/machines"): "activateMachine",
    ("post", "/v1/licenses/{license_id}/reinstate"): "reinstateLicense",
    ("post", "/v1/licenses/{license_id}/renew"): "renewLicense",
    ("post", "/v1/licenses/{license_id}/suspend"): "suspendLicense",
    ("get", "/v1/licenses/{license_id}/users"): "listLicenseUsers",
    ("post", "/v1/licenses/{license_id}/users"): "addLicenseUser",
    ("delete", "/v1/licenses/{license_id}/users/{user_id}"): "removeLicenseUser",
    ("delete", "/v1/machines/{machine_id}"): "deactivateMachine",
    ("get", "/v1/machines/{machine_id}"): "getMachine",
    ("post", "/v1/machines/{machine_id}/heartbeat"): "heartbeatMachine",
    ("post", "/v1/machines/{machine_id}/transfer"): "transferMachine",
    ("delete", "/v1/stripe/connection"): "deleteStripeConnection",
    ("get", "/v1/stripe/connection"): "listStripeConnections",
    ("put", "/v1/stripe/connection"): "putStripeConnection",
    ("get", "/v1/stripe/events"): "listStripeEvents",
    ("get", "/v1/stripe/events/{stripe_event_id}"): "getStripeEvent",
    ("post", "/v1/stripe/events/{stripe_event_id}/reprocess"): "reprocessStripeEvent",
    ("get", "/v1/stripe/mappings"): "listStripeMappings",
    ("post", "/v1/stripe/mappings"): "createStripeMapping",
    ("delete", "/v1/stripe/mappings/{mapping_id}"): "deleteStripeMapping",
    ("post", "/v1/stripe/webhooks/{account_id}"): "receiveStripeWebhook",
    ("get", "/v1/webhook_endpoints"): "listWebhookEndpoints",
    ("post", "/v1/webhook_endpoints"): "createWebhookEndpoint",
    ("get", "/v1/webhook_endpoints/{endpoint_id}"): "getWebhookEndpoint",
    ("post", "/v1/webhook_endpoints/{endpoint_id}"): "updateWebhookEndpoint",
    ("delete", "/v1/webhook_endpoints/{endpoint_id}"): "deleteWebhookEndpoint",
    ("get", "/v1/webhook_endpoints/{endpoint_id}/secret"): "getWebhookEndpointSecret",
    ("post", "/v1/webhook_endpoints/{endpoint_id}/rotate_secret"): "rotateWebhookEndpointSecret",
    ("post", "/v1/webhook_endpoints/{endpoint_id}/test"): "sendTestWebhook",
    ("post", "/v1/webhook_endpoints/{endpoint_id}/replay"): "replayWebhookEndpoint",
    ("get", "/v1/webhook_deliveries"): "listWebhookDeliveries",
    ("get", "/v1/webhook_deliveries/{delivery_id}"): "getWebhookDelivery",
    ("post", "/v1/webhook_deliveries/{delivery_id}/retry"): "retryWebhookDelivery",
    ("get", "/v1/portal/branding"): "getPortalSettings",
    ("put", "/v1/portal/branding"): "updatePortalSettings",
    ("get", "/v1/members"): "listMembers",
    ("get", "/v1/members/{member_id}"): "getMember",
    ("post", "/v1/members/{member_id}"): "updateMember",
    ("delete", "/v1/members/{member_id}"): "removeMember",
    ("post", "/v1/members/{member_id}/transfer_ownership"): "transferOwnership",
    ("get", "/v1/member_invitations"): "listMemberInvitations",
    ("post", "/v1/member_invitations"): "createMemberInvitation",
    ("delete", "/v1/member_invitations/{invitation_id}"): "revokeMemberInvitation",
}

# Routes without an API key: health, and Stripe's deliveries (signed instead).
UNAUTHENTICATED = {("get", "/healthz"), ("post", "/v1/stripe/webhooks/{account_id}")}


def operations(openapi: dict) -> dict[tuple[str, str], dict]:
    return {(method, path): op for path, item in openapi["paths"].items() for method, op in item.items()}


async def test_openapi_is_served_without_a_key(client, openapi):
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert response.json()["paths"].keys() == openapi["paths"].keys()


async def test_openapi_lists_every_route_with_its_operation_id(openapi):
    found = {route: op.get("operationId") for route, op in operations(openapi).items()}
    assert found == EXPECTED_OPERATIONS
    assert "/metrics" not in openapi["paths"]


async def test_openapi_declares_bearer_keys_for_every_route_but_health(openapi):
    scheme = openapi["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert openapi["security"] == [{"apiKey": []}]
    for route, op in operations(openapi).items():
        if route in UNAUTHENTICATED:
            assert op["security"] == [{}]
        else:
            assert "security" not in op, route  # the document's default applies


async def test_openapi_documents_the_error_body_for_every_error_response(openapi):
    schemas = openapi["components"]["schemas"]
    assert schemas["ErrorBody"]["required"] == ["error"]
    assert set(schemas["ErrorDetail"]["properties"]) == {"type", "code", "message", "param"}
    for route, op in operations(openapi).items():
        statuses = {int(status) for status in op["responses"]}
        errors = {status for status in statuses if status >= 400}
        if route not in UNAUTHENTICATED:
            assert {400, 401, 403, 429, 503} <= errors, route
        for status in errors:
            content = op["responses"][str(status)]["content"]["application/json"]
            assert content["schema"] == {"$ref": "#/components/schemas/ErrorBody"}, (route, status)


@pytest.mark.parametrize(
    ("route", "statuses"),
    [
        (("get", "/healthz"), {503}),
        (("get", "/v1/api_keys"), {422}),
        (("post", "/v1/api_keys"), {409, 422}),
        (("get", "/v1/api_keys/{api_key_id}"), {404}),
        (("post", "/v1/api_keys/{api_key_id}/roll"), {404, 409, 422}),
        (("delete", "/v1/api_keys/{api_key_id}"), {404, 409}),
    ],
)
async def test_openapi_lists_the_errors_each_route_can_give(openapi, route, statuses):
    assert statuses <= {int(status) for status in operations(openapi)[route]["responses"]}


async def test_openapi_documents_idempotency_key_on_every_post(openapi):
    posts = {
        route: op
        for route, op in operations(openapi).items()
        if route[0] == "post" and route not in UNAUTHENTICATED
    }
    assert posts
    for route, op in posts.items():
        headers = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}
        assert "Idempotency-Key" in headers, route
        assert headers["Idempotency-Key"]["schema"]["maxLength"] == 255
    for route, op in operations(openapi).items():
        if route[0] != "post":
            assert all(p["name"] != "Idempotency-Key" for p in op.get("parameters", [])), route


async def test_openapi_documents_list_parameters_and_bodies(openapi):
    ops = operations(openapi)
    listed = {p["name"]: p for p in ops[("get", "/v1/api_keys")]["parameters"]}
    assert set(listed) == {"limit", "starting_after", "ending_before"}
    assert (listed["limit"]["schema"]["minimum"], listed["limit"]["schema"]["maximum"]) == (1, 100)
    body = ops[("post", "/v1/api_keys")]["requestBody"]["content"]["application/json"]["schema"]
    create = openapi["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert create["required"] == ["kind"]
    assert "201" in ops[("post", "/v1/api_keys")]["responses"]
