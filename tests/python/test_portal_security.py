"""The portal's magic links and sessions under attack (reliability-security §3.2 and (b) 49-59): link
scanners, double confirms, expiry, session fixation, cookie attributes, CSRF, another customer's ids,
email enumeration (answers and timing), rate limits, logout, the idle and absolute timeouts, and links
built from the configured URL whatever the Host header says."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import statistics
import time
import uuid
from dataclasses import replace

import httpx
import pytest

from licentric.app import create_app

from license_helpers import superuser
from portal_support import (
    SECURE_SESSION,
    TOKEN_FIELD,
    add_customer,
    add_license,
    confirm_link,
    csrf_of,
    link_in,
    mails_to,
    open_link,
    open_portal,
    path_of,
    portal_client,
    request_link,
    serve_in_thread,
    session_rows,
    sign_in,
)
from processes import free_port


@pytest.fixture
async def tenant(web, account, database_url):
    tenant = await open_portal(web, account, database_url)
    alice = await add_customer(web, tenant, "alice@example.com", "Alice")
    tenant.customers["license"] = (await add_license(web, tenant, alice, machines=2))["id"]
    return tenant


def tokens(database_url: str, customer_id: str) -> list[dict]:
    return superuser(
        database_url,
        "select used_at, revoked_at, expires_at from lic.portal_login_tokens where customer_id = %s"
        " order by created_at",
        (customer_id,),
    )


async def a_link(web, tenant, mail_dir, address: str = "alice@example.com") -> str:
    response = await request_link(web, tenant, address)
    assert response.status_code == 202, response.text
    return link_in(mails_to(mail_dir, address)[-1])


def age_tokens(database_url: str) -> None:
    """Make every link issued so far two minutes old: past the one-a-minute limit of its address."""
    superuser(
        database_url, "update lic.portal_login_tokens set created_at = created_at - interval '2 minutes'"
    )


def session_cookie(response: httpx.Response) -> str:
    [header] = [h for h in response.headers.get_list("set-cookie") if h.startswith(SECURE_SESSION + "=")]
    return header.split(";")[0].split("=", 1)[1]


# The link: scanners, single use, expiry.


async def test_get_and_head_of_the_link_spend_nothing(web, settings, tenant, mail_dir, database_url):
    link = await a_link(web, tenant, mail_dir)
    alice = tenant.customers["alice@example.com"]
    # A mail scanner: HEAD, then GET, twice, without cookies.
    async with portal_client(settings, mail_dir) as scanner:
        for _ in range(2):
            head = await scanner.head(path_of(link))
            assert head.status_code == 200
            assert head.content == b""
            got = await open_link(scanner, link)
            assert got.status_code == 200
            assert "a***@example.com" in got.text
    [token] = tokens(database_url, alice)
    assert token["used_at"] is None
    assert session_rows(database_url, alice) == []
    # The person's own click still works.
    confirmed = await confirm_link(web, link)
    assert confirmed.status_code == 303
    assert len(session_rows(database_url, alice)) == 1


async def test_the_link_page_is_not_cached_nor_leaked_as_a_referrer(web, tenant, mail_dir):
    link = await a_link(web, tenant, mail_dir)
    for response in (await open_link(web, link), await web.head(path_of(link))):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    # The token travels in the query string (never logged), the form posts it in the body.
    assert "/login/confirm?token=" in link


async def test_a_scanner_pressing_the_button_without_the_pages_cookie_is_refused(
    settings, web, tenant, mail_dir, database_url
):
    link = await a_link(web, tenant, mail_dir)
    page = await open_link(web, link)
    token = TOKEN_FIELD.search(page.text).group(1)
    async with portal_client(settings, mail_dir) as bot:
        response = await bot.post(
            path_of(link).split("?")[0], data={"csrf_token": csrf_of(page.text), "token": token}
        )
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert tokens(database_url, tenant.customers["alice@example.com"])[0]["used_at"] is None


async def test_a_link_confirmed_twice_makes_exactly_one_session(
    settings, web, tenant, mail_dir, database_url
):
    link = await a_link(web, tenant, mail_dir)
    first = await confirm_link(web, link)
    assert first.status_code == 303
    # The same link in another browser (no session there): used up.
    async with portal_client(settings, mail_dir) as other:
        page = await open_link(other, link)
        assert page.status_code == 410
        assert "can no longer sign you in" in page.text
        login = await other.get(f"{tenant.base}/login")
        token = path_of(link).split("token=")[1]
        again = await other.post(
            f"{tenant.base}/login/confirm", data={"csrf_token": csrf_of(login.text), "token": token}
        )
        assert again.status_code == 410
        assert SECURE_SESSION not in again.headers.get("set-cookie", "")
    assert len(session_rows(database_url, tenant.customers["alice@example.com"])) == 1


async def test_two_confirms_at_the_same_moment_make_one_session(
    settings, web, tenant, mail_dir, database_url
):
    link = await a_link(web, tenant, mail_dir)
    path = path_of(link).split("?")[0]
    async with contextlib.AsyncExitStack() as stack:
        browsers = [await stack.enter_async_context(portal_client(settings, mail_dir)) for _ in range(4)]
        forms = []
        for browser in browsers:
            page = await open_link(browser, link)
            forms.append({"csrf_token": csrf_of(page.text), "token": TOKEN_FIELD.search(page.text).group(1)})
        answers = await asyncio.gather(*(b.post(path, data=f) for b, f in zip(browsers, forms, strict=True)))
    assert sorted(a.status_code for a in answers) == [303, 410, 410, 410]
    assert len(session_rows(database_url, tenant.customers["alice@example.com"])) == 1


async def test_a_double_click_once_signed_in_goes_to_the_overview(web, tenant, mail_dir, database_url):
    link = await a_link(web, tenant, mail_dir)
    page = await open_link(web, link)
    data = {"csrf_token": csrf_of(page.text), "token": TOKEN_FIELD.search(page.text).group(1)}
    path = path_of(link).split("?")[0]
    first = await web.post(path, data=data)
    second = await web.post(path, data=data)  # the browser now holds the first click's session
    assert (first.status_code, second.status_code) == (303, 303)
    assert second.headers["location"] == tenant.base
    assert "set-cookie" not in second.headers
    assert len(session_rows(database_url, tenant.customers["alice@example.com"])) == 1
    assert (await web.get(tenant.base)).status_code == 200


async def test_an_expired_link_signs_nobody_in(web, tenant, mail_dir, database_url):
    link = await a_link(web, tenant, mail_dir)
    page = await open_link(web, link)
    superuser(
        database_url,
        "update lic.portal_login_tokens set expires_at = now() - interval '1 second' where account_id = %s",
        (tenant.account.id,),
    )
    assert (await open_link(web, link)).status_code == 410
    response = await web.post(
        f"{tenant.base}/login/confirm",
        data={"csrf_token": csrf_of(page.text), "token": TOKEN_FIELD.search(page.text).group(1)},
    )
    assert response.status_code == 410
    assert "Ask for a new link" in response.text
    assert session_rows(database_url, tenant.customers["alice@example.com"]) == []


async def test_a_new_link_voids_the_earlier_one(web, tenant, mail_dir, database_url):
    first = await a_link(web, tenant, mail_dir)
    superuser(
        database_url, "update lic.portal_login_tokens set created_at = created_at - interval '2 minutes'"
    )
    second = await a_link(web, tenant, mail_dir)
    assert first != second
    assert (await open_link(web, first)).status_code == 410
    assert (await confirm_link(web, second)).status_code == 303


# Sessions.


async def test_a_session_id_the_server_never_issued_is_ignored_and_replaced(
    settings, web, tenant, mail_dir, database_url
):
    planted = "attacker-chosen-session-id-" + "x" * 20
    web.cookies.set(SECURE_SESSION, planted, domain="licentric.test")
    denied = await web.get(tenant.base)
    assert denied.status_code == 303
    assert denied.headers["location"] == f"{tenant.base}/login"
    link = await a_link(web, tenant, mail_dir)
    confirmed = await confirm_link(web, link)
    assert confirmed.status_code == 303
    issued = session_cookie(confirmed)
    assert issued != planted and len(issued) >= 43
    [row] = session_rows(database_url, tenant.customers["alice@example.com"])
    assert bytes(row["session_hash"]) == hashlib.sha256(issued.encode()).digest()
    # The attacker's browser, holding the planted value, is still nobody.
    async with portal_client(settings, mail_dir) as attacker:
        attacker.cookies.set(SECURE_SESSION, planted, domain="licentric.test")
        assert (await attacker.get(tenant.base)).status_code == 303


async def test_signing_in_again_ends_the_browsers_previous_session(
    settings, web, tenant, mail_dir, database_url
):
    first = session_cookie(await sign_in(web, tenant, "alice@example.com", mail_dir))
    superuser(
        database_url, "update lic.portal_login_tokens set created_at = created_at - interval '2 minutes'"
    )
    async with portal_client(settings, mail_dir) as phone:  # asked for on another device
        link = await a_link(phone, tenant, mail_dir)
    second = session_cookie(await confirm_link(web, link))
    assert first != second
    [row] = session_rows(database_url, tenant.customers["alice@example.com"])
    assert bytes(row["session_hash"]) == hashlib.sha256(second.encode()).digest()


async def test_the_session_cookie_is_host_prefixed_secure_httponly_lax(web, tenant, mail_dir):
    confirmed = await sign_in(web, tenant, "alice@example.com", mail_dir)
    [header] = [h for h in confirmed.headers.get_list("set-cookie") if h.startswith(SECURE_SESSION + "=")]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")[1:]}
    assert "secure" in attributes and "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=lax"
    assert attributes["path"] == "Path=/"
    assert "domain" not in attributes
    assert attributes["max-age"] == "Max-Age=43200"


async def test_without_secure_cookies_the_names_lose_the_host_prefix(
    settings, mail_dir, account, database_url
):
    async with portal_client(settings, mail_dir, portal_secure_cookies=False) as web:
        tenant = await open_portal(web, account, database_url)
        await add_customer(web, tenant, "plain@example.com")
        login = await web.get(f"{tenant.base}/login")
        [header] = login.headers.get_list("set-cookie")
        assert header.startswith("licentric_portal_login=")
        assert "secure" not in header.lower() and "httponly" in header.lower()
        confirmed = await sign_in(web, tenant, "plain@example.com", mail_dir)
        assert confirmed.headers["set-cookie"].startswith("licentric_portal=")


async def test_logout_deletes_the_session_and_the_old_cookie_is_nobody(
    settings, web, tenant, mail_dir, database_url
):
    cookie = session_cookie(await sign_in(web, tenant, "alice@example.com", mail_dir))
    page = await web.get(tenant.base)
    out = await web.post(f"{tenant.base}/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303
    assert out.headers["location"] == f"{tenant.base}/login?signed_out=1"
    assert "max-age=0" in out.headers["set-cookie"].lower()
    assert session_rows(database_url, tenant.customers["alice@example.com"]) == []
    async with portal_client(settings, mail_dir) as replay:
        replay.cookies.set(SECURE_SESSION, cookie, domain="licentric.test")
        assert (await replay.get(tenant.base)).headers["location"] == f"{tenant.base}/login"


@pytest.mark.parametrize(
    "expire",
    [
        "last_seen_at = now() - interval '31 minutes'",  # idle
        "expires_at = now() - interval '1 second'",  # absolute
    ],
)
async def test_an_idle_or_old_session_signs_out(web, tenant, mail_dir, database_url, expire):
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    assert (await web.get(tenant.base)).status_code == 200
    superuser(
        database_url, f"update lic.portal_sessions set {expire} where account_id = %s", (tenant.account.id,)
    )
    response = await web.get(tenant.base)
    assert response.status_code == 303
    assert response.headers["location"] == f"{tenant.base}/login"


async def test_each_signed_in_page_keeps_the_session_alive(web, tenant, mail_dir, database_url):
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    superuser(
        database_url,
        "update lic.portal_sessions set last_seen_at = now() - interval '29 minutes' where account_id = %s",
        (tenant.account.id,),
    )
    assert (await web.get(tenant.base)).status_code == 200
    [row] = session_rows(database_url, tenant.customers["alice@example.com"])
    assert row["last_seen_at"].timestamp() > time.time() - 60


# CSRF.


async def signed_in_forms(web, tenant, mail_dir) -> dict[str, dict[str, str]]:
    """Every signed-in form's action and fields (with a valid CSRF token)."""
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    license_id = tenant.customers["license"]
    page = await web.get(f"{tenant.base}/licenses/{license_id}/machines")
    token = csrf_of(page.text)
    machine = page.text.split("/machines/")[1].split("/")[0]
    bob = await add_customer(web, tenant, "member@example.com")
    await web.post(
        f"{tenant.base}/licenses/{license_id}/team",
        data={"csrf_token": token, "email": "member@example.com"},
    )
    return {
        f"{tenant.base}/logout": {},
        f"{tenant.base}/billing": {},
        f"{tenant.base}/licenses/{license_id}/machines/{machine}/deactivate": {},
        f"{tenant.base}/licenses/{license_id}/machines/{machine}/transfer": {"license_id": license_id},
        f"{tenant.base}/licenses/{license_id}/team": {"email": "eve@example.com"},
        f"{tenant.base}/licenses/{license_id}/team/{bob}/remove": {},
        "token": {"csrf_token": token},
    }


