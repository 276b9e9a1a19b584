"""The event types an endpoint may subscribe to (private.webhook_event_types) are exactly the types the
functions emit but an endpoint's creation, updates and deletion (decision 61): a new event added to
functions/ without adding it to the list would never be deliverable to an endpoint that names it, and a
listed type nothing emits would be a subscription that never fires."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
# Licentric's objects; Stripe's event types (invoice.paid, charge.refunded ...) name other objects.
OBJECTS = "agent|budget|customer|entitlement|license|license_policy|machine|member|meter|webhook_endpoint"
LITERAL = re.compile(rf"'((?:{OBJECTS})\.[a-z_]+)'(?!\.)")
# Recorded in the outbox (GET /v1/events, the audit log), never fanned out to endpoints.
NOT_DELIVERED = {
    "webhook_endpoint.created",
    "webhook_endpoint.updated",
    "webhook_endpoint.deleted",
    "member.signed_in",
    "member.signed_out",
    "member.session_revoked",
}


def emitted_types() -> set[str]:
    found: set[str] = set()
    for path in sorted((ROOT / "functions").glob("*.sql")):
        text = path.read_text()
        if path.name == "80_webhooks.sql":
            # The list itself lives here; the types this file emits are in the functions after it.
            text = text[text.index("comment on function private.webhook_event_types()") :]
        found |= set(LITERAL.findall(text))
    return found


def test_every_emitted_event_type_is_subscribable_and_nothing_else(database_url: str):
    with psycopg.connect(database_url) as conn:
        listed = set(conn.execute("select unnest(private.webhook_event_types())").fetchall())
    listed = {row[0] for row in listed}

    assert emitted_types() - NOT_DELIVERED == listed
