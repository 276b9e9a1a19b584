from __future__ import annotations

from litestar import Controller


class EventController(Controller):
    path = "/v1/events"
    tags = ("events",)