@pytest.mark.parametrize("given", [None, "", "0" * 64])
async def test_a_signed_in_post_without_its_csrf_token_is_refused(web, tenant, mail_dir, database_url, given):
    forms = await signed_in_forms(web, tenant, mail_dir)
    forms.pop("token")
    count = "select count(*) as n from lic.machines where account_id = %s"
    before = superuser(database_url, count, (tenant.account.id,))[0]["n"]
    for action, fields in forms.items():
        data = fields if given is None else {**fields, "csrf_token": given}
        response = await web.post(action, data=data)
        assert response.status_code == 403, (action, response.text)
        assert "did not come from this site" in response.text
    assert superuser(database_url, count, (tenant.account.id,))[0]["n"] == before == 2
    assert len(session_rows(database_url, tenant.customers["alice@example.com"])) == 1
    assert not mails_to(mail_dir, "eve@example.com")


async def test_a_csrf_token_of_another_session_is_refused(settings, web, tenant, mail_dir, database_url):
    forms = await signed_in_forms(web, tenant, mail_dir)
    token = forms["token"]["csrf_token"]
    superuser(
        database_url, "update lic.portal_login_tokens set created_at = created_at - interval '2 minutes'"
    )
    async with portal_client(settings, mail_dir) as other:
        await sign_in(other, tenant, "member@example.com", mail_dir)
        response = await other.post(f"{tenant.base}/logout", data={"csrf_token": token})
        assert response.status_code == 403


