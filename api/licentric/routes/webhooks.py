"""Outbound webhooks, the web side (docs/webhooks.md): the account's endpoints with their signing
secrets, and the delivery log with retry and replay.

Every rule lives in SQL (functions/80_webhooks.sql). This module does what SQL cannot: it makes each
signing secret and encrypts it before it reaches the database (licentric.crypto), decrypts it to
reveal it, and refuses a URL that resolves to an address the worker may not reach (licentric.ssrf).
A secret is in an answer only when it is made (create, rotate) or asked for (reveal); an answer
stored for an Idempotency-Key holds no secret: a replay decrypts the endpoint's current one.
"""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from licentric import ssrf
from licentric.crypto import DecryptionError, SecretBox
from licentric.db import Call, TenantDb, account_id_of
from licentric.errors import ApiError, ErrorKind
from licentric.pagination import Page
from licentric.routes.changes import update_args
from licentric.routes.shapes import IdempotentOperation, errors
from licentric.settings import Settings

log = logging.getLogger("licentric.webhooks")

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
PURPOSE = "webhook_endpoint_secret"
MAX_OVERLAP_SECONDS = 7 * 86400
# Answers carrying a secret must not be kept by a cache on the way.
NO_STORE = {"Cache-Control": "no-store"}

DeliveryStatus = Literal["pending", "succeeded", "failed"]
EventType = Annotated[str, msgspec.Meta(max_length=200)]


class WebhookEndpoint(msgspec.Struct, kw_only=True):
    object: str = "webhook_endpoint"
    id: UUID
    url: str
    description: str | None
    event_types: list[str]  # empty: every type
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    secret_rotated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    secret: str | None = None  # only in the answers that make a secret (create, rotate_secret)


class WebhookEndpointList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[WebhookEndpoint]
    has_more: bool


class WebhookEndpointSecret(msgspec.Struct, kw_only=True):
    object: str = "webhook_endpoint_secret"
    webhook_endpoint_id: UUID
    secret: str
    # While a rotation's overlap lasts, the previous secret signs too, until then.
    previous_secret_expires_at: datetime | None


class WebhookEndpointCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str
    event_types: list[EventType] = msgspec.field(default_factory=list)
    description: str | None = None


class WebhookEndpointUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out are unchanged; description null (or "") removes it."""

    url: str | msgspec.UnsetType = msgspec.UNSET
    event_types: list[EventType] | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType | None = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class WebhookSecretRotation(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # How long the old secret keeps signing: 0 to 7 days (api.rotate_webhook_endpoint_secret's bounds, checked
    # here too so that a refusal names this field); null: 24 hours.
    overlap_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_OVERLAP_SECONDS)] | None = None


class WebhookReplay(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    since: datetime
    status: Literal["failed", "succeeded", "all"] = "failed"


class WebhookReplayResult(msgspec.Struct, kw_only=True):
    object: str = "webhook_replay"
    replayed: int


class WebhookDelivery(msgspec.Struct, kw_only=True):
    object: str = "webhook_delivery"
    id: UUID
    endpoint_id: UUID
    event_id: UUID
    event_type: str
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    succeeded_at: datetime | None
    created_at: datetime


class WebhookDeliveryList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[WebhookDelivery]
    has_more: bool


class WebhookAttempt(msgspec.Struct, kw_only=True):
    attempt: int
    started_at: datetime
    latency_ms: int | None
    status_code: int | None  # null: no response (see error_class)
    # Null for a 2xx; else http_status, redirect (3xx, never followed), timeout, dns, connect, tls,
    # protocol, unsafe_url, unsafe_target (the SSRF guard at connect time) or secret_unusable.
    error_class: str | None
    response_body: str | None  # the first 1,024 characters


class WebhookDeliveryDetail(msgspec.Struct, kw_only=True):
    """A delivery with every attempt made, oldest first."""

    object: str = "webhook_delivery"
    id: UUID
    endpoint_id: UUID
    event_id: UUID
    event_type: str
    status: DeliveryStatus
    attempts: list[WebhookAttempt]
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    succeeded_at: datetime | None
    created_at: datetime


def new_secret() -> str:
    """A signing secret: whsec_ and 32 random bytes in base64 (what Standard Webhooks' libraries take)."""
    return SECRET_PREFIX + base64.b64encode(os.urandom(SECRET_BYTES)).decode()


class UnsafeUrlError(ApiError):
    """A URL the SSRF guard refuses: 422, the guard's reason as the code, param url."""

    def __init__(self, refused: ssrf.UnsafeTarget) -> None:
        super().__init__("LINVL", refused.message, "url")
        self.kind = ErrorKind(422, "invalid_request_error", refused.code)


@dataclass(frozen=True)
class WebhookContext:
    """What the webhook routes share: the settings and the secrets' cipher."""

    settings: Settings

    @property
    def box(self) -> SecretBox:
        if self.settings.secret_key is None:
            raise ApiError(
                "LCONF",
                "webhooks are not configured on this server: set LICENTRIC_SECRET_KEY (32 random bytes, "
                "base64), which encrypts the endpoints' signing secrets",
            )
        return SecretBox(self.settings.secret_key)

    async def check_url(self, url: str) -> None:
        """Refuse a URL that is not http(s), carries credentials, or resolves to an address the
        worker may not reach (private, loopback, link-local... unless this server allows them)."""
        try:
            await ssrf.check_url(url, allow_private=self.settings.webhook_allow_private_targets)
        except ssrf.UnsafeTarget as refused:
            raise UnsafeUrlError(refused) from None

    async def secrets(self, call: Call, endpoint_id: UUID) -> WebhookEndpointSecret:
        """The endpoint's current secret in clear (LNTFD for an endpoint the account does not have)."""
        box = self.box
        account_id = await account_id_of(call)
        rows = await call("api.webhook_endpoint_secrets", {"endpoint_id": endpoint_id})
        current = rows[0]["secret_ciphertext"]
        try:
            secret = box.decrypt(current, account_id, PURPOSE)
        except DecryptionError as exc:
            log.error("the secret of webhook endpoint %s does not decrypt: %s", endpoint_id, exc)
            raise ApiError(
                "LCONF",
                "the endpoint's stored secret does not decrypt with this server's LICENTRIC_SECRET_KEY; "
                "rotate it",
            ) from exc
        previous = [row["expires_at"] for row in rows[1:]]
        return WebhookEndpointSecret(
            webhook_endpoint_id=endpoint_id,
            secret=secret,
            previous_secret_expires_at=previous[0] if previous else None,
        )

    async def create_args(
        self, call: Call, url: str, event_types: list[str], description: str | None
    ) -> tuple[dict[str, Any], str]:
        """api.create_webhook_endpoint's arguments, with a new secret encrypted, and that secret. The URL is
        resolved only once the caller is known to be allowed (a key that may not is refused first)."""
        box = self.box
        account_id = await account_id_of(call)
        await self.check_url(url)
        secret = new_secret()
        args = {
            "url": url,
            "secret_ciphertext": box.encrypt(secret, account_id, PURPOSE),
            "event_types": event_types,
            "description": description,
        }
        return args, secret

    async def rotate_args(
        self, call: Call, endpoint_id: UUID, overlap: timedelta | None
    ) -> tuple[dict[str, Any], str]:
        """api.rotate_webhook_endpoint_secret's arguments, with a new secret encrypted, and that secret."""
        box = self.box
        account_id = await account_id_of(call)
        secret = new_secret()
        args: dict[str, Any] = {
            "endpoint_id": endpoint_id,
            "secret_ciphertext": box.encrypt(secret, account_id, PURPOSE),
        }
        if overlap is not None:
            args["overlap"] = overlap
        return args, secret


def provide_webhooks(state: State) -> WebhookContext:
    return WebhookContext(state.settings)


WEBHOOK_DEPENDENCIES = {"webhooks": Provide(provide_webhooks, sync_to_thread=False)}


async def with_secret(
    webhooks: WebhookContext, db: TenantDb, function: str, args: dict[str, Any], secret: str, status: int
) -> Response[WebhookEndpoint]:
    """Run a function that stores a new secret and answer the endpoint with that secret. A replay of
    an Idempotency-Key answers the endpoint's current secret, as the stored answer holds none."""
    rows, replayed = await db.rows(function, args, status=status)
    endpoint = msgspec.convert(rows[0], WebhookEndpoint, strict=False)
    if replayed:
        secret = (await webhooks.secrets(db.call, endpoint.id)).secret
    endpoint.secret = secret
    headers = {**NO_STORE, **({"Idempotent-Replayed": "true"} if replayed else {})}
    return Response(endpoint, status_code=status, headers=headers)


class WebhookEndpointController(Controller):
    path = "/v1/webhook_endpoints"
    tags = ("webhooks",)
    dependencies = WEBHOOK_DEPENDENCIES

    @post(
        operation_id="createWebhookEndpoint",
        status_code=201,
        responses=errors(422),
        operation_class=IdempotentOperation,
    )
    async def create_webhook_endpoint(
        self,
        db: NamedDependency[TenantDb],
        webhooks: NamedDependency[WebhookContext],
        data: JSONBody[WebhookEndpointCreate],
    ) -> Response[WebhookEndpoint]:
        """Register a URL to receive the account's events (event_types: those types only; empty: every
        type). The answer carries the signing secret (whsec_…); GET …/secret shows it again. A URL must
        be http(s) without credentials and resolve to public addresses only."""
        args, secret = await webhooks.create_args(db.call, data.url, data.event_types, data.description)
        return await with_secret(webhooks, db, "api.create_webhook_endpoint", args, secret, 201)

    @get(operation_id="listWebhookEndpoints", responses=errors(422))
    async def list_webhook_endpoints(
        self, db: NamedDependency[TenantDb], page: NamedDependency[Page]
    ) -> WebhookEndpointList:
        """The account's endpoints, newest first, without secrets."""
        return await db.page(WebhookEndpointList, "api.list_webhook_endpoints", page)

    @get("/{endpoint_id:uuid}", operation_id="getWebhookEndpoint", responses=errors(404))
    async def get_webhook_endpoint(
        self, db: NamedDependency[TenantDb], endpoint_id: FromPath[UUID]
    ) -> Response[WebhookEndpoint]:
        return await db.one(WebhookEndpoint, "api.get_webhook_endpoint", {"endpoint_id": endpoint_id})

    @post(
        "/{endpoint_id:uuid}",
        operation_id="updateWebhookEndpoint",
        status_code=200,
        responses=errors(404, 422),
        operation_class=IdempotentOperation,
    )
    async def update_webhook_endpoint(
        self,
        db: NamedDependency[TenantDb],
        webhooks: NamedDependency[WebhookContext],
        endpoint_id: FromPath[UUID],
        data: JSONBody[WebhookEndpointUpdate],
    ) -> Response[WebhookEndpoint]:
        """Change the URL (checked again), event types (empty: every type) or description (null removes
        it), or disable (enabled false: its pending deliveries fail) or enable it (which clears the reason
        and the failure streak; retry or replay what failed meanwhile)."""
        if data.url is not msgspec.UNSET:
            await account_id_of(db.call)  # a key that may not do this is refused before the URL is resolved
            await webhooks.check_url(data.url)
        args = update_args(data, clearable=False)
        if data.description is None:
            args["description"] = ""  # what the SQL function takes for "remove it"
        return await db.one(
            WebhookEndpoint, "api.update_webhook_endpoint", {"endpoint_id": endpoint_id, **args}
        )

    @delete(
        "/{endpoint_id:uuid}", operation_id="deleteWebhookEndpoint", status_code=200, responses=errors(404)
    )
    async def delete_webhook_endpoint(
        self, db: NamedDependency[TenantDb], endpoint_id: FromPath[UUID]
    ) -> Response[WebhookEndpoint]:
        """Delete the endpoint with its deliveries and their attempts; the answer is the endpoint as it
        was."""
        return await db.one(WebhookEndpoint, "api.delete_webhook_endpoint", {"endpoint_id": endpoint_id})

    @get("/{endpoint_id:uuid}/secret", operation_id="getWebhookEndpointSecret", responses=errors(404))
    async def get_webhook_endpoint_secret(
        self,
        db: NamedDependency[TenantDb],
        webhooks: NamedDependency[WebhookContext],
        endpoint_id: FromPath[UUID],
    ) -> Response[WebhookEndpointSecret]:
        """Reveal the endpoint's current signing secret (a secret key only)."""
        return Response(await webhooks.secrets(db.call, endpoint_id), headers=NO_STORE)

    @post(
        "/{endpoint_id:uuid}/rotate_secret",
        operation_id="rotateWebhookEndpointSecret",
        status_code=200,
        responses=errors(404, 422),
        operation_class=IdempotentOperation,
    )
    async def rotate_webhook_endpoint_secret(
        self,
        db: NamedDependency[TenantDb],
        webhooks: NamedDependency[WebhookContext],
        endpoint_id: FromPath[UUID],
        data: JSONBody[WebhookSecretRotation | None] = None,
    ) -> Response[WebhookEndpoint]:
        """Make a new signing secret, in this answer; the old one keeps signing too (a second v1) for
        overlap_seconds (default 86400, at most 7 days) so receivers can switch without losing any."""
        overlap = None
        if data is not None and data.overlap_seconds is not None:
            overlap = timedelta(seconds=data.overlap_seconds)
        args, secret = await webhooks.rotate_args(db.call, endpoint_id, overlap)
        return await with_secret(webhooks, db, "api.rotate_webhook_endpoint_secret", args, secret, 200)

    @post(
        "/{endpoint_id:uuid}/test",
        operation_id="sendTestWebhook",
        status_code=200,
        responses=errors(404, 409),
        operation_class=IdempotentOperation,
    )
    async def send_test_webhook(
        self, db: NamedDependency[TenantDb], endpoint_id: FromPath[UUID]
    ) -> Response[WebhookDelivery]:
        """Send a `ping` event to this endpoint only; the answer is its delivery (409 when the endpoint
        is disabled)."""
        return await db.one(WebhookDelivery, "api.send_test_webhook", {"endpoint_id": endpoint_id})

    @post(
        "/{endpoint_id:uuid}/replay",
        operation_id="replayWebhookEndpoint",
        status_code=200,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def replay_webhook_endpoint(
        self, db: NamedDependency[TenantDb], endpoint_id: FromPath[UUID], data: JSONBody[WebhookReplay]
    ) -> Response[WebhookReplayResult]:
        """Send again this endpoint's deliveries made since then with that status (failed by default,
        succeeded, or all): each is due now, with the same event id and body. 409 when disabled."""
        return await db.one(
            WebhookReplayResult,
            "api.replay_webhook_endpoint",
            {"endpoint_id": endpoint_id, "since": data.since, "status": data.status},
        )


class WebhookDeliveryController(Controller):
    path = "/v1/webhook_deliveries"
    tags = ("webhooks",)

    @get(operation_id="listWebhookDeliveries", responses=errors(422))
    async def list_webhook_deliveries(
        self,
        db: NamedDependency[TenantDb],
        page: NamedDependency[Page],
        endpoint_id: Annotated[UUID | None, QueryParameter(description="Only this endpoint's.")] = None,
        status: Annotated[
            DeliveryStatus | None, QueryParameter(description="Only those in this status.")
        ] = None,
        event_type: Annotated[
            str | None, QueryParameter(max_length=200, description="Only those of this event type.")
        ] = None,
    ) -> WebhookDeliveryList:
        """The account's deliveries, newest first."""
        return await db.page(
            WebhookDeliveryList,
            "api.list_webhook_deliveries",
            page,
            {"endpoint_id": endpoint_id, "status": status, "event_type": event_type},
        )

    @get("/{delivery_id:uuid}", operation_id="getWebhookDelivery", responses=errors(404))
    async def get_webhook_delivery(
        self, db: NamedDependency[TenantDb], delivery_id: FromPath[UUID]
    ) -> Response[WebhookDeliveryDetail]:
        """A delivery with each attempt: when, how long, the status code or error class, and the first
        1,024 characters of the response."""
        return await db.one(WebhookDeliveryDetail, "api.get_webhook_delivery", {"delivery_id": delivery_id})

    @post(
        "/{delivery_id:uuid}/retry",
        operation_id="retryWebhookDelivery",
        status_code=200,
        responses=errors(404, 409),
        operation_class=IdempotentOperation,
    )
    async def retry_webhook_delivery(
        self, db: NamedDependency[TenantDb], delivery_id: FromPath[UUID]
    ) -> Response[WebhookDelivery]:
        """Send the delivery again now, whatever its status (409 while it is in flight or its endpoint
        is disabled)."""
        return await db.one(WebhookDelivery, "api.retry_webhook_delivery", {"delivery_id": delivery_id})
