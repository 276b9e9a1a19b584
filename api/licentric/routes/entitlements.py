from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from licentric.db import TenantDb
from licentric.pagination import Page
from licentric.routes.changes import update_args
from licentric.routes.shapes import IdempotentOperation, Metadata, errors


class Entitlement(msgspec.Struct, kw_only=True):
    object: str = "entitlement"
    id: UUID
    code: str
    name: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class EntitlementList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Entitlement]
    has_more: bool


class EntitlementCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: str
    name: str
    metadata: Metadata = msgspec.field(default_factory=dict)


class EntitlementUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out are unchanged."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType = msgspec.UNSET


class EntitlementController(Controller):
    path = "/v1/entitlements"
    tags = ("entitlements",)

    @post(
        operation_id="createEntitlement",
        status_code=201,
        responses=errors(409, 422),
        operation_class=IdempotentOperation,
    )
    async def create_entitlement(
        self, db: NamedDependency[TenantDb], data: JSONBody[EntitlementCreate]
    ) -> Response[Entitlement]:
        """Create an entitlement. Its code (a-z 0-9 . _ : -) is what applications check and is fixed."""
        return await db.one(Entitlement, "api.create_entitlement", msgspec.structs.asdict(data), status=201)

    @get(operation_id="listEntitlements", responses=errors(422))
    async def list_entitlements(
        self, db: NamedDependency[TenantDb], page: NamedDependency[Page]
    ) -> EntitlementList:
        """The account's entitlements, newest first."""
        return await db.page(EntitlementList, "api.list_entitlements", page)

    @get("/{entitlement_id:uuid}", operation_id="getEntitlement", responses=errors(404))
    async def get_entitlement(
        self, db: NamedDependency[TenantDb], entitlement_id: FromPath[UUID]
    ) -> Response[Entitlement]:
        return await db.one(Entitlement, "api.get_entitlement", {"entitlement_id": entitlement_id})

    @post(
        "/{entitlement_id:uuid}",
        operation_id="updateEntitlement",
        status_code=200,
        responses=errors(404, 422),
        operation_class=IdempotentOperation,
    )
    async def update_entitlement(
        self,
        db: NamedDependency[TenantDb],
        entitlement_id: FromPath[UUID],
        data: JSONBody[EntitlementUpdate],
    ) -> Response[Entitlement]:
        """Change an entitlement's name or metadata (metadata replaces the whole object)."""
        return await db.one(
            Entitlement,
            "api.update_entitlement",
            {"entitlement_id": entitlement_id, **update_args(data, clearable=False)},
        )
