"""Stripe auto-sync end to end: signed deliveries to POST /v1/stripe/webhooks/{account_id}, asserted
against the contract in docs/stripe.md (the status model and the outcomes).

One test (or parametrised group) per adversarial scenario of
/work/shared/reference/stripe-webhooks.md §4, named after it, with its number in a comment. Scenarios
12-20 (signatures, tampering, header fuzzing, rotation, mode secrets, clock skew, malformed and thin
bodies) are the webhook route's own tests (test_stripe_webhook_signature.py). Scenario 35 (the API-version
matrix) is the `api_version` parameter: every scenario that reads version-dependent fields runs with
pre-basil (2020-08-27) and basil (2025-03-31.basil) payloads, and the full lifecycle compares the two.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import psycopg
import pytest

from license_helpers import make_customer, make_entitlement, superuser
from licensing_support import live_server
from stripe_events import (
    BASIL,
    DAY,
    MONTH,
    PRE_BASIL,
    VERSIONS,
    Item,
    Line,
    Price,
    Story,
    Tenant,
    epoch,
    event,
    invoice,
    new_id,
    one_off_checkout,
    open_tenant,
    redelivered,
    with_line_items,
)
from stripe_support import deliver, sign

OpenTenant = Callable[..., Awaitable[Tenant]]


@pytest.fixture(params=VERSIONS, ids=["pre-basil", "basil"])
def api_version(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def open_(client, make_account, database_url) -> OpenTenant:
    """A fresh account connected with a pasted signing secret (no API key: nothing is refetched)."""

    async def make(policies: dict[str, Price | None], **options: Any) -> Tenant:
        return await open_tenant(client, make_account(), database_url, policies, **options)

    return make


@pytest.fixture
def open_keyed(client, make_account, database_url, fake_stripe) -> OpenTenant:
    """A fresh account connected with an API key to the fake Stripe, which Licentric refetches from."""

    async def make(policies: dict[str, Price | None], **options: Any) -> Tenant:
        key = f"rk_test_{new_id('k')[2:]}"
        return await open_tenant(client, make_account(), database_url, policies, api_key=key, **options)

    return make


async def subscribe(tenant: Tenant, story: Story, at: int = 1) -> list[dict[str, Any]]:
    """customer.subscription.created and the first invoice.paid; the licenses they give."""
    created = await tenant.send(story.sub("customer.subscription.created", at))
    assert created["outcome"] == "applied", created
    paid = await tenant.send(story.invoice_paid(at + 1))
    assert paid["outcome"] == "applied", paid
    return await tenant.licenses()


def grace_sweep(database_url: str) -> int:
    """worker.suspend_overdue_licenses as the worker role runs it."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("set role lic_worker")
        return conn.execute("select worker.suspend_overdue_licenses()").fetchone()[0]


def fetched_subscriptions(fake_stripe: Any, subscription_id: str) -> int:
    """How many times the app fetched this subscription from the fake Stripe."""
    return sum(
        1
        for _method, path, _params in fake_stripe.requests
        if path.endswith(f"/subscriptions/{subscription_id}")
    )


# 1-3: duplicates


async def test_exact_duplicate_sequential_is_applied_once(open_, api_version):
    # Scenario 1: the same evt_ twice -> one effect; the second answers duplicate; both 2xx.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    created = story.sub("customer.subscription.created", 1)
    first = await tenant.send(created)
    again = await tenant.send(created)
    assert first["outcome"] == "applied"
    assert again["outcome"] == "duplicate"
    assert again["stripe_event_id"] == first["stripe_event_id"] == created["id"]
    assert again["id"] == first["id"]
    [license_] = await tenant.licenses()
    assert first["licenses"] == [license_["id"]]
    assert [e["stripe_event_id"] for e in await tenant.ledger()] == [created["id"]]
    assert len(await tenant.events("license.created")) == 1


async def test_exact_duplicate_concurrent_is_applied_once(open_, settings):
    # Scenario 2: the same signed delivery several times at once (real parallel connections) -> exactly
    # one apply, the rest duplicate, no unique-violation 500.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro)
    body = json.dumps(story.sub("customer.subscription.created", 1))
    header = sign(body, tenant.secret)
    with live_server(settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            responses = await asyncio.gather(
                *(deliver(http, tenant.account, body, tenant.secret, header=header) for _ in range(8))
            )
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert sorted(r.json()["outcome"] for r in responses) == ["applied"] + ["duplicate"] * 7
    assert len({r.json()["id"] for r in responses}) == 1
    assert len(await tenant.ledger()) == 1
    assert len(await tenant.licenses()) == 1
    assert len(await tenant.events("license.created")) == 1


async def test_triad_delivered_concurrently_gives_one_license(open_, settings, api_version):
    # Scenarios 2 and 9 together: checkout, subscription.created and invoice.paid racing each other
    # (autumn#1548: the race created duplicate rows) -> one customer, one license.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    triad = [story.checkout(1), story.sub("customer.subscription.created", 2), story.invoice_paid(3)]
    with live_server(settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            responses = await asyncio.gather(
                *(deliver(http, tenant.account, evt, tenant.secret) for evt in triad * 3)
            )
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    assert sorted(r.json()["outcome"] for r in responses).count("duplicate") == 6
    license_ = await tenant.license()
    assert license_["status"] == "active"
    assert epoch(license_["paid_through"]) == story.period[1]
    customers = await tenant.customers()
    assert [(c["external_id"], c["stripe_customer_id"]) for c in customers] == [
        (story.external_id, story.customer)
    ]
    assert len(await tenant.events("license.created")) == 1


async def test_whole_lifecycle_delivered_at_once_converges(open_, settings, api_version):
    # Scenarios 2 and 9 at scale: every event of a subscription's life, three copies each, all in
    # flight at once on real parallel connections -> the same licenses as delivered one by one in order.
    pro = Price()
    first = Story(pro, api_version=api_version)
    stories = [first, first.twin()]
    renewals = (new_id("in"), new_id("in"))
    runs = [lifecycle(story, renewals) for story in stories]
    in_order, at_once = await open_({"pro": pro}), await open_({"pro": pro})
    await in_order.send_all(*runs[0])
    with live_server(settings) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            responses = await asyncio.gather(
                *(deliver(http, at_once.account, evt, at_once.secret) for evt in runs[1] * 3)
            )
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses if r.status_code != 200]
    assert sum(r.json()["outcome"] == "duplicate" for r in responses) == 2 * len(runs[1])
    assert await at_once.state() == await in_order.state()


@pytest.mark.parametrize("kind", ["invoice", "subscription"])
async def test_same_change_in_two_events_has_one_effect(open_, api_version, kind):
    # Scenario 3: Stripe sometimes sends one change as two Event objects (two ids) -> one effect.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1))
    if kind == "invoice":
        change = story.invoice_paid(2)
    else:
        change = story.sub("customer.subscription.updated", 2, items=[Item(pro, 2, id=story.items[0].id)])
    first = await tenant.send(change)
    twin = await tenant.send(redelivered(change))
    assert first["outcome"] == "applied"
    assert twin["outcome"] in {"applied", "stale"}, twin
    license_ = await tenant.license()
    if kind == "invoice":
        assert epoch(license_["paid_through"]) == story.period[1]
    else:
        assert license_["seats"] == 2
    assert len(await tenant.events("license.updated")) == 1
    assert len(await tenant.events("license.created")) == 1


# 4-5: paid-through is a max


@pytest.mark.parametrize("first", ["invoice.paid", "invoice.payment_succeeded"])
async def test_invoice_paid_and_payment_succeeded_pay_once(open_, api_version, first):
    # Scenario 4: both paid events of one invoice, in both orders -> paid-through moves once.
    other = "invoice.payment_succeeded" if first == "invoice.paid" else "invoice.paid"
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1))
    for type_ in (first, other):
        assert (await tenant.send(story.invoice_paid(2, type_=type_)))["outcome"] == "applied"
    assert epoch((await tenant.license())["paid_through"]) == story.period[1]
    renewal, period = new_id("in"), story.period_n(2)
    for type_ in (first, other):
        await tenant.send(story.invoice_paid(10, type_=type_, invoice_id=renewal, period=period))
    license_ = await tenant.license()
    assert epoch(license_["paid_through"]) == period[1]  # one period more, not two
    assert license_["status"] == "active"


