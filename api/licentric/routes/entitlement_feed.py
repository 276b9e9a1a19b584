"""Entitlement snapshots and their change feed: what the SDK's local checks read (decisions 80-82).

The decisions are made in SQL (functions/59_entitlement_feed.sql); this only long-polls the feed: it
re-queries every POLL_SECONDS until something changed or `wait` ran out, each query a short transaction of
its own, so a waiting client holds no connection.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Annotated
from uuid import UUID

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from licentric.db import TenantDb
from licentric.routes.shapes import errors

POLL_SECONDS = 0.2
MAX_WAIT_SECONDS = 30.0


class EntitlementAnswer(msgspec.Struct, kw_only=True):
    """One answer of a timeline: it holds until valid_until (null: for good), the next one from then on."""

    allowed: bool
    reason: str
    license_id: UUID | None
    valid_until: datetime | None


class CustomerEntitlements(msgspec.Struct, kw_only=True):
    object: str = "customer_entitlements"
    customer: str
    found: bool
    default: list[EntitlementAnswer]
    entitlements: dict[str, list[EntitlementAnswer]]


class EntitlementPage(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[CustomerEntitlements]
    has_more: bool
    cursor: str


Limit = Annotated[int, QueryParameter(description="Customers per page, 1-1000.")]


class EntitlementFeedController(Controller):
    path = "/v1/entitlements"
    tags = ("entitlements",)

    @get("/snapshot", operation_id="getEntitlementSnapshot", responses=errors(422))
    async def snapshot(
        self,
        db: NamedDependency[TenantDb],
        customer: Annotated[
            str | None, QueryParameter(description="Only this customer (its external_id), found or not.")
        ] = None,
        limit: Limit = 100,
        starting_after: Annotated[
            str | None, QueryParameter(description="The last external_id of the previous page.")
        ] = None,
    ) -> Response[EntitlementPage]:
        """Every customer's entitlement decisions from now on, by external_id (or one customer's): for each
        code its licenses in use grant, a timeline of answers `{allowed, reason, license_id, valid_until}`,
        each holding until its `valid_until` and the next from then on; `default` answers every code not
        listed. Answers agree with `POST /v1/entitlements/check` by construction. Follow changes with
        `GET /v1/entitlements/changes` from `cursor` (of a multi-page snapshot, the first page's). Secret keys
        only."""
        return await db.one(
            EntitlementPage,
            "api.entitlement_snapshot",
            {"customer_external_id": customer, "page_limit": limit, "starting_after": starting_after},
        )

    @get("/changes", operation_id="listEntitlementChanges", responses=errors(410, 422))
    async def changes(
        self,
        db: NamedDependency[TenantDb],
        cursor: Annotated[
            str, QueryParameter(description="The cursor of the last snapshot or changes page.")
        ],
        wait: Annotated[
            float,
            QueryParameter(
                ge=0,
                description="Seconds to wait for a change when there is none yet "
                f"(at most {MAX_WAIT_SECONDS:g}).",
            ),
        ] = 0,
        limit: Limit = 1000,
    ) -> Response[EntitlementPage]:
        """The customers whose decisions changed since `cursor`, each with its current decisions as the
        snapshot answers them (`found: false`: the external id no longer names a customer), in an order that
        skips no transaction however late it commits, and the next `cursor`. With `has_more`, call again at
        once. With `wait`, the answer comes as soon as something changes, or empty when the wait is over.
        410 `cursor_expired`: the cursor is too old to follow; take a new snapshot. Secret keys only."""
        args = {"cursor": cursor, "page_limit": limit}
        deadline = time.monotonic() + min(wait, MAX_WAIT_SECONDS)
        page = await db.one(EntitlementPage, "api.entitlement_changes", args)
        while not page.content.data and time.monotonic() + POLL_SECONDS < deadline:
            await asyncio.sleep(POLL_SECONDS)
            args["cursor"] = page.content.cursor
            page = await db.uncounted().one(EntitlementPage, "api.entitlement_changes", args)
        return page
