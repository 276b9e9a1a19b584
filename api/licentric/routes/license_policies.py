from __future__ import annotations

from litestar import Controller


class LicensePolicyController(Controller):
    path = "/v1/license_policies"
    tags = ("license_policies",)
