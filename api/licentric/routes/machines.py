from __future__ import annotations

from litestar import Controller


class MachineController(Controller):
    path = "/v1/machines"
    tags = ("machines",)
