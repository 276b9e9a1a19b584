from __future__ import annotations

from datetime import datetime
from uuid import UUID

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency

from licentric.db import TenantDb
from licentric.routes.shapes import errors


class AccountLimits(msgspec.Struct):
    active_licenses: int | None
    agents: int | None
    webhook_endpoints: int | None
    custom_branding: bool
    embeddable_analytics: bool


class AccountUsage(msgspec.Struct):
    active_licenses: int
    agents: int
    webhook_endpoints: int
    api_keys: int


class Account(msgspec.Struct, kw_only=True):
    object: str = "account"
    id: UUID
    name: str
    plan: str
    limits: AccountLimits
    usage: AccountUsage
    created_at: datetime
    # "active", or "suspended" by the operator (status_reason may say why): a suspended account records
    # no usage.
    status: str
    status_reason: str | None


class AccountController(Controller):
    path = "/v1/account"
    tags = ("account",)

    @get(operation_id="getAccount", responses=errors())
    async def get_account(self, db: NamedDependency[TenantDb]) -> Response[Account]:
        """The account the key belongs to: plan, limits (null = unlimited), usage and status."""
        return await db.one(Account, "api.get_account")
