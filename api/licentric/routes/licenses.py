"""Licenses: create, list, get, update, the state machine, entitlement
overrides, validation; and entitlement checks (EntitlementCheckController).
Every rule lives in SQL (functions/45, 55-57); each handler is one api call."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, Parameter

from licentric.db import TenantDb
from licentric.pagination import Page
from licentric.routes.shapes import IdempotentOperation, Metadata, errors

LicenseStatus = Literal["active", "past_due", "suspended", "expired", "canceled"]


class License(msgspec.Struct, kw_only=True):
    object: str = "license"
    id: UUID
    key: str
    policy_id: UUID
    policy_code: str
    customer_id: UUID | None
    status: LicenseStatus
    effective_status: Literal["active", "past_due", "overdue", "suspended", "expired", "canceled"]
    expires_at: datetime | None
    grace_ends_at: datetime | None
    suspended_reason: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    canceled_at: datetime | None
    # Set by Stripe auto-sync (docs/stripe.md): seats bought (null: the policy's
    # max_users), the end of the latest paid period, an open dispute.
    seats: int | None = None
    paid_through: datetime | None = None
    disputed_at: datetime | None = None
    stripe_subscription_id: str | None = None


class LicenseList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[License]
    has_more: bool


class LicenseEntitlement(msgspec.Struct, kw_only=True):
    object: str = "license_entitlement"
    code: str
    name: str
    source: Literal["policy", "grant"]


class LicenseEntitlementList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[LicenseEntitlement]
    has_more: bool = False


class LicenseValidation(msgspec.Struct, kw_only=True):
    object: str = "license_validation"
    valid: bool
    code: str
    detail: str
    license: License | None
    entitlements: list[str] | None


class EntitlementCheck(msgspec.Struct, kw_only=True):
    object: str = "entitlement_check"
    allowed: bool
    reason: str
    license_id: UUID | None


class LicenseCreate(msgspec.Struct, forbid_unknown_fields=True):
    policy_id: UUID | None = None
    policy_code: str | None = None
    customer_id: UUID | None = None
    expires_at: datetime | None = None
    metadata: Metadata | None = None


class LicenseUpdate(msgspec.Struct, forbid_unknown_fields=True):
    metadata: Metadata | None = None
    expires_at: datetime | None = None
    clear_expiry: bool = False


class LicenseReason(msgspec.Struct, forbid_unknown_fields=True):
    reason: str | None = None


class LicensePolicyChange(msgspec.Struct, forbid_unknown_fields=True):
    policy_id: UUID | None = None
    policy_code: str | None = None
    reset_expiry: bool = False


class LicenseEntitlementSet(msgspec.Struct, forbid_unknown_fields=True):
    effect: Literal["grant", "revoke"]


class LicenseValidate(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    fingerprint: str | None = None
    entitlements: list[str] | None = None


class EntitlementCheckRequest(msgspec.Struct, forbid_unknown_fields=True):
    entitlement: str
    license_id: UUID | None = None
    license_key: str | None = None
    customer_external_id: str | None = None


def _reason(data: LicenseReason | None) -> str | None:
    return data.reason if data else None


class LicenseController(Controller):
    path = "/v1/licenses"
    tags = ("licenses",)

    @post(
        operation_id="createLicense",
        status_code=201,
        responses=errors(402, 404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def create_license(
        self, db: NamedDependency[TenantDb], data: JSONBody[LicenseCreate]
    ) -> Response[License]:
        """Create a license on a policy (policy_id or policy_code); the answer carries its key."""
        return await db.one(
            License,
            "api.create_license",
            {
                "policy_id": data.policy_id,
                "policy_code": data.policy_code,
                "customer_id": data.customer_id,
                "expires_at": data.expires_at,
                "metadata": data.metadata if data.metadata is not None else {},
            },
            status=201,
        )

    @get(operation_id="listLicenses", responses=errors(422))
    async def list_licenses(
        self,
        db: NamedDependency[TenantDb],
        page: NamedDependency[Page],
        status: Annotated[
            LicenseStatus | None, Parameter(description="The stored status (not the effective one).")
        ] = None,
        license_policy_id: Annotated[UUID | None, Parameter(description="Licenses on this policy.")] = None,
        customer_id: Annotated[UUID | None, Parameter(description="Licenses of this customer.")] = None,
        expiring_before: Annotated[
            datetime | None,
            Parameter(description="Active or past_due licenses whose expiry comes before this instant."),
        ] = None,
    ) -> LicenseList:
        """The account's licenses, newest first, optionally filtered."""
        return await db.page(
            LicenseList,
            "api.list_licenses",
            page,
            {
                "status": status,
                "license_policy_id": license_policy_id,
                "customer_id": customer_id,
                "expiring_before": expiring_before,
            },
        )

    @post(
        "/validate",
        operation_id="validateLicense",
        status_code=200,
        responses=errors(422),
        operation_class=IdempotentOperation,
    )
    async def validate_license(
        self, db: NamedDependency[TenantDb], data: JSONBody[LicenseValidate]
    ) -> Response[LicenseValidation]:
        """Validate a license key (a publishable key may call this). Always 200: `valid` and `code` say
        what the pipeline found (MALFORMED_KEY, NOT_FOUND, CANCELED, SUSPENDED, EXPIRED, OVERDUE,
        FINGERPRINT_SCOPE_REQUIRED, HEARTBEAT_DEAD, NO_MACHINE, FINGERPRINT_SCOPE_MISMATCH,
        TOO_MANY_MACHINES, TOO_MANY_USERS, ENTITLEMENTS_MISSING, PAYMENT_GRACE, VALID)."""
        return await db.one(
            LicenseValidation,
            "api.validate_license",
            {
                "key": data.key,
                "fingerprint": data.fingerprint,
                "entitlements": data.entitlements,
            },
        )

    @get("/{license_id:uuid}", operation_id="getLicense", responses=errors(404))
    async def get_license(
        self, db: NamedDependency[TenantDb], license_id: FromPath[UUID]
    ) -> Response[License]:
        return await db.one(License, "api.get_license", {"license_id": license_id})

    @post(
        "/{license_id:uuid}",
        operation_id="updateLicense",
        status_code=200,
        responses=errors(402, 404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def update_license(
        self, db: NamedDependency[TenantDb], license_id: FromPath[UUID], data: JSONBody[LicenseUpdate]
    ) -> Response[License]:
        """Merge metadata (null removes a key); set a future expires_at or clear_expiry."""
        return await db.one(
            License,
            "api.update_license",
            {
                "license_id": license_id,
                "metadata": data.metadata,
                "expires_at": data.expires_at,
                "clear_expiry": data.clear_expiry,
            },
        )

    @post(
        "/{license_id:uuid}/suspend",
        operation_id="suspendLicense",
        status_code=200,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def suspend_license(
        self,
        db: NamedDependency[TenantDb],
        license_id: FromPath[UUID],
        data: JSONBody[LicenseReason | None] = None,
    ) -> Response[License]:
        """Suspend an active or past_due license."""
        return await db.one(
            License, "api.suspend_license", {"license_id": license_id, "reason": _reason(data)}
        )

    @post(
        "/{license_id:uuid}/reinstate",
        operation_id="reinstateLicense",
        status_code=200,
        responses=errors(402, 404, 409),
        operation_class=IdempotentOperation,
    )
    async def reinstate_license(
        self, db: NamedDependency[TenantDb], license_id: FromPath[UUID]
    ) -> Response[License]:
        """Lift a suspension (402 when the tenant plan has no room for another active license)."""
        return await db.one(License, "api.reinstate_license", {"license_id": license_id})

    @post(
        "/{license_id:uuid}/renew",
        operation_id="renewLicense",
        status_code=200,
        responses=errors(402, 404, 409),
        operation_class=IdempotentOperation,
    )
    async def renew_license(
        self, db: NamedDependency[TenantDb], license_id: FromPath[UUID]
    ) -> Response[License]:
        """Extend the expiry by the policy's duration; an expired license becomes active."""
        return await db.one(License, "api.renew_license", {"license_id": license_id})

    @post(
        "/{license_id:uuid}/change_policy",
        operation_id="changeLicensePolicy",
        status_code=200,
        responses=errors(402, 404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def change_license_policy(
        self,
        db: NamedDependency[TenantDb],
        license_id: FromPath[UUID],
        data: JSONBody[LicensePolicyChange],
    ) -> Response[License]:
        """Move the license to another policy (policy_id or policy_code)."""
        return await db.one(
            License,
            "api.change_license_policy",
            {
                "license_id": license_id,
                "license_policy_id": data.policy_id,
                "license_policy_code": data.policy_code,
                "reset_expiry": data.reset_expiry,
            },
        )

    @post(
        "/{license_id:uuid}/cancel",
        operation_id="cancelLicense",
        status_code=200,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def cancel_license(
        self,
        db: NamedDependency[TenantDb],
        license_id: FromPath[UUID],
        data: JSONBody[LicenseReason | None] = None,
    ) -> Response[License]:
        """Cancel for good."""
        return await db.one(
            License, "api.cancel_license", {"license_id": license_id, "reason": _reason(data)}
        )

    @get(
        "/{license_id:uuid}/entitlements",
        operation_id="listLicenseEntitlements",
        responses=errors(404),
    )
    async def list_license_entitlements(
        self, db: NamedDependency[TenantDb], license_id: FromPath[UUID]
    ) -> LicenseEntitlementList:
        """The license's effective entitlements, sorted by code (one page: has_more is always false)."""
        return await db.all(
            LicenseEntitlementList, "api.list_license_entitlements", {"license_id": license_id}
        )

    @put(
        "/{license_id:uuid}/entitlements/{code:str}",
        operation_id="setLicenseEntitlement",
        responses=errors(404, 422),
    )
    async def set_license_entitlement(
        self,
        db: NamedDependency[TenantDb],
        license_id: FromPath[UUID],
        code: FromPath[str],
        data: JSONBody[LicenseEntitlementSet],
    ) -> LicenseEntitlementList:
        """Grant or revoke one entitlement on this license; answers the effective entitlements."""
        return await db.all(
            LicenseEntitlementList,
            "api.set_license_entitlement",
            {"license_id": license_id, "code": code, "effect": data.effect},
        )

    @delete(
        "/{license_id:uuid}/entitlements/{code:str}",
        operation_id="removeLicenseEntitlement",
        status_code=200,
        responses=errors(404),
    )
    async def remove_license_entitlement(
        self, db: NamedDependency[TenantDb], license_id: FromPath[UUID], code: FromPath[str]
    ) -> LicenseEntitlementList:
        """Remove this license's override of one entitlement; answers the effective entitlements."""
        return await db.all(
            LicenseEntitlementList,
            "api.remove_license_entitlement",
            {"license_id": license_id, "code": code},
        )


class EntitlementCheckController(Controller):
    path = "/v1/entitlements/check"
    tags = ("licenses",)

    @post(
        operation_id="checkEntitlement",
        status_code=200,
        responses=errors(422),
        operation_class=IdempotentOperation,
    )
    async def check_entitlement(
        self, db: NamedDependency[TenantDb], data: JSONBody[EntitlementCheckRequest]
    ) -> Response[EntitlementCheck]:
        """Whether a license (license_id or license_key) or a customer (customer_external_id) has an
        entitlement now. Always 200 unless the request is malformed: `allowed` and `reason` answer."""
        return await db.one(
            EntitlementCheck,
            "api.check_entitlement",
            {
                "entitlement": data.entitlement,
                "license_id": data.license_id,
                "license_key": data.license_key,
                "customer_external_id": data.customer_external_id,
            },
        )