async def test_redelivered_renewal_does_not_extend_paid_through(open_, api_version):
    # Scenario 5: a renewal invoice.paid delivered again (a new event id), and an older invoice paid
    # late -> paid-through stays the latest paid period's end (a max, never + a period).
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await subscribe(tenant, story)
    renewal, period = new_id("in"), story.period_n(2)
    paid = story.invoice_paid(10, invoice_id=renewal, period=period)
    await tenant.send(paid)
    assert epoch((await tenant.license())["paid_through"]) == period[1]
    await tenant.send(redelivered(paid, created=paid["created"] + 60))
    await tenant.send(redelivered(story.invoice_paid(2), created=paid["created"] + 61))
    assert epoch((await tenant.license())["paid_through"]) == period[1]


# 6-8: order and terminal states


async def test_updated_active_before_created_incomplete_ends_active(open_, api_version):
    # Scenario 6: .updated(active) arrives before the older .created(incomplete) -> active.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    updated = story.sub("customer.subscription.updated", 2, status="active")
    created = story.sub("customer.subscription.created", 1, status="incomplete")
    assert (await tenant.send(updated))["outcome"] == "applied"
    assert (await tenant.send(created))["outcome"] == "stale"
    license_ = await tenant.license()
    assert license_["status"] == license_["effective_status"] == "active"
    assert (await tenant.validate(license_["key"]))["code"] == "VALID"


async def test_deleted_before_a_late_updated_active_stays_canceled(open_, api_version):
    # Scenario 7: .deleted, then a late .updated(active) -> canceled; no resurrection.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await subscribe(tenant, story)
    assert (await tenant.send(story.sub("customer.subscription.deleted", 5)))["outcome"] == "applied"
    late = await tenant.send(story.sub("customer.subscription.updated", 3, status="active"))
    assert late["outcome"] == "stale"
    later = await tenant.send(story.sub("customer.subscription.updated", 9, status="active"))
    assert later["outcome"] == "stale"  # after a terminal state, even a newer one
    license_ = await tenant.license()
    assert license_["status"] == license_["effective_status"] == "canceled"
    assert license_["canceled_at"] is not None
    assert (await tenant.validate(license_["key"]))["code"] == "CANCELED"


async def test_deleted_seen_first_never_gives_a_live_license(open_, api_version):
    # Scenario 7, the subscription's first event being .deleted: the older events cannot open it.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.deleted", 5))
    for evt in (story.sub("customer.subscription.updated", 3), story.sub("customer.subscription.created", 1)):
        assert (await tenant.send(evt))["outcome"] == "stale"
    await tenant.send(story.invoice_paid(2))
    assert {lic["status"] for lic in await tenant.licenses()} <= {"canceled"}
    assert len(await tenant.licenses()) <= 1


@pytest.mark.parametrize("type_", ["invoice.paid", "invoice.payment_succeeded"])
async def test_late_invoice_paid_after_deleted_stays_canceled(open_, api_version, type_):
    # Scenario 8: a renewal's paid event arriving after .deleted -> the license stays canceled.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await subscribe(tenant, story)
    await tenant.send(story.sub("customer.subscription.deleted", 20))
    late = await tenant.send(
        story.invoice_paid(10, type_=type_, invoice_id=new_id("in"), period=story.period_n(2))
    )
    assert late["outcome"] in {"stale", "applied"}, late
    license_ = await tenant.license()
    assert license_["status"] == license_["effective_status"] == "canceled"
    assert (await tenant.validate(license_["key"]))["code"] == "CANCELED"


# 9: the checkout triad


TRIAD = ("checkout", "created", "paid")


def triad_events(story: Story) -> dict[str, dict[str, Any]]:
    return {
        "checkout": story.checkout(3),
        "created": story.sub("customer.subscription.created", 1),
        "paid": story.invoice_paid(2),
    }


@pytest.mark.parametrize("refetch", [False, True], ids=["events-only", "refetch"])
async def test_checkout_triad_in_every_order_gives_the_same_license(
    client, make_account, database_url, fake_stripe, api_version, refetch
):
    # Scenario 9: all 6 orders of checkout.session.completed, customer.subscription.created and
    # invoice.paid -> the same account gets the same license (pay-rails#282, next-saas-stripe-starter#42).
    # events-only: no API key, so each event converges on its own; refetch: the fake Stripe serves the
    # subscription, so an event naming one not seen yet is completed by a fetch.
    pro = Price()
    story = Story(pro, api_version=api_version)
    events = triad_events(story)
    if refetch:
        fake_stripe.put(story.subscription())
    states = []
    for order in itertools.permutations(TRIAD):
        key = f"rk_test_{new_id('k')[2:]}" if refetch else None
        tenant = await open_tenant(client, make_account(), database_url, {"pro": pro}, api_key=key)
        answers = [await tenant.send(events[name]) for name in order]
        assert all(a["outcome"] in {"applied", "needs_refetch", "stale"} for a in answers), (order, answers)
        states.append((order, await tenant.state()))
    expected = {
        "licenses": [
            {
                "policy_code": "pro",
                "status": "active",
                "effective_status": "active",
                "seats": 1,
                "paid_through": states[0][1]["licenses"][0]["paid_through"],
                "expires_at": None,
                "grace_ends_at": None,
                "disputed": False,
                "stripe_subscription_id": story.subscription_id,
                "customer": (story.external_id, story.email, story.customer),
            }
        ],
        "customers": [(story.external_id, story.email, story.customer)],
    }
    assert epoch(expected["licenses"][0]["paid_through"]) == story.period[1]
    for order, state in states:
        assert state == expected, order


# 10: events before Checkout names the tenant's user


async def test_subscription_before_checkout_is_applied_then_linked_to_the_user(open_, api_version):
    # Scenario 10: a subscription and invoice for a customer no Checkout has named yet -> not dropped:
    # Licentric makes the customer from Stripe's id, and Checkout later fills in the tenant's user id
    # and email on that same customer.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    [license_] = await subscribe(tenant, story)
    [customer] = await tenant.customers()
    assert (customer["stripe_customer_id"], customer["external_id"]) == (story.customer, None)
    assert license_["customer_id"] == customer["id"]
    await tenant.send(story.checkout(5))
    [customer] = await tenant.customers()
    assert (customer["stripe_customer_id"], customer["external_id"], customer["email"]) == (
        story.customer,
        story.external_id,
        story.email,
    )
    after = await tenant.license()
    assert (after["id"], after["key"], after["customer_id"]) == (
        license_["id"],
        license_["key"],
        customer["id"],
    )


async def test_subscription_before_checkout_folds_into_the_tenants_customer(open_, api_version, database_url):
    # Scenario 10, the tenant having made its user's customer first: the customer made from Stripe's
    # events is merged into it once Checkout names the user (docs/stripe.md, Customers).
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    own = make_customer(database_url, tenant.account.id, story.external_id)
    await subscribe(tenant, story)
    await tenant.send(story.checkout(5))
    [customer] = await tenant.customers()
    assert customer["id"] == own
    assert (customer["stripe_customer_id"], customer["external_id"]) == (story.customer, story.external_id)
    assert (await tenant.license())["customer_id"] == own
    check = await tenant.client.post(
        "/v1/entitlements/check",
        headers=tenant.headers,
        json={"entitlement": "nothing", "customer_external_id": story.external_id},
    )
    assert check.status_code == 200 and check.json()["reason"] != "CUSTOMER_NOT_FOUND", check.text


async def test_subscription_metadata_names_the_user_without_checkout(open_, api_version, database_url):
    # Scenario 10 with subscription_data.metadata.licentric_external_id: mapped at once.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version, metadata={"licentric_external_id": "user-meta-1"})
    own = make_customer(database_url, tenant.account.id, "user-meta-1")
    [license_] = await subscribe(tenant, story)
    assert license_["customer_id"] == own
    [customer] = await tenant.customers()
    assert customer["stripe_customer_id"] == story.customer


# 11: same-second ties


