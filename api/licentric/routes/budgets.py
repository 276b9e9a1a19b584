"""Budgets: a limit on a meter for an agent or a license per calendar period
(UTC), hard (refuse) or soft (allow and emit budget.exceeded), with
thresholds. Every answer carries the current period's use. An agent token may
read its own budgets and its license's; changing them needs a secret key."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from licentric.db import TenantDb
from licentric.pagination import Page
from licentric.routes.changes import Int32, update_args
from licentric.routes.shapes import IdempotentOperation, Metadata, errors

Period = Literal["hour", "day", "month"]
# What a budget counts: its subject's own events, or (a license's budget) every event of the license.
Scope = Literal["subject", "all_subjects"]


class Budget(msgspec.Struct, kw_only=True):
    object: str = "budget"
    id: UUID
    meter_id: UUID
    meter_code: str
    agent_id: UUID | None
    license_id: UUID | None
    period: Period
    limit: Decimal
    hard: bool
    thresholds: list[int]
    used: Decimal
    remaining: Decimal
    period_start: datetime
    period_end: datetime
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    scope: Scope


class BudgetList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Budget]
    has_more: bool


class BudgetCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The meter by meter_id or meter_code, the subject by agent_id or license_id (exactly one of each)."""

    period: Period
    limit: Decimal
    meter_id: UUID | None = None
    meter_code: str | None = None
    agent_id: UUID | None = None
    license_id: UUID | None = None
    hard: bool = True
    thresholds: list[Int32] = msgspec.field(default_factory=list)
    metadata: Metadata = msgspec.field(default_factory=dict)
    # Default: all_subjects for a license's budget, subject for an agent's.
    scope: Scope | None = None


class BudgetUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out are unchanged; thresholds replace the list; metadata is merged (a key set to null is
    removed). The meter, subject and period are fixed."""

    limit: Decimal | msgspec.UnsetType = msgspec.UNSET
    hard: bool | msgspec.UnsetType = msgspec.UNSET
    thresholds: list[Int32] | msgspec.UnsetType = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType = msgspec.UNSET


class BudgetController(Controller):
    path = "/v1/budgets"
    tags = ("budgets",)

    @post(
        operation_id="createBudget",
        status_code=201,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def create_budget(
        self, db: NamedDependency[TenantDb], data: JSONBody[BudgetCreate]
    ) -> Response[Budget]:
        """Limit a meter for an agent or a license per hour, day or month (UTC). Hard budgets refuse events
        that would pass the limit; soft ones accept them and emit budget.exceeded. thresholds are distinct
        percentages of the limit (1-1000, at most 10) that emit budget.threshold_reached once per period."""
        return await db.one(Budget, "api.create_budget", msgspec.structs.asdict(data), status=201)

    @get(operation_id="listBudgets", responses=errors(422))
    async def list_budgets(
        self,
        db: NamedDependency[TenantDb],
        page: NamedDependency[Page],
        agent_id: Annotated[UUID | None, QueryParameter(description="Only this agent's budgets.")] = None,
        license_id: Annotated[UUID | None, QueryParameter(description="Only this license's budgets.")] = None,
        meter_id: Annotated[UUID | None, QueryParameter(description="Only budgets on this meter.")] = None,
    ) -> BudgetList:
        """The account's budgets, newest first, each with its current period's use (an agent token: its own
        and its license's)."""
        return await db.page(
            BudgetList,
            "api.list_budgets",
            page,
            {"agent_id": agent_id, "license_id": license_id, "meter_id": meter_id},
        )

    @get("/{budget_id:uuid}", operation_id="getBudget", responses=errors(404))
    async def get_budget(self, db: NamedDependency[TenantDb], budget_id: FromPath[UUID]) -> Response[Budget]:
        """A budget with its current period's use."""
        return await db.one(Budget, "api.get_budget", {"budget_id": budget_id})

    @post(
        "/{budget_id:uuid}",
        operation_id="updateBudget",
        status_code=200,
        responses=errors(404, 422),
        operation_class=IdempotentOperation,
    )
    async def update_budget(
        self, db: NamedDependency[TenantDb], budget_id: FromPath[UUID], data: JSONBody[BudgetUpdate]
    ) -> Response[Budget]:
        """Change the limit, hard, thresholds or metadata; what the current period used is kept."""
        return await db.one(
            Budget, "api.update_budget", {"budget_id": budget_id, **update_args(data, clearable=False)}
        )

    @delete("/{budget_id:uuid}", operation_id="deleteBudget", status_code=200, responses=errors(404))
    async def delete_budget(
        self, db: NamedDependency[TenantDb], budget_id: FromPath[UUID]
    ) -> Response[Budget]:
        """Delete the budget and its recorded use; the answer is the budget as it was."""
        return await db.one(Budget, "api.delete_budget", {"budget_id": budget_id})
