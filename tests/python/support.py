"""Helpers shared by the HTTP tests: the error body, well-formed keys, and
small API calls that several test files make."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from typing import Any

import httpx

ERROR_FIELDS = {"type", "code", "message", "param"}


def assert_error(response: httpx.Response, status: int, code: str, param: Any = ...) -> dict[str, Any]:
    """The response is the one error body every failure leaves with: Stripe's
    {"error": {type, code, message, param}}, JSON, with a request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-request-id")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert error["code"] == code, error
    assert isinstance(error["type"], str) and error["type"]
    assert isinstance(error["message"], str) and error["message"]
    if param is not ...:
        assert error["param"] == param, error
    return error


def with_checksum(body: str) -> str:
    """A key body completed with its checksum, as functions/10_api_keys.sql computes it."""
    return body + hashlib.sha256(body.encode()).hexdigest()[:8]


def well_formed_key(account_id: str | None = None, prefix: str = "lic_sk_") -> str:
    """A key that passes the format and checksum checks but was never issued."""
    account_hex = uuid.UUID(account_id).hex if account_id else uuid.uuid4().hex
    return with_checksum(prefix + account_hex + secrets.token_hex(20))


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def create_key(
    client: Any, headers: dict[str, str], kind: str = "secret", **fields: Any
) -> dict[str, Any]:
    response = await client.post("/v1/api_keys", headers=headers, json={"kind": kind, **fields})
    assert response.status_code == 201, response.text
    return response.json()


async def all_key_ids(client: Any, headers: dict[str, str]) -> list[str]:
    """Every key id of the account, newest first, following the cursor."""
    ids: list[str] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        response = await client.get("/v1/api_keys", headers=headers, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [key["id"] for key in page["data"]]
        if not page["has_more"]:
            return ids
        params = {"limit": 100, "starting_after": ids[-1]}