@pytest.mark.parametrize("updated_first", [True, False], ids=["updated-first", "trial_will_end-first"])
async def test_same_second_tie_resolves_to_stripes_current_state(
    open_keyed, fake_stripe, api_version, updated_first
):
    # Scenario 11: trial_will_end (trialing, 1 seat) and .updated (active, 3 seats) with the same
    # created, in both arrival orders -> the newer state wins: the tie asks for a refetch, and the
    # subscription fetched from Stripe (active, 3 seats) is applied (stripe/sync-engine#268).
    pro = Price()
    tenant = await open_keyed({"pro": pro})
    story = Story(pro, api_version=api_version)
    trial = (story.start, story.start + 14 * DAY)
    await tenant.send(story.sub("customer.subscription.created", 1, status="trialing", trial=trial))
    three = [Item(pro, 3, id=story.items[0].id)]
    updated = story.sub("customer.subscription.updated", 5, status="active", items=three, trial=trial)
    will_end = story.sub("customer.subscription.trial_will_end", 5, status="trialing", trial=trial)
    fake_stripe.put(story.subscription(status="active", items=three, trial=trial))
    pair = [updated, will_end] if updated_first else [will_end, updated]
    answers = [await tenant.send(evt) for evt in pair]
    assert answers[0]["outcome"] == "applied"
    assert fetched_subscriptions(fake_stripe, story.subscription_id) >= 1
    license_ = await tenant.license()
    assert (license_["status"], license_["seats"]) == ("active", 3)


async def test_same_second_tie_without_an_api_key_is_left_needing_a_refetch(open_, api_version):
    # Scenario 11 without an API key: the tie is answered needs_refetch naming the subscription, and
    # is listed as such for the tenant to act on.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1))
    await tenant.send(
        story.sub("customer.subscription.updated", 5, items=[Item(pro, 3, id=story.items[0].id)])
    )
    tie = await tenant.send(story.sub("customer.subscription.updated", 5, status="past_due"))
    assert tie["outcome"] == "needs_refetch"
    assert tie["refetch"] == {"object": "subscription", "id": story.subscription_id}
    listed = await tenant.ledger(outcome="needs_refetch")
    assert [e["stripe_event_id"] for e in listed] == [tie["stripe_event_id"]]
    assert listed[0]["subscription_id"] == story.subscription_id


# 21-24: what Licentric does not act on


@pytest.mark.parametrize(
    "type_",
    [
        "customer.subscription.pending_update_applied",
        "customer.subscription.foo",
        "invoice.finalized",
        "invoice.upcoming",
        "product.created",
    ],
)
async def test_unknown_or_new_event_type_is_recorded_ignored(open_, type_):
    # Scenario 21: a type Licentric does not act on -> recorded ignored, 2xx (never an error Stripe
    # would retry for three days).
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro)
    obj = story.invoice(1) if type_.startswith("invoice") else story.subscription()
    if type_ == "product.created":
        obj = {"id": pro.product, "object": "product", "active": True, "name": "Pro"}
    answer = await tenant.send(event(type_, obj, created=story.created(1)))
    assert answer["outcome"] == "ignored"
    assert await tenant.licenses() == []
    [row] = await tenant.ledger(outcome="ignored")
    assert (row["stripe_event_id"], row["type"]) == (answer["stripe_event_id"], type_)


async def test_unknown_subscription_status_changes_nothing(open_, api_version):
    # Scenario 22: status "some_new_status" -> no change, recorded ignored; a later known state applies.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    [before] = await subscribe(tenant, story)
    two = [Item(pro, 2, id=story.items[0].id)]
    odd = await tenant.send(
        story.sub("customer.subscription.updated", 5, status="some_new_status", items=two)
    )
    assert odd["outcome"] == "ignored"
    after = await tenant.license()
    assert (after["status"], after["seats"], after["updated_at"]) == ("active", 1, before["updated_at"])
    assert [e["stripe_event_id"] for e in await tenant.ledger(outcome="ignored")] == [odd["stripe_event_id"]]
    known = await tenant.send(story.sub("customer.subscription.updated", 6, status="unpaid", items=two))
    assert known["outcome"] == "applied"  # the ignored event did not move the subscription's clock
    after = await tenant.license()
    assert (after["status"], after["seats"]) == ("suspended", 2)


async def test_unknown_billing_reason_does_not_fail(open_, api_version):
    # Scenario 22: an unknown billing_reason on a paid invoice -> answered, nothing breaks.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1))
    answer = await tenant.send(story.invoice_paid(2, billing_reason="subscription_something_new"))
    assert answer["outcome"] not in {"failed", "invalid"}, answer
    assert (await tenant.license())["status"] == "active"


@pytest.mark.parametrize("connected_live", [False, True], ids=["test-connection", "live-connection"])
async def test_event_of_the_other_mode_is_ignored(open_, api_version, connected_live):
    # Scenario 23: a live event verified by the test secret, and the reverse -> ignored, no license.
    pro = Price()
    tenant = await open_({"pro": pro}, livemode=connected_live)
    story = Story(pro, api_version=api_version, livemode=not connected_live)
    answers = [
        await tenant.send(evt)
        for evt in (story.sub("customer.subscription.created", 1), story.invoice_paid(2))
    ]
    assert [a["outcome"] for a in answers] == ["ignored", "ignored"]
    assert await tenant.licenses() == []
    assert await tenant.customers() == []


async def test_unmapped_price_is_parked_until_mapped(open_, api_version):
    # Scenario 24: a price in no mapping -> parked (2xx), no license; mapping it re-applies what was
    # parked and the license appears.
    pro = Price()
    tenant = await open_({"pro": None})
    story = Story(pro, api_version=api_version)
    answers = [
        await tenant.send(evt)
        for evt in (story.sub("customer.subscription.created", 1), story.invoice_paid(2))
    ]
    assert answers[0]["outcome"] == "parked"
    assert answers[1]["outcome"] in {"parked", "applied"}
    assert await tenant.licenses() == []
    assert answers[0]["stripe_event_id"] in {
        e["stripe_event_id"] for e in await tenant.ledger(outcome="parked")
    }
    mapping = await tenant.map(policy_code="pro", price=pro.id)
    assert mapping["reapplied"] >= 1
    license_ = await tenant.license()
    assert (license_["policy_code"], license_["status"]) == ("pro", "active")
    assert epoch(license_["paid_through"]) == story.period[1]
    assert await tenant.ledger(outcome="parked") == []


async def test_a_price_mapping_beats_its_products(open_, api_version):
    # Scenario 24: mappings by product work, and a price's mapping beats its product's.
    pro, basic = Price(), Price()
    tenant = await open_({"pro": None, "basic": None})
    await tenant.map(policy_code="basic", product=pro.product)
    await tenant.map(policy_code="basic", product=basic.product)
    await tenant.map(policy_code="pro", price=pro.id)
    story = Story(pro, basic, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1))
    assert sorted(lic["policy_code"] for lic in await tenant.licenses()) == ["basic", "pro"]


async def test_partly_mapped_subscription_gets_the_rest_when_mapped(open_, api_version):
    # Scenario 24 with two items, one mapped: the mapped one gets its license at once; mapping the other
    # later gives the second.
    base, addon = Price(), Price()
    tenant = await open_({"base": base, "addon": None})
    story = Story(base, addon, api_version=api_version)
    await subscribe(tenant, story)
    assert [lic["policy_code"] for lic in await tenant.licenses()] == ["base"]
    await tenant.map(policy_code="addon", price=addon.id)
    licenses = await tenant.licenses()
    assert sorted((lic["policy_code"], lic["status"]) for lic in licenses) == [
        ("addon", "active"),
        ("base", "active"),
    ]
    assert len({lic["customer_id"] for lic in licenses}) == 1


# 25-27: items and seats


async def test_multi_item_subscription_gives_a_license_per_item(open_, api_version, database_url):
    # Scenario 25: base plan + add-on -> two licenses with their policies' entitlements (a customer check
    # sees both); an .updated without the add-on cancels its license only.
    base, addon = Price(), Price()
    tenant = await open_({"base": base, "addon": addon})
    make_entitlement(database_url, tenant.account.id, "core", ["base"])
    make_entitlement(database_url, tenant.account.id, "extra", ["addon"])
    story = Story(base, addon, api_version=api_version)
    if story.api_version == BASIL:  # items can have their own periods from basil on
        story.items[1].period = (story.start, story.start + 10 * DAY)
    await tenant.send(story.checkout(0))
    await subscribe(tenant, story)
    licenses = {lic["policy_code"]: lic for lic in await tenant.licenses()}
    assert set(licenses) == {"base", "addon"}
    assert {lic["status"] for lic in licenses.values()} == {"active"}

    async def allowed(code: str) -> bool:
        response = await tenant.client.post(
            "/v1/entitlements/check",
            headers=tenant.headers,
            json={"entitlement": code, "customer_external_id": story.external_id},
        )
        assert response.status_code == 200, response.text
        return response.json()["allowed"]

    assert await allowed("core") and await allowed("extra")
    removed = story.sub("customer.subscription.updated", 10, items=story.items[:1])
    assert (await tenant.send(removed))["outcome"] == "applied"
    after = {lic["policy_code"]: lic for lic in await tenant.licenses()}
    assert (after["base"]["status"], after["addon"]["status"]) == ("active", "canceled")
    assert after["base"]["id"] == licenses["base"]["id"]
    assert await allowed("core") and not await allowed("extra")


