"""Events: what happened in the account, newest first, as webhooks deliver it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from licentric.db import TenantDb
from licentric.pagination import Page
from licentric.routes.shapes import errors


class Event(msgspec.Struct, kw_only=True):
    object: str = "event"
    id: UUID
    type: str
    created: datetime
    data: dict[str, Any]  # {"object": …, "previous_attributes": … or null}


class EventList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Event]
    has_more: bool


class EventController(Controller):
    path = "/v1/events"
    tags = ("events",)

    @get(operation_id="listEvents", responses=errors(422))
    async def list_events(
        self,
        db: NamedDependency[TenantDb],
        page: NamedDependency[Page],
        event_type: Annotated[
            str | None,
            QueryParameter(
                name="type", max_length=200, description="Only events of this type, e.g. machine.activated."
            ),
        ] = None,
    ) -> EventList:
        """The account's events, newest first."""
        return await db.page(EventList, "api.list_events", page, {"type": event_type})

    @get("/{event_id:uuid}", operation_id="getEvent", responses=errors(404))
    async def get_event(self, db: NamedDependency[TenantDb], event_id: FromPath[UUID]) -> Response[Event]:
        return await db.one(Event, "api.get_event", {"event_id": event_id})
