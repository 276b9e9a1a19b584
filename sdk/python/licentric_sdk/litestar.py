"""`requires_entitlement` for Litestar (decision 84): a guard that lets a request through when its customer
has the entitlement, else answers 403 with the check's reason. Litestar is not a dependency of the SDK;
import this module only in a Litestar app.

    client = Licentric(local=LocalOptions())
    gate = EntitlementGate(client, customer=lambda connection: connection.user.id)

    @get("/export", guards=[gate.requires_entitlement("export-4k")])
    async def export() -> ...: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers import BaseRouteHandler

from licentric_sdk.client import Licentric

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


class EntitlementGate:
    """Which client answers, and how a request names its customer (your own user id, the customer's
    external_id in Licentric)."""

    def __init__(
        self, client: Licentric, customer: Callable[[ASGIConnection[Any, Any, Any, Any]], str]
    ) -> None:
        self.client = client
        self.customer = customer

    def requires_entitlement(self, entitlement: str) -> Guard:
        """A guard: 403 (`detail` the check's reason) unless the request's customer has the entitlement.
        With local evaluation on, a check costs microseconds and no request to the server."""

        def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
            answer = self.client.entitlements.check(entitlement, customer=self.customer(connection))
            if not answer.allowed:
                raise PermissionDeniedException(detail=f"{entitlement}: {answer.reason}")

        return guard
