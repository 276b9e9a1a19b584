from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter

from licentric.db import TenantDb
from licentric.pagination import Page
from licentric.routes.changes import update_args
from licentric.routes.shapes import IdempotentOperation, Metadata, errors


class Customer(msgspec.Struct, kw_only=True):
    object: str = "customer"
    id: UUID
    email: str | None
    name: str | None
    external_id: str | None
    stripe_customer_id: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class CustomerList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Customer]
    has_more: bool


class CustomerCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    email: str | None = None
    name: str | None = None
    external_id: str | None = None
    stripe_customer_id: str | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class CustomerUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out are unchanged; null clears email, name, external_id or stripe_customer_id."""

    email: str | msgspec.UnsetType | None = msgspec.UNSET
    name: str | msgspec.UnsetType | None = msgspec.UNSET
    external_id: str | msgspec.UnsetType | None = msgspec.UNSET
    stripe_customer_id: str | msgspec.UnsetType | None = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType = msgspec.UNSET


class CustomerController(Controller):
    path = "/v1/customers"
    tags = ("customers",)

    @post(
        operation_id="createCustomer",
        status_code=201,
        responses=errors(409, 422),
        operation_class=IdempotentOperation,
    )
    async def create_customer(
        self, db: NamedDependency[TenantDb], data: JSONBody[CustomerCreate]
    ) -> Response[Customer]:
        """Create a customer. external_id (your own id for it) and stripe_customer_id are unique."""
        return await db.one(Customer, "api.create_customer", msgspec.structs.asdict(data), status=201)

    @get(operation_id="listCustomers", responses=errors(422))
    async def list_customers(
        self,
        db: NamedDependency[TenantDb],
        page: NamedDependency[Page],
        email: Annotated[
            str | None, QueryParameter(description="Only customers with this email (any case).")
        ] = None,
        external_id: Annotated[
            str | None, QueryParameter(description="Only the customer with this external_id.")
        ] = None,
    ) -> CustomerList:
        """The account's customers, newest first."""
        return await db.page(
            CustomerList, "api.list_customers", page, {"email": email, "external_id": external_id}
        )

    @get("/{customer_id:uuid}", operation_id="getCustomer", responses=errors(404))
    async def get_customer(
        self, db: NamedDependency[TenantDb], customer_id: FromPath[UUID]
    ) -> Response[Customer]:
        return await db.one(Customer, "api.get_customer", {"customer_id": customer_id})

    @post(
        "/{customer_id:uuid}",
        operation_id="updateCustomer",
        status_code=200,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def update_customer(
        self, db: NamedDependency[TenantDb], customer_id: FromPath[UUID], data: JSONBody[CustomerUpdate]
    ) -> Response[Customer]:
        """Change a customer. Fields left out are unchanged; null clears one; metadata is replaced whole."""
        return await db.one(
            Customer, "api.update_customer", {"customer_id": customer_id, **update_args(data)}
        )
