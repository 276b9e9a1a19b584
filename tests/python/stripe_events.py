"""Realistic Stripe event payloads for the Stripe sync tests, in both
generations: before basil ("2020-08-27": invoice.subscription,
subscription.current_period_end, line.price, invoice.charge, charge.invoice)
and from basil on ("2025-03-31.basil": invoice.parent.subscription_details,
items.data[].current_period_end, line.pricing.price_details,
line.parent.subscription_item_details; no charge or payment_intent on the
invoice, no invoice on the charge). See /work/shared/reference/stripe-webhooks.md §2.

The low-level builders (event, checkout_session, subscription, invoice,
charge, dispute, invoice_payment) take every field a test may care about.
Story tells one customer's subscription on top of them: it keeps the ids
(customer, subscription, items, invoices and their charges) and a clock, so a
test says only what changes and when: `story.sub("customer.subscription.updated", at=5, status="past_due")`.

`at` is seconds after the story's start (an hour ago by default, so periods
are current); events carry `created = start + at`, which is how tests order
them. Every id is fresh, so ids are unique per test.

At the end, Tenant and open_tenant drive an account over HTTP (connect, map,
deliver signed, read back) and Tenant.state() is the normalised projection
the convergence tests compare (no ids or keys, so two accounts compare).
"""

from __future__ import annotations

import copy
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from license_helpers import make_policy
from stripe_support import connect, deliver

PRE_BASIL = "2020-08-27"
BASIL = "2025-03-31.basil"
VERSIONS = (PRE_BASIL, BASIL)
DAY = 86_400
MONTH = 30 * DAY


def is_basil(api_version: str) -> bool:
    """Basil (2025-03-31) and every later version; versions compare as their dates."""
    return api_version[:10] >= "2025-03-31"


def new_id(prefix: str) -> str:
    """A fresh Stripe-looking id: prefix, underscore, 24 alphanumerics."""
    return f"{prefix}_{secrets.token_hex(12)}"


@dataclass(frozen=True)
class Price:
    """A recurring price on a product (the thing a mapping names)."""

    id: str = field(default_factory=lambda: new_id("price"))
    product: str = field(default_factory=lambda: new_id("prod"))
    unit_amount: int = 1500
    interval: str = "month"


@dataclass
class Item:
    """A subscription item: a price times a quantity, with its own period (basil)."""

    price: Price
    quantity: int = 1
    id: str = field(default_factory=lambda: new_id("si"))
    period: tuple[int, int] | None = None  # None: the subscription's period


def price_object(price: Price, *, livemode: bool = False) -> dict[str, Any]:
    return {
        "id": price.id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "currency": "usd",
        "livemode": livemode,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": price.product,
        "recurring": {
            "interval": price.interval,
            "interval_count": 1,
            "usage_type": "licensed",
            "aggregate_usage": None,
        },
        "type": "recurring",
        "unit_amount": price.unit_amount,
        "unit_amount_decimal": str(price.unit_amount),
    }


def plan_object(price: Price, *, livemode: bool = False) -> dict[str, Any]:
    """The legacy `plan` that pre-basil payloads carry beside `price`."""
    return {
        "id": price.id,
        "object": "plan",
        "active": True,
        "amount": price.unit_amount,
        "currency": "usd",
        "interval": price.interval,
        "interval_count": 1,
        "livemode": livemode,
        "product": price.product,
        "usage_type": "licensed",
    }


# The envelope


def event(
    type_: str,
    obj: dict[str, Any],
    *,
    created: int,
    api_version: str = BASIL,
    livemode: bool = False,
    previous_attributes: dict[str, Any] | None = None,
    id: str | None = None,
    automatic: bool = False,
    account: str | None = None,
) -> dict[str, Any]:
    """A snapshot event. `automatic` events (renewals, retries) have no request id, as Stripe sends them."""
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    envelope: dict[str, Any] = {
        "id": id or new_id("evt"),
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {
            "id": None if automatic else new_id("req"),
            "idempotency_key": secrets.token_hex(16) if not automatic else None,
        },
        "type": type_,
    }
    if account is not None:
        envelope["account"] = account
    return envelope


