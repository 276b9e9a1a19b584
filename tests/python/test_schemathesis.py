"""Schemathesis over the published OpenAPI document (/schema/openapi.json): every operation, its coverage
phase (boundary and invalid values of every parameter, derived from the schema) and its fuzzing phase
(Hypothesis, valid and invalid data), against a real uvicorn serving the app, with a tenant's secret key and
the rate limit raised (the session's settings). No answer may be a 500; a 502 or 503 is allowed only where
the operation documents it (Stripe unreachable: its API is a closed port here)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from licentric.app import create_app
from licentric.cli import create_account
from licentric.settings import Settings

from licensing_support import live_server
from processes import free_port

# Examples Hypothesis makes per operation in the fuzzing phase, and the time one may take: with the coverage
# phase's cases, a few minutes for the whole document on two cores.
MAX_EXAMPLES = 15
DEADLINE_MS = 10_000

# The document the app publishes at /schema/openapi.json (test_the_published_document_is_the_one_tested),
# made without a database: schemathesis needs it when pytest collects the tests.
DOCUMENT = msgspec.json.decode(
    msgspec.json.encode(
        create_app(
            replace(Settings.from_env(), database_url="postgresql://unused")
        ).openapi_schema.to_schema()
    )
)

schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=SchemathesisConfig.from_dict(
        {
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
            "phases": {
                "examples": {"enabled": False},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": False},
            },
        }
    ),
)


@pytest.fixture(scope="module")
def api_url(settings) -> Iterator[str]:
    with live_server(replace(settings, stripe_api_base=f"http://127.0.0.1:{free_port()}")) as url:
        yield url


@pytest.fixture(scope="module")
def api_key(database_url) -> str:
    return create_account(database_url, "Schemathesis", "free")["secret_key"]


def test_the_published_document_is_the_one_tested(api_url):
    assert httpx.get(f"{api_url}/schema/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(deadline=DEADLINE_MS, suppress_health_check=list(HealthCheck))
def test_no_request_makes_the_api_answer_500(case, api_url, api_key):
    if isinstance((case.query or {}).get("wait"), int | float) and case.query["wait"] > 1:
        case.query["wait"] = 1  # a long poll with nothing to answer takes `wait` seconds by design
    response = case.call(base_url=api_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30)
    status = response.status_code
    documented = {str(code) for code in case.operation.definition.raw.get("responses", {})}
    assert status < 500 or (status in (502, 503) and str(status) in documented), (
        f"{case.operation.label} answered {status}: {response.text[:500]}\n{case.as_curl_command()}"
    )