async def test_plan_switch_keeps_the_license_and_changes_its_policy(open_, api_version):
    # Scenario 25: a plan switch replaces the item -> the new item takes over the license (same key).
    basic, pro = Price(), Price()
    tenant = await open_({"basic": basic, "pro": pro})
    story = Story(basic, api_version=api_version)
    [before] = await subscribe(tenant, story)
    switched = story.sub("customer.subscription.updated", 10, items=[Item(pro, 1)])
    assert (await tenant.send(switched))["outcome"] == "applied"
    after = await tenant.license()
    assert (after["id"], after["key"], after["policy_code"], after["status"]) == (
        before["id"],
        before["key"],
        "pro",
        "active",
    )


async def test_truncated_item_list_does_not_remove_items(open_, api_version):
    # Scenario 26: items.has_more -> the missing items are not removed; the event asks for a refetch.
    one, two = Price(), Price()
    tenant = await open_({"one": one, "two": two})
    story = Story(one, two, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1))
    partial = await tenant.send(
        story.sub("customer.subscription.updated", 5, items=story.items[:1], has_more=True)
    )
    assert partial["outcome"] == "needs_refetch"
    assert partial["refetch"] == {"object": "subscription", "id": story.subscription_id}
    assert sorted(lic["status"] for lic in await tenant.licenses()) == ["active", "active"]


async def test_truncated_item_list_is_completed_from_stripe(open_keyed, fake_stripe, api_version):
    # Scenario 26 with an API key: the whole subscription is fetched and applied.
    one, two = Price(), Price()
    tenant = await open_keyed({"one": one, "two": two})
    story = Story(one, two, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1))
    full = [story.items[0], Item(two, 4, id=story.items[1].id)]
    fake_stripe.put(story.subscription(items=full))
    await tenant.send(story.sub("customer.subscription.updated", 5, items=story.items[:1], has_more=True))
    assert fetched_subscriptions(fake_stripe, story.subscription_id) == 1
    seats = {lic["policy_code"]: (lic["status"], lic["seats"]) for lic in await tenant.licenses()}
    assert seats == {"one": ("active", 1), "two": ("active", 4)}


async def test_quantity_changes_set_the_seats(open_, api_version):
    # Scenario 27: quantity 5 -> 3 -> 10 (previous_attributes.items holding the whole old array) ->
    # seats follow; the proration invoice does not move paid-through.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version, quantity=5)
    await subscribe(tenant, story)
    assert (await tenant.license())["seats"] == 5
    at = 10
    for quantity in (3, 10):
        old = story.subscription()["items"]
        items = [Item(pro, quantity, id=story.items[0].id)]
        change = story.sub(
            "customer.subscription.updated", at, keep=True, items=items, previous={"items": old}
        )
        assert (await tenant.send(change))["outcome"] == "applied"
        assert (await tenant.license())["seats"] == quantity
        at += 10
    proration = invoice(
        id=new_id("in"),
        customer=story.customer,
        subscription=story.subscription_id,
        lines=[
            Line(
                Item(pro, 3, id=story.items[0].id), (story.created(20), story.period[1]), -900, proration=True
            ),
            Line(story.items[0], (story.created(20), story.period[1]), 10500, proration=True),
        ],
        created=story.created(21),
        billing_reason="subscription_update",
        api_version=story.api_version,
    )
    await tenant.send(
        event("invoice.paid", proration, created=story.created(21), api_version=story.api_version)
    )
    license_ = await tenant.license()
    assert epoch(license_["paid_through"]) == story.period[1]
    assert (license_["seats"], license_["status"]) == (10, "active")


# 28-32: trials, pauses, dunning, incomplete, scheduled cancels


async def test_trial_becomes_active_after_the_first_paid_invoice(open_, api_version):
    # Scenario 28: .created(trialing) + $0 invoice.paid -> active; trial_will_end changes nothing;
    # .updated(active) + invoice.paid -> active, paid through the first paid period.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    trial_end = story.start + 14 * DAY
    story.period = (story.start, trial_end)
    story.state.update(status="trialing", trial=(story.start, trial_end))
    await tenant.send(story.sub("customer.subscription.created", 1))
    trial_invoice = invoice(
        id=story.first_invoice,
        customer=story.customer,
        subscription=story.subscription_id,
        lines=[Line(story.items[0], story.period, 0)],
        created=story.created(2),
        billing_reason="subscription_create",
        api_version=story.api_version,
    )
    await tenant.send(
        event("invoice.paid", trial_invoice, created=story.created(2), api_version=story.api_version)
    )
    license_ = await tenant.license()
    assert (license_["status"], license_["paid_through"]) == ("active", None)
    quiet = await tenant.send(story.sub("customer.subscription.trial_will_end", 3))
    assert quiet["outcome"] in {"applied", "stale"}
    unchanged = {**await tenant.license(), "updated_at": license_["updated_at"]}
    assert unchanged == license_
    assert len(await tenant.events("license.updated")) == 0
    paid_period = (trial_end, trial_end + MONTH)
    story.state.update(status="active")
    await tenant.send(story.sub("customer.subscription.updated", 4, period=paid_period))
    await tenant.send(story.invoice_paid(5, invoice_id=new_id("in"), period=paid_period))
    license_ = await tenant.license()
    assert (license_["status"], epoch(license_["paid_through"])) == ("active", paid_period[1])


async def test_trial_ending_without_a_payment_method_pauses_then_resumes(open_, api_version):
    # Scenario 28, missing_payment_method: pause -> .updated/.paused(paused) suspend; .resumed reinstates.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    story.state.update(status="trialing", trial=(story.start, story.start + 14 * DAY))
    await tenant.send(story.sub("customer.subscription.created", 1))
    await tenant.send(story.sub("customer.subscription.updated", 5, status="paused"))
    await tenant.send(story.sub("customer.subscription.paused", 5, status="paused"))
    license_ = await tenant.license()
    assert license_["status"] == "suspended"
    assert (await tenant.validate(license_["key"]))["code"] == "SUSPENDED"
    await tenant.send(story.sub("customer.subscription.resumed", 9, status="active"))
    license_ = await tenant.license()
    assert license_["status"] == "active"
    assert (await tenant.validate(license_["key"]))["code"] == "VALID"


async def test_resumed_arriving_before_paused_ends_active(open_, api_version):
    # Scenario 28: .resumed may arrive before .paused -> the object's state decides, not the event type.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await subscribe(tenant, story)
    resumed = story.sub("customer.subscription.resumed", 9, status="active")
    paused = story.sub("customer.subscription.paused", 5, status="paused")
    assert (await tenant.send(resumed))["outcome"] == "applied"
    assert (await tenant.send(paused))["outcome"] == "stale"
    assert (await tenant.license())["status"] == "active"


async def test_trial_ending_in_cancellation_cancels(open_, api_version):
    # Scenario 28, missing_payment_method: cancel -> .deleted -> canceled.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    story.state.update(status="trialing", trial=(story.start, story.start + 14 * DAY))
    await tenant.send(story.sub("customer.subscription.created", 1))
    await tenant.send(story.sub("customer.subscription.deleted", 5))
    assert (await tenant.license())["status"] == "canceled"


async def test_pause_collection_leaves_the_license_active(open_, api_version):
    # Scenario 29: pause_collection set while the status stays active -> not the paused rule.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await subscribe(tenant, story)
    paused = {"behavior": "keep_as_draft", "resumes_at": story.start + 20 * DAY}
    await tenant.send(story.sub("customer.subscription.updated", 5, pause_collection=paused))
    license_ = await tenant.license()
    assert (license_["status"], license_["expires_at"]) == ("active", None)
    assert (await tenant.validate(license_["key"]))["code"] == "VALID"


