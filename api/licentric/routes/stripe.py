"""Stripe auto-sync, the web side (docs/stripe.md): the connection per mode, the price/product map,
the event ledger, the webhook Stripe delivers to, and Customer Portal sessions.

Every rule lives in SQL (functions/70, 72). This module does what SQL cannot: it encrypts keys and
signing secrets before they reach the database and decrypts them to use them (licentric.crypto),
verifies Stripe-Signature on the raw body, and calls Stripe (licentric.stripe_api) to make the
webhook endpoint, fetch the objects an event needs, and open portal sessions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import psycopg
import stripe
from litestar import Controller, Response, delete, get, post, put
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter, RawBody
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from licentric.crypto import DecryptionError, Purpose, SecretBox
from licentric.db import Call, StripeDb, TenantDb, account_id_of
from licentric.errors import ApiError
from licentric.pagination import Page
from licentric.routes.shapes import ErrorBody, IdempotentOperation, errors
from licentric.settings import Settings
from licentric.stripe_api import StripeApi

log = logging.getLogger("licentric.stripe")

# An outcome may name one more object to fetch after the last one; three rounds at most.
REFETCH_ROUNDS = 3
BAD_SIGNATURE = (
    "no valid Stripe-Signature for this endpoint: the header must carry t=<unix time> once and a v1 "
    "signature of the raw body by one of the endpoint's signing secrets, made within the tolerance"
)
KEY_PREFIX = re.compile(r"(?:sk|rk|pk)_(?:live|test)_|whsec_")
STAMP = re.compile(r"[0-9]{1,12}")

Outcome = Literal["applied", "stale", "ignored", "parked", "needs_refetch", "failed", "invalid"]
SecretText = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Url = Annotated[str, msgspec.Meta(max_length=2000)]


class StripeSecret(msgspec.Struct, kw_only=True):
    id: UUID
    redacted: str
    expires_at: datetime | None
    created_at: datetime


class StripeConnection(msgspec.Struct, kw_only=True):
    object: str = "stripe_connection"
    livemode: bool
    api_key_redacted: str | None
    webhook_endpoint_id: str | None
    webhook_url: str
    portal_return_url: str | None
    secrets: list[StripeSecret]
    created_at: datetime
    updated_at: datetime


class StripeConnectionList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[StripeConnection]
    has_more: bool = False


class StripeConnectionPut(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """api_key: a restricted (rk_…) or secret (sk_…) key; Licentric then makes the webhook endpoint.
    webhook_secret: the signing secret (whsec_…) of an endpoint made by hand, with livemode."""

    api_key: SecretText | None = None
    webhook_secret: SecretText | None = None
    livemode: bool | None = None
    portal_return_url: Url | None = None


class StripeMapping(msgspec.Struct, kw_only=True):
    object: str = "stripe_mapping"
    id: UUID
    stripe_price_id: str | None
    stripe_product_id: str | None
    policy_id: UUID
    policy_code: str
    reapplied: int | None
    created_at: datetime


class StripeMappingList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[StripeMapping]
    has_more: bool


class StripeMappingCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    stripe_price_id: str | None = None
    stripe_product_id: str | None = None
    policy_id: UUID | None = None
    policy_code: str | None = None


class StripeEvent(msgspec.Struct, kw_only=True):
    object: str = "stripe_event"
    id: UUID
    stripe_event_id: str | None
    type: str | None
    livemode: bool | None
    stripe_created_at: datetime | None
    api_version: str | None
    object_id: str | None
    subscription_id: str | None
    outcome: Outcome
    detail: str | None
    received_at: datetime
    processed_at: datetime
    refetched_at: datetime | None
    payload: Any = None  # the body Stripe signed; only when one event is read


class StripeEventList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[StripeEvent]
    has_more: bool


class StripeEventResult(msgspec.Struct, kw_only=True):
    """What applying (or reprocessing) one event did; outcome as in docs/stripe.md."""

    object: str = "stripe_event_result"
    outcome: str  # applied, duplicate, stale, ignored, parked, needs_refetch, failed or invalid
    id: UUID | None = None
    stripe_event_id: str | None = None
    detail: str | None = None
    refetch: dict[str, Any] | None = None
    licenses: list[UUID] = msgspec.field(default_factory=list)
    subscription_id: str | None = None


class BillingPortalSession(msgspec.Struct, kw_only=True):
    object: str = "billing_portal_session"
    url: str


class BillingPortalSessionCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    return_url: Url | None = None


@dataclass(frozen=True)
class StripeContext:
    """What the Stripe routes share: the settings, the pool and the credentials' cipher."""

    settings: Settings
    pool: AsyncConnectionPool

    @property
    def box(self) -> SecretBox:
        if self.settings.secret_key is None:
            raise ApiError(
                "LCONF",
                "Stripe is not configured on this server: set LICENTRIC_SECRET_KEY (32 random bytes, "
                "base64), which encrypts the Stripe keys and signing secrets it keeps",
            )
        return SecretBox(self.settings.secret_key)

    def require_configured(self) -> None:
        """Refuse at once (503 not_configured) when this server has no LICENTRIC_SECRET_KEY."""
        self.box  # noqa: B018  # the property raises

    def api(self, api_key: str) -> StripeApi:
        return StripeApi(api_key, self.settings.stripe_api_base)

    def webhook_url(self, account_id: UUID | str) -> str:
        return f"{self.settings.base_url}/v1/stripe/webhooks/{account_id}"

    def decrypt(self, ciphertext: bytes, account_id: UUID | str, purpose: Purpose) -> str:
        try:
            return self.box.decrypt(ciphertext, account_id, purpose)
        except DecryptionError as exc:
            log.error("stored Stripe credentials of account %s do not decrypt: %s", account_id, exc)
            raise ApiError(
                "LCONF",
                "the stored Stripe credentials do not decrypt with this server's LICENTRIC_SECRET_KEY; "
                "connect Stripe again",
            ) from exc

    def connection(self, row: dict[str, Any], account_id: UUID | str) -> StripeConnection:
        return msgspec.convert(
            {**row, "webhook_url": self.webhook_url(account_id)}, StripeConnection, strict=False
        )


