"""Presentation only, shared by the portal and the console: the Jinja environment of their pages and
emails, dates as people read them, the theme of a portal's face (its colours, with text colours that keep
WCAG contrast) and the geometry of the charts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"  # what both sites' templates share (macros, mail layout)
STATIC = Path(__file__).parent / "static"

# Licentric's own look, for free plans and unbranded portals.
DEFAULT_PRIMARY = "#3730a3"
DEFAULT_ACCENT = "#0f766e"
WHITE = "#ffffff"
INK = "#111827"


def environment(templates: Path) -> Environment:
    """A site's templates (templates), then the shared ones."""
    env = Environment(
        loader=FileSystemLoader([templates, TEMPLATES]),
        # HTML (pages and the HTML part of emails) is escaped; the plain-text part of an email is not.
        autoescape=select_autoescape(["html"], default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["day"] = day
    env.filters["number"] = number
    return env


def _instant(value: datetime | str) -> datetime:
    """An instant from a row, or from JSON a function built (an ISO 8601 string)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def when(value: datetime | str | None) -> str:
    """12 Mar 2026, 14:05 UTC."""
    if value is None:
        return "—"
    return _instant(value).astimezone(UTC).strftime("%-d %b %Y, %H:%M UTC")


def day(value: datetime | str | None) -> str:
    """12 Mar 2026."""
    if value is None:
        return "—"
    return _instant(value).astimezone(UTC).strftime("%-d %b %Y")


def number(value: Decimal | int | float | None) -> str:
    """1,234.5 (no trailing zeros)."""
    if value is None:
        return "—"
    return f"{Decimal(value).normalize():,f}"


def _luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def readable_on(background: str) -> str:
    """White or near-black, whichever reads better on background."""
    return WHITE if contrast(background, WHITE) >= contrast(background, INK) else INK


@dataclass(frozen=True)
class Theme:
    """A portal's colours as CSS custom properties."""

    primary: str
    on_primary: str
    accent: str
    on_accent: str
    link: str
    bar: str

    @classmethod
    def of(cls, face: dict[str, Any] | None) -> Theme:
        face = face or {}
        primary = face.get("primary_color") or DEFAULT_PRIMARY
        accent = face.get("accent_color") or face.get("primary_color") or DEFAULT_ACCENT
        return cls(
            primary=primary,
            on_primary=readable_on(primary),
            accent=accent,
            on_accent=readable_on(accent),
            # Text on the white page needs 4.5:1, a bar 3:1; a pale brand colour falls back to ink.
            link=primary if contrast(primary, WHITE) >= 4.5 else INK,
            bar=accent if contrast(accent, WHITE) >= 3 else INK,
        )

    def css(self) -> str:
        return (
            ":root {\n"
            f"  --brand: {self.primary};\n  --on-brand: {self.on_primary};\n"
            f"  --accent: {self.accent};\n  --on-accent: {self.on_accent};\n"
            f"  --link: {self.link};\n  --bar: {self.bar};\n"
            "}\n"
        )


CHART_WIDTH = 640
ROW_HEIGHT = 56
BAR_HEIGHT = 18


def usage_chart(budgets: list[dict[str, Any]]) -> dict[str, Any]:
    """The geometry of the usage chart: one row per budget, the bar's share of its limit (capped at
    the full width; over the limit is marked), and the chart's height."""
    rows = []
    for index, budget in enumerate(budgets):
        limit = Decimal(budget["limit"] or 0)
        used = Decimal(budget["used"] or 0)
        share = float(used / limit) if limit > 0 else (1.0 if used > 0 else 0.0)
        rows.append(
            {
                **budget,
                "y": index * ROW_HEIGHT,
                "width": round(CHART_WIDTH * min(share, 1.0), 1),
                "percent": round(share * 100),
                "over": used > limit,
            }
        )
    return {
        "rows": rows,
        "width": CHART_WIDTH,
        "height": max(len(rows) * ROW_HEIGHT, ROW_HEIGHT),
        "row_height": ROW_HEIGHT,
        "bar_height": BAR_HEIGHT,
    }


SPARK_WIDTH = 160
SPARK_HEIGHT = 32


def sparkline(values: list[Decimal | int | float | None]) -> str:
    """The points of an SVG polyline drawing values left to right, scaled to the largest (a flat line at
    the bottom when all are zero)."""
    numbers = [float(v or 0) for v in values]
    if not numbers:
        return ""
    top = max(numbers) or 1.0
    step = SPARK_WIDTH / max(len(numbers) - 1, 1)
    return " ".join(
        f"{round(i * step, 1)},{round(SPARK_HEIGHT - 2 - (n / top) * (SPARK_HEIGHT - 4), 1)}"
        for i, n in enumerate(numbers)
    )


SERIES_HEIGHT = 160


def series_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The geometry of a usage chart over time: one bar per bucket (oldest first), scaled to the largest
    value."""
    top = max((Decimal(r["value"] or 0) for r in rows), default=Decimal(0)) or Decimal(1)
    width = CHART_WIDTH / max(len(rows), 1)
    bars = []
    for i, r in enumerate(rows):
        height = round(float(Decimal(r["value"] or 0) / top) * SERIES_HEIGHT, 1)
        bars.append(
            {
                **r,
                "x": round(i * width, 1),
                "y": round(SERIES_HEIGHT - height, 1),
                "width": max(round(width - 2, 1), 1),
                "height": height,
            }
        )
    return {"bars": bars, "width": CHART_WIDTH, "height": SERIES_HEIGHT, "top": top}