async def dunning(tenant: Tenant, story: Story) -> tuple[str, tuple[int, int]]:
    """A paid first period, then the renewal failing three times and the subscription going past_due.
    The renewal invoice and its period."""
    await subscribe(tenant, story)
    renewal, period = new_id("in"), story.period_n(2)
    await tenant.send(story.invoice_failed(10, invoice_id=renewal, attempt_count=1, period=period))
    license_ = await tenant.license()
    assert license_["status"] == "past_due"
    assert epoch(license_["grace_ends_at"]) == story.created(10) + 7 * DAY
    validation = await tenant.validate(license_["key"])
    assert (validation["valid"], validation["code"]) == (True, "PAYMENT_GRACE")
    await tenant.send(story.invoice_failed(11, invoice_id=renewal, attempt_count=2, period=period))
    await tenant.send(
        story.invoice_failed(
            12, invoice_id=renewal, attempt_count=3, period=period, next_payment_attempt=None
        )
    )
    await tenant.send(
        story.sub("customer.subscription.updated", 13, keep=True, status="past_due", period=period)
    )
    license_ = await tenant.license()
    assert (license_["status"], epoch(license_["grace_ends_at"])) == ("past_due", story.created(10) + 7 * DAY)
    assert epoch(license_["paid_through"]) == story.period_n(1)[1]
    return renewal, period


@pytest.mark.parametrize("ending", ["unpaid", "deleted", "paid"])
async def test_dunning_ends_suspended_canceled_or_active(open_, api_version, ending):
    # Scenario 30: payment_failed x3 (the last with no next attempt) and .updated(past_due) -> past_due
    # within the grace period; then .updated(unpaid) -> suspended, .deleted -> canceled, or a later
    # invoice.paid -> active again, and a late earlier payment_failed does not downgrade it.
    pro = Price()
    tenant = await open_({"pro": pro}, policy_fields={"pro": {"grace_period": "7 days"}})
    story = Story(pro, api_version=api_version)
    renewal, period = await dunning(tenant, story)
    if ending == "unpaid":
        await tenant.send(story.sub("customer.subscription.updated", 20, status="unpaid"))
        expected, code = "suspended", "SUSPENDED"
    elif ending == "deleted":
        await tenant.send(story.sub("customer.subscription.deleted", 20))
        expected, code = "canceled", "CANCELED"
    else:
        await tenant.send(story.invoice_paid(20, invoice_id=renewal, period=period))
        late = story.invoice_failed(11, invoice_id=renewal, attempt_count=2, period=period)
        await tenant.send(redelivered(late))
        expected, code = "active", "VALID"
    license_ = await tenant.license()
    assert license_["status"] == expected
    assert license_["grace_ends_at"] is None
    assert (await tenant.validate(license_["key"]))["code"] == code
    if ending == "paid":
        assert epoch(license_["paid_through"]) == period[1]
        await tenant.send(story.sub("customer.subscription.updated", 21, status="active"))
        assert (await tenant.license())["status"] == "active"


async def test_past_due_subscription_before_its_failed_invoice_is_past_due(open_, api_version):
    # Scenario 30, the invoice.payment_failed delayed: .updated(past_due), naming the renewal as its
    # latest_invoice, arrives first -> past_due (docs/stripe.md: past_due -> past_due; active only once
    # that invoice is paid), not active on the strength of the previous period's paid invoice.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await subscribe(tenant, story)
    renewal, period = new_id("in"), story.period_n(2)
    await tenant.send(
        story.sub(
            "customer.subscription.updated", 13, status="past_due", period=period, latest_invoice=renewal
        )
    )
    assert (await tenant.license())["status"] == "past_due"
    await tenant.send(story.invoice_failed(10, invoice_id=renewal, period=period))
    license_ = await tenant.license()
    assert (license_["status"], epoch(license_["grace_ends_at"])) == ("past_due", story.created(10) + 7 * DAY)


async def test_a_later_invoices_failure_starts_a_new_grace_period(open_, api_version):
    # Scenario 30: the grace period runs from the first failure of the latest invoice, so a failure of
    # the next renewal, after the previous one was paid, starts again.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    renewal, period = await dunning(tenant, story)
    await tenant.send(story.invoice_paid(20, invoice_id=renewal, period=period))
    assert (await tenant.license())["status"] == "active"
    third = new_id("in")
    await tenant.send(story.invoice_failed(30, invoice_id=third, period=story.period_n(3)))
    license_ = await tenant.license()
    assert (license_["status"], epoch(license_["grace_ends_at"])) == ("past_due", story.created(30) + 7 * DAY)


async def test_grace_ends_overdue_and_the_sweep_suspends_until_stripe_says_paid(
    open_, api_version, database_url
):
    # Scenario 30 and the grace sweep: past the grace period validation answers OVERDUE, the sweep
    # suspends; an event that changes nothing Stripe decides leaves it suspended; the paid invoice
    # reinstates it.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    renewal, period = await dunning(tenant, story)
    license_ = await tenant.license()
    superuser(
        database_url,
        "update lic.licenses set grace_ends_at = now() - interval '1 minute' where id = %s",
        (license_["id"],),
    )
    overdue = await tenant.license()
    assert (overdue["status"], overdue["effective_status"]) == ("past_due", "overdue")
    assert (await tenant.validate(license_["key"]))["code"] == "OVERDUE"
    assert grace_sweep(database_url) >= 1
    swept = await tenant.license()
    assert swept["status"] == "suspended"
    assert len(await tenant.events("license.suspended")) == 1
    await tenant.send(story.sub("customer.subscription.updated", 14, status="past_due", period=period))
    await tenant.send(
        redelivered(story.invoice_failed(12, invoice_id=renewal, attempt_count=3, period=period))
    )
    assert (await tenant.license())["status"] == "suspended"
    await tenant.send(story.invoice_paid(20, invoice_id=renewal, period=period))
    await tenant.send(story.sub("customer.subscription.updated", 21, status="active"))
    license_ = await tenant.license()
    assert (license_["status"], epoch(license_["paid_through"])) == ("active", period[1])
    assert (await tenant.validate(license_["key"]))["code"] == "VALID"


async def test_incomplete_never_grants_and_incomplete_expired_is_terminal(open_, api_version):
    # Scenario 31: .created(incomplete) -> no license; .updated(incomplete_expired) -> terminal; a
    # stray later event cannot activate it.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1, status="incomplete"))
    assert await tenant.licenses() == []
    await tenant.send(story.sub("customer.subscription.updated", 100, status="incomplete_expired"))
    stray = await tenant.send(story.sub("customer.subscription.updated", 200, status="active"))
    assert stray["outcome"] == "stale"
    await tenant.send(story.invoice_paid(201))
    assert {lic["status"] for lic in await tenant.licenses()} <= {"canceled"}


async def test_incomplete_then_active_grants(open_, api_version):
    # Scenario 31, the usual path: .created(incomplete), then the first payment succeeds -> active.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1, status="incomplete"))
    await tenant.send(story.invoice_paid(2))
    assert await tenant.licenses() == []
    await tenant.send(story.sub("customer.subscription.updated", 3, status="active"))
    license_ = await tenant.license()
    assert (license_["status"], epoch(license_["paid_through"])) == ("active", story.period[1])


async def test_subscription_without_an_item_list_cancels_nothing(open_, api_version):
    # Scenario 35: null or missing optional fields -> no crash; an .updated whose object lacks its items
    # (a payload Stripe would not send whole, but a null list must not read as "every item removed").
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await subscribe(tenant, story)
    bare = story.sub("customer.subscription.updated", 5)
    del bare["data"]["object"]["items"]
    answer = await tenant.send(bare)
    assert answer["outcome"] not in {"failed", "invalid"}, answer
    assert (await tenant.license())["status"] == "active"


@pytest.mark.parametrize("style", ["cancel_at_period_end", "cancel_at"])
async def test_scheduled_cancel_shows_the_end_and_uncancel_clears_it(open_, api_version, style):
    # Scenario 32: cancel_at_period_end, or the portal's cancel_at with cancel_at_period_end false ->
    # expires_at is the scheduled end, access kept; un-cancel clears it; .deleted cancels.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    if story.api_version == BASIL:  # the period end is the latest of the items'
        story.items[0].period = (story.start, story.start + MONTH + DAY)
    await subscribe(tenant, story)
    if style == "cancel_at_period_end":
        change, end = (
            {"cancel_at_period_end": True},
            story.start + MONTH + (DAY if api_version == BASIL else 0),
        )
    else:
        end = story.start + 20 * DAY
        change = {"cancel_at": end, "cancel_at_period_end": False}
    await tenant.send(story.sub("customer.subscription.updated", 5, **change))
    license_ = await tenant.license()
    assert (license_["status"], license_["effective_status"], epoch(license_["expires_at"])) == (
        "active",
        "active",
        end,
    )
    await tenant.send(
        story.sub("customer.subscription.updated", 6, cancel_at=None, cancel_at_period_end=False)
    )
    assert (await tenant.license())["expires_at"] is None
    await tenant.send(story.sub("customer.subscription.updated", 7, **change))
    await tenant.send(story.sub("customer.subscription.deleted", 8, **change))
    assert (await tenant.license())["status"] == "canceled"