@pytest.mark.parametrize("form", ["login", "confirm"])
async def test_the_sign_in_forms_need_the_pages_cookie_and_token(settings, web, tenant, mail_dir, form):
    path = f"{tenant.base}/login" if form == "login" else f"{tenant.base}/login/confirm"
    page = await web.get(f"{tenant.base}/login")
    token = csrf_of(page.text)
    fields = {"email": "alice@example.com"} if form == "login" else {"token": "x"}
    assert (await web.post(path, data=fields)).status_code == 403
    assert (await web.post(path, data={**fields, "csrf_token": "f" * 64})).status_code == 403
    async with portal_client(settings, mail_dir) as cross_site:  # no cookie: a form on another site
        assert (await cross_site.post(path, data={**fields, "csrf_token": token})).status_code == 403
    assert not mails_to(mail_dir, "alice@example.com")


# Another customer's ids.


async def test_another_customers_license_and_machine_are_not_found(web, tenant, mail_dir, database_url):
    bob = await add_customer(web, tenant, "bob@example.com", "Bob")
    bobs = await add_license(web, tenant, bob, machines=1)
    [machine] = superuser(
        database_url, "select id::text from lic.machines where license_id = %s", (bobs["id"],)
    )
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    for path in (
        f"/licenses/{bobs['id']}",
        f"/licenses/{bobs['id']}/machines",
        f"/licenses/{bobs['id']}/team",
        f"/licenses/{uuid.uuid4()}",
        "/licenses/not-a-uuid",
        "/no/such/page",
    ):
        response = await web.get(tenant.base + path)
        assert response.status_code == 404, (path, response.text)
        assert response.headers["content-type"].startswith("text/html")
        assert bobs["key"] not in response.text
    token = csrf_of((await web.get(tenant.base)).text)
    mine = tenant.customers["license"]
    for action, data in (
        (f"/licenses/{mine}/machines/{machine['id']}/deactivate", {}),
        (f"/licenses/{mine}/machines/{machine['id']}/transfer", {"license_id": mine}),
        (f"/licenses/{bobs['id']}/team", {"email": "eve@example.com"}),
        (f"/licenses/{bobs['id']}/team/{bob}/remove", {}),
    ):
        response = await web.post(tenant.base + action, data={**data, "csrf_token": token})
        assert response.status_code == 404, (action, response.text)
    assert (
        superuser(
            database_url, "select count(*) as n from lic.machines where license_id = %s", (bobs["id"],)
        )[0]["n"]
        == 1
    )


