"""Members and invitations over HTTP with the secret key (api/licentric/routes/members.py), and the
one-owner rule under concurrency: the rules themselves are SQL (functions/88_members.sql, pgTAP 700/710)."""

from __future__ import annotations

import threading

import psycopg
import pytest
from conftest import Account

from support import assert_error


def add_member(database_url: str, account_id: str, email: str, role: str) -> str:
    """A member made as the operator makes one (private.add_member in the account's context)."""
    with psycopg.connect(database_url) as conn:
        conn.execute("select private.set_context(%s, 'secret')", (account_id,))
        return str(
            conn.execute(
                "select id from private.add_member(account_id => %s, email => %s, role => %s)",
                (account_id, email, role),
            ).fetchone()[0]
        )


async def test_members_are_listed_and_invitations_made_and_revoked(client, account: Account, database_url):
    owner = add_member(database_url, account.id, "owner@example.com", "owner")

    listed = await client.get("/v1/members", headers=account.headers)
    assert listed.status_code == 200, listed.text
    assert [(m["id"], m["email"], m["role"]) for m in listed.json()["data"]] == [
        (owner, "owner@example.com", "owner")
    ]

    made = await client.post(
        "/v1/member_invitations",
        headers=account.headers,
        json={"email": "Dev@Example.com", "role": "developer"},
    )
    assert made.status_code == 201, made.text
    invitation = made.json()
    assert (invitation["email"], invitation["role"], invitation["status"]) == (
        "dev@example.com",
        "developer",
        "pending",
    )
    assert invitation["token"].startswith("lic_iv_")

    pending = (await client.get("/v1/member_invitations", headers=account.headers)).json()["data"]
    assert [(i["id"], i["token"]) for i in pending] == [(invitation["id"], None)]

    revoked = await client.delete(f"/v1/member_invitations/{invitation['id']}", headers=account.headers)
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    again = await client.delete(f"/v1/member_invitations/{invitation['id']}", headers=account.headers)
    assert_error(again, 409, "invalid_state")


async def test_inviting_a_member_again_or_as_an_unknown_role_is_refused(
    client, account: Account, database_url
):
    add_member(database_url, account.id, "owner@example.com", "owner")

    again = await client.post(
        "/v1/member_invitations",
        headers=account.headers,
        json={"email": "owner@example.com", "role": "viewer"},
    )
    bad_role = await client.post(
        "/v1/member_invitations", headers=account.headers, json={"email": "x@example.com", "role": "root"}
    )
    bad_email = await client.post(
        "/v1/member_invitations", headers=account.headers, json={"email": "not an address", "role": "viewer"}
    )

    assert_error(again, 409, "invalid_state")
    assert_error(bad_role, 422, "invalid_parameter", "role")
    assert_error(bad_email, 422, "invalid_parameter", "email")


async def test_roles_change_but_the_account_keeps_an_owner(client, account: Account, database_url):
    owner = add_member(database_url, account.id, "owner@example.com", "owner")
    dev = add_member(database_url, account.id, "dev@example.com", "developer")

    demote_last = await client.post(f"/v1/members/{owner}", headers=account.headers, json={"role": "admin"})
    remove_last = await client.delete(f"/v1/members/{owner}", headers=account.headers)
    assert_error(demote_last, 409, "invalid_state", "member_id")
    assert_error(remove_last, 409, "invalid_state", "member_id")

    promoted = await client.post(f"/v1/members/{dev}/transfer_ownership", headers=account.headers)
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["role"] == "owner"
    demoted = await client.post(f"/v1/members/{owner}", headers=account.headers, json={"role": "viewer"})
    assert demoted.json()["role"] == "viewer"
    removed = await client.delete(f"/v1/members/{owner}", headers=account.headers)
    assert removed.status_code == 200, removed.text
    gone = await client.get(f"/v1/members/{owner}", headers=account.headers)
    assert_error(gone, 404, "resource_missing")


async def test_another_accounts_member_is_not_found(client, account: Account, make_account, database_url):
    other = make_account("Other")
    theirs = add_member(database_url, other.id, "owner@example.com", "owner")

    assert_error(await client.get(f"/v1/members/{theirs}", headers=account.headers), 404, "resource_missing")
    assert_error(
        await client.delete(f"/v1/members/{theirs}", headers=account.headers), 404, "resource_missing"
    )


@pytest.mark.parametrize("change", ["demote", "remove"])
def test_two_concurrent_changes_of_the_last_two_owners_leave_one(
    make_account, database_url: str, change: str
):
    account = make_account("Two owners")
    owners = [add_member(database_url, account.id, f"o{n}@example.com", "owner") for n in (1, 2)]
    statement = {
        "demote": "select api.update_member_role(member_id => %s, role => 'admin')",
        "remove": "select api.remove_member(member_id => %s)",
    }[change]
    first = psycopg.connect(database_url)
    second = psycopg.connect(database_url)
    outcome: dict[str, BaseException | None] = {}
    try:
        # The secret key's context, set directly: two authentications of one key would queue on its row.
        for conn in (first, second):
            conn.execute("select private.set_context(%s, 'secret')", (account.id,))
            conn.execute("set local role lic_app")
        first.execute(statement, (owners[0],))

        def run_second() -> None:
            try:
                second.execute(statement, (owners[1],))
                second.commit()
                outcome["second"] = None
            except psycopg.Error as exc:
                second.rollback()
                outcome["second"] = exc

        thread = threading.Thread(target=run_second)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the second change must wait for the first"
        first.commit()
        thread.join(10)
    finally:
        first.close()
        second.close()

    assert isinstance(outcome["second"], psycopg.Error)
    assert outcome["second"].sqlstate == "LSTAT"
    with psycopg.connect(database_url) as conn:
        left = conn.execute(
            "select count(*) from lic.members where account_id = %s and role = 'owner'", (account.id,)
        ).fetchone()[0]
    assert left == 1
