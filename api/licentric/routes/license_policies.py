from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from licentric.db import TenantDb
from licentric.pagination import Page
from licentric.routes.changes import Duration, Int32, update_args
from licentric.routes.shapes import IdempotentOperation, Metadata, errors

Action = Literal["suspend", "none"]


class LicensePolicy(msgspec.Struct, kw_only=True):
    object: str = "license_policy"
    id: UUID
    code: str
    name: str
    duration: str | None
    max_machines: int | None
    max_users: int | None
    require_fingerprint: bool
    heartbeat_interval: str | None
    grace_period: str
    refund_action: Action
    dispute_action: Action
    entitlements: list[str]
    metadata: dict[str, Any]
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime


class LicensePolicyList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[LicensePolicy]
    has_more: bool


class LicensePolicyCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: str
    name: str
    duration: Duration | None = None
    max_machines: Int32 | None = None
    max_users: Int32 | None = None
    require_fingerprint: bool = False
    heartbeat_interval: Duration | None = None
    grace_period: Duration = "P7D"
    refund_action: Action = "suspend"
    dispute_action: Action = "suspend"
    metadata: Metadata = msgspec.field(default_factory=dict)


class LicensePolicyUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out are unchanged; null clears duration, max_machines, max_users or heartbeat_interval."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    duration: Duration | msgspec.UnsetType | None = msgspec.UNSET
    max_machines: Int32 | msgspec.UnsetType | None = msgspec.UNSET
    max_users: Int32 | msgspec.UnsetType | None = msgspec.UNSET
    require_fingerprint: bool | msgspec.UnsetType = msgspec.UNSET
    heartbeat_interval: Duration | msgspec.UnsetType | None = msgspec.UNSET
    grace_period: Duration | msgspec.UnsetType = msgspec.UNSET
    refund_action: Action | msgspec.UnsetType = msgspec.UNSET
    dispute_action: Action | msgspec.UnsetType = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType = msgspec.UNSET


class LicensePolicyController(Controller):
    path = "/v1/license_policies"
    tags = ("license_policies",)

    @post(
        operation_id="createLicensePolicy",
        status_code=201,
        responses=errors(409, 422),
        operation_class=IdempotentOperation,
    )
    async def create_license_policy(
        self, db: NamedDependency[TenantDb], data: JSONBody[LicensePolicyCreate]
    ) -> Response[LicensePolicy]:
        """Create a license policy (a plan tier). Durations are ISO 8601; null limits mean unlimited."""
        args = msgspec.structs.asdict(data)
        return await db.one(LicensePolicy, "api.create_license_policy", args, status=201)

    @get(operation_id="listLicensePolicies", responses=errors(422))
    async def list_license_policies(
        self,
        db: NamedDependency[TenantDb],
        page: NamedDependency[Page],
        include_archived: Annotated[bool, QueryParameter(description="Also list archived policies.")] = False,
    ) -> LicensePolicyList:
        """The account's license policies, newest first."""
        return await db.page(
            LicensePolicyList, "api.list_license_policies", page, {"include_archived": include_archived}
        )

    @get("/{license_policy_id:uuid}", operation_id="getLicensePolicy", responses=errors(404))
    async def get_license_policy(
        self, db: NamedDependency[TenantDb], license_policy_id: FromPath[UUID]
    ) -> Response[LicensePolicy]:
        return await db.one(LicensePolicy, "api.get_license_policy", {"license_policy_id": license_policy_id})

    @post(
        "/{license_policy_id:uuid}",
        operation_id="updateLicensePolicy",
        status_code=200,
        responses=errors(404, 422),
        operation_class=IdempotentOperation,
    )
    async def update_license_policy(
        self,
        db: NamedDependency[TenantDb],
        license_policy_id: FromPath[UUID],
        data: JSONBody[LicensePolicyUpdate],
    ) -> Response[LicensePolicy]:
        """Change a policy (its code is fixed). Fields left out are unchanged; null clears a nullable
        field; metadata replaces the whole object. Changes apply to the policy's existing licenses."""
        return await db.one(
            LicensePolicy,
            "api.update_license_policy",
            {"license_policy_id": license_policy_id, **update_args(data)},
        )

    @post(
        "/{license_policy_id:uuid}/archive",
        operation_id="archiveLicensePolicy",
        status_code=200,
        responses=errors(404),
        operation_class=IdempotentOperation,
    )
    async def archive_license_policy(
        self, db: NamedDependency[TenantDb], license_policy_id: FromPath[UUID]
    ) -> Response[LicensePolicy]:
        """Archive a policy: no new licenses on it; existing ones keep working. Archiving twice is a no-op."""
        return await db.one(
            LicensePolicy, "api.archive_license_policy", {"license_policy_id": license_policy_id}
        )

    @put(
        "/{license_policy_id:uuid}/entitlements/{code:str}",
        operation_id="attachEntitlement",
        status_code=200,
        responses=errors(404),
    )
    async def attach_entitlement(
        self, db: NamedDependency[TenantDb], license_policy_id: FromPath[UUID], code: FromPath[str]
    ) -> Response[LicensePolicy]:
        """Make the policy grant the entitlement with this code; attaching it again changes nothing."""
        return await db.one(
            LicensePolicy, "api.attach_entitlement", {"license_policy_id": license_policy_id, "code": code}
        )

    @delete(
        "/{license_policy_id:uuid}/entitlements/{code:str}",
        operation_id="detachEntitlement",
        status_code=200,
        responses=errors(404),
    )
    async def detach_entitlement(
        self, db: NamedDependency[TenantDb], license_policy_id: FromPath[UUID], code: FromPath[str]
    ) -> Response[LicensePolicy]:
        """Stop the policy granting the entitlement with this code; detaching one it lacks changes nothing."""
        return await db.one(
            LicensePolicy, "api.detach_entitlement", {"license_policy_id": license_policy_id, "code": code}
        )
