from __future__ import annotations

from litestar import Controller


class AgentController(Controller):
    path = "/v1/agents"
    tags = ("agents",)
