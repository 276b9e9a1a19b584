from __future__ import annotations

from litestar import get
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.openapi import ResponseSpec

from licentric.routes.shapes import ErrorBody


@get(
    "/healthz",
    operation_id="getHealth",
    tags=["operations"],
    security=[{}],  # no key needed
    responses={
        503: ResponseSpec(ErrorBody, description="The database does not answer", generate_examples=False)
    },
)
async def healthz(state: State) -> dict[str, str]:
    """Liveness and readiness: 200 when the database answers."""
    try:
        async with state.pool.connection() as conn:
            await conn.execute("select 1")
    except Exception as exc:
        raise HTTPException(status_code=503, detail="database unavailable") from exc
    return {"status": "ok"}
