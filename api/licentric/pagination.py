"""Cursor pagination, the same on every list: `limit`, `starting_after`,
`ending_before` in; `data` (newest first) and `has_more` out.

List functions in SQL take page_limit, starting_after and ending_before and
return up to page_limit + 1 rows newest first; the extra row only says that
more exist beyond the page (it is the oldest row when paging forwards, the
newest when paging back with ending_before).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from litestar.params import Parameter

MAX_LIMIT = 100


@dataclass(frozen=True)
class Page:
    limit: int
    starting_after: UUID | None
    ending_before: UUID | None

    def args(self) -> dict[str, Any]:
        return {
            "page_limit": self.limit,
            "starting_after": self.starting_after,
            "ending_before": self.ending_before,
        }

    def cut(self, rows: list[Any]) -> tuple[list[Any], bool]:
        has_more = len(rows) > self.limit
        if not has_more:
            return rows, False
        return (rows[1:] if self.ending_before else rows[: self.limit]), True


async def provide_page(
    limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT, description="Objects per page (1-100).")] = 10,
    starting_after: Annotated[
        UUID | None, Parameter(description="Cursor: the id of the last object of the previous page.")
    ] = None,
    ending_before: Annotated[
        UUID | None, Parameter(description="Cursor: the id of the first object of the next page.")
    ] = None,
) -> Page:
    return Page(limit, starting_after, ending_before)
