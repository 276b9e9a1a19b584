"""Meters: what usage events count and how (sum, count, max, unique_count of a
property, latest). A meter is archived, never deleted; its code and
aggregation are fixed once created."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from licentric.db import TenantDb
from licentric.pagination import Page
from licentric.routes.changes import update_args
from licentric.routes.shapes import IdempotentOperation, Metadata, errors

Aggregation = Literal["sum", "count", "max", "unique_count", "latest"]


class Meter(msgspec.Struct, kw_only=True):
    object: str = "meter"
    id: UUID
    code: str
    name: str
    unit: str | None
    aggregation: Aggregation
    unique_property: str | None
    metadata: dict[str, Any]
    archived_at: datetime | None
    created_at: datetime
    updated_at: datetime


class MeterList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Meter]
    has_more: bool


class MeterCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    code: str
    name: str
    aggregation: Aggregation
    unit: str | None = None
    unique_property: str | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class MeterUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out are unchanged; unit null removes the unit; metadata is merged (a key set to null is
    removed)."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    unit: str | msgspec.UnsetType | None = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType = msgspec.UNSET


class MeterController(Controller):
    path = "/v1/meters"
    tags = ("meters",)

    @post(
        operation_id="createMeter",
        status_code=201,
        responses=errors(409, 422),
        operation_class=IdempotentOperation,
    )
    async def create_meter(
        self, db: NamedDependency[TenantDb], data: JSONBody[MeterCreate]
    ) -> Response[Meter]:
        """Create a meter; usage events name it by code. unique_property (only for unique_count) is the event
        property whose distinct values it counts."""
        return await db.one(Meter, "api.create_meter", msgspec.structs.asdict(data), status=201)

    @get(operation_id="listMeters", responses=errors(422))
    async def list_meters(
        self,
        db: NamedDependency[TenantDb],
        page: NamedDependency[Page],
        include_archived: Annotated[bool, QueryParameter(description="Also list archived meters.")] = False,
    ) -> MeterList:
        """The account's meters, newest first."""
        return await db.page(MeterList, "api.list_meters", page, {"include_archived": include_archived})

    @get("/{meter_id:uuid}", operation_id="getMeter", responses=errors(404))
    async def get_meter(self, db: NamedDependency[TenantDb], meter_id: FromPath[UUID]) -> Response[Meter]:
        return await db.one(Meter, "api.get_meter", {"meter_id": meter_id})

    @post(
        "/{meter_id:uuid}",
        operation_id="updateMeter",
        status_code=200,
        responses=errors(404, 422),
        operation_class=IdempotentOperation,
    )
    async def update_meter(
        self, db: NamedDependency[TenantDb], meter_id: FromPath[UUID], data: JSONBody[MeterUpdate]
    ) -> Response[Meter]:
        """Change the name, unit (null removes it) or metadata (merged; a key set to null is removed). The
        code, aggregation and unique_property are fixed."""
        return await db.one(Meter, "api.update_meter", {"meter_id": meter_id, **update_args(data)})

    @post(
        "/{meter_id:uuid}/archive",
        operation_id="archiveMeter",
        status_code=200,
        responses=errors(404),
        operation_class=IdempotentOperation,
    )
    async def archive_meter(self, db: NamedDependency[TenantDb], meter_id: FromPath[UUID]) -> Response[Meter]:
        """Archive the meter: its new events are refused and no budget can be made on it; its usage stays.
        Archiving twice is a no-op."""
        return await db.one(Meter, "api.archive_meter", {"meter_id": meter_id})
