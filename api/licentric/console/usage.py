"""The console's Usage page (issue 13 page 5): the meters, a chart per meter over time (hour, day or
month buckets, from the rollups through api.usage) with its table beside it and as CSV, the top subjects
of the month, and the meter's budgets (create, edit). The values are SQL's: here buckets are only laid
out in time, the empty ones drawn as nothing."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath

from licentric.console.site import BASE, ConsoleController, ConsoleSite
from licentric.db import WebCalls
from licentric.web.render import series_chart
from licentric.web.site import PAGE_HEADERS, WebError, uuid_or_404

PATH = f"{BASE}/usage"
METER_ROWS = 100
TOP_SUBJECTS = 10
# The buckets a chart shows, newest last: two days of hours, a month of days, a year of months.
BUCKETS = {"hour": 48, "day": 30, "month": 12}
AGGREGATIONS = ("sum", "count", "max", "latest", "unique_count")


def bucket_starts(granularity: str, now: datetime, count: int) -> list[datetime]:
    """The calendar starts (UTC) of count buckets, oldest first, the last one holding now."""
    if granularity == "hour":
        last = now.replace(minute=0, second=0, microsecond=0)
        return [last - timedelta(hours=count - 1 - i) for i in range(count)]
    if granularity == "day":
        last = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return [last - timedelta(days=count - 1 - i) for i in range(count)]
    months = now.year * 12 + now.month - 1
    return [datetime(m // 12, m % 12 + 1, 1, tzinfo=UTC) for m in range(months - count + 1, months + 1)]


def bucket_end(granularity: str, start: datetime) -> datetime:
    if granularity == "hour":
        return start + timedelta(hours=1)
    if granularity == "day":
        return start + timedelta(days=1)
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def _granularity(value: str | None) -> str:
    if value in (None, ""):
        return "day"
    if value not in BUCKETS:
        raise WebError(404, "Not found", "There is no such granularity: hour, day or month.")
    return value


def _number(form: dict[str, str], name: str) -> Decimal | None:
    """A number from a form (SQL checks its range); not a number is refused here, as a 422."""
    value = form.get(name, "").strip()
    if not value:
        return None
    try:
        return Decimal(value)
    except InvalidOperation:
        raise WebError(422, "That did not work", f"{name} must be a number.") from None


def _thresholds(form: dict[str, str]) -> list[int] | None:
    value = form.get("thresholds", "").replace(",", " ").split()
    if not value:
        return None
    if not all(t.isdigit() for t in value):
        raise WebError(422, "That did not work", "Thresholds are whole percentages, like 50 80 100.")
    return [int(t) for t in value]


async def usage_series(calls: WebCalls, meter_id: UUID, granularity: str, count: int) -> list[dict[str, Any]]:
    """A meter's last count buckets, oldest first: each with SQL's value, or none where no event came."""
    starts = bucket_starts(granularity, datetime.now(UTC), count)
    rows = await calls.rows(
        "api.usage",
        {
            "meter_id": meter_id,
            "granularity": granularity,
            "starting_at": starts[0],
            "ending_at": bucket_end(granularity, starts[-1]),
        },
    )
    by_start = {row["period_start"]: row for row in rows}
    return [
        {
            "period_start": start,
            "value": by_start[start]["value"] if start in by_start else None,
            "event_count": by_start[start]["event_count"] if start in by_start else 0,
        }
        for start in starts
    ]


class ConsoleUsage(ConsoleController):
    path = PATH

    @get("/")
    async def usage(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """The meters; for the one chosen (?meter=, the newest by default), its chart at ?g= (hour, day,
        month), this month's top subjects and its budgets."""
        granularity = _granularity(request.query_params.get("g"))
        chosen = uuid_or_404(request.query_params.get("meter"), missing_ok=True)

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            meters = (await calls.rows("api.list_meters", {"page_limit": METER_ROWS}))[:METER_ROWS]
            context: dict[str, Any] = {
                "meters": meters,
                "meter": None,
                "granularity": granularity,
                "granularities": list(BUCKETS),
                "aggregations": AGGREGATIONS,
            }
            if chosen is not None:
                meter = await calls.one("api.get_meter", {"meter_id": chosen})
            elif meters:
                meter = meters[0]
            else:
                return context
            month = bucket_starts("month", datetime.now(UTC), 1)[0]
            subjects = await calls.rows(
                "api.usage",
                {
                    "meter_id": meter["id"],
                    "granularity": "month",
                    "starting_at": month,
                    "ending_at": bucket_end("month", month),
                    "group_by_subject": True,
                },
            )
            series = await usage_series(calls, meter["id"], granularity, BUCKETS[granularity])
            budgets = await calls.rows("api.list_budgets", {"meter_id": meter["id"], "page_limit": 50})
            return {
                **context,
                "meter": meter,
                "series": series,
                "chart": series_chart(series),
                "top": sorted(subjects, key=lambda r: r["value"] or 0, reverse=True)[:TOP_SUBJECTS],
                "month": month,
                "budgets": budgets[:50],
            }

        return await site.show(request, "usage.html", "usage", work)

    @get("/export.csv")
    async def csv_export(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[str]:
        """The buckets the chart of ?meter= at ?g= shows, as CSV (an empty bucket has an empty value)."""
        granularity = _granularity(request.query_params.get("g"))
        meter_uuid = uuid_or_404(request.query_params.get("meter"))

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            meter = await calls.one("api.get_meter", {"meter_id": meter_uuid})
            return {
                "meter": meter,
                "series": await usage_series(calls, meter_uuid, granularity, BUCKETS[granularity]),
            }

        context = await site.signed_in(request, site.session_hash(request), work)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["period_start", "value", "event_count"])
        for row in context["series"]:
            value = "" if row["value"] is None else format(Decimal(row["value"]).normalize(), "f")
            writer.writerow([row["period_start"].isoformat(), value, row["event_count"]])
        name = f"{context['meter']['code']}-{granularity}.csv"
        return Response(
            out.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={**PAGE_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'},
        )

    @post("/meters")
    async def create_meter(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            return await calls.one(
                "api.create_meter",
                {
                    "code": form.get("code", "").strip(),
                    "name": form.get("name", "").strip(),
                    "aggregation": form.get("aggregation", ""),
                    "unit": form.get("unit", "").strip() or None,
                    "unique_property": form.get("unique_property", "").strip() or None,
                },
            )

        return await site.act(request, work, lambda meter: f"{PATH}?meter={meter['id']}&done=meter_created")

    @post("/budgets")
    async def create_budget(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """A budget on the meter for one license or one agent (by id)."""

        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            return await calls.one(
                "api.create_budget",
                {
                    "meter_id": uuid_or_404(form.get("meter_id")),
                    "period": form.get("period", ""),
                    "limit": _number(form, "limit"),
                    "license_id": uuid_or_404(form.get("license_id", "").strip(), missing_ok=True),
                    "agent_id": uuid_or_404(form.get("agent_id", "").strip(), missing_ok=True),
                    "hard": form.get("hard") == "on",
                    "thresholds": _thresholds(form) or [],
                },
            )

        return await site.act(
            request, work, lambda budget: f"{PATH}?meter={budget['meter_id']}&done=budget_created"
        )

    @post("/budgets/{budget_id:str}")
    async def update_budget(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], budget_id: FromPath[str]
    ) -> Response[Any]:
        """Change a budget's limit, hard or soft, and thresholds (its meter, subject and period are fixed)."""
        budget = uuid_or_404(budget_id)

        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            return await calls.one(
                "api.update_budget",
                {
                    "budget_id": budget,
                    "limit": _number(form, "limit"),
                    "hard": form.get("hard") == "on",
                    "thresholds": _thresholds(form) or [],
                },
            )

        return await site.act(request, work, lambda row: f"{PATH}?meter={row['meter_id']}&done=budget_saved")