async def test_a_session_of_one_portal_is_nobody_in_another(
    web, tenant, mail_dir, make_account, database_url
):
    await sign_in(web, tenant, "alice@example.com", mail_dir)
    other = await open_portal(web, make_account("Other"), database_url)
    await add_customer(web, other, "alice@example.com")
    assert (await web.get(other.base)).headers["location"] == f"{other.base}/login"


# Enumeration and rate limits.


def comparable(response: httpx.Response) -> tuple:
    # The request id, the date and the API's own rate-limit counters differ between any two answers.
    headers = sorted(
        (k, v)
        for k, v in response.headers.items()
        if k not in ("x-request-id", "date") and not k.startswith("ratelimit-")
    )
    return response.status_code, response.text, tuple(headers)


async def test_an_unknown_address_gets_the_same_answer_as_a_known_one(web, tenant, mail_dir):
    known = await request_link(web, tenant, "alice@example.com")
    unknown = await request_link(web, tenant, "nobody@example.com")
    limited = await request_link(web, tenant, "alice@example.com")  # within the minute: no second link
    assert comparable(known) == comparable(unknown) == comparable(limited)
    assert known.status_code == 202
    assert "Check your email" in known.text
    assert len(mails_to(mail_dir, "alice@example.com")) == 1
    assert not mails_to(mail_dir, "nobody@example.com")


