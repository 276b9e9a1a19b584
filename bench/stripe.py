"""Stripe auto-sync, measured against raw PostgreSQL in the same run.

    make bench

Each delivery is one transaction calling service.apply_stripe_event as lic_app
(RLS active): record the event once, merge its facts, derive the licenses,
emit their events. The floor is what any webhook handler must do at least:
one transaction inserting the same event body into a table unique on
(account, event id). A lifecycle of five events per subscription (created,
invoice paid, quantity change, payment failed, canceled) runs from 1 and 4
clients, each client on its own subscriptions; the ratio is floor time over
Licentric time (1.0 would be free).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import psycopg

from licentric.cli import create_account
from licentric.migrate import migrate

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SUBSCRIPTIONS = int(os.environ.get("BENCH_STRIPE_SUBSCRIPTIONS", "400"))
START = int(time.time()) - 3600

FLOOR_TABLE = """
create table public.bench_webhooks (
  account_id uuid not null, event_id text not null, payload jsonb not null,
  primary key (account_id, event_id)
);
grant insert on public.bench_webhooks to lic_app;
"""


def lifecycle(n: int) -> list[dict]:
    """Five events of one subscription, in order, pre-basil and basil alternating."""
    sub, cus, item = f"sub_b{n}", f"cus_b{n}", f"si_b{n}"

    def event(kind: str, at: int, obj: dict) -> dict:
        return {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": kind,
            "created": START + at,
            "livemode": False,
            "api_version": "2025-03-31.basil",
            "data": {"object": obj},
        }

    def subscription(status: str, quantity: int) -> dict:
        return {
            "id": sub,
            "object": "subscription",
            "customer": cus,
            "status": status,
            "items": {
                "data": [
                    {
                        "id": item,
                        "price": {"id": "price_bench", "product": "prod_bench"},
                        "quantity": quantity,
                        "current_period_end": START + 30 * 86400,
                    }
                ]
            },
        }

    def invoice(invoice_id: str, at: int, paid: bool) -> dict:
        return {
            "id": invoice_id,
            "object": "invoice",
            "customer": cus,
            "created": START + at,
            "amount_paid": 1000 if paid else 0,
            "attempt_count": 0 if paid else 1,
            "parent": {"type": "subscription_details", "subscription_details": {"subscription": sub}},
            "lines": {"data": [{"period": {"start": START, "end": START + 30 * 86400}}]},
        }

    return [
        event("customer.subscription.created", 1, subscription("active", 1)),
        event("invoice.paid", 2, invoice(f"in_b{n}a", 1, True)),
        event("customer.subscription.updated", 3, subscription("active", 3)),
        event("invoice.payment_failed", 4, invoice(f"in_b{n}b", 4, False)),
        event("customer.subscription.deleted", 5, subscription("canceled", 3)),
    ]


def run(url: str, account: str, clients: int, floor: bool, offset: int) -> float:
    """Seconds to deliver every subscription's lifecycle, split over clients."""
    per_client = SUBSCRIPTIONS // clients

    def deliver(client: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("set role lic_app")
            first = offset + client * per_client
            for n in range(first, first + per_client):
                for event in lifecycle(n):
                    body = json.dumps(event)
                    if floor:
                        conn.execute(
                            "insert into public.bench_webhooks (account_id, event_id, payload)"
                            " values (%s, %s, %s::jsonb) on conflict do nothing",
                            (account, event["id"], body),
                        )
                    else:
                        conn.execute(
                            "select service.apply_stripe_event(account_id => %s, event => %s::jsonb,"
                            " livemode => false)",
                            (account, body),
                        )

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(deliver, range(clients)))
    return time.perf_counter() - started


def main() -> int:
    database = f"licentric_bench_stripe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(f'create database "{database}"')
    url = urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{database}"))
    try:
        migrate(url)
        account = create_account(url, "Bench", "enterprise")["account_id"]
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FLOOR_TABLE)
            conn.execute(
                "insert into lic.license_policies (account_id, code, name) values (%s, 'pro', 'Pro')",
                (account,),
            )
            conn.execute(
                "insert into lic.stripe_mappings (account_id, stripe_price_id, policy_id)"
                " select account_id, 'price_bench', id from lic.license_policies where account_id = %s",
                (account,),
            )
        events = SUBSCRIPTIONS * 5
        print(f"Stripe deliveries: {SUBSCRIPTIONS} subscriptions x 5 events = {events} per run")
        print(f"{'clients':>7}  {'floor ev/s':>11}  {'licentric ev/s':>14}  {'ratio':>6}")
        offset = 0
        for clients in (1, 4):
            floor = run(url, account, clients, True, offset)
            licentric = run(url, account, clients, False, offset)
            offset += SUBSCRIPTIONS
            rates = f"{events / floor:>11.0f}  {events / licentric:>14.0f}"
            print(f"{clients:>7}  {rates}  {floor / licentric:>6.2f}")
        with psycopg.connect(url) as conn:
            outcomes = conn.execute(
                "select outcome, count(*) from lic.stripe_events group by outcome order by outcome"
            ).fetchall()
        print("outcomes:", ", ".join(f"{o} {c}" for o, c in outcomes))
    finally:
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(f'drop database if exists "{database}" with (force)')
    return 0


if __name__ == "__main__":
    sys.exit(main())