async def test_scheduled_cancel_and_deleted_in_either_order_give_the_same_license(open_, api_version):
    # Scenarios 7 and 32: the scheduled cancel (.updated, cancel_at_period_end) and the final .deleted
    # (which still says cancel_at_period_end) arriving in either order -> the same license, with the
    # scheduled end as its expires_at.
    pro = Price()
    story = Story(pro, api_version=api_version)
    created = story.sub("customer.subscription.created", 1, keep=True)
    scheduled = story.sub("customer.subscription.updated", 5, keep=True, cancel_at_period_end=True)
    deleted = story.sub("customer.subscription.deleted", 9, keep=True)
    states = []
    for order in ([created, scheduled, deleted], [created, deleted, scheduled]):
        tenant = await open_({"pro": pro})
        await tenant.send_all(*order)
        states.append(await tenant.state())
    assert states[0] == states[1]
    [license_] = states[0]["licenses"]
    assert (license_["status"], epoch(license_["expires_at"])) == ("canceled", story.period[1])


# 33-34: refunds and disputes


async def refundable(open_or_keyed: OpenTenant, fake_stripe: Any, api_version: str, **policy: Any) -> tuple:
    """A paid subscription whose charge can be traced: pre-basil through the invoice, basil through the
    InvoicePayment the fake Stripe serves."""
    pro = Price()
    tenant = await open_or_keyed({"pro": pro}, policy_fields={"pro": policy})
    story = Story(pro, api_version=api_version)
    if fake_stripe is not None:
        fake_stripe.put(story.invoice_payment())
        fake_stripe.put(story.subscription())
    await subscribe(tenant, story)
    return tenant, story


@pytest.fixture
def traceable(api_version, open_, open_keyed, fake_stripe) -> tuple[OpenTenant, Any]:
    """Basil charges do not name their invoice, so basil runs connect an API key (the InvoicePayment is
    fetched from the fake Stripe); pre-basil runs need none."""
    if api_version == BASIL:
        return open_keyed, fake_stripe
    return open_, None


async def test_partial_refunds_then_full_refund_suspends(traceable, api_version):
    # Scenario 33: a partial refund -> recorded only; a second partial reaching full (refunded: true)
    # -> suspended (refund_action suspend); the same cumulative refund again -> idempotent.
    tenant, story = await refundable(*traceable, api_version)
    partial = await tenant.send(story.refund(10, amount_refunded=500))
    assert partial["outcome"] in {"applied", "needs_refetch"}
    assert (await tenant.license())["status"] == "active"
    full = story.refund(11, amount_refunded=1500, previous=500)
    await tenant.send(full)
    license_ = await tenant.license()
    assert license_["status"] == "suspended"
    assert (await tenant.validate(license_["key"]))["code"] == "SUSPENDED"
    await tenant.send(redelivered(full, created=full["created"] + 1))
    assert (await tenant.license())["status"] == "suspended"
    assert len(await tenant.events("license.suspended")) == 1


async def test_full_refund_of_an_older_invoice_does_not_suspend(traceable, api_version):
    # Scenario 33: only a refund of the latest paid invoice's charge suspends (docs/stripe.md); an
    # earlier period refunded after the renewal was paid leaves the license active.
    tenant, story = await refundable(*traceable, api_version)
    renewal = new_id("in")
    await tenant.send(story.invoice_paid(10, invoice_id=renewal, period=story.period_n(2)))
    await tenant.send(story.refund(11, amount_refunded=1500))
    assert (await tenant.license())["status"] == "active"


async def test_full_refund_under_refund_action_none_changes_nothing(traceable, api_version):
    # Scenario 33 with the policy's refund_action none.
    tenant, story = await refundable(*traceable, api_version, refund_action="none")
    await tenant.send(story.refund(10, amount_refunded=1500))
    assert (await tenant.license())["status"] == "active"


async def test_refund_before_its_invoice_applies_when_the_invoice_arrives(open_):
    # Scenario 33: charge.refunded before the invoice that links it (pre-basil charge.invoice) -> parked
    # or needs_refetch (an object not seen yet; no API key here), then resolved when invoice.paid arrives.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=PRE_BASIL)
    await tenant.send(story.sub("customer.subscription.created", 1))
    early = await tenant.send(story.refund(10, amount_refunded=1500))
    assert early["outcome"] in {"parked", "needs_refetch"}, early
    await tenant.send(story.invoice_paid(2))
    assert (await tenant.license())["status"] == "suspended"


async def test_full_refund_of_a_one_off_purchase_suspends(open_, api_version):
    # Scenario 33: a one-off license (Checkout mode payment) fully refunded -> suspended.
    from stripe_events import charge

    tenant = await open_({"lifetime": None})
    bought = one_off_checkout(at=int(time.time()) - 60, policy_code="lifetime", api_version=api_version)
    await tenant.send(bought)
    session = bought["data"]["object"]
    assert (await tenant.license())["status"] == "active"
    refunded = charge(
        id=new_id("ch"),
        amount=1500,
        amount_refunded=1500,
        created=session["created"],
        customer=session["customer"],
        payment_intent=session["payment_intent"],
        api_version=api_version,
    )
    await tenant.send(
        event("charge.refunded", refunded, created=session["created"] + 30, api_version=api_version)
    )
    assert (await tenant.license())["status"] == "suspended"


async def test_refund_before_its_one_off_checkout_applies_when_it_arrives(open_, api_version):
    # Scenario 33: charge.refunded for a one-off purchase whose checkout has not arrived yet ->
    # recorded; the checkout then gives a license that is already suspended (no active window).
    from stripe_events import charge

    tenant = await open_({"lifetime": None})
    bought = one_off_checkout(at=int(time.time()) - 60, policy_code="lifetime", api_version=api_version)
    session = bought["data"]["object"]
    refunded = charge(
        id=new_id("ch"),
        amount=1500,
        amount_refunded=1500,
        created=session["created"],
        customer=session["customer"],
        payment_intent=session["payment_intent"],
        api_version=api_version,
    )
    early = await tenant.send(
        event("charge.refunded", refunded, created=session["created"] + 30, api_version=api_version)
    )
    assert early["outcome"] in {"parked", "needs_refetch"}, early
    await tenant.send(bought)
    assert (await tenant.license())["status"] == "suspended"
    assert len(await tenant.events("license.reinstated")) == 0


@pytest.mark.parametrize(
    ("steps", "status", "disputed", "code"),
    [
        ([("created", "needs_response")], "active", True, "DISPUTED"),
        ([("created", "needs_response"), ("closed", "won")], "active", False, "VALID"),
        ([("created", "needs_response"), ("closed", "lost")], "suspended", False, "SUSPENDED"),
        ([("created", "warning_needs_response")], "active", False, "VALID"),
        ([("created", "warning_needs_response"), ("closed", "warning_closed")], "active", False, "VALID"),
        ([("closed", "won"), ("created", "needs_response")], "active", False, "VALID"),
        ([("closed", "lost"), ("created", "needs_response")], "suspended", False, "SUSPENDED"),
        ([("created", "needs_response"), ("closed", "prevented")], "active", False, "VALID"),
    ],
    ids=["open", "won", "lost", "inquiry", "inquiry-closed", "won-first", "lost-first", "prevented"],
)
async def test_disputes_hold_lift_or_suspend(traceable, api_version, steps, status, disputed, code):
    # Scenario 34: created(needs_response) -> held (DISPUTED); closed(won) lifts it, closed(lost)
    # suspends; an inquiry (warning_*) holds nothing; closed before created -> the closed state wins.
    tenant, story = await refundable(*traceable, api_version)
    dispute_id = new_id("du")
    for at, (kind, dispute_status) in enumerate(steps, start=10):
        await tenant.send(
            story.dispute_event(f"charge.dispute.{kind}", at, status=dispute_status, dispute_id=dispute_id)
        )
    license_ = await tenant.license()
    assert (license_["status"], license_["disputed_at"] is not None) == (status, disputed)
    assert (await tenant.validate(license_["key"]))["code"] == code


