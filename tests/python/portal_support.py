"""Helpers for the portal tests (tests/python/test_portal_*.py): a tenant with an open portal, its
customers and licenses, the development mail backend's messages, and signing in as a browser does."""

from __future__ import annotations

import contextlib
import email
import email.policy
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx

from license_helpers import add_machine, make_policy, superuser

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
LINK = re.compile(r"(https?://\S+/portal/[a-z0-9-]+/login/confirm\?token=[A-Za-z0-9_-]+)")
TOKEN_FIELD = re.compile(r'name="token" value="([A-Za-z0-9_-]+)"')
SECURE_SESSION = "__Host-licentric_portal"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, f"no csrf_token in:\n{html}"
    return found.group(1)


def mails(directory: Path) -> list[EmailMessage]:
    """The messages the file backend wrote, oldest first."""
    if not directory.exists():
        return []
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
        for path in sorted(directory.glob("*.eml"))
    ]


def mails_to(directory: Path, address: str) -> list[EmailMessage]:
    return [m for m in mails(directory) if address.lower() in str(m["To"]).lower()]


def text_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


def html_of(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]


def link_in(message: EmailMessage) -> str:
    found = LINK.search(text_of(message))
    assert found, text_of(message)
    return found.group(1)


def path_of(url: str) -> str:
    """The path and query of an absolute link, for the test client."""
    parts = httpx.URL(url)
    return parts.raw_path.decode()


@dataclass
class Tenant:
    """An account with an open portal and a license policy to sell."""

    account: Any
    slug: str
    policy_code: str
    policy_id: str
    database_url: str
    customers: dict[str, str] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return self.account.headers

    @property
    def base(self) -> str:
        return f"/portal/{self.slug}"


async def open_portal(
    client: httpx.AsyncClient | Any,
    account: Any,
    database_url: str,
    *,
    max_machines: int | None = 3,
    max_users: int | None = 3,
    **branding: Any,
) -> Tenant:
    slug = f"acme-{secrets.token_hex(4)}"
    response = await client.put(
        "/v1/portal/branding", headers=account.headers, json={"slug": slug, **branding}
    )
    assert response.status_code == 200, response.text
    code = f"pro-{secrets.token_hex(3)}"
    policy_id = make_policy(database_url, account.id, code, max_machines=max_machines, max_users=max_users)
    superuser(database_url, "update lic.license_policies set name = 'Pro' where id = %s", (policy_id,))
    return Tenant(account, slug, code, policy_id, database_url)


async def add_customer(client: Any, tenant: Tenant, address: str, name: str | None = None) -> str:
    response = await client.post(
        "/v1/customers", headers=tenant.headers, json={"email": address, "name": name}
    )
    assert response.status_code == 201, response.text
    tenant.customers[address] = response.json()["id"]
    return response.json()["id"]


async def add_license(client: Any, tenant: Tenant, customer_id: str, machines: int = 0) -> dict[str, Any]:
    response = await client.post(
        "/v1/licenses",
        headers=tenant.headers,
        json={"policy_code": tenant.policy_code, "customer_id": customer_id},
    )
    assert response.status_code == 201, response.text
    license_ = response.json()
    for index in range(machines):
        add_machine(tenant.database_url, license_["id"], f"fp-{index}-{secrets.token_hex(3)}")
    return license_


async def request_link(client: Any, tenant: Tenant, address: str) -> httpx.Response:
    page = await client.get(f"{tenant.base}/login")
    assert page.status_code == 200, page.text
    return await client.post(
        f"{tenant.base}/login", data={"email": address, "csrf_token": csrf_of(page.text)}
    )


async def open_link(client: Any, link: str) -> httpx.Response:
    return await client.get(path_of(link))


async def confirm_link(client: Any, link: str) -> httpx.Response:
    """Open the link and press the confirm button."""
    page = await open_link(client, link)
    assert page.status_code == 200, page.text
    token = TOKEN_FIELD.search(page.text)
    assert token
    return await client.post(
        path_of(link).split("?")[0],
        data={"csrf_token": csrf_of(page.text), "token": token.group(1)},
    )


async def sign_in(client: Any, tenant: Tenant, address: str, mail_dir: Path) -> httpx.Response:
    """The whole flow: ask for a link, read it from the mail, confirm; the confirm's answer."""
    before = len(mails_to(mail_dir, address))
    sent = await request_link(client, tenant, address)
    assert sent.status_code == 202, sent.text
    received = mails_to(mail_dir, address)
    assert len(received) == before + 1, "no new sign-in mail"
    confirmed = await confirm_link(client, link_in(received[-1]))
    assert confirmed.status_code == 303, confirmed.text
    return confirmed


def session_rows(database_url: str, customer_id: str) -> list[dict[str, Any]]:
    return superuser(
        database_url,
        "select session_hash, last_seen_at, expires_at from lic.portal_sessions where customer_id = %s",
        (customer_id,),
    )


def portal_client(settings: Any, mail_dir: Path, **changes: Any) -> Any:
    """A test client of the app over https (the cookies are Secure), mail going to mail_dir."""
    from dataclasses import replace

    from litestar.testing import AsyncTestClient

    from licentric.app import create_app

    changed = {
        "mail_url": f"file://{mail_dir}",
        **changes,
    }
    client = AsyncTestClient(app=create_app(replace(settings, **changed)), base_url="https://licentric.test")
    client.follow_redirects = False  # the tests look at each redirect and its cookies
    return client


async def add_usage(client: Any, tenant: Tenant, license_id: str, used: int = 640, limit: int = 1000) -> None:
    """A monthly budget of `limit` tokens on the license, `used` of them spent this month."""
    meter = await client.post(
        "/v1/meters",
        headers=tenant.headers,
        json={"code": "tokens", "name": "AI tokens", "aggregation": "sum", "unit": "tokens"},
    )
    assert meter.status_code == 201, meter.text
    budget = await client.post(
        "/v1/budgets",
        headers=tenant.headers,
        json={"meter_code": "tokens", "license_id": license_id, "period": "month", "limit": str(limit)},
    )
    assert budget.status_code == 201, budget.text
    events = [{"id": "seed-usage", "meter": "tokens", "quantity": used, "license_id": license_id}]
    ingested = await client.post("/v1/usage/events", headers=tenant.headers, json=events)
    assert ingested.status_code == 200 and ingested.json()["accepted"] == 1, ingested.text


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """The app under uvicorn on a free port in a thread of its own (a real server: background tasks
    run after the answer has left); its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