def provide_stripe(state: State) -> StripeContext:
    return StripeContext(state.settings, state.pool)


STRIPE_DEPENDENCIES = {"stripe_ctx": Provide(provide_stripe, sync_to_thread=False)}


def redact(secret: str) -> str:
    """What is shown of a key or secret: its kind prefix and, for a long enough one, its last 4."""
    prefix = KEY_PREFIX.match(secret)
    head = prefix.group(0) if prefix else ""
    return f"{head}…{secret[-4:] if len(secret) >= len(head) + 16 else ''}"


def key_livemode(api_key: str) -> bool | None:
    """The mode of a Stripe key from its prefix, as private.stripe_key_livemode says. SQL decides;
    this is asked only to refuse a bad key before making anything in Stripe with it."""
    for livemode, prefixes in ((True, ("sk_live_", "rk_live_")), (False, ("sk_test_", "rk_test_"))):
        if api_key.startswith(prefixes):
            return livemode
    return None


async def refetch(
    stripe_db: StripeDb, api: StripeApi, account_id: UUID, result: dict[str, Any]
) -> dict[str, Any]:
    """While an outcome is needs_refetch, fetch what it names from Stripe and apply it, up to
    REFETCH_ROUNDS times. A failure leaves the event recorded as it is (needs_refetch), to be
    reprocessed later, and the last answer stands."""
    for _ in range(REFETCH_ROUNDS):
        wanted = result.get("refetch")
        if result.get("outcome") != "needs_refetch" or not isinstance(wanted, dict):
            break
        try:
            fetched = await api.fetch(wanted)
            result = await stripe_db.apply_refetch(account_id, result["stripe_event_id"], fetched)
        except (ApiError, psycopg.Error, PoolTimeout) as exc:
            log.warning(
                "refetch of %s for Stripe event %s of account %s failed: %s",
                wanted,
                result.get("stripe_event_id"),
                account_id,
                exc,
            )
            break
    return result


