"""Agent identities: principals for AI agents with their own token (lic_ak_…).
Managing them needs a secret key; GET /v1/agents/me is the one route an agent
token reaches."""

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
from licentric.routes.shapes import IdempotentOperation, Metadata, errors


class Agent(msgspec.Struct, kw_only=True):
    object: str = "agent"
    id: UUID
    name: str
    license_id: UUID | None
    status: Literal["active", "revoked"]
    redacted: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None
    token: str | None = None  # only in the answer that creates or rolls the token


class AgentList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Agent]
    has_more: bool


class AgentCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    license_id: UUID | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class AgentUpdate(msgspec.Struct, forbid_unknown_fields=True):
    name: str | None = None
    metadata: Metadata | None = None


class AgentController(Controller):
    path = "/v1/agents"
    tags = ("agents",)

    @post(
        operation_id="createAgent",
        status_code=201,
        responses=errors(402, 404, 422),
        operation_class=IdempotentOperation,
    )
    async def create_agent(
        self, db: NamedDependency[TenantDb], data: JSONBody[AgentCreate]
    ) -> Response[Agent]:
        """Create an agent; its token is in `token` in this answer only. Counts against the tenant plan."""
        return await db.one(
            Agent,
            "api.create_agent",
            {"name": data.name, "license_id": data.license_id, "metadata": data.metadata},
            status=201,
        )

    @get(operation_id="listAgents", responses=errors(422))
    async def list_agents(
        self,
        db: NamedDependency[TenantDb],
        page: NamedDependency[Page],
        status: Annotated[
            Literal["active", "revoked"] | None, QueryParameter(description="Only agents with this status.")
        ] = None,
    ) -> AgentList:
        """The account's agents, newest first, without tokens."""
        return await db.page(AgentList, "api.list_agents", page, {"status": status})

    @get("/me", operation_id="getCurrentAgent", responses=errors())
    async def get_current_agent(self, db: NamedDependency[TenantDb]) -> Response[Agent]:
        """The agent whose token authenticates the request (an agent token only)."""
        return await db.one(Agent, "api.get_current_agent")

    @get("/{agent_id:uuid}", operation_id="getAgent", responses=errors(404))
    async def get_agent(self, db: NamedDependency[TenantDb], agent_id: FromPath[UUID]) -> Response[Agent]:
        return await db.one(Agent, "api.get_agent", {"agent_id": agent_id})

    @post(
        "/{agent_id:uuid}",
        operation_id="updateAgent",
        status_code=200,
        responses=errors(404, 422),
        operation_class=IdempotentOperation,
    )
    async def update_agent(
        self, db: NamedDependency[TenantDb], agent_id: FromPath[UUID], data: JSONBody[AgentUpdate]
    ) -> Response[Agent]:
        """Rename the agent or replace its metadata; a field left out is kept."""
        return await db.one(
            Agent, "api.update_agent", {"agent_id": agent_id, "name": data.name, "metadata": data.metadata}
        )

    @post(
        "/{agent_id:uuid}/revoke",
        operation_id="revokeAgent",
        status_code=200,
        responses=errors(404),
        operation_class=IdempotentOperation,
    )
    async def revoke_agent(self, db: NamedDependency[TenantDb], agent_id: FromPath[UUID]) -> Response[Agent]:
        """Revoke the agent: its token stops working at once and it frees its place in the plan."""
        return await db.one(Agent, "api.revoke_agent", {"agent_id": agent_id})

    @post(
        "/{agent_id:uuid}/roll",
        operation_id="rollAgentToken",
        status_code=200,
        responses=errors(404, 409),
        operation_class=IdempotentOperation,
    )
    async def roll_agent_token(
        self, db: NamedDependency[TenantDb], agent_id: FromPath[UUID]
    ) -> Response[Agent]:
        """Give the agent a new token (in `token`, this once); the old one stops working at once."""
        return await db.one(Agent, "api.roll_agent_token", {"agent_id": agent_id})