async def test_dispute_on_a_one_off_purchase(open_, api_version):
    # Scenario 34 for a one-off license: the dispute reaches it through the session's payment intent.
    from stripe_events import dispute

    tenant = await open_({"lifetime": None})
    bought = one_off_checkout(at=int(time.time()) - 60, policy_code="lifetime", api_version=api_version)
    await tenant.send(bought)
    session = bought["data"]["object"]
    opened = dispute(
        charge=new_id("ch"), payment_intent=session["payment_intent"], created=session["created"] + 9
    )
    await tenant.send(event("charge.dispute.created", opened, created=session["created"] + 10))
    license_ = await tenant.license()
    assert license_["disputed_at"] is not None
    assert (await tenant.validate(license_["key"]))["code"] == "DISPUTED"
    lost = {**opened, "status": "lost"}
    await tenant.send(event("charge.dispute.closed", lost, created=session["created"] + 20))
    license_ = await tenant.license()
    assert (license_["status"], license_["disputed_at"]) == ("suspended", None)


async def test_failed_refetch_is_left_needing_it_and_reprocess_fetches_again(open_keyed, fake_stripe):
    # Scenarios 34 and 36: Stripe failing while the InvoicePayment is fetched leaves the event recorded
    # needs_refetch (a 200: it is recorded); reprocessing it later fetches again and applies it.
    tenant, story = await refundable(open_keyed, fake_stripe, BASIL)
    fake_stripe.fail("/v1/invoice_payments", 500, times=3)  # the first call and the SDK's two retries
    opened = story.dispute_event(
        "charge.dispute.created", 10, status="needs_response", dispute_id=new_id("du")
    )
    answer = await tenant.send(opened)
    assert answer["outcome"] == "needs_refetch"
    assert (await tenant.license())["disputed_at"] is None
    response = await tenant.client.post(f"/v1/stripe/events/{answer['id']}/reprocess", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "applied"
    license_ = await tenant.license()
    assert license_["disputed_at"] is not None
    assert (await tenant.validate(license_["key"]))["code"] == "DISPUTED"


# 35: the API-version matrix, over the whole lifecycle


def lifecycle(story: Story, invoices: tuple[str, str] = ("", "")) -> list[dict[str, Any]]:
    """create -> renew paid -> payment_failed -> past_due -> paid -> cancel at period end -> deleted.
    invoices: the ids of the two renewals (new ones when not given)."""
    second, third = (invoice_id or new_id("in") for invoice_id in invoices)
    p2, p3 = story.period_n(2), story.period_n(3)
    return [
        story.checkout(0),
        story.sub("customer.subscription.created", 1, keep=True),
        story.invoice_paid(2),
        story.sub("customer.subscription.updated", 10, keep=True, period=p2),
        story.invoice_paid(11, invoice_id=second, period=p2),
        story.invoice_failed(20, invoice_id=third, period=p3),
        story.sub("customer.subscription.updated", 21, keep=True, status="past_due", period=p3),
        story.invoice_paid(30, invoice_id=third, period=p3),
        story.sub("customer.subscription.updated", 31, keep=True, status="active"),
        story.sub("customer.subscription.updated", 40, keep=True, cancel_at_period_end=True),
        story.sub("customer.subscription.deleted", 50, keep=True),
    ]


async def test_pre_basil_and_basil_lifecycles_give_the_same_licenses(open_):
    # Scenario 35: the same lifecycle in both payload generations -> identical results at every step.
    pro = Price()
    first = Story(pro, api_version=PRE_BASIL)
    stories = [first, first.twin(BASIL)]  # the same Stripe ids, so the two accounts compare field for field
    renewals = (new_id("in"), new_id("in"))
    runs = [lifecycle(story, renewals) for story in stories]
    tenants = [await open_({"pro": pro}) for _ in stories]
    steps = []
    for step in range(len(runs[0])):
        states = []
        for tenant, run in zip(tenants, runs, strict=True):
            answer = await tenant.send(run[step])
            states.append((answer["outcome"], await tenant.state()))
        assert states[0] == states[1], (step, runs[0][step]["type"])
        steps.append(states[0])
    statuses = [state["licenses"][0]["status"] if state["licenses"] else None for _, state in steps]
    assert statuses == [
        None,
        "active",
        "active",
        "active",
        "active",
        "past_due",
        "past_due",
        "active",
        "active",
        "active",
        "canceled",
    ]
    final = steps[-1][1]["licenses"][0]
    assert epoch(final["paid_through"]) == stories[0].period_n(3)[1]
    assert epoch(final["expires_at"]) == stories[0].period_n(3)[1]


# 36: failures


async def test_partial_failure_rolls_back_and_the_retry_succeeds(open_, database_url):
    # Scenario 36: the database raises midway (an injected trigger on license insert, for this account
    # only) -> the delivery fails with a 5xx, nothing is recorded, so Stripe's retry is applied.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro)
    created = story.sub("customer.subscription.created", 1)
    trigger = f"stripe_test_fail_{new_id('t')[2:]}"
    superuser(
        database_url,
        f"create function public.{trigger}() returns trigger language plpgsql as $$ begin"
        f" if new.account_id = '{tenant.account.id}' then raise exception 'injected failure'; end if;"
        f" return new; end $$;"
        f" create trigger {trigger} before insert on lic.licenses"
        f" for each row execute function public.{trigger}()",
    )
    try:
        response = await deliver(tenant.client, tenant.account, created, tenant.secret)
        assert response.status_code >= 500, response.text
        assert await tenant.ledger() == []
        assert await tenant.licenses() == []
        assert await tenant.customers() == []
    finally:
        superuser(
            database_url,
            f"drop trigger {trigger} on lic.licenses; drop function public.{trigger}()",
        )
    retried = await tenant.send(created)
    assert retried["outcome"] == "applied"
    assert len(await tenant.licenses()) == 1


async def test_refused_by_a_rule_is_failed_and_reprocessed_after_the_fix(open_, database_url):
    # Scenario 36, the other kind of failure: a rule refuses the event (the tenant plan is full) ->
    # recorded failed (200: a retry would not help); reprocessing after the fix applies it.
    pro = Price()
    tenant = await open_({"pro": pro})
    superuser(
        database_url,
        "update lic.accounts set max_active_licenses = 1 where account_id = %s",
        (tenant.account.id,),
    )
    first, second = Story(pro), Story(pro)
    await tenant.send(first.sub("customer.subscription.created", 1))
    refused = await tenant.send(second.sub("customer.subscription.created", 1))
    assert refused["outcome"] == "failed"
    assert [e["id"] for e in await tenant.ledger(outcome="failed")] == [refused["id"]]
    assert len(await tenant.licenses()) == 1
    superuser(
        database_url,
        "update lic.accounts set max_active_licenses = 5 where account_id = %s",
        (tenant.account.id,),
    )
    response = await tenant.client.post(
        f"/v1/stripe/events/{refused['id']}/reprocess", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "applied"
    assert len(await tenant.licenses()) == 2
    assert await tenant.ledger(outcome="failed") == []


# 37: fresher state than an old event


async def test_manual_suspension_holds_until_stripes_facts_change(open_, api_version):
    # Scenario 37: the tenant suspends a license by hand; events that do not change what Stripe says
    # the license should be (a quantity change, a redelivery) leave it suspended; unpaid then active do.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    [license_] = await subscribe(tenant, story)
    response = await tenant.client.post(
        f"/v1/licenses/{license_['id']}/suspend", headers=tenant.headers, json={"reason": "abuse"}
    )
    assert response.status_code == 200, response.text
    await tenant.send(
        story.sub("customer.subscription.updated", 5, items=[Item(pro, 2, id=story.items[0].id)])
    )
    await tenant.send(redelivered(story.invoice_paid(2), created=story.created(6)))
    held = await tenant.license()
    assert (held["status"], held["seats"]) == ("suspended", 2)
    await tenant.send(story.sub("customer.subscription.updated", 7, status="unpaid"))
    assert (await tenant.license())["status"] == "suspended"
    await tenant.send(story.sub("customer.subscription.updated", 8, status="active"))
    assert (await tenant.license())["status"] == "active"


async def test_reprocessing_an_old_event_does_not_override_newer_state(open_, api_version):
    # Scenario 37: reprocessing (an admin's resync) the subscription's first event after later ones were
    # applied -> stale, nothing changes.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    created = await tenant.send(story.sub("customer.subscription.created", 1))
    await tenant.send(
        story.sub("customer.subscription.updated", 5, items=[Item(pro, 4, id=story.items[0].id)])
    )
    before = await tenant.license()
    response = await tenant.client.post(
        f"/v1/stripe/events/{created['id']}/reprocess", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "stale"
    assert await tenant.license() == before


async def test_old_event_after_a_refetch_does_not_override_it(open_keyed, fake_stripe, api_version):
    # Scenario 37: the subscription fetched from Stripe (now) is fresher than any event created before
    # it -> an old .updated arriving afterwards is stale.
    pro = Price()
    tenant = await open_keyed({"pro": pro})
    story = Story(pro, api_version=api_version)
    await tenant.send(story.sub("customer.subscription.created", 1))
    fake_stripe.put(story.subscription(items=[Item(pro, 4, id=story.items[0].id)]))
    await tenant.send(story.sub("customer.subscription.updated", 5, has_more=True))
    assert (await tenant.license())["seats"] == 4
    old = await tenant.send(
        story.sub("customer.subscription.updated", 6, items=[Item(pro, 2, id=story.items[0].id)])
    )
    assert old["outcome"] == "stale"
    assert (await tenant.license())["seats"] == 4


# 38: other accounts


async def test_same_stripe_ids_in_two_tenants_stay_apart(open_, api_version):
    # Scenario 38: two tenants receiving events with the same Stripe ids (each signed with its own
    # secret) -> each its own customer and license; neither sees the other's.
    pro = Price()
    story = Story(pro, api_version=api_version)
    tenants = [await open_({"pro": pro}) for _ in range(2)]
    for tenant in tenants:
        await tenant.send(story.checkout(0))
        await subscribe(tenant, story)
    licenses = [await tenant.license() for tenant in tenants]
    assert licenses[0]["id"] != licenses[1]["id"]
    assert await tenants[0].state() == await tenants[1].state()
    foreign = await tenants[0].send(
        story.sub("customer.subscription.deleted", 9), secret=tenants[1].secret, expect=400
    )
    assert foreign is not None
    assert {(await tenant.license())["status"] for tenant in tenants} == {"active"}


async def test_connect_event_of_another_account_changes_nothing(open_, api_version):
    # Scenario 38: an event carrying account: acct_… (a Stripe Connect account's) -> recorded, 2xx, and
    # it does not touch this tenant's licenses.
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    await subscribe(tenant, story)
    foreign = story.sub("customer.subscription.deleted", 9)
    foreign["account"] = "acct_1Other"
    answer = await tenant.send(foreign)
    assert answer["outcome"] == "ignored"
    assert (await tenant.license())["status"] == "active"


# 39: Checkout modes


async def test_setup_mode_checkout_is_ignored(open_, api_version):
    # Scenario 39: mode setup -> ignored, no license.
    tenant = await open_({"lifetime": None})
    bought = one_off_checkout(at=int(time.time()) - 60, policy_code="lifetime", api_version=api_version)
    bought["data"]["object"].update(mode="setup", payment_status="no_payment_required", payment_intent=None)
    assert (await tenant.send(bought))["outcome"] == "ignored"
    assert await tenant.licenses() == []


@pytest.mark.parametrize("payment_status", ["paid", "no_payment_required"])
async def test_paid_one_off_checkout_gives_one_license(open_, api_version, payment_status):
    # Scenario 39: a paid (or free) one-off purchase -> one license on metadata.licentric_policy,
    # delivered twice as two events -> still one.
    tenant = await open_({"lifetime": None})
    bought = one_off_checkout(
        at=int(time.time()) - 60,
        policy_code="lifetime",
        payment_status=payment_status,
        api_version=api_version,
    )
    session = bought["data"]["object"]
    assert (await tenant.send(bought))["outcome"] == "applied"
    await tenant.send(redelivered(bought))
    license_ = await tenant.license()
    assert (license_["policy_code"], license_["status"]) == ("lifetime", "active")
    [customer] = await tenant.customers()
    assert (customer["external_id"], customer["stripe_customer_id"]) == (
        session["client_reference_id"],
        session["customer"],
    )


async def test_async_payment_succeeded_grants_once(open_, api_version):
    # Scenario 39: payment_status unpaid -> no license yet; async_payment_succeeded -> one license,
    # however often it arrives.
    tenant = await open_({"lifetime": None})
    at = int(time.time()) - 60
    pending = one_off_checkout(
        at=at, policy_code="lifetime", payment_status="unpaid", api_version=api_version
    )
    assert (await tenant.send(pending))["outcome"] == "applied"
    assert await tenant.licenses() == []
    session = pending["data"]["object"]
    succeeded = one_off_checkout(
        at=at + 60,
        session=session,
        payment_status="paid",
        type_="checkout.session.async_payment_succeeded",
        api_version=api_version,
    )
    await tenant.send(succeeded)
    await tenant.send(redelivered(succeeded, created=at + 61))
    await tenant.send(redelivered(pending, created=at + 62))  # the unpaid completion again cannot undo it
    assert (await tenant.license())["status"] == "active"
    assert len(await tenant.events("license.created")) == 1


async def test_async_payment_failed_grants_nothing(open_, api_version):
    # Scenario 39: payment_status unpaid then async_payment_failed -> no license, even if the unpaid
    # completion arrives last.
    tenant = await open_({"lifetime": None})
    at = int(time.time()) - 60
    pending = one_off_checkout(
        at=at, policy_code="lifetime", payment_status="unpaid", api_version=api_version
    )
    failed = one_off_checkout(
        at=at + 60,
        session=pending["data"]["object"],
        payment_status="unpaid",
        type_="checkout.session.async_payment_failed",
        api_version=api_version,
    )
    await tenant.send(failed)
    await tenant.send(pending)
    assert await tenant.licenses() == []


async def test_one_off_checkout_by_line_item_mapping(open_keyed, fake_stripe, api_version):
    # Scenario 39: a one-off purchase with no licentric_policy -> the line items (fetched: webhooks do
    # not carry them) decide the policy through the price's mapping.
    lifetime = Price()
    tenant = await open_keyed({"lifetime": lifetime})
    bought = one_off_checkout(at=int(time.time()) - 60, api_version=api_version)
    fake_stripe.put(with_line_items(bought["data"]["object"], [Item(lifetime)]))
    await tenant.send(bought)
    license_ = await tenant.license()
    assert (license_["policy_code"], license_["status"]) == ("lifetime", "active")


async def test_one_off_checkout_by_line_items_without_a_key_needs_a_refetch(open_, api_version):
    # Scenario 39 without an API key: the line items cannot be read, so the event says so.
    lifetime = Price()
    tenant = await open_({"lifetime": lifetime})
    bought = one_off_checkout(at=int(time.time()) - 60, api_version=api_version)
    answer = await tenant.send(bought)
    assert answer["outcome"] == "needs_refetch"
    assert answer["refetch"] == {"object": "checkout.session", "id": bought["data"]["object"]["id"]}
    assert await tenant.licenses() == []


# 40: size


async def test_a_payload_near_stripes_maximum_answers_quickly(open_, api_version):
    # Scenario 40: a few hundred KB (metadata at Stripe's limits, a long previous_attributes) -> still
    # answered within seconds (a bound, not a benchmark).
    pro = Price()
    tenant = await open_({"pro": pro})
    story = Story(pro, api_version=api_version)
    story.state["metadata"] = {f"key_{n:02}": "x" * 500 for n in range(50)}
    await tenant.send(story.sub("customer.subscription.created", 1))
    big = story.sub(
        "customer.subscription.updated",
        2,
        items=[Item(pro, 7, id=story.items[0].id)],
        previous={"items": [story.subscription()["items"]] * 12, "metadata": story.state["metadata"]},
    )
    big["data"]["object"]["description"] = "y" * 250_000
    body = json.dumps(big)
    assert len(body) > 300_000
    started = time.monotonic()
    answer = await tenant.send(body)
    assert time.monotonic() - started < 5
    assert answer["outcome"] == "applied"
    assert (await tenant.license())["seats"] == 7
