"""Usage ingest and budget checks. The batch body goes to SQL as it came
(api.ingest_events parses, checks and counts every event, set-based); a
budget check is one api.check_budget call. Secret keys and agent tokens (an
agent records and checks only for itself) are both accepted."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, RequestBody, Schema
from litestar.params import JSONBody, RawBody

from licentric.db import TenantDb
from licentric.errors import ApiError
from licentric.routes.shapes import IdempotentOperation, errors


class UsageEventResult(msgspec.Struct, kw_only=True):
    index: int
    id: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    code: str | None


class UsageIngest(msgspec.Struct, kw_only=True):
    object: str = "usage_ingest"
    accepted: int
    duplicates: int
    rejected: int
    data: list[UsageEventResult]


class BudgetCheckRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    meter_id: UUID | None = None
    meter_code: str | None = None
    agent_id: UUID | None = None
    license_id: UUID | None = None
    amount: Decimal = Decimal(1)


class BudgetCheck(msgspec.Struct, kw_only=True):
    object: str = "budget_check"
    allowed: bool
    remaining: Decimal | None
    meter: str
    budgets: list[dict[str, Any]]


EVENT_SCHEMA = Schema(
    type=OpenAPIType.OBJECT,
    required=["id", "meter"],
    properties={
        "id": Schema(type=OpenAPIType.STRING, description="Your idempotency key for the event."),
        "meter": Schema(type=OpenAPIType.STRING, description="The meter's code."),
        "quantity": Schema(type=OpenAPIType.NUMBER, minimum=0, description="Default 1."),
        "occurred_at": Schema(
            type=OpenAPIType.STRING, format="date-time", description="RFC 3339; default now."
        ),
        "agent_id": Schema(type=OpenAPIType.STRING, format="uuid"),
        "license_id": Schema(type=OpenAPIType.STRING, format="uuid"),
        "subject_key": Schema(type=OpenAPIType.STRING, description="Your own id for the subject."),
        "properties": Schema(type=OpenAPIType.OBJECT),
    },
)


@dataclass
class IngestOperation(IdempotentOperation):
    """The batch body is read raw (it goes to SQL as it came), so its schema is written out here."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.request_body = RequestBody(
            content={
                "application/json": OpenAPIMediaType(
                    schema=Schema(type=OpenAPIType.ARRAY, items=EVENT_SCHEMA, max_items=10_000)
                )
            },
            description="Up to 10,000 usage events.",
            required=True,
        )


class UsageEventController(Controller):
    path = "/v1/usage/events"
    tags = ("usage",)

    @post(
        operation_id="ingestUsageEvents",
        status_code=200,
        responses=errors(402, 422),
        operation_class=IngestOperation,
    )
    async def ingest(self, db: NamedDependency[TenantDb], body: RawBody) -> Response[UsageIngest]:
        """Record a batch of usage events, each answered accepted, duplicate or rejected with a code; an
        event sent again (same id and occurred_at) counts once. 402 when a hard budget refuses them all."""
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError("LINVL", "the body is not UTF-8 JSON", "events") from None
        return await db.one(UsageIngest, "api.ingest_events", {"events": text})


class BudgetCheckController(Controller):
    path = "/v1/budgets/check"
    tags = ("budgets",)

    @post(
        operation_id="checkBudget",
        status_code=200,
        responses=errors(403, 404, 422),
        operation_class=IdempotentOperation,
    )
    async def check(
        self, db: NamedDependency[TenantDb], data: JSONBody[BudgetCheckRequest]
    ) -> Response[BudgetCheck]:
        """Whether `amount` more of a meter fits in every hard budget of an agent (with its license's) or
        a license this period, and what is left; nothing is spent."""
        return await db.one(BudgetCheck, "api.check_budget", msgspec.structs.asdict(data))
