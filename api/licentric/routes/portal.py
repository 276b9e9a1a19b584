"""The tenant's side of the customer portal: its slug (the address /portal/{slug}) and branding.
The pages themselves are licentric/portal/."""

from __future__ import annotations

from datetime import datetime

import msgspec
from litestar import Controller, Response, get, put
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody

from licentric.db import TenantDb
from licentric.routes.changes import update_args
from licentric.routes.shapes import errors


class PortalSettings(msgspec.Struct, kw_only=True):
    object: str = "portal_settings"
    # null: no portal yet (or closed); url is then null too.
    slug: str | None
    url: str | None = None
    logo_url: str | None
    primary_color: str | None
    accent_color: str | None
    product_name: str | None
    # Whether the plan shows the branding (starter and above); the free plan shows Licentric's look.
    custom_branding: bool
    created_at: datetime | None
    updated_at: datetime | None


class PortalSettingsUpdate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Fields left out are unchanged; null clears one (a null slug closes the portal)."""

    slug: str | msgspec.UnsetType | None = msgspec.UNSET
    logo_url: str | msgspec.UnsetType | None = msgspec.UNSET
    primary_color: str | msgspec.UnsetType | None = msgspec.UNSET
    accent_color: str | msgspec.UnsetType | None = msgspec.UNSET
    product_name: str | msgspec.UnsetType | None = msgspec.UNSET


def _with_url(response: Response[PortalSettings], state: State) -> Response[PortalSettings]:
    settings = response.content
    if settings.slug:
        settings.url = f"{state.settings.base_url}/portal/{settings.slug}"
    return response


class PortalSettingsController(Controller):
    path = "/v1/portal/branding"
    tags = ("portal",)

    @get(operation_id="getPortalSettings", responses=errors())
    async def get_portal_settings(
        self, db: NamedDependency[TenantDb], state: State
    ) -> Response[PortalSettings]:
        """The account's customer portal: its slug and URL (null until set) and its branding as stored;
        custom_branding says whether the plan shows it."""
        return _with_url(await db.one(PortalSettings, "api.get_portal_settings"), state)

    @put(operation_id="updatePortalSettings", responses=errors(402, 409, 422))
    async def update_portal_settings(
        self, db: NamedDependency[TenantDb], state: State, data: JSONBody[PortalSettingsUpdate]
    ) -> Response[PortalSettings]:
        """Open the portal at /portal/{slug} (3-63 of a-z, 0-9 and -, unique; some names are reserved)
        and brand it: logo_url (https), primary_color and accent_color (#rrggbb), product_name. Branding
        needs the starter plan or above (402 plan_limit_reached on free); the slug does not. A field left
        out is unchanged, null clears it; clearing the slug closes the portal."""
        return _with_url(await db.one(PortalSettings, "api.update_portal_settings", update_args(data)), state)