def redelivered(evt: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The same change sent as a second, separate Event object (a new id), optionally altered."""
    again = copy.deepcopy(evt)
    again["id"] = new_id("evt")
    again.update(changes)
    return again


# Objects


def checkout_session(
    *,
    created: int,
    mode: str = "subscription",
    customer: str | None = None,
    subscription: str | None = None,
    invoice: str | None = None,
    payment_intent: str | None = None,
    payment_status: str = "paid",
    client_reference_id: str | None = None,
    email: str | None = None,
    metadata: dict[str, str] | None = None,
    amount_total: int = 1500,
    livemode: bool = False,
    id: str | None = None,
    api_version: str = BASIL,
) -> dict[str, Any]:
    """A completed Checkout Session as a webhook carries it: no line_items (see with_line_items)."""
    session: dict[str, Any] = {
        "id": id or new_id("cs_test" if not livemode else "cs_live"),
        "object": "checkout.session",
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "client_reference_id": client_reference_id,
        "created": created,
        "currency": "usd",
        "customer": customer,
        "customer_creation": "always" if mode == "payment" else None,
        "customer_details": {
            "address": None,
            "email": email,
            "name": None,
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        "customer_email": None,
        "expires_at": created + DAY,
        "invoice": invoice,
        "livemode": livemode,
        "metadata": metadata or {},
        "mode": mode,
        "payment_intent": payment_intent,
        "payment_status": payment_status,
        "status": "complete",
        "subscription": subscription,
        "success_url": "https://example.com/success",
        "url": None,
    }
    if is_basil(api_version):
        session["collected_information"] = {"shipping_details": None}
    else:
        session["shipping_details"] = None
    return session


def with_line_items(session: dict[str, Any], items: list[Item]) -> dict[str, Any]:
    """The session as the API answers GET /v1/checkout/sessions/{id}?expand[]=line_items."""
    return {
        **session,
        "line_items": {
            "object": "list",
            "data": [
                {
                    "id": new_id("li"),
                    "object": "item",
                    "amount_subtotal": item.price.unit_amount * item.quantity,
                    "amount_total": item.price.unit_amount * item.quantity,
                    "currency": "usd",
                    "description": "Licentric test product",
                    "price": price_object(item.price, livemode=session["livemode"]),
                    "quantity": item.quantity,
                }
                for item in items
            ],
            "has_more": False,
            "url": f"/v1/checkout/sessions/{session['id']}/line_items",
        },
    }


def subscription(
    *,
    id: str,
    customer: str,
    items: list[Item],
    period: tuple[int, int],
    created: int,
    status: str = "active",
    api_version: str = BASIL,
    cancel_at: int | None = None,
    cancel_at_period_end: bool = False,
    canceled_at: int | None = None,
    ended_at: int | None = None,
    pause_collection: dict[str, Any] | None = None,
    trial: tuple[int, int] | None = None,
    metadata: dict[str, str] | None = None,
    has_more: bool = False,
    latest_invoice: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A Subscription. Basil puts the period on each item; before basil it is top-level."""
    basil = is_basil(api_version)
    data = []
    for item in items:
        row: dict[str, Any] = {
            "id": item.id,
            "object": "subscription_item",
            "created": created,
            "metadata": {},
            "price": price_object(item.price, livemode=livemode),
            "quantity": item.quantity,
            "subscription": id,
            "tax_rates": [],
        }
        if basil:
            start, end = item.period or period
            row["current_period_start"] = start
            row["current_period_end"] = end
        else:
            row["plan"] = plan_object(item.price, livemode=livemode)
        data.append(row)
    sub: dict[str, Any] = {
        "id": id,
        "object": "subscription",
        "billing_cycle_anchor": period[0],
        "cancel_at": cancel_at,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": canceled_at,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically",
        "created": created,
        "currency": "usd",
        "customer": customer,
        "ended_at": ended_at,
        "items": {
            "object": "list",
            "data": data,
            "has_more": has_more,
            "total_count": len(data),
            "url": f"/v1/subscription_items?subscription={id}",
        },
        "latest_invoice": latest_invoice,
        "livemode": livemode,
        "metadata": metadata or {},
        "pause_collection": pause_collection,
        "start_date": created,
        "status": status,
        "trial_end": trial[1] if trial else None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": trial[0] if trial else None,
    }
    if not basil:
        sub["current_period_start"] = period[0]
        sub["current_period_end"] = period[1]
        if len(items) == 1:  # the legacy single-item conveniences
            sub["plan"] = plan_object(items[0].price, livemode=livemode)
            sub["quantity"] = items[0].quantity
        else:
            sub["plan"] = None
            sub["quantity"] = None
    return sub


@dataclass
class Line:
    """An invoice line for a subscription item and the service period it pays for."""

    item: Item
    period: tuple[int, int]
    amount: int | None = None
    proration: bool = False


def invoice(
    *,
    id: str,
    customer: str,
    subscription: str | None,
    lines: list[Line],
    created: int,
    status: str = "paid",
    billing_reason: str = "subscription_cycle",
    attempt_count: int = 1,
    next_payment_attempt: int | None = None,
    charge: str | None = None,
    payment_intent: str | None = None,
    subscription_metadata: dict[str, str] | None = None,
    api_version: str = BASIL,
    livemode: bool = False,
    lines_has_more: bool = False,
) -> dict[str, Any]:
    """An Invoice. Its top-level period_start/end are not the service period (for a renewal they are the
    period just ended): the service period is on each line, as in Stripe."""
    basil = is_basil(api_version)
    amounts = [
        line.amount if line.amount is not None else line.item.price.unit_amount * line.item.quantity
        for line in lines
    ]
    total = sum(amounts)
    paid = status == "paid"
    rows = []
    for line, amount in zip(lines, amounts, strict=True):
        row: dict[str, Any] = {
            "id": new_id("il"),
            "object": "line_item",
            "amount": amount,
            "currency": "usd",
            "description": f"{line.item.quantity} x Licentric test product",
            "discountable": True,
            "livemode": livemode,
            "metadata": {},
            "period": {"start": line.period[0], "end": line.period[1]},
            "quantity": line.item.quantity,
        }
        if basil:
            row["invoice"] = id
            row["parent"] = {
                "type": "subscription_item_details",
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": line.proration,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription,
                    "subscription_item": line.item.id,
                },
            }
            row["pricing"] = {
                "type": "price_details",
                "price_details": {"price": line.item.price.id, "product": line.item.price.product},
                "unit_amount_decimal": str(line.item.price.unit_amount),
            }
        else:
            row["price"] = price_object(line.item.price, livemode=livemode)
            row["plan"] = plan_object(line.item.price, livemode=livemode)
            row["proration"] = line.proration
            row["subscription"] = subscription
            row["subscription_item"] = line.item.id
            row["type"] = "subscription"
        rows.append(row)
    first = min((line.period[0] for line in lines), default=created)
    previous_start = first - MONTH if billing_reason == "subscription_cycle" else created
    obj: dict[str, Any] = {
        "id": id,
        "object": "invoice",
        "amount_due": total,
        "amount_paid": total if paid else 0,
        "amount_remaining": 0 if paid else total,
        "attempt_count": attempt_count,
        "attempted": attempt_count > 0,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": created,
        "currency": "usd",
        "customer": customer,
        "customer_email": None,
        "lines": {
            "object": "list",
            "data": rows,
            "has_more": lines_has_more,
            "total_count": len(rows),
            "url": f"/v1/invoices/{id}/lines",
        },
        "livemode": livemode,
        "metadata": {},
        "next_payment_attempt": next_payment_attempt,
        "period_start": previous_start,
        "period_end": first if billing_reason == "subscription_cycle" else created,
        "status": status,
        "status_transitions": {
            "finalized_at": created,
            "marked_uncollectible_at": None,
            "paid_at": created if paid else None,
            "voided_at": None,
        },
        "total": total,
    }
    if basil:
        obj["parent"] = (
            {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {
                    "subscription": subscription,
                    "metadata": subscription_metadata or {},
                },
            }
            if subscription
            else None
        )
    else:
        obj["subscription"] = subscription
        obj["subscription_details"] = {"metadata": subscription_metadata or {}}
        obj["paid"] = paid
        obj["charge"] = charge
        obj["payment_intent"] = payment_intent
    return obj


