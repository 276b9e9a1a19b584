from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from licentric.db import TenantDb
from licentric.pagination import Page
from licentric.routes.shapes import IdempotentOperation, errors


class ApiKey(msgspec.Struct, kw_only=True):
    object: str = "api_key"
    id: UUID
    kind: Literal["secret", "publishable"]
    name: str | None
    redacted: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rolled_from: UUID | None
    created_at: datetime
    secret: str | None = None  # only in the answer that creates the key


class ApiKeyList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[ApiKey]
    has_more: bool


class ApiKeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    kind: Literal["secret", "publishable"]
    name: str | None = None


class ApiKeyRoll(msgspec.Struct, forbid_unknown_fields=True):
    expires_at: datetime | None = None


class ApiKeyController(Controller):
    path = "/v1/api_keys"
    tags = ("api_keys",)

    @post(
        operation_id="createApiKey",
        status_code=201,
        responses=errors(409, 422),
        operation_class=IdempotentOperation,
    )
    async def create_api_key(
        self, db: NamedDependency[TenantDb], data: JSONBody[ApiKeyCreate]
    ) -> Response[ApiKey]:
        """Create a key. The clear key is in `secret` in this answer only."""
        return await db.one(ApiKey, "api.create_api_key", {"kind": data.kind, "name": data.name}, status=201)

    @get(operation_id="listApiKeys", responses=errors(422))
    async def list_api_keys(self, db: NamedDependency[TenantDb], page: NamedDependency[Page]) -> ApiKeyList:
        """The account's keys, newest first, without secrets."""
        return await db.page(ApiKeyList, "api.list_api_keys", page)

    @get("/{api_key_id:uuid}", operation_id="getApiKey", responses=errors(404))
    async def get_api_key(
        self, db: NamedDependency[TenantDb], api_key_id: FromPath[UUID]
    ) -> Response[ApiKey]:
        return await db.one(ApiKey, "api.get_api_key", {"api_key_id": api_key_id})

    @post(
        "/{api_key_id:uuid}/roll",
        operation_id="rollApiKey",
        status_code=200,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def roll_api_key(
        self,
        db: NamedDependency[TenantDb],
        api_key_id: FromPath[UUID],
        data: JSONBody[ApiKeyRoll | None] = None,
    ) -> Response[ApiKey]:
        """Replace a key: the new key is returned once; the old one works until expires_at (default 24 h)."""
        expires_at = data.expires_at if data else None
        return await db.one(ApiKey, "api.roll_api_key", {"api_key_id": api_key_id, "expires_at": expires_at})

    @delete("/{api_key_id:uuid}", operation_id="revokeApiKey", status_code=200, responses=errors(404, 409))
    async def revoke_api_key(
        self, db: NamedDependency[TenantDb], api_key_id: FromPath[UUID]
    ) -> Response[ApiKey]:
        """Revoke a key at once. The last active secret key cannot be revoked."""
        return await db.one(ApiKey, "api.revoke_api_key", {"api_key_id": api_key_id})
