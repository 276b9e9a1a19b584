"""Shared fixtures: a migrated database per test session on TEST_DATABASE_URL's
server, fresh empty databases on demand, accounts, and an HTTP client."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from console_support import forget_link_requests, member
from litestar.testing import AsyncTestClient
from playwright import async_api as playwright_api
from psycopg import sql

from licentric.app import create_app
from licentric.cli import create_account
from licentric.db import WEB_ROLE, login_url
from licentric.migrate import migrate
from licentric.settings import Settings

from fake_stripe import FakeStripe
from portal_support import portal_client
from processes import Server, cli_env, free_port

SERVER_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# The test server holds many Licentric databases at once; the CLIs the tests start may migrate beside them.
os.environ["LICENTRIC_SHARED_ROLES"] = "true"


def url_for(database: str) -> str:
    return urlunsplit(urlsplit(SERVER_URL)._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def empty_database() -> Iterator[Callable[[], str]]:
    """A factory of new, empty databases on the test server; all dropped at the end."""
    made: list[str] = []

    def make() -> str:
        name = f"licentric_test_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(SERVER_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        made.append(name)
        return url_for(name)

    yield make
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def database_url(empty_database: Callable[[], str]) -> str:
    """One migrated database shared by the session's tests (tests make their own accounts)."""
    url = empty_database()
    migrate(url)
    return url


@dataclass(frozen=True)
class Account:
    id: str
    secret_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret_key}"}


@pytest.fixture
def make_account(database_url: str) -> Callable[..., Account]:
    def make(name: str = "Test account", plan: str = "free") -> Account:
        created = create_account(database_url, name, plan)
        return Account(created["account_id"], created["secret_key"])

    return make


@pytest.fixture
def account(make_account: Callable[..., Account]) -> Account:
    return make_account()


# LICENTRIC_SECRET_KEY of the tests: encrypts the Stripe credentials they store.
TEST_SECRET_KEY = bytes(range(32))


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    """The API's settings: it logs in as lic_web (trust auth on the test server), migrate as the superuser."""
    return replace(
        Settings.from_env(),
        database_url=login_url(database_url, WEB_ROLE),
        admin_database_url=database_url,
        rate_limit_per_minute=100_000,
        secret_key=TEST_SECRET_KEY,
        public_url="https://licentric.test",
    )


def _stripe_at_fake(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The settings, with Stripe's API at the test's fake Stripe when it uses one."""
    if "fake_stripe" in request.fixturenames:
        return replace(settings, stripe_api_base=request.getfixturevalue("fake_stripe").url)
    return settings


@pytest.fixture
async def client(settings: Settings, request: pytest.FixtureRequest) -> AsyncIterator[AsyncTestClient]:
    """An HTTP client of the app; a test that also uses fake_stripe gets Stripe's API there."""
    async with AsyncTestClient(app=create_app(_stripe_at_fake(request, settings))) as test_client:
        yield test_client


@pytest.fixture
def make_client(settings: Settings, request: pytest.FixtureRequest) -> Callable[..., AsyncTestClient]:
    """A factory of clients with changed settings: `async with make_client(secret_key=None) as c:`
    (Stripe's API at fake_stripe when the test uses it, unless stripe_api_base is given)."""

    def make(**changes: object) -> AsyncTestClient:
        base = _stripe_at_fake(request, settings)
        return AsyncTestClient(app=create_app(replace(base, **changes)))

    return make


@pytest.fixture
def mail_dir(tmp_path: Path) -> Path:
    """Where the development mail backend writes the test's messages (file://)."""
    return tmp_path / "mail"


@pytest.fixture
async def web(
    settings: Settings, mail_dir: Path, database_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[AsyncTestClient]:
    """A browser of the portal and the console (over https: the cookies are Secure), mail going to
    mail_dir, Stripe's API at fake_stripe when the test uses it. Every test client comes from one
    address, which may ask for 20 console links an hour: a test starts with none counted."""
    forget_link_requests(database_url)
    async with portal_client(_stripe_at_fake(request, settings), mail_dir) as client:
        yield client


@pytest.fixture
def owner(account: Account, database_url: str) -> str:
    """An owner of the account (a console member), with an address of its own."""
    return member(database_url, account.id, "owner", "Olive Owner")


@pytest.fixture
def served(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """`licentric serve` on a free port over plain http (so cookies without Secure), mail as files in the
    answer's folder, Stripe's API at fake_stripe when the test uses it; its base URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    mail_dir = tmp_path / "mail"
    stripe = request.getfixturevalue("fake_stripe").url if "fake_stripe" in request.fixturenames else None
    env = cli_env(
        DATABASE_URL=login_url(database_url, WEB_ROLE),
        LICENTRIC_HOST="127.0.0.1",
        LICENTRIC_PORT=str(port),
        LICENTRIC_PUBLIC_URL=base_url,
        LICENTRIC_SECRET_KEY=base64.b64encode(TEST_SECRET_KEY).decode(),
        LICENTRIC_PORTAL_SECURE_COOKIES="false",
        LICENTRIC_MAIL_URL=f"file://{mail_dir}",
        **({"LICENTRIC_STRIPE_API_BASE": stripe} if stripe else {}),
    )
    server = Server(["serve"], env, tmp_path / "logs")
    try:
        server.wait_healthy(base_url)
        yield base_url, mail_dir
    finally:
        server.stop(15)


# Debian's Chromium, for the browser tests (CI installs it; elsewhere they are skipped without it).
CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"), reason="Debian's chromium is not installed"
)


@pytest.fixture
async def browser() -> AsyncIterator[playwright_api.Browser]:
    async with playwright_api.async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    """A fake Stripe API on 127.0.0.1 for this test (tests/python/fake_stripe.py)."""
    fake = FakeStripe().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def serve_stripe() -> Iterator[FakeStripe]:
    """The fake Stripe API of serve_url's server, for the whole session."""
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def serve_url(
    settings: Settings, serve_stripe: FakeStripe, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real `licentric serve` (a subprocess) on the session's database, on a free port, logging in as
    lic_web, with Stripe's API at a local fake (the SDK's tests use it)."""
    port = free_port()
    env = cli_env(
        DATABASE_URL=settings.database_url,
        LICENTRIC_SECRET_KEY=base64.b64encode(settings.secret_key).decode(),
        LICENTRIC_RATE_LIMIT_PER_MINUTE="1000000",
        LICENTRIC_STRIPE_API_BASE=serve_stripe.url,
        LICENTRIC_LOG_LEVEL="WARNING",
        LICENTRIC_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
    )
    server = Server(["serve", "--port", str(port)], env, tmp_path_factory.mktemp("serve"))
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_healthy(url)
        yield url
    finally:
        server.kill()