class StripeConnectionController(Controller):
    path = "/v1/stripe/connection"
    tags = ("stripe",)
    dependencies = STRIPE_DEPENDENCIES

    @put(operation_id="putStripeConnection", responses=errors(422, 502))
    async def put_connection(
        self,
        db: NamedDependency[TenantDb],
        stripe_ctx: NamedDependency[StripeContext],
        data: JSONBody[StripeConnectionPut],
    ) -> StripeConnection:
        """Connect Stripe in one mode, or change that connection. With api_key alone Licentric makes the
        webhook endpoint in Stripe (when the mode has none yet) and keeps its signing secret; with
        webhook_secret (and livemode) it keeps that secret, and a previous one stays valid for 24 hours.
        Keys and secrets are encrypted before they are stored and are never shown again."""
        row, account_id = await connect(db.call, stripe_ctx, data)
        return stripe_ctx.connection(row, account_id)

    @get(operation_id="listStripeConnections", responses=errors())
    async def list_connections(
        self, db: NamedDependency[TenantDb], stripe_ctx: NamedDependency[StripeContext]
    ) -> StripeConnectionList:
        """The account's Stripe connections (test, live), each with the webhook URL Stripe posts to."""
        stripe_ctx.require_configured()
        account_id = await account_id_of(db.call)
        rows = await db.call("api.list_stripe_connections")
        return StripeConnectionList(data=[stripe_ctx.connection(row, account_id) for row in rows])

    @delete(operation_id="deleteStripeConnection", status_code=200, responses=errors(404))
    async def delete_connection(
        self,
        db: NamedDependency[TenantDb],
        stripe_ctx: NamedDependency[StripeContext],
        livemode: Annotated[bool, QueryParameter(description="The mode to disconnect.")],
    ) -> StripeConnection:
        """Disconnect Stripe in one mode. The webhook endpoint Licentric made is deleted in Stripe first
        (best effort); the key and signing secrets are deleted; recorded events and licenses stay."""
        row, account_id = await disconnect(db.call, stripe_ctx, livemode)
        return stripe_ctx.connection(row, account_id)


async def connect(
    call: Call, stripe_ctx: StripeContext, data: StripeConnectionPut
) -> tuple[dict[str, Any], UUID]:
    """Connect Stripe in one mode (PUT /v1/stripe/connection, the console's Stripe page): the connection
    row and the account. With an api_key alone, the webhook endpoint is made in Stripe first."""
    box = stripe_ctx.box
    account_id = await account_id_of(call)
    api_key = data.api_key.strip() if data.api_key else None
    webhook_secret = data.webhook_secret.strip() if data.webhook_secret else None
    endpoint = None
    if api_key and not webhook_secret:
        livemode = key_livemode(api_key)
        if livemode is None:
            raise ApiError(
                "LINVL", "api_key must be a Stripe restricted or secret key (rk_… or sk_…)", "api_key"
            )
        if data.livemode is not None and data.livemode != livemode:
            raise ApiError("LINVL", "the api_key belongs to the other mode than livemode says", "livemode")
        # An endpoint is made only for a mode with none yet, Licentric's or the tenant's own.
        current = {row["livemode"]: row for row in await call("api.list_stripe_connections", {})}
        connected = current.get(livemode)
        if connected is None or not (connected["webhook_endpoint_id"] or connected["secrets"]):
            async with stripe_ctx.api(api_key) as api:
                endpoint = await api.create_webhook_endpoint(stripe_ctx.webhook_url(account_id))
            webhook_secret = endpoint.secret
    args = {
        "api_key_ciphertext": box.encrypt(api_key, account_id, "stripe_api_key") if api_key else None,
        "api_key_redacted": redact(api_key) if api_key else None,
        "webhook_endpoint_id": endpoint.id if endpoint else None,
        "webhook_secret_ciphertext": (
            box.encrypt(webhook_secret, account_id, "stripe_webhook_secret") if webhook_secret else None
        ),
        "webhook_secret_redacted": redact(webhook_secret) if webhook_secret else None,
        "livemode": data.livemode,
        "portal_return_url": data.portal_return_url,
    }
    try:
        row = (await call("api.put_stripe_connection", args))[0]
    except Exception:
        if endpoint is not None:  # made for nothing: take it back
            await _delete_endpoint(stripe_ctx, api_key or "", endpoint.id)
        raise
    return row, account_id


async def disconnect(call: Call, stripe_ctx: StripeContext, livemode: bool) -> tuple[dict[str, Any], UUID]:
    """Disconnect Stripe in one mode: the webhook endpoint Licentric made is deleted in Stripe first (best
    effort), then the connection."""
    stripe_ctx.require_configured()
    key = (await call("api.get_stripe_api_key", {"livemode": livemode}))[0]
    if key["webhook_endpoint_id"] and key["api_key_ciphertext"]:
        try:
            api_key = stripe_ctx.decrypt(key["api_key_ciphertext"], key["account_id"], "stripe_api_key")
        except ApiError:
            pass  # logged; the endpoint stays in Stripe, where its deliveries are now refused
        else:
            await _delete_endpoint(stripe_ctx, api_key, key["webhook_endpoint_id"])
    row = (await call("api.delete_stripe_connection", {"livemode": livemode}))[0]
    return row, key["account_id"]


