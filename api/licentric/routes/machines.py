"""Machines and team seats: /v1/machines/{id} and, under a license,
/v1/licenses/{license_id}/machines and /v1/licenses/{license_id}/users."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from licentric.db import TenantDb
from licentric.pagination import Page
from licentric.routes.shapes import IdempotentOperation, Metadata, errors


class Machine(msgspec.Struct, kw_only=True):
    object: str = "machine"
    id: UUID
    license_id: UUID
    fingerprint: str
    name: str | None
    platform: str | None
    metadata: dict[str, Any]
    alive: bool  # false once the policy's heartbeat interval has passed in silence
    last_heartbeat_at: datetime
    created_at: datetime
    updated_at: datetime


class MachineList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Machine]
    has_more: bool


class MachineActivate(msgspec.Struct, forbid_unknown_fields=True):
    fingerprint: str
    name: str | None = None
    platform: str | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class MachineTransfer(msgspec.Struct, forbid_unknown_fields=True):
    license_id: UUID


class LicenseUser(msgspec.Struct, kw_only=True):
    object: str = "license_user"
    license_id: UUID
    customer_id: UUID
    email: str | None
    name: str | None
    role: Literal["owner", "member"]
    created_at: datetime


class LicenseUserList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[LicenseUser]
    has_more: bool


class LicenseUserAdd(msgspec.Struct, forbid_unknown_fields=True):
    customer_id: UUID | None = None
    email: str | None = None
    role: Literal["owner", "member"] = "member"


class MachineController(Controller):
    path = "/v1/machines"
    tags = ("machines",)

    @get("/{machine_id:uuid}", operation_id="getMachine", responses=errors(404))
    async def get_machine(
        self, db: NamedDependency[TenantDb], machine_id: FromPath[UUID]
    ) -> Response[Machine]:
        return await db.one(Machine, "api.get_machine", {"machine_id": machine_id})

    @delete("/{machine_id:uuid}", operation_id="deactivateMachine", status_code=200, responses=errors(404))
    async def deactivate_machine(
        self, db: NamedDependency[TenantDb], machine_id: FromPath[UUID]
    ) -> Response[Machine]:
        """Deactivate a machine, freeing its place on the license; answers the machine as it was."""
        return await db.one(Machine, "api.deactivate_machine", {"machine_id": machine_id})

    @post(
        "/{machine_id:uuid}/heartbeat",
        operation_id="heartbeatMachine",
        status_code=200,
        responses=errors(404),
        operation_class=IdempotentOperation,
    )
    async def heartbeat_machine(
        self, db: NamedDependency[TenantDb], machine_id: FromPath[UUID]
    ) -> Response[Machine]:
        """Record that the machine is alive now. A machine removed for silence is a 404: activate it again."""
        return await db.one(Machine, "api.heartbeat_machine", {"machine_id": machine_id})

    @post(
        "/{machine_id:uuid}/transfer",
        operation_id="transferMachine",
        status_code=200,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def transfer_machine(
        self, db: NamedDependency[TenantDb], machine_id: FromPath[UUID], data: JSONBody[MachineTransfer]
    ) -> Response[Machine]:
        """Move the machine to another usable license of the same customer, within its max machines."""
        return await db.one(
            Machine, "api.transfer_machine", {"machine_id": machine_id, "license_id": data.license_id}
        )


class LicenseMachineController(Controller):
    path = "/v1/licenses/{license_id:uuid}/machines"
    tags = ("machines",)

    @post(
        operation_id="activateMachine",
        status_code=201,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def activate_machine(
        self, db: NamedDependency[TenantDb], license_id: FromPath[UUID], data: JSONBody[MachineActivate]
    ) -> Response[Machine]:
        """Activate a machine by fingerprint within the license's max machines. The same fingerprint again
        answers the machine it already is (and counts as a heartbeat)."""
        return await db.one(
            Machine,
            "api.activate_machine",
            {
                "license_id": license_id,
                "fingerprint": data.fingerprint,
                "name": data.name,
                "platform": data.platform,
                "metadata": data.metadata,
            },
            status=201,
        )

    @get(operation_id="listMachines", responses=errors(404, 422))
    async def list_machines(
        self, db: NamedDependency[TenantDb], page: NamedDependency[Page], license_id: FromPath[UUID]
    ) -> MachineList:
        """The license's machines, newest first."""
        return await db.page(MachineList, "api.list_machines", page, {"license_id": license_id})


class LicenseUserController(Controller):
    path = "/v1/licenses/{license_id:uuid}/users"
    tags = ("license_users",)

    @post(
        operation_id="addLicenseUser",
        status_code=201,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def add_license_user(
        self, db: NamedDependency[TenantDb], license_id: FromPath[UUID], data: JSONBody[LicenseUserAdd]
    ) -> Response[LicenseUser]:
        """Give a customer a seat, by `customer_id` or by `email` (found case-insensitively, or created),
        within the license's max users. A customer who has a seat gets it back unchanged."""
        return await db.one(
            LicenseUser,
            "api.add_license_user",
            {
                "license_id": license_id,
                "customer_id": data.customer_id,
                "email": data.email,
                "role": data.role,
            },
            status=201,
        )

    @get(operation_id="listLicenseUsers", responses=errors(404, 422))
    async def list_license_users(
        self, db: NamedDependency[TenantDb], page: NamedDependency[Page], license_id: FromPath[UUID]
    ) -> LicenseUserList:
        """The license's seats by customer id, newest customer first (the cursors are customer ids)."""
        return await db.page(LicenseUserList, "api.list_license_users", page, {"license_id": license_id})

    @delete("/{user_id:uuid}", operation_id="removeLicenseUser", status_code=200, responses=errors(404, 409))
    async def remove_license_user(
        self, db: NamedDependency[TenantDb], license_id: FromPath[UUID], user_id: FromPath[UUID]
    ) -> Response[LicenseUser]:
        """Remove a customer's seat (user_id is the customer id); the owner's seat cannot be removed."""
        return await db.one(
            LicenseUser, "api.remove_license_user", {"license_id": license_id, "customer_id": user_id}
        )
