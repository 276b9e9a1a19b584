"""The SDK's tests run against a real `licentric serve` (a subprocess) on the session's test database."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from licentric.settings import Settings

from fake_stripe import FakeStripe
from processes import Server, cli_env, free_port


@pytest.fixture(scope="session")
def sdk_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def api_url(
    settings: Settings, sdk_stripe: FakeStripe, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`licentric serve` on a free port, logging in as lic_web, with Stripe's API at a local fake."""
    port = free_port()
    env = cli_env(
        DATABASE_URL=settings.database_url,
        LICENTRIC_SECRET_KEY=base64.b64encode(settings.secret_key).decode(),
        LICENTRIC_RATE_LIMIT_PER_MINUTE="1000000",
        LICENTRIC_STRIPE_API_BASE=sdk_stripe.url,
        LICENTRIC_LOG_LEVEL="WARNING",
        LICENTRIC_WEBHOOK_ALLOW_PRIVATE_TARGETS="true",
    )
    server = Server(["serve", "--port", str(port)], env, tmp_path_factory.mktemp("sdk_server"))
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait_healthy(url)
        yield url
    finally:
        server.kill()
