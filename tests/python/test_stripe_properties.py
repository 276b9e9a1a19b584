"""Property: a subscription's events converge to the same licenses whatever order they arrive in, and
however often (stripe-webhooks.md §4: "every ordering of the same set of events must converge to the
same state").

The lifecycle is applied in order to one fresh account (the reference); then each example delivers a
random permutation of it, with random copies (the same event again, or the same change as a second Event
object) inserted anywhere, to its own fresh account, and compares the normalised state.

No API key is connected, so nothing is refetched and convergence must come from the events alone. That
is what the contract promises here: sql/0009_stripe.sql and functions/70_stripe_sync.sql derive
licenses from facts that merge monotonically (newest snapshot, terminal states kept, paid a max, first
failure a min), and docs/stripe.md's needs_refetch covers a same-second tie, a truncated item list or an
object not seen yet. The lifecycle avoids the first two (distinct created seconds, one item; ties are
scenario 11), and the third always arrives later in the same set (an invoice or checkout before its
subscription). A fake Stripe holding the final state would converge too, but trivially: a fetch is
stamped now, later than every event, and would hide any order dependence behind it.

The item set stays one item (its quantity changes): an item that appears only in snapshots superseded
before they arrive never gets a license, so lifecycles that add and remove items converge on the
current items only (the canceled licenses of removed items depend on arrival order).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stripe_events import Item, Price, Story, epoch, new_id, open_tenant, redelivered

PRO = Price()
START = int(time.time()) - 3600


def lifecycle() -> tuple[Story, list[dict[str, Any]]]:
    """checkout, created(active), invoice.paid, updated(quantity 3), payment_failed, updated(past_due),
    invoice.paid, updated(active), updated(cancel_at_period_end), deleted: distinct seconds, in order."""
    story = Story(PRO, start=START, external_id="user-prop")
    renewal, p2 = new_id("in"), story.period_n(2)
    three = [Item(PRO, 3, id=story.items[0].id)]
    return story, [
        story.checkout(0),
        story.sub("customer.subscription.created", 1, keep=True),
        story.invoice_paid(2),
        story.sub("customer.subscription.updated", 3, keep=True, items=three),
        story.invoice_failed(10, invoice_id=renewal, period=p2),
        story.sub("customer.subscription.updated", 11, keep=True, status="past_due", period=p2),
        story.invoice_paid(20, invoice_id=renewal, period=p2),
        story.sub("customer.subscription.updated", 21, keep=True, status="active"),
        story.sub("customer.subscription.updated", 30, keep=True, cancel_at_period_end=True),
        story.sub("customer.subscription.deleted", 40, keep=True),
    ]


STORY, EVENTS = lifecycle()
N = len(EVENTS)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[int, list[tuple[int, bool]]]:
    """The first k events of the lifecycle (so states short of the end, past_due with its grace period
    among them, are compared too), permuted, with up to four copies inserted anywhere. Drawn as indices
    into EVENTS, with True for a copy sent as a new Event object (Stripe's "two separate Event objects",
    a new id) rather than the same event again, so a falsifying example reads as a short list."""
    k = draw(st.integers(1, N))
    sequence = [(i, False) for i in draw(st.permutations(range(k)))]
    copies = draw(
        st.lists(st.tuples(st.integers(0, k - 1), st.integers(0, 2 * N), st.booleans()), max_size=4)
    )
    for index, position, new_object in copies:
        sequence.insert(position % (len(sequence) + 1), (index, new_object))
    return k, sequence


async def final_state(client: Any, make_account: Any, database_url: str, sequence: list[dict]) -> dict:
    tenant = await open_tenant(client, make_account(), database_url, {"pro": PRO})
    for evt in sequence:
        answer = await tenant.send(evt)
        assert answer["outcome"] not in {"failed", "invalid"}, (evt["type"], answer)
    return await tenant.state()


async def test_reference_lifecycle_ends_as_the_contract_says(client, make_account, database_url):
    state = await final_state(client, make_account, database_url, EVENTS)
    p2_end = STORY.period_n(2)[1]
    [license_] = state["licenses"]
    assert (license_["policy_code"], license_["status"], license_["effective_status"]) == (
        "pro",
        "canceled",
        "canceled",
    )
    assert (license_["seats"], epoch(license_["paid_through"]), epoch(license_["expires_at"])) == (
        3,
        p2_end,
        p2_end,
    )
    assert license_["customer"] == (STORY.external_id, STORY.email, STORY.customer)
    assert state["customers"] == [(STORY.external_id, STORY.email, STORY.customer)]


class References(dict):
    """The in-order state of each prefix of the lifecycle (k -> state), kept across examples; short in
    Hypothesis's report of a failing example."""

    def __repr__(self) -> str:
        return f"<in-order states of prefixes {sorted(self)}>"


@pytest.fixture
def reference() -> References:
    return References()


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn=deliveries())
async def test_any_order_with_duplicates_converges(client, make_account, database_url, reference, drawn):
    # Fresh accounts per example (make_account is a factory; Hypothesis reuses the function-scoped
    # fixtures across examples, which is why that health check is suppressed).
    k, picks = drawn
    sequence = [redelivered(EVENTS[i]) if new_object else EVENTS[i] for i, new_object in picks]
    if k not in reference:
        reference[k] = await final_state(client, make_account, database_url, EVENTS[:k])
    permuted = await final_state(client, make_account, database_url, sequence)
    arrival = [(e["type"], e["created"] - START) for e in sequence]
    assert permuted == reference[k], f"arrival order {arrival}:\n{permuted}\n!= in order\n{reference[k]}"
