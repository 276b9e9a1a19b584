from __future__ import annotations

from litestar import Controller


class LicenseController(Controller):
    path = "/v1/licenses"
    tags = ("licenses",)
