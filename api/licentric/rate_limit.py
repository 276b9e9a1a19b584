"""Rate limits, the web side (decision 59). The counts live in Postgres (functions/16_rate_limits.sql), so
they hold across every API process: per key after authentication and per client address before it
(service.authenticate_request, in the request's own transaction), per client address for the portal's pages
(service.limit_client) and per account for Stripe's deliveries (service.limit_stripe_deliveries). What
costs no database work (no key, or a malformed one: tokens.well_formed) is limited here, in process memory,
per client address.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from litestar import Request
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address

from licentric.settings import Settings
from licentric.tokens import bearer_token, well_formed

# Health, metrics and the schema are never limited; Stripe's deliveries are limited per account in SQL.
UNLIMITED = ["/healthz", "/metrics", "/schema", "/v1/stripe/webhooks/"]


def client_hash(request: Request[Any, Any, Any]) -> bytes:
    """The client address as SQL counts it: keyed with LICENTRIC_SECRET_KEY when there is one, so the
    counters hold no address and none can be found by hashing every IPv4 address."""
    secret_key = request.app.state.settings.secret_key
    address = get_remote_address(request).encode()
    if secret_key is None:
        return hashlib.sha256(address).digest()
    return hmac.new(secret_key, b"licentric rate limit address\x00" + address, hashlib.sha256).digest()


def retry_after() -> str:
    """Seconds until the limits' window, a calendar minute, ends."""
    return str(60 - int(time.time()) % 60)


def in_process_limit(settings: Settings) -> RateLimitConfig:
    """The in-memory limit per client address of requests that never reach the database: without a key, or
    with a malformed one. Each process counts its own; they cost no connection."""
    return RateLimitConfig(
        rate_limit=("minute", settings.rate_limit_per_minute),
        identifier_for_request=get_remote_address,
        check_throttle_handler=lambda request: not well_formed(bearer_token(request)),
        exclude=UNLIMITED,
    )


async def limit_client(request: Request[Any, Any, Any]) -> None:
    """Count a request that no key vouches for (a portal page) toward its client address's limit, in a
    transaction of its own: LRATE past the limit. The Authorization header plays no part."""
    state = request.app.state
    async with state.pool.connection() as conn:
        await conn.execute(
            "select from service.limit_client(client_hash => %s, per_minute => %s)",
            (client_hash(request), state.settings.rate_limit_per_minute),
        )
