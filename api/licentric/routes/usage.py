"""Usage of a meter over time, read from the hourly rollups (api.usage): one
row per calendar bucket in UTC (hour, day, month), optionally per subject.
Secret keys, and agent tokens for the agent's own usage."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

import msgspec
import psycopg
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from licentric.db import TenantDb
from licentric.errors import REGISTRY, ApiError
from licentric.routes.shapes import errors

# api.usage's parameters that this route names otherwise, for the error's param.
QUERY_NAMES = {"meter_id": "meter", "starting_at": "from", "ending_at": "to", "group_by_subject": "group_by"}


class UsageRow(msgspec.Struct, kw_only=True):
    period_start: datetime
    agent_id: UUID | None
    license_id: UUID | None
    subject_key: str | None
    value: Decimal
    event_count: int


class UsageList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[UsageRow]
    has_more: bool


def _utc(value: datetime) -> datetime:
    """An instant without an offset is read as UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class UsageController(Controller):
    path = "/v1/usage"
    tags = ("usage",)

    @get(operation_id="getUsage", responses=errors(404, 422))
    async def get_usage(
        self,
        db: NamedDependency[TenantDb],
        starting_at: Annotated[
            datetime,
            QueryParameter(name="from", description="Start of the range (RFC 3339; UTC without offset)."),
        ],
        ending_at: Annotated[datetime, QueryParameter(name="to", description="End of the range, exclusive.")],
        meter: Annotated[
            UUID | None, QueryParameter(description="The meter's id (or give meter_code).")
        ] = None,
        meter_code: Annotated[
            str | None, QueryParameter(description="The meter's code.", max_length=64)
        ] = None,
        granularity: Annotated[
            Literal["hour", "day", "month"],
            QueryParameter(description="Bucket size, calendar-aligned in UTC."),
        ] = "day",
        agent_id: Annotated[UUID | None, QueryParameter(description="Only this agent's events.")] = None,
        license_id: Annotated[
            UUID | None, QueryParameter(description="Only this license's events (its agents' too).")
        ] = None,
        subject_key: Annotated[
            str | None, QueryParameter(description="Only events with this subject key.", max_length=255)
        ] = None,
        group_by: Annotated[
            Literal["subject"] | None, QueryParameter(description="subject: one row per bucket and subject.")
        ] = None,
    ) -> UsageList:
        """Usage of a meter per bucket: every bucket the range touches, whole (at most 10,000), only
        those with events. value follows the meter's aggregation; the subject columns are set only with
        group_by=subject (null where an event had none)."""
        args = {
            "meter_id": meter,
            "meter_code": meter_code,
            "starting_at": _utc(starting_at),
            "ending_at": _utc(ending_at),
            "granularity": granularity,
            "agent_id": agent_id,
            "license_id": license_id,
            "subject_key": subject_key,
            "group_by_subject": group_by == "subject",
        }
        try:
            return await db.all(UsageList, "api.usage", args)
        except psycopg.Error as exc:
            param = exc.diag.column_name
            if exc.sqlstate in REGISTRY and param in QUERY_NAMES:
                raise ApiError(exc.sqlstate, exc.diag.message_primary or "", QUERY_NAMES[param]) from exc
            raise
