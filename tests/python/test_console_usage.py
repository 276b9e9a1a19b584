"""The console's Usage page (issue 13 page 5): a meter made from the page, its chart per hour, day and
month from the rollups with the table beside it and the same buckets as CSV, the month's top subjects,
and budgets created and edited; a viewer only looks."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

from console_support import console_sign_in, member, page_csrf, post_form

from license_helpers import create_license, make_policy

METER = re.compile(r"/console/usage\?meter=([0-9a-f-]{36})")


async def usage_of(web, account, database_url) -> tuple[str, str, str]:
    """A tokens meter made on the page, two licenses and usage of both this hour; the meter and licenses."""
    made = await post_form(
        web,
        "/console/usage",
        "/console/usage/meters",
        {"code": "tokens", "name": "AI tokens", "aggregation": "sum", "unit": "tokens"},
    )
    assert made.status_code == 303, made.text
    meter_id = METER.search(made.headers["location"]).group(1)
    make_policy(database_url, account.id, "pro")
    big = (await create_license(web, account.headers, policy_code="pro"))["id"]
    small = (await create_license(web, account.headers, policy_code="pro"))["id"]
    events = [
        {"id": "e1", "meter": "tokens", "quantity": 700, "license_id": big},
        {"id": "e2", "meter": "tokens", "quantity": 50, "license_id": big},
        {"id": "e3", "meter": "tokens", "quantity": 30, "license_id": small},
    ]
    ingested = await web.post("/v1/usage/events", headers=account.headers, json=events)
    assert ingested.status_code == 200, ingested.text
    return meter_id, big, small


async def test_a_meters_chart_table_csv_and_top_subjects(web, owner, account, database_url, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    assert "No meters yet" in (await web.get("/console/usage")).text
    meter_id, big, small = await usage_of(web, account, database_url)
    page = await web.get("/console/usage")
    assert page.status_code == 200, page.text
    assert "AI tokens" in page.text
    assert page.text.count('class="chart-bar"') == 30, "a month of days, drawn"
    today = datetime.now(UTC).strftime("%d %b")
    assert f'<th scope="row">{today}</th><td>780</td><td>3</td>' in page.text, "the table beside the chart"
    top = page.text[page.text.index("Top subjects") :]
    assert top.index(big) < top.index(small), "the biggest subject first"
    assert "<td>750</td>" in top

    hours = await web.get(f"/console/usage?meter={meter_id}&g=hour")
    assert hours.text.count('class="chart-bar"') == 48
    months = await web.get(f"/console/usage?meter={meter_id}&g=month")
    assert months.text.count('class="chart-bar"') == 12
    assert (await web.get(f"/console/usage?meter={meter_id}&g=week")).status_code == 404

    overview = await web.get("/console")
    assert overview.status_code == 200, "the overview draws a meter's 14 days"
    assert re.search(r'aria-label="AI tokens per day: (—, ){13}780"', overview.text)
    assert "<td>780 tokens</td>" in overview.text, "today's value beside the sparkline"

    exported = await web.get(f"/console/usage/export.csv?meter={meter_id}&g=day")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert 'filename="tokens-day.csv"' in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 30, "what the chart shows"
    assert rows[-1]["value"] == "780" and rows[-1]["event_count"] == "3"
    assert rows[0]["value"] == "" and rows[0]["event_count"] == "0", "an empty day is empty, not zero"


async def test_budgets_are_created_and_edited(web, owner, account, database_url, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    meter_id, big, _ = await usage_of(web, account, database_url)
    page = f"/console/usage?meter={meter_id}"
    made = await post_form(
        web,
        page,
        "/console/usage/budgets",
        {"meter_id": meter_id, "license_id": big, "period": "month", "limit": "1000", "thresholds": "80 100"},
    )
    assert made.headers["location"] == f"{page}&done=budget_created", made.text
    shown = await web.get(made.headers["location"])
    assert "0 of 1,000 this month (soft)" in shown.text, "an unticked box is a soft budget"
    [budget_id] = re.findall(r'action="/console/usage/budgets/([0-9a-f-]{36})"', shown.text)
    saved = await post_form(
        web, page, f"/console/usage/budgets/{budget_id}", {"limit": "500", "hard": "on", "thresholds": "50"}
    )
    assert saved.headers["location"] == f"{page}&done=budget_saved"
    event = [{"id": "e4", "meter": "tokens", "quantity": 40, "license_id": big}]
    assert (await web.post("/v1/usage/events", headers=account.headers, json=event)).status_code == 200
    shown = await web.get(saved.headers["location"])
    assert "40 of 500 this month (hard)" in shown.text
    assert 'value="50"' in shown.text
    bad = await post_form(web, page, f"/console/usage/budgets/{budget_id}", {"limit": "lots"})
    assert bad.status_code == 422
    refused = await post_form(
        web, page, "/console/usage/budgets", {"meter_id": meter_id, "period": "month", "limit": "5"}
    )
    assert refused.status_code == 422, "a budget needs a license or an agent (SQL says so)"


async def test_a_viewer_sees_the_usage_and_changes_nothing(web, owner, account, database_url, mail_dir):
    await console_sign_in(web, owner, mail_dir)
    meter_id, _, _ = await usage_of(web, account, database_url)
    await post_form(web, "/console", "/console/logout")
    await console_sign_in(web, member(database_url, account.id, "viewer"), mail_dir)
    page = await web.get(f"/console/usage?meter={meter_id}")
    assert "AI tokens" in page.text
    assert "New meter" not in page.text and "New budget" not in page.text
    csrf = await page_csrf(web, "/console/usage")
    refused = await web.post(
        "/console/usage/meters", data={"csrf_token": csrf, "code": "x", "name": "X", "aggregation": "sum"}
    )
    assert refused.status_code == 403
