"""The Litestar application: routing, dependencies and cross-cutting concerns.
Handlers hold no business rules; each maps a request to one api.* call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController
from litestar.types import Receive, Scope, Send

from licentric import __version__, worker
from licentric.console.developers import ConsoleDevelopers
from licentric.console.pages import ConsolePages
from licentric.console.settings import ConsoleSettings
from licentric.console.signin import ConsoleSignInController, root
from licentric.console.site import ConsoleSite, console_static
from licentric.console.stripe import ConsoleStripe
from licentric.console.usage import ConsoleUsage
from licentric.db import WEB_ROLE, Idempotency, TenantDb, open_pool
from licentric.errors import ApiError, handle_exception
from licentric.json_depth import refuse_deep_json
from licentric.observability import configure_logging, request_id_middleware
from licentric.pagination import provide_page
from licentric.portal.routes import PortalController, PortalSite, portal_static
from licentric.rate_limit import client_hash, in_process_limit
from licentric.routes.account import AccountController
from licentric.routes.agents import AgentController
from licentric.routes.api_keys import ApiKeyController
from licentric.routes.budgets import BudgetController
from licentric.routes.customers import CustomerController
from licentric.routes.entitlements import EntitlementController
from licentric.routes.events import EventController
from licentric.routes.health import healthz
from licentric.routes.license_policies import LicensePolicyController
from licentric.routes.licenses import EntitlementCheckController, LicenseController
from licentric.routes.machines import LicenseMachineController, LicenseUserController, MachineController
from licentric.routes.members import MemberController, MemberInvitationController
from licentric.routes.meters import MeterController
from licentric.routes.portal import PortalSettingsController
from licentric.routes.stripe import (
    BillingPortalController,
    StripeConnectionController,
    StripeEventController,
    StripeMappingController,
    StripeWebhookController,
)
from licentric.routes.usage import UsageController
from licentric.routes.usage_events import BudgetCheckController, UsageEventController
from licentric.routes.webhooks import WebhookDeliveryController, WebhookEndpointController
from licentric.settings import Settings
from licentric.tokens import bearer_token, well_formed


def bearer_secret(request: Request[Any, Any, Any]) -> str:
    """The request's key; a missing or malformed one is refused here, without a database connection."""
    secret = bearer_token(request)
    if not secret:
        raise ApiError("LAUTH", "missing API key: send the header `Authorization: Bearer <key>`")
    if not well_formed(secret):
        raise ApiError("LAUTH", "invalid API key: malformed or mistyped")
    return secret


async def provide_tenant_db(request: Request[Any, Any, Any], state: State) -> TenantDb:
    idempotency = None
    key = request.headers.get("idempotency-key")
    if key is not None and request.method == "POST":
        idempotency = Idempotency.of(key, request.method, request.url.path, await request.body())
    return TenantDb(
        state.pool,
        bearer_secret(request),
        client_hash=client_hash(request),
        per_minute=state.settings.rate_limit_per_minute,
        idempotency=idempotency,
    )


class LicentricApp(Litestar):
    """Litestar with the request id and access log around everything, so that
    unrouted requests (404, 405) get them too, not only matched routes."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await request_id_middleware(super().__call__)(scope, receive, send)


class LicentricPrometheusController(PrometheusController):
    path = "/metrics"
    include_in_schema = False


def create_app(settings: Settings | None = None, *, worker_settings: Settings | None = None) -> Litestar:
    """The API; with worker_settings (their DATABASE_URL logs in as lic_worker) it also runs `licentric
    worker`'s jobs in this process (`licentric up`)."""
    settings = settings or Settings.from_env()
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set")
    configure_logging(settings.log_level)

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await open_pool(
            settings.database_url, WEB_ROLE, settings.pool_min_size, settings.pool_max_size
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    return LicentricApp(
        route_handlers=[
            healthz,
            AccountController,
            ApiKeyController,
            LicensePolicyController,
            EntitlementController,
            CustomerController,
            LicenseController,
            EntitlementCheckController,
            MachineController,
            LicenseMachineController,
            LicenseUserController,
            AgentController,
            EventController,
            UsageEventController,
            BudgetCheckController,
            MeterController,
            BudgetController,
            UsageController,
            StripeConnectionController,
            StripeMappingController,
            StripeEventController,
            StripeWebhookController,
            BillingPortalController,
            WebhookEndpointController,
            WebhookDeliveryController,
            PortalSettingsController,
            MemberController,
            MemberInvitationController,
            PortalController,
            portal_static,
            root,
            ConsoleSignInController,
            ConsolePages,
            ConsoleStripe,
            ConsoleDevelopers,
            ConsoleSettings,
            ConsoleUsage,
            console_static,
            LicentricPrometheusController,
        ],
        dependencies={"db": Provide(provide_tenant_db), "page": Provide(provide_page)},
        lifespan=[database, *([lambda _: worker.running(worker_settings)] if worker_settings else [])],
        state=State({"settings": settings, "portal": PortalSite(settings), "console": ConsoleSite(settings)}),
        middleware=[
            in_process_limit(settings).middleware,
            PrometheusConfig(
                app_name="licentric", prefix="licentric", group_path=True, exclude=["/metrics"]
            ).middleware,
        ],
        before_request=refuse_deep_json,
        exception_handlers={Exception: handle_exception},
        logging_config=None,  # observability.configure_logging owns the log format
        openapi_config=OpenAPIConfig(
            title="Licentric",
            version=__version__,
            description="Entitlements, licensing and usage metering, in Postgres.",
            components=Components(
                security_schemes={
                    "apiKey": SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description=(
                            "A secret (lic_sk_…) or publishable (lic_pk_…) key, or an agent token (lic_ak_…)"
                        ),
                    ),
                }
            ),
            security=[{"apiKey": []}],
        ),
    )
