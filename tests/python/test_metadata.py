"""Metadata caps over HTTP (decision 58): at most 50 keys, keys of at most 40
characters, values of at most 500; checked in SQL, answered as a 422 naming
metadata. A row stored over the caps before them stays readable and changeable
in everything but its metadata."""

from __future__ import annotations

import pytest
from psycopg.types.json import Jsonb

from license_helpers import superuser
from support import assert_error

OVER_THE_CAPS = [
    ({f"k{n}": "v" for n in range(51)}, "at most 50 keys"),
    ({"k" * 41: "v"}, "longer than 40 characters"),
    ({"k": "v" * 501}, "longer than 500 characters"),
    ({"k": ["v" * 500]}, "longer than 500 characters"),
]


@pytest.mark.parametrize(("metadata", "limit"), OVER_THE_CAPS)
async def test_metadata_over_the_caps_is_a_422_naming_metadata_and_the_limit(
    client, account, metadata, limit
):
    response = await client.post("/v1/customers", headers=account.headers, json={"metadata": metadata})
    error = assert_error(response, 422, "invalid_parameter", "metadata")
    assert limit in error["message"]
    listed = await client.get("/v1/customers", headers=account.headers)
    assert listed.json()["data"] == []


async def test_metadata_at_the_caps_is_accepted(client, account):
    metadata = {f"{n:02}" + "k" * 38: "é" * 500 for n in range(50)}
    response = await client.post("/v1/customers", headers=account.headers, json={"metadata": metadata})
    assert response.status_code == 201, response.text
    assert response.json()["metadata"] == metadata


async def test_a_customer_stored_over_the_caps_can_still_be_read_and_renamed(client, account, database_url):
    created = await client.post("/v1/customers", headers=account.headers, json={"name": "Old"})
    customer_id = created.json()["id"]
    oversized = {f"k{n}": "v" * 1000 for n in range(60)}
    superuser(
        database_url, "update lic.customers set metadata = %s where id = %s", (Jsonb(oversized), customer_id)
    )

    renamed = await client.post(f"/v1/customers/{customer_id}", headers=account.headers, json={"name": "New"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["metadata"] == oversized
    refused = await client.post(
        f"/v1/customers/{customer_id}", headers=account.headers, json={"metadata": oversized}
    )
    assert_error(refused, 422, "invalid_parameter", "metadata")
