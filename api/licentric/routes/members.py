"""Account members and invitations (the console's people, decision 65), for the secret key. Roles are
enforced in SQL; a secret key may do what an owner may."""

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

Role = Literal["owner", "admin", "developer", "viewer"]


class Member(msgspec.Struct, kw_only=True):
    object: str = "member"
    id: UUID
    email: str
    name: str | None
    role: Role
    created_at: datetime
    updated_at: datetime


class MemberList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[Member]
    has_more: bool


class MemberUpdate(msgspec.Struct, forbid_unknown_fields=True):
    role: Role


class MemberInvitation(msgspec.Struct, kw_only=True):
    object: str = "member_invitation"
    id: UUID
    email: str
    role: Role
    status: Literal["pending", "accepted", "revoked", "expired"]
    invited_by_kind: str | None
    invited_by_id: UUID | None
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    member_id: UUID | None
    revoked_at: datetime | None
    # Only in the answer that makes the invitation: the link is {base_url}/console/invitations/accept?token=…
    token: str | None = None


class MemberInvitationList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[MemberInvitation]
    has_more: bool


class MemberInvitationCreate(msgspec.Struct, forbid_unknown_fields=True):
    email: str
    role: Role


class MemberController(Controller):
    path = "/v1/members"
    tags = ("members",)

    @get(operation_id="listMembers", responses=errors(422))
    async def list_members(self, db: NamedDependency[TenantDb], page: NamedDependency[Page]) -> MemberList:
        """The account's members (people who sign in to the console), newest first."""
        return await db.page(MemberList, "api.list_members", page)

    @get("/{member_id:uuid}", operation_id="getMember", responses=errors(404))
    async def get_member(self, db: NamedDependency[TenantDb], member_id: FromPath[UUID]) -> Response[Member]:
        return await db.one(Member, "api.get_member", {"member_id": member_id})

    @post(
        "/{member_id:uuid}",
        operation_id="updateMember",
        status_code=200,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def update_member(
        self, db: NamedDependency[TenantDb], member_id: FromPath[UUID], data: JSONBody[MemberUpdate]
    ) -> Response[Member]:
        """Give a member another role. The account keeps an owner: demoting the last one is a 409."""
        return await db.one(Member, "api.update_member_role", {"member_id": member_id, "role": data.role})

    @delete("/{member_id:uuid}", operation_id="removeMember", status_code=200, responses=errors(404, 409))
    async def remove_member(
        self, db: NamedDependency[TenantDb], member_id: FromPath[UUID]
    ) -> Response[Member]:
        """Remove a member and end its console sessions. The last owner cannot be removed (409)."""
        return await db.one(Member, "api.remove_member", {"member_id": member_id})

    @post(
        "/{member_id:uuid}/transfer_ownership",
        operation_id="transferOwnership",
        status_code=200,
        responses=errors(404, 409),
        operation_class=IdempotentOperation,
    )
    async def transfer_ownership(
        self, db: NamedDependency[TenantDb], member_id: FromPath[UUID]
    ) -> Response[Member]:
        """Make a member an owner (a member calling it from the console becomes admin)."""
        return await db.one(Member, "api.transfer_ownership", {"member_id": member_id})


class MemberInvitationController(Controller):
    path = "/v1/member_invitations"
    tags = ("members",)

    @post(
        operation_id="createMemberInvitation",
        status_code=201,
        responses=errors(409, 422),
        operation_class=IdempotentOperation,
    )
    async def create_member_invitation(
        self, db: NamedDependency[TenantDb], data: JSONBody[MemberInvitationCreate]
    ) -> Response[MemberInvitation]:
        """Invite an address as a role, for 7 days. The answer alone carries `token`, for the link
        `{base_url}/console/invitations/accept?token=…` (this endpoint sends no mail; the console does)."""
        return await db.one(
            MemberInvitation, "api.invite_member", {"email": data.email, "role": data.role}, status=201
        )

    @get(operation_id="listMemberInvitations", responses=errors(422))
    async def list_member_invitations(
        self, db: NamedDependency[TenantDb], page: NamedDependency[Page]
    ) -> MemberInvitationList:
        """The account's invitations, newest first, with their status."""
        return await db.page(MemberInvitationList, "api.list_member_invitations", page)

    @delete(
        "/{invitation_id:uuid}",
        operation_id="revokeMemberInvitation",
        status_code=200,
        responses=errors(404, 409),
    )
    async def revoke_member_invitation(
        self, db: NamedDependency[TenantDb], invitation_id: FromPath[UUID]
    ) -> Response[MemberInvitation]:
        """Revoke a pending invitation: its link no longer works."""
        return await db.one(
            MemberInvitation, "api.revoke_member_invitation", {"invitation_id": invitation_id}
        )
