"""Helpers for the license and validation tests: policies, entitlements,
customers, machines and seats written straight in SQL as the superuser (so
these tests do not depend on the policy, customer or machine routes), and
licenses made over HTTP."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


def superuser(database_url: str, statement: str, params: Any = None) -> list[dict[str, Any]]:
    """One statement in its own committed transaction, as the superuser (RLS does not apply)."""
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def make_policy(database_url: str, account_id: str, code: str, **fields: Any) -> str:
    """A license policy (duration defaults to 30 days; pass duration=None for perpetual); its id."""
    columns = {"duration": "30 days", **fields}
    names = ", ".join(columns)
    values = ", ".join(f"%({name})s" for name in columns)
    rows = superuser(
        database_url,
        f"insert into lic.license_policies (account_id, code, name, {names})"
        f" values (%(account_id)s, %(code)s, %(code)s, {values}) returning id::text",
        {"account_id": account_id, "code": code, **columns},
    )
    return rows[0]["id"]


def make_entitlement(database_url: str, account_id: str, code: str, policies: list[str] = ()) -> str:
    """An entitlement, attached to the policies with these codes; its id."""
    rows = superuser(
        database_url,
        "with e as (insert into lic.entitlements (account_id, code, name) values (%s, %s, upper(%s))"
        " returning account_id, id), pe as (insert into lic.policy_entitlements"
        " (account_id, policy_id, entitlement_id) select e.account_id, p.id, e.id from e"
        " join lic.license_policies p on p.account_id = e.account_id and p.code = any(%s))"
        " select id::text from e",
        (account_id, code, code, list(policies)),
    )
    return rows[0]["id"]


def make_customer(database_url: str, account_id: str, external_id: str) -> str:
    rows = superuser(
        database_url,
        "insert into lic.customers (account_id, external_id) values (%s, %s) returning id::text",
        (account_id, external_id),
    )
    return rows[0]["id"]


def set_license(database_url: str, license_id: str, **fields: Any) -> None:
    """Force stored license columns (status, expires_at, grace_ends_at …) as the superuser."""
    sets = ", ".join(f"{name} = %({name})s" for name in fields)
    superuser(database_url, f"update lic.licenses set {sets} where id = %(id)s", {"id": license_id, **fields})


def add_machine(database_url: str, license_id: str, fingerprint: str, silent_for: str = "0 seconds") -> None:
    superuser(
        database_url,
        "insert into lic.machines (account_id, license_id, fingerprint, last_heartbeat_at)"
        " select account_id, id, %s, now() - %s::interval from lic.licenses where id = %s",
        (fingerprint, silent_for, license_id),
    )


def add_seat(database_url: str, license_id: str, customer_id: str, role: str = "member") -> None:
    superuser(
        database_url,
        "insert into lic.license_users (account_id, license_id, customer_id, role)"
        " select account_id, id, %s, %s from lic.licenses where id = %s",
        (customer_id, role, license_id),
    )


async def create_license(client: Any, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/licenses", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def publishable_key(client: Any, headers: dict[str, str]) -> dict[str, str]:
    response = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['secret']}"}