async def _delete_endpoint(stripe_ctx: StripeContext, api_key: str, endpoint_id: str) -> None:
    try:
        async with stripe_ctx.api(api_key) as api:
            await api.delete_webhook_endpoint(endpoint_id)
    except ApiError as exc:
        log.warning("could not delete Stripe webhook endpoint %s: %s", endpoint_id, exc.message)


class StripeMappingController(Controller):
    path = "/v1/stripe/mappings"
    tags = ("stripe",)

    @post(
        operation_id="createStripeMapping",
        status_code=201,
        responses=errors(402, 404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def create_mapping(
        self, db: NamedDependency[TenantDb], data: JSONBody[StripeMappingCreate]
    ) -> Response[StripeMapping]:
        """Map a Stripe price or product (exactly one) to a license policy (policy_id or policy_code); the
        events parked for want of it are applied (reapplied counts them). A price's mapping beats its
        product's."""
        return await db.one(
            StripeMapping, "api.create_stripe_mapping", msgspec.structs.asdict(data), status=201
        )

    @get(operation_id="listStripeMappings", responses=errors(422))
    async def list_mappings(
        self, db: NamedDependency[TenantDb], page: NamedDependency[Page]
    ) -> StripeMappingList:
        """The account's price/product mappings, newest first."""
        return await db.page(StripeMappingList, "api.list_stripe_mappings", page)

    @delete("/{mapping_id:uuid}", operation_id="deleteStripeMapping", status_code=200, responses=errors(404))
    async def delete_mapping(
        self, db: NamedDependency[TenantDb], mapping_id: FromPath[UUID]
    ) -> Response[StripeMapping]:
        """Delete a mapping; licenses it gave keep their policy."""
        return await db.one(StripeMapping, "api.delete_stripe_mapping", {"mapping_id": mapping_id})


class StripeEventController(Controller):
    path = "/v1/stripe/events"
    tags = ("stripe",)
    dependencies = STRIPE_DEPENDENCIES

    @get(operation_id="listStripeEvents", responses=errors(422))
    async def list_events(
        self,
        db: NamedDependency[TenantDb],
        page: NamedDependency[Page],
        outcome: Annotated[str | None, QueryParameter(description="Only events with this outcome.")] = None,
        event_type: Annotated[
            str | None,
            QueryParameter(name="type", max_length=255, description="Only events of this Stripe type."),
        ] = None,
    ) -> StripeEventList:
        """The Stripe events recorded for the account, newest first, without their payloads."""
        return await db.page(
            StripeEventList, "api.list_stripe_events", page, {"outcome": outcome, "type": event_type}
        )

    @get("/{stripe_event_id:uuid}", operation_id="getStripeEvent", responses=errors(404))
    async def get_event(
        self, db: NamedDependency[TenantDb], stripe_event_id: FromPath[UUID]
    ) -> Response[StripeEvent]:
        """One recorded event (by Licentric's id) with the payload Stripe signed."""
        return await db.one(StripeEvent, "api.get_stripe_event", {"stripe_event_id": stripe_event_id})

    @post(
        "/{stripe_event_id:uuid}/reprocess",
        operation_id="reprocessStripeEvent",
        status_code=200,
        responses=errors(404, 409),
        operation_class=IdempotentOperation,
    )
    async def reprocess_event(
        self,
        db: NamedDependency[TenantDb],
        stripe_ctx: NamedDependency[StripeContext],
        stripe_event_id: FromPath[UUID],
    ) -> Response[StripeEventResult]:
        """Apply a recorded event again (after a mapping, a plan upgrade or a fix): facts merge
        idempotently. When it needs an object from Stripe, that is fetched with the mode's key and
        applied too."""
        rows, replayed = await db.rows("api.reprocess_stripe_event", {"stripe_event_id": stripe_event_id})
        result = rows[0]["reprocess_stripe_event"]
        if not replayed and result.get("outcome") == "needs_refetch":
            result = await refetch_for(db.call, stripe_ctx, stripe_event_id, result)
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(msgspec.convert(result, StripeEventResult, strict=False), headers=headers)


async def refetch_for(
    call: Call, stripe_ctx: StripeContext, stripe_event_id: UUID, result: dict[str, Any]
) -> dict[str, Any]:
    """After a reprocess answered needs_refetch: fetch what it names with the event's mode's key and
    apply it (the reprocess route, the console's reprocess button)."""
    event = (await call("api.get_stripe_event", {"stripe_event_id": stripe_event_id}))[0]
    if event["livemode"] is None:
        return result
    try:
        key = (await call("api.get_stripe_api_key", {"livemode": event["livemode"]}))[0]
    except psycopg.Error:  # not connected in that mode (any more)
        return result
    if key["api_key_ciphertext"] is None:
        return result
    api_key = stripe_ctx.decrypt(key["api_key_ciphertext"], key["account_id"], "stripe_api_key")
    async with stripe_ctx.api(api_key) as api:
        return await refetch(StripeDb(stripe_ctx.pool), api, key["account_id"], result)


WEBHOOK_RESPONSES = {
    400: ResponseSpec(
        ErrorBody,
        description="Bad or missing signature (signature_invalid), or a body that is not a JSON object "
        "(payload_invalid); a signed body that is no Stripe event answers its outcome, invalid",
        generate_examples=False,
    ),
    503: ResponseSpec(
        ErrorBody, description="Busy, or Stripe not configured here; Stripe retries", generate_examples=False
    ),
}


@dataclass
class WebhookOperation(Operation):
    """The OpenAPI operation of the webhook: its body is the event exactly as Stripe signed it."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=Schema(type=OpenAPIType.OBJECT))},
            description="A Stripe event, the bytes Stripe signed",
            required=True,
        )


class StripeWebhookController(Controller):
    path = "/v1/stripe/webhooks"
    tags = ("stripe",)
    dependencies = STRIPE_DEPENDENCIES

    @post(
        "/{account_id:str}",
        operation_id="receiveStripeWebhook",
        status_code=200,
        security=[{}],
        responses=WEBHOOK_RESPONSES,
        operation_class=WebhookOperation,
    )
    async def receive(
        self,
        stripe_ctx: NamedDependency[StripeContext],
        account_id: FromPath[str],
        body: RawBody,
        stripe_signature: Annotated[
            str | None,
            HeaderParameter(name="Stripe-Signature", description="t=<unix time>,v1=<hex HMAC-SHA256>[,v1=…]"),
        ] = None,
    ) -> Response[StripeEventResult]:
        """Where Stripe delivers the account's events (the endpoint connecting made). No API key: the
        signature on the raw body, by one of the account's signing secrets, is the authentication. The
        event is recorded and applied in one transaction and the outcome answered: 200, or 400 for a
        signed body that is not a Stripe event."""
        box = stripe_ctx.box
        settings = stripe_ctx.settings
        # A stale or future timestamp, or no account id, is refused before any database work.
        timestamp = _signed_timestamp(stripe_signature)
        now = time.time()
        if timestamp < now - settings.stripe_webhook_tolerance:
            raise ApiError("LSIGN", BAD_SIGNATURE)
        if timestamp > now + settings.stripe_webhook_max_future_skew:
            raise ApiError(
                "LSIGN", "the Stripe-Signature timestamp lies in the future beyond the allowed skew"
            )
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError("LPAYL", "the body is not UTF-8 text") from None
        account = _uuid_or_none(account_id)
        if account is None:
            raise ApiError("LSIGN", BAD_SIGNATURE)
        stripe_db = StripeDb(stripe_ctx.pool)
        try:
            await stripe_db.limit_deliveries(account, settings.stripe_rate_limit_per_minute)
        except psycopg.Error as exc:
            if exc.sqlstate == "LNTFD":  # no such account: the same answer as a bad signature
                raise ApiError("LSIGN", BAD_SIGNATURE) from None
            raise
        credentials = await stripe_db.credentials(account)
        secrets = [
            (row["livemode"], secret)
            for row in credentials
            if row["kind"] == "webhook_secret"
            and (secret := _decrypt_quietly(box, row["ciphertext"], account, "stripe_webhook_secret"))
        ]
        modes = _verified_modes(text, stripe_signature or "", secrets, settings.stripe_webhook_tolerance)
        event = _json_object(text)
        claimed = event.get("livemode")
        livemode = claimed if isinstance(claimed, bool) and claimed in modes else modes[0]
        try:
            result = await stripe_db.apply_event(account, text, livemode)
        except psycopg.DataError as exc:  # e.g. a \u0000 that jsonb refuses
            raise ApiError(
                "LPAYL", f"the body is not JSON the database accepts: {exc.diag.message_primary}"
            ) from exc
        if result.get("outcome") == "needs_refetch":
            api_key = next(
                (
                    _decrypt_quietly(box, row["ciphertext"], account, "stripe_api_key")
                    for row in credentials
                    if row["kind"] == "api_key" and row["livemode"] == livemode
                ),
                None,
            )
            if api_key:
                async with stripe_ctx.api(api_key) as api:
                    result = await refetch(stripe_db, api, account, result)
        status = 400 if result.get("outcome") == "invalid" else 200
        return Response(msgspec.convert(result, StripeEventResult, strict=False), status_code=status)


def _signed_timestamp(header: str | None) -> int:
    """The header's one t= value. A missing header, none or two t=, or one that is not a number is
    refused before anything else is looked at."""
    stamps = [part[2:] for part in (header or "").split(",") if part.startswith("t=")]
    if len(stamps) != 1 or not STAMP.fullmatch(stamps[0]):
        raise ApiError("LSIGN", BAD_SIGNATURE)
    return int(stamps[0])


def _uuid_or_none(value: str) -> UUID | None:
    try:
        return UUID(value)
    except ValueError:
        return None


def _decrypt_quietly(
    box: SecretBox, ciphertext: bytes, account_id: UUID | None, purpose: Purpose
) -> str | None:
    """A stored secret in clear, or None (logged) when it does not decrypt: the delivery is then
    answered as if the secret did not exist, which tells the sender nothing."""
    try:
        return box.decrypt(ciphertext, account_id or "", purpose)
    except DecryptionError as exc:
        log.error("a stored Stripe %s of account %s does not decrypt: %s", purpose, account_id, exc)
        return None


def _verified_modes(body: str, header: str, secrets: list[tuple[bool, str]], tolerance: int) -> list[bool]:
    """The modes of the secrets whose v1 signature the header carries for this body, within the
    tolerance; refused when there is none (an unknown account has no secrets: the same answer)."""
    modes: list[bool] = []
    for livemode, secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(body, header, secret, tolerance=tolerance)
        except stripe.SignatureVerificationError:
            continue
        if livemode not in modes:
            modes.append(livemode)
    if not modes:
        raise ApiError("LSIGN", BAD_SIGNATURE)
    return modes


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        raise ApiError("LPAYL", "the body is not JSON") from None
    if not isinstance(value, dict):
        raise ApiError("LPAYL", "the body is not a JSON object")
    return value


class BillingPortalController(Controller):
    path = "/v1/licenses"
    tags = ("licenses",)
    dependencies = STRIPE_DEPENDENCIES

    @post(
        "/{license_id:uuid}/billing_portal_session",
        operation_id="createBillingPortalSession",
        status_code=200,
        responses=errors(404, 409, 422, 502),
        operation_class=IdempotentOperation,
    )
    async def create_billing_portal_session(
        self,
        db: NamedDependency[TenantDb],
        stripe_ctx: NamedDependency[StripeContext],
        license_id: FromPath[UUID],
        data: JSONBody[BillingPortalSessionCreate | None] = None,
    ) -> BillingPortalSession:
        """A Stripe Customer Portal session for the license's customer, in the mode the license came
        from; send the customer to url. return_url defaults to the connection's portal_return_url. An
        Idempotency-Key is passed on to Stripe, so a retry gets the same session."""
        stripe_ctx.require_configured()
        target = (
            await db.call(
                "api.stripe_billing_portal_target",
                {"license_id": license_id, "return_url": data.return_url if data else None},
            )
        )[0]
        api_key = stripe_ctx.decrypt(target["api_key_ciphertext"], target["account_id"], "stripe_api_key")
        idempotency_key = None
        if db.idempotency is not None:
            scoped = f"{target['account_id']}:{license_id}:{db.idempotency.key}:{db.idempotency.fingerprint}"
            idempotency_key = "licentric-" + hashlib.sha256(scoped.encode()).hexdigest()
        async with stripe_ctx.api(api_key) as api:
            url = await api.create_billing_portal_session(
                target["stripe_customer_id"], target["session_return_url"], idempotency_key
            )
        return BillingPortalSession(url=url)
