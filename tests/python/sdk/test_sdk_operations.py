"""Every operation of the API through the SDK against a real `licentric serve`, each answer checked; the
test fails if a call of some operationId is missing (so an operation added later must be added here too)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from licentric import __version__ as server_version
from licentric_sdk import AsyncLicentric, Licentric, _generated
from licentric_sdk.errors import AuthenticationError, NotFoundError

from fake_stripe import endpoint_secret
from licensing_support import superuser
from stripe_support import sign


def watch(client: Licentric | AsyncLicentric) -> set[str]:
    """The operationIds the client calls from now on."""
    called: set[str] = set()
    request = client._transport.request

    def noting(operation_id: str, **options: Any) -> Any:
        called.add(operation_id)
        return request(operation_id, **options)

    client._transport.request = noting  # type: ignore[method-assign]
    return called


def test_every_operation_through_the_sync_client(serve_url, make_account, serve_stripe, database_url):
    account = make_account(plan="starter")  # custom portal branding needs starter
    client = Licentric(account.secret_key, base_url=serve_url)
    called = watch(client)
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]

    assert client.operations.health() == {"status": "ok"}
    assert client.server_version == server_version
    assert client.account.get().id == account.id

    key = client.api_keys.create(kind="publishable", name="web")
    assert key.kind == "publishable" and key.secret.startswith("lic_pk_")
    assert key.id in {k.id for k in client.api_keys.list()}
    assert client.api_keys.get(key.id).name == "web"
    assert client.api_keys.roll(key.id).secret != key.secret
    assert client.api_keys.revoke(key.id).revoked_at is not None

    feature = client.entitlements.create(code=f"export-{tag}", name="Export")
    assert client.entitlements.get(feature.id).code == feature.code
    assert client.entitlements.update(feature.id, name="Export 4k").name == "Export 4k"
    assert feature.id in {e.id for e in client.entitlements.list()}

    policy = client.license_policies.create(code=f"pro-{tag}", name="Pro", max_machines=2, max_users=3)
    assert client.license_policies.get(policy.id).code == policy.code
    assert client.license_policies.update(policy.id, name="Pro plan").name == "Pro plan"
    assert feature.code in client.license_policies.attach_entitlement(policy.id, feature.code).entitlements
    assert (
        feature.code not in client.license_policies.detach_entitlement(policy.id, feature.code).entitlements
    )
    client.license_policies.attach_entitlement(policy.id, feature.code)
    assert policy.id in {p.id for p in client.license_policies.list()}
    other = client.license_policies.create(code=f"basic-{tag}", name="Basic")
    assert client.license_policies.archive(other.id).archived_at is not None

    customer = client.customers.create(
        email=f"{tag}@example.com", external_id=f"user-{tag}", stripe_customer_id=f"cus_{tag}"
    )
    assert client.customers.get(customer.id).email == f"{tag}@example.com"
    assert client.customers.update(customer.id, name="Ada").name == "Ada"
    assert [c.id for c in client.customers.list(external_id=f"user-{tag}")] == [customer.id]

    license = client.licenses.create(policy_code=policy.code, customer_id=customer.id)
    assert license.status == "active"
    assert client.licenses.get(license.id).key == license.key
    assert client.licenses.update(license.id, metadata={"seat": 1}).metadata == {"seat": 1}
    assert license.id in {lic.id for lic in client.licenses.list(status="active")}
    assert feature.code in {e.code for e in client.licenses.list_entitlements(license.id).data}
    granted = client.licenses.set_entitlement(license.id, feature.code, effect="revoke")
    assert feature.code not in {e.code for e in granted.data}
    assert feature.code in {e.code for e in client.licenses.remove_entitlement(license.id, feature.code).data}
    assert client.licenses.validate(key=license.key).code == "VALID"
    check = client.entitlements.check(feature.code, customer=f"user-{tag}")
    assert check.allowed and check.license_id == license.id
    [held] = client.entitlements.snapshot(customer=f"user-{tag}")
    assert held.found and held.entitlements[feature.code][0].license_id == license.id
    cursor = next(iter(client.entitlements.snapshot(limit=1).pages())).cursor
    assert client.entitlements.changes(cursor=cursor).cursor  # its content: test_sdk_local.py
    assert client.licenses.suspend(license.id, reason="fraud check").status == "suspended"
    assert not client.entitlements.check(feature.code, license_id=license.id).allowed
    assert client.licenses.reinstate(license.id).status == "active"
    yearly = client.license_policies.create(code=f"year-{tag}", name="Yearly", duration="P1Y")
    assert client.licenses.change_policy(license.id, policy_id=yearly.id).policy_id == yearly.id
    assert client.licenses.renew(license.id).expires_at > now + timedelta(days=300)
    client.licenses.change_policy(license.id, policy_id=policy.id)

    machine = client.machines.activate(license.id, fingerprint=f"fp-{tag}", name="laptop")
    assert client.machines.get(machine.id).fingerprint == f"fp-{tag}"
    assert client.machines.heartbeat(machine.id).last_heartbeat_at is not None
    assert [m.id for m in client.machines.list(license.id)] == [machine.id]
    signed = client.license_files.issue(license.id, fingerprint=f"fp-{tag}", ttl_seconds=3600)
    by_key = client.license_files.issue_by_key(key=license.key, fingerprint=f"fp-{tag}")
    assert signed.kid == by_key.kid == next(iter(client.signing_keys.list())).kid
    assert client.signing_keys.rotate().kid != signed.kid
    second = client.licenses.create(policy_code=policy.code, customer_id=customer.id)
    assert client.machines.transfer(machine.id, license_id=second.id).license_id == second.id
    assert client.machines.deactivate(machine.id).id == machine.id
    assert client.licenses.cancel(second.id, reason="moved").status == "canceled"

    user = client.license_users.add(license.id, email=f"member-{tag}@example.com")
    assert user.customer_id in {u.customer_id for u in client.license_users.list(license.id)}
    assert client.license_users.remove(license.id, user.customer_id).customer_id == user.customer_id

    agent = client.agents.create(name="bot", license_id=license.id)
    assert client.agents.get(agent.id).name == "bot"
    assert client.agents.update(agent.id, name="bot 2").name == "bot 2"
    assert agent.id in {a.id for a in client.agents.list()}
    rolled = client.agents.roll_token(agent.id)
    assert rolled.token and rolled.token != agent.token
    with Licentric(rolled.token, base_url=serve_url) as as_agent:
        agent_called = watch(as_agent)
        assert as_agent.agents.get_current().id == agent.id
    assert client.agents.revoke(agent.id).status == "revoked"

    meter = client.meters.create(code=f"tokens-{tag}", name="Tokens", aggregation="sum")
    assert client.meters.get(meter.id).code == meter.code
    assert client.meters.update(meter.id, name="LLM tokens").name == "LLM tokens"
    assert meter.id in {m.id for m in client.meters.list()}
    budget = client.budgets.create(meter_code=meter.code, license_id=license.id, period="day", limit="100")
    assert client.budgets.get(budget.id).limit == "100"
    assert client.budgets.update(budget.id, limit="150").limit == "150"
    assert [b.id for b in client.budgets.list(license_id=license.id)] == [budget.id]
    ingest = client.usage.ingest(
        events=[_generated.UsageEvent(id=f"e-{tag}", meter=meter.code, quantity=40, license_id=license.id)]
    )
    assert (ingest.accepted, ingest.duplicates) == (1, 0)
    budget_check = client.budgets.check(meter_code=meter.code, license_id=license.id, amount="200")
    assert not budget_check.allowed and budget_check.remaining == "110"
    rows = client.usage.query(
        meter_code=meter.code, from_=now - timedelta(days=1), to=now + timedelta(days=1)
    )
    assert sum(float(row.value) for row in rows.data) == 40
    assert client.budgets.delete(budget.id).id == budget.id
    assert client.meters.archive(meter.id).archived_at is not None

    events = list(client.events.list(type="license.created", limit=2))
    assert {e.type for e in events} == {"license.created"} and len(events) >= 2
    assert client.events.get(events[0].id).id == events[0].id

    endpoint = client.webhooks.create_endpoint(
        url="http://127.0.0.1:9/hook", event_types=["license.suspended"]
    )
    assert endpoint.secret and endpoint.secret.startswith("whsec_")
    assert client.webhooks.get_endpoint(endpoint.id).secret is None
    assert client.webhooks.get_endpoint_secret(endpoint.id).secret == endpoint.secret
    assert client.webhooks.update_endpoint(endpoint.id, description="ops").description == "ops"
    assert endpoint.id in {e.id for e in client.webhooks.list_endpoints()}
    assert client.webhooks.rotate_endpoint_secret(endpoint.id).secret != endpoint.secret
    delivery = client.webhooks.send_test(endpoint.id)
    assert delivery.event_type == "ping"
    assert client.webhooks.get_delivery(delivery.id).endpoint_id == endpoint.id
    assert delivery.id in {d.id for d in client.webhooks.list_deliveries(endpoint_id=endpoint.id)}
    assert client.webhooks.retry_delivery(delivery.id).id == delivery.id
    assert client.webhooks.replay_endpoint(endpoint.id, since=now - timedelta(hours=1)).replayed >= 0
    assert client.webhooks.delete_endpoint(endpoint.id).id == endpoint.id

    connection = client.stripe.put_connection(
        api_key=f"sk_test_{tag}", portal_return_url="https://acme.test/"
    )
    assert connection.livemode is False
    stripe_secret = endpoint_secret(f"/v1/stripe/webhooks/{account.id}")
    assert [c.livemode for c in client.stripe.list_connections().data] == [False]
    serve_stripe.put({"id": f"cus_{tag}", "object": "customer"})
    portal = client.licenses.create_billing_portal_session(license.id)
    assert portal.url.startswith("http")
    mapping = client.stripe.create_mapping(stripe_price_id=f"price_{tag}", policy_code=policy.code)
    assert mapping.id in {m.id for m in client.stripe.list_mappings()}
    event = {
        "id": f"evt_{tag}",
        "object": "event",
        "type": "customer.created",
        "livemode": False,
        "created": int(time.time()),
        "data": {"object": {"id": f"cus_{tag}", "object": "customer"}},
    }
    payload = msgspec.json.encode(event)
    received = client.stripe.receive_webhook(
        account.id, payload=event, stripe_signature=sign(payload, stripe_secret)
    )
    assert received.outcome in {"ignored", "applied"} and received.id
    assert client.stripe.get_event(received.id).stripe_event_id == f"evt_{tag}"
    assert received.id in {e.id for e in client.stripe.list_events()}
    assert client.stripe.reprocess_event(received.id).stripe_event_id == f"evt_{tag}"
    assert client.stripe.delete_mapping(mapping.id).id == mapping.id
    assert client.stripe.delete_connection(livemode=False).livemode is False

    assert client.portal.update_settings(product_name="Acme", slug=f"acme-{tag}").product_name == "Acme"
    assert client.portal.get_settings().product_name == "Acme"

    def member(role: str) -> str:  # a member as sign-in or an accepted invitation would make it
        [row] = superuser(
            database_url,
            "insert into lic.members (account_id, email, role) values (%s, %s, %s) returning id::text",
            (account.id, f"{role}-{tag}@example.com", role),
        )
        return row["id"]

    owner, developer = member("owner"), member("developer")
    invitation = client.members.create_invitation(email=f"new-{tag}@example.com", role="viewer")
    assert invitation.id in {i.id for i in client.members.list_invitations()}
    assert client.members.revoke_invitation(invitation.id).revoked_at is not None
    assert client.members.get(developer).role == "developer"
    assert client.members.update(developer, role="admin").role == "admin"
    assert client.members.transfer_ownership(developer).role == "owner"
    assert {owner, developer} <= {m.id for m in client.members.list()}
    assert client.members.remove(owner).id == owner

    with pytest.raises(NotFoundError) as missing:
        client.licenses.get(str(uuid.uuid4()))
    assert (missing.value.status, missing.value.code, missing.value.type) == (
        404,
        "resource_missing",
        "invalid_request_error",
    )
    with pytest.raises(AuthenticationError):  # the key was revoked above
        Licentric(key.secret, base_url=serve_url).licenses.list().pages().__next__()
    client.close()
    assert called | agent_called == set(_generated.OPERATIONS)
