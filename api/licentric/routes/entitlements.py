from __future__ import annotations

from litestar import Controller


class EntitlementController(Controller):
    path = "/v1/entitlements"
    tags = ("entitlements",)