def charge(
    *,
    id: str,
    amount: int,
    created: int,
    amount_refunded: int = 0,
    customer: str | None = None,
    payment_intent: str | None = None,
    invoice: str | None = None,
    api_version: str = BASIL,
    livemode: bool = False,
    disputed: bool = False,
) -> dict[str, Any]:
    """A Charge; `refunded` is true only once amount_refunded reaches amount. Only pre-basil names its
    invoice."""
    obj: dict[str, Any] = {
        "id": id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "captured": True,
        "created": created,
        "currency": "usd",
        "customer": customer,
        "disputed": disputed,
        "livemode": livemode,
        "metadata": {},
        "paid": True,
        "payment_intent": payment_intent,
        "refunded": amount_refunded >= amount,
        "status": "succeeded",
    }
    if not is_basil(api_version):
        obj["invoice"] = invoice
    return obj


def dispute(
    *,
    charge: str,
    created: int,
    status: str = "needs_response",
    payment_intent: str | None = None,
    amount: int = 1500,
    reason: str = "fraudulent",
    id: str | None = None,
    livemode: bool = False,
) -> dict[str, Any]:
    """A Dispute; warning_* statuses are inquiries (no funds withdrawn)."""
    inquiry = status.startswith("warning_")
    return {
        "id": id or new_id("du"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": charge,
        "created": created,
        "currency": "usd",
        "evidence_details": {"due_by": created + 7 * DAY, "has_evidence": False, "past_due": False},
        "is_charge_refundable": inquiry,
        "livemode": livemode,
        "metadata": {},
        "payment_intent": payment_intent,
        "payment_method_details": {
            "type": "card",
            "card": {"brand": "visa", "case_type": "inquiry" if inquiry else "chargeback"},
        },
        "reason": reason,
        "status": status,
    }


def invoice_payment(
    *, invoice: str, payment_intent: str, amount: int, created: int, livemode: bool = False
) -> dict[str, Any]:
    """An InvoicePayment (basil+): the only link from a payment intent back to its invoice."""
    return {
        "id": new_id("inpay"),
        "object": "invoice_payment",
        "amount_paid": amount,
        "amount_requested": amount,
        "created": created,
        "currency": "usd",
        "invoice": invoice,
        "is_default": True,
        "livemode": livemode,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": created},
    }


# One customer's subscription, told as Stripe would


@dataclass
class Payment:
    """The charge and payment intent that paid (or tried to pay) an invoice."""

    charge: str = field(default_factory=lambda: new_id("ch"))
    payment_intent: str = field(default_factory=lambda: new_id("pi"))


class Story:
    """One customer subscribing to `prices`: ids, a clock and the subscription's current shape.

    `sub(...)` gives a customer.subscription.* event whose object is the subscription as it is now with
    the given changes (and, with `keep=True`, remembers them); `checkout`, `invoice_paid`,
    `invoice_failed`, `refund` and `dispute_event` give the other events. Nothing is sent.
    """

    def __init__(
        self,
        *prices: Price,
        api_version: str = BASIL,
        livemode: bool = False,
        quantity: int = 1,
        start: int | None = None,
        external_id: str | None = None,
        email: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.api_version = api_version
        self.livemode = livemode
        self.start = start if start is not None else int(time.time()) - 3600
        self.customer = new_id("cus")
        self.subscription_id = new_id("sub")
        self.session_id = new_id("cs_test" if not livemode else "cs_live")
        self.external_id = external_id if external_id is not None else f"user-{secrets.token_hex(4)}"
        self.email = email if email is not None else f"{self.external_id}@example.com"
        self.items = [Item(price, quantity) for price in prices]
        self.period = (self.start, self.start + MONTH)
        self.state: dict[str, Any] = {"status": "active", "metadata": metadata or {}}
        self.first_invoice = new_id("in")
        self.payments: dict[str, Payment] = {}

    def twin(self, api_version: str | None = None) -> Story:
        """The same customer, subscription, items and clock told afresh (in another payload generation,
        say): two accounts fed a story and its twin compare field for field."""
        other = Story(
            api_version=api_version or self.api_version,
            livemode=self.livemode,
            start=self.start,
            external_id=self.external_id,
            email=self.email,
            metadata=dict(self.state["metadata"]),
        )
        other.customer, other.subscription_id = self.customer, self.subscription_id
        other.session_id, other.first_invoice = self.session_id, self.first_invoice
        other.items = [Item(item.price, item.quantity, item.id, item.period) for item in self.items]
        other.period = self.period
        return other

    def created(self, at: int) -> int:
        return self.start + at

    def event(self, type_: str, obj: dict[str, Any], at: int, **fields: Any) -> dict[str, Any]:
        """An event of this story's version and mode, created at `at`."""
        version = {"api_version": self.api_version, "livemode": self.livemode}
        return event(type_, obj, created=self.created(at), **version, **fields)

    def period_n(self, n: int) -> tuple[int, int]:
        """The n-th billing period (1 is the first)."""
        return (self.start + (n - 1) * MONTH, self.start + n * MONTH)

    def item(self, price: Price, quantity: int = 1) -> Item:
        """A new item for this subscription (a plan switch or an add-on)."""
        return Item(price, quantity)

    def subscription(self, at: int = 0, **changes: Any) -> dict[str, Any]:
        """The subscription object now (created at `at`), with `changes` over the remembered state."""
        fields = {"status": "active", **self.state, **changes}
        items = fields.pop("items", self.items)
        period = fields.pop("period", self.period)
        return subscription(
            id=self.subscription_id,
            customer=self.customer,
            items=items,
            period=period,
            created=self.start,
            api_version=self.api_version,
            livemode=self.livemode,
            **fields,
        )

    def sub(
        self,
        type_: str,
        at: int,
        *,
        keep: bool = False,
        previous: dict[str, Any] | None = None,
        event_id: str | None = None,
        **changes: Any,
    ) -> dict[str, Any]:
        """A customer.subscription.* event at `at`; `keep` makes the changes the story's new state."""
        if type_ == "customer.subscription.deleted":
            changes = {
                "status": "canceled",
                "canceled_at": self.created(at),
                "ended_at": self.created(at),
            } | changes
        obj = self.subscription(at, **changes)
        if keep:
            for name, value in changes.items():
                if name == "items":
                    self.items = value
                elif name == "period":
                    self.period = value
                else:
                    self.state[name] = value
        return self.event(
            type_,
            obj,
            at,
            previous_attributes=previous,
            id=event_id,
            automatic=type_ != "customer.subscription.created",
        )

    def checkout(
        self, at: int, *, client_reference_id: str | None = ..., email: str | None = ..., **fields: Any
    ) -> dict[str, Any]:
        """checkout.session.completed for the subscription (mode subscription, paid)."""
        session = checkout_session(
            id=self.session_id,
            created=self.created(at) - 5,
            customer=self.customer,
            subscription=self.subscription_id,
            invoice=self.first_invoice,
            client_reference_id=self.external_id if client_reference_id is ... else client_reference_id,
            email=self.email if email is ... else email,
            livemode=self.livemode,
            api_version=self.api_version,
            **fields,
        )
        return self.event("checkout.session.completed", session, at)

    def payment(self, invoice_id: str) -> Payment:
        return self.payments.setdefault(invoice_id, Payment())

    def invoice(
        self,
        at: int,
        *,
        invoice_id: str | None = None,
        period: tuple[int, int] | None = None,
        items: list[Item] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """An invoice object for this subscription: one line per item over `period` (the current one)."""
        invoice_id = invoice_id or self.first_invoice
        payment = self.payment(invoice_id)
        span = period or self.period
        return invoice(
            id=invoice_id,
            customer=self.customer,
            subscription=self.subscription_id,
            lines=[Line(item, item.period or span) for item in (items or self.items)],
            created=self.created(at),
            charge=payment.charge,
            payment_intent=payment.payment_intent,
            api_version=self.api_version,
            livemode=self.livemode,
            subscription_metadata=self.state.get("metadata"),
            **fields,
        )

    def invoice_paid(
        self,
        at: int,
        *,
        type_: str = "invoice.paid",
        invoice_id: str | None = None,
        period: tuple[int, int] | None = None,
        billing_reason: str | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """invoice.paid (or invoice.payment_succeeded) at `at`; the first invoice unless `invoice_id`."""
        invoice_id = invoice_id or self.first_invoice
        if billing_reason is None:
            billing_reason = (
                "subscription_create" if invoice_id == self.first_invoice else "subscription_cycle"
            )
        obj = self.invoice(
            at, invoice_id=invoice_id, period=period, billing_reason=billing_reason, status="paid", **fields
        )
        return self.event(
            type_,
            obj,
            at,
            automatic=billing_reason != "subscription_create",
        )

    def invoice_failed(
        self,
        at: int,
        *,
        invoice_id: str,
        attempt_count: int = 1,
        next_payment_attempt: int | None = ...,  # type: ignore[assignment]
        period: tuple[int, int] | None = None,
        billing_reason: str = "subscription_cycle",
    ) -> dict[str, Any]:
        """invoice.payment_failed: the invoice stays open; the last attempt has no next_payment_attempt."""
        if next_payment_attempt is ...:
            next_payment_attempt = self.created(at) + 3 * DAY
        obj = self.invoice(
            at,
            invoice_id=invoice_id,
            period=period,
            status="open",
            billing_reason=billing_reason,
            attempt_count=attempt_count,
            next_payment_attempt=next_payment_attempt,
        )
        return self.event(
            "invoice.payment_failed",
            obj,
            at,
            automatic=True,
        )

    def refund(
        self, at: int, *, invoice_id: str | None = None, amount_refunded: int, previous: int = 0
    ) -> dict:
        """charge.refunded for the charge that paid the invoice, with the cumulative amount refunded."""
        invoice_id = invoice_id or self.first_invoice
        payment = self.payment(invoice_id)
        amount = sum(item.price.unit_amount * item.quantity for item in self.items)
        obj = charge(
            id=payment.charge,
            amount=amount,
            amount_refunded=amount_refunded,
            created=self.created(0),
            customer=self.customer,
            payment_intent=payment.payment_intent,
            invoice=invoice_id,
            api_version=self.api_version,
            livemode=self.livemode,
        )
        return self.event(
            "charge.refunded",
            obj,
            at,
            previous_attributes={"amount_refunded": previous, "refunded": False},
        )

    def dispute_event(
        self, type_: str, at: int, *, status: str, dispute_id: str, invoice_id: str | None = None
    ) -> dict[str, Any]:
        """charge.dispute.created / .closed on the charge that paid the invoice."""
        payment = self.payment(invoice_id or self.first_invoice)
        obj = dispute(
            id=dispute_id,
            charge=payment.charge,
            payment_intent=payment.payment_intent,
            created=self.created(at),
            status=status,
            livemode=self.livemode,
        )
        return event(
            type_, obj, created=self.created(at), api_version=self.api_version, livemode=self.livemode
        )

    def invoice_payment(self, invoice_id: str | None = None) -> dict[str, Any]:
        """The InvoicePayment the API answers for the invoice's payment intent (basil refetch)."""
        invoice_id = invoice_id or self.first_invoice
        amount = sum(item.price.unit_amount * item.quantity for item in self.items)
        return invoice_payment(
            invoice=invoice_id,
            payment_intent=self.payment(invoice_id).payment_intent,
            amount=amount,
            created=self.start,
            livemode=self.livemode,
        )


def one_off_checkout(
    *,
    at: int,
    payment_status: str = "paid",
    policy_code: str | None = None,
    type_: str = "checkout.session.completed",
    session: dict[str, Any] | None = None,
    api_version: str = BASIL,
    livemode: bool = False,
    external_id: str | None = None,
) -> dict[str, Any]:
    """A Checkout event for a one-off purchase (mode payment); pass `session` to send another event
    about the same session (async_payment_succeeded / _failed)."""
    if session is None:
        metadata = {"licentric_policy": policy_code} if policy_code else {}
        user = external_id or f"user-{secrets.token_hex(4)}"
        session = checkout_session(
            created=at - 5,
            mode="payment",
            customer=new_id("cus"),
            payment_intent=new_id("pi"),
            payment_status=payment_status,
            client_reference_id=user,
            email=f"{user}@example.com",
            metadata=metadata,
            livemode=livemode,
            api_version=api_version,
        )
    else:
        session = {**session, "payment_status": payment_status}
    return event(type_, session, created=at, api_version=api_version, livemode=livemode)


# Driving a tenant over HTTP (shared by test_stripe_scenarios.py and test_stripe_properties.py)


def instant(value: str | None) -> str | None:
    """A timestamp from the API, normalised (UTC, ISO) so two answers compare equal."""
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).isoformat()


def epoch(value: str | None) -> int | None:
    """A timestamp from the API as Stripe's epoch seconds."""
    if value is None:
        return None
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())


@dataclass
class Tenant:
    """A Licentric account connected to Stripe, and the calls the tests make on it."""

    client: Any
    account: Any  # conftest.Account
    secret: str
    database_url: str
    livemode: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return self.account.headers

    async def send(
        self, evt: dict[str, Any] | bytes | str, *, secret: str | None = None, expect: int = 200
    ) -> dict:
        """Deliver one signed event; the webhook's answer."""
        response = await deliver(self.client, self.account, evt, secret or self.secret)
        assert response.status_code == expect, response.text
        return response.json()

    async def send_all(self, *events: dict[str, Any]) -> list[dict[str, Any]]:
        return [await self.send(evt) for evt in events]

    async def pages(self, path: str, **params: Any) -> list[dict[str, Any]]:
        """Every item of a list endpoint, following the cursor."""
        items: list[dict[str, Any]] = []
        query: dict[str, Any] = {"limit": 100, **params}
        while True:
            response = await self.client.get(path, headers=self.headers, params=query)
            assert response.status_code == 200, response.text
            page = response.json()
            items += page["data"]
            if not page["has_more"]:
                return items
            query = {**query, "starting_after": items[-1]["id"]}

    async def licenses(self) -> list[dict[str, Any]]:
        return await self.pages("/v1/licenses")

    async def license(self) -> dict[str, Any]:
        """The account's one license."""
        licenses = await self.licenses()
        assert len(licenses) == 1, licenses
        return licenses[0]

    async def customers(self) -> list[dict[str, Any]]:
        return await self.pages("/v1/customers")

    async def ledger(self, **params: Any) -> list[dict[str, Any]]:
        """The Stripe events recorded for the account (GET /v1/stripe/events)."""
        return await self.pages("/v1/stripe/events", **params)

    async def events(self, type_: str) -> list[dict[str, Any]]:
        """The account's own events (GET /v1/events) of one type."""
        return await self.pages("/v1/events", type=type_)

    async def validate(self, key: str) -> dict[str, Any]:
        response = await self.client.post("/v1/licenses/validate", headers=self.headers, json={"key": key})
        assert response.status_code == 200, response.text
        return response.json()

    async def map(self, *, policy_code: str, price: str | None = None, product: str | None = None) -> dict:
        body: dict[str, Any] = {"policy_code": policy_code}
        if price:
            body["stripe_price_id"] = price
        if product:
            body["stripe_product_id"] = product
        response = await self.client.post("/v1/stripe/mappings", headers=self.headers, json=body)
        assert response.status_code == 201, response.text
        return response.json()

    async def state(self) -> dict[str, Any]:
        """What Stripe made of the account, without ids or keys, so two accounts compare."""
        customers = await self.customers()
        owners = {c["id"]: (c["external_id"], c["email"], c["stripe_customer_id"]) for c in customers}
        licenses = [
            {
                "policy_code": lic["policy_code"],
                "status": lic["status"],
                "effective_status": lic["effective_status"],
                "seats": lic["seats"],
                "paid_through": instant(lic["paid_through"]),
                "expires_at": instant(lic["expires_at"]),
                "grace_ends_at": instant(lic["grace_ends_at"]),
                "disputed": lic["disputed_at"] is not None,
                "stripe_subscription_id": lic["stripe_subscription_id"],
                "customer": owners.get(lic["customer_id"]),
            }
            for lic in await self.licenses()
        ]
        return {"licenses": sorted(licenses, key=repr), "customers": sorted(owners.values(), key=repr)}


async def open_tenant(
    client: Any,
    account: Any,
    database_url: str,
    policies: dict[str, Price | None],
    *,
    policy_fields: dict[str, dict[str, Any]] | None = None,
    livemode: bool = False,
    api_key: str | None = None,
) -> Tenant:
    """Policies (code → the price mapped to it, or None for none), a Stripe connection with a signing
    secret (or an API key: Licentric then makes the endpoint in the fake Stripe), and the mappings."""
    for code in policies:
        make_policy(database_url, account.id, code, **(policy_fields or {}).get(code, {}))
    secret = None if api_key else f"whsec_{secrets.token_hex(16)}"
    connected = await connect(client, account, livemode=livemode, webhook_secret=secret, api_key=api_key)
    tenant = Tenant(client, account, secret or connected, database_url, livemode)
    for code, price in policies.items():
        if price is not None:
            await tenant.map(policy_code=code, price=price.id)
    return tenant