async def test_one_address_gets_one_link_a_minute(web, tenant, mail_dir, database_url):
    answers = [await request_link(web, tenant, "Alice@Example.com") for _ in range(5)]
    assert {a.status_code for a in answers} == {202}
    assert len(mails_to(mail_dir, "alice@example.com")) == 1
    assert len(tokens(database_url, tenant.customers["alice@example.com"])) == 1


async def test_a_client_address_is_limited_whatever_it_asks_for(web, tenant, mail_dir):
    # 20 requests an hour per client address (SQL counts every one, unknown addresses too).
    answers = [await request_link(web, tenant, f"nobody{i}@example.com") for i in range(20)]
    answers.append(await request_link(web, tenant, "alice@example.com"))
    assert len({comparable(a) for a in answers}) == 1
    assert not mails_to(mail_dir, "alice@example.com")


async def test_a_malformed_address_is_a_form_error(web, tenant, mail_dir):
    response = await request_link(web, tenant, "not-an-address")
    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.text
    assert "Enter your email address" in response.text


async def test_the_link_uses_the_configured_url_whatever_the_host_header(web, tenant, mail_dir, settings):
    page = await web.get(f"{tenant.base}/login")
    response = await web.post(
        f"{tenant.base}/login",
        data={"email": "alice@example.com", "csrf_token": csrf_of(page.text)},
        headers={"Host": "attacker.example", "X-Forwarded-Host": "attacker.example"},
    )
    assert response.status_code == 202
    link = link_in(mails_to(mail_dir, "alice@example.com")[-1])
    assert link.startswith(f"{settings.public_url}/portal/{tenant.slug}/login/confirm?token=")
    assert "attacker" not in link


class SlowSmtp:
    """An SMTP server (aiosmtpd) that takes `delay` seconds to accept each message."""

    def __init__(self, delay: float) -> None:
        from aiosmtpd.controller import Controller

        self.delay = delay
        self.received: list[str] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # aiosmtpd's name
                await asyncio.sleep(outer.delay)
                outer.received.extend(envelope.rcpt_tos)
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SlowSmtp:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()

    @property
    def url(self) -> str:
        return f"smtp+insecure://127.0.0.1:{self.port}"


def test_known_and_unknown_addresses_answer_in_the_same_time(settings, account, database_url):
    """Against a real server, with an SMTP server that takes 1 s a message: a known address's answer
    does not wait for its mail, and both kinds take about as long."""
    rounds = 5
    with SlowSmtp(delay=1.0) as smtp:
        app = create_app(
            replace(
                settings,
                mail_url=smtp.url,
                portal_secure_cookies=False,  # plain http here
            )
        )
        with serve_in_thread(app) as base_url, httpx.Client(base_url=base_url, timeout=30) as web:
            slug = f"timing-{uuid.uuid4().hex[:8]}"
            headers = account.headers
            assert web.put("/v1/portal/branding", headers=headers, json={"slug": slug}).status_code == 200
            for i in range(rounds):
                created = web.post("/v1/customers", headers=headers, json={"email": f"known{i}@example.com"})
                assert created.status_code == 201
            token = csrf_of(web.get(f"/portal/{slug}/login").text)

            def ask(address: str) -> tuple[float, httpx.Response]:
                started = time.perf_counter()
                response = web.post(f"/portal/{slug}/login", data={"email": address, "csrf_token": token})
                return time.perf_counter() - started, response

            known, unknown = [], []
            for i in range(rounds):
                known.append(ask(f"known{i}@example.com"))
                unknown.append(ask(f"unknown{i}@example.com"))
            assert {r.status_code for _, r in known + unknown} == {202}
            assert len({r.text for _, r in known + unknown}) == 1
            known_times = [t for t, _ in known]
            unknown_times = [t for t, _ in unknown]
            assert max(known_times) < 0.5, known_times  # the 1 s SMTP exchange happens after the answer
            assert abs(statistics.median(known_times) - statistics.median(unknown_times)) < 0.1, (
                known_times,
                unknown_times,
            )
            deadline = time.monotonic() + 30
            while len(smtp.received) < rounds and time.monotonic() < deadline:
                time.sleep(0.1)
    assert sorted(smtp.received) == sorted(f"known{i}@example.com" for i in range(rounds))
