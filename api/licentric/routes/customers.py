from __future__ import annotations

from litestar import Controller


class CustomerController(Controller):
    path = "/v1/customers"
    tags = ("customers",)
