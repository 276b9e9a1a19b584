"""Helpers for the console tests (tests/python/test_console_*.py): members of an account, signing in
by the mailed link as a browser does, and the pages' forms."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import httpx

from license_helpers import superuser
from portal_support import TOKEN_FIELD, csrf_of, mails_to, path_of, text_of

LINK = re.compile(r"(https?://\S+/console/login/confirm\?token=[A-Za-z0-9_-]+)")
SECURE_SESSION = "__Host-licentric_console"


def add_member(
    database_url: str, account_id: str, email: str, role: str = "owner", name: str | None = None
) -> str:
    """A member of the account, as `licentric accounts create --owner` or an accepted invitation makes one."""
    [row] = superuser(
        database_url,
        "insert into lic.members (account_id, email, name, role) values (%s, lower(%s), %s, %s) returning id",
        (account_id, email, name, role),
    )
    return str(row["id"])


def member(database_url: str, account_id: str, role: str, name: str | None = None) -> str:
    """The address of a new member of the account in that role (an address of its own: a link a minute
    per address)."""
    address = f"{role}-{secrets.token_hex(4)}@example.com"
    add_member(database_url, account_id, address, role, name)
    return address


def console_link(mail_dir: Path, address: str) -> str:
    found = LINK.search(text_of(mails_to(mail_dir, address)[-1]))
    assert found, text_of(mails_to(mail_dir, address)[-1])
    return found.group(1)


def forget_link_requests(database_url: str) -> None:
    """Every test client comes from one address, which may ask for 20 links an hour (SQL counts them):
    a test starts with none counted."""
    superuser(database_url, "delete from private.console_login_requests")


async def request_console_link(client: Any, address: str) -> httpx.Response:
    page = await client.get("/console/login")
    assert page.status_code == 200, page.text
    return await client.post("/console/login", data={"email": address, "csrf_token": csrf_of(page.text)})


async def confirm_console_link(client: Any, link: str, account_id: str | None = None) -> httpx.Response:
    """Open the link and press the confirm button (for account_id, when given)."""
    page = await client.get(path_of(link))
    assert page.status_code == 200, page.text
    token = TOKEN_FIELD.search(page.text)
    assert token
    data = {"csrf_token": csrf_of(page.text), "token": token.group(1)}
    if account_id:
        data["account_id"] = account_id
    else:
        chosen = re.search(r'name="account_id" value="([0-9a-f-]{36})"', page.text)
        if chosen:
            data["account_id"] = chosen.group(1)
    return await client.post("/console/login/confirm", data=data)


async def console_sign_in(
    client: Any, address: str, mail_dir: Path, account_id: str | None = None
) -> httpx.Response:
    """The whole flow: ask for a link, read it from the mail, confirm; the confirm's answer."""
    before = len(mails_to(mail_dir, address))
    sent = await request_console_link(client, address)
    assert sent.status_code == 202, sent.text
    assert len(mails_to(mail_dir, address)) == before + 1, "no new sign-in mail"
    confirmed = await confirm_console_link(client, console_link(mail_dir, address), account_id)
    assert confirmed.status_code == 303, confirmed.text
    return confirmed


async def page_csrf(client: Any, path: str) -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def post_form(
    client: Any, page: str, action: str, data: dict[str, Any] | None = None
) -> httpx.Response:
    """Post a form of page (with that page's CSRF token) to action; a list value is a repeated field."""
    token = await page_csrf(client, page)
    return await client.post(action, data={"csrf_token": token, **(data or {})})
