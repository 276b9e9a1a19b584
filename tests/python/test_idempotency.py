"""Idempotency-Key on POST (DESIGN §7): stored per account and principal (the
API key or agent that made the request) in the effect's transaction; a replay
gets the stored answer, a different payload 422, a concurrent duplicate 409;
a failed request stores nothing."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from licentric.app import create_app
from licentric.cli import create_account
from licentric.migrate import ROOT, migrate

from license_helpers import make_policy
from support import all_key_ids, assert_error, bearer, create_key


def idempotent(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_replay_returns_the_stored_response_and_creates_nothing(client, account):
    headers = idempotent(account.headers, f"create-{uuid.uuid4()}")
    first = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable", "name": "web"})
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    keys_after_first = await all_key_ids(client, account.headers)

    for _ in range(2):
        again = await client.post(
            "/v1/api_keys", headers=headers, json={"name": "web", "kind": "publishable"}
        )
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        # the clear key is shown once: the stored answer never holds it
        assert again.json() == {**first.json(), "secret": None}
    assert await all_key_ids(client, account.headers) == keys_after_first
    assert len(keys_after_first) == 2


async def test_replay_of_a_roll_does_not_roll_again(client, account):
    old = await create_key(client, account.headers)
    headers = idempotent(account.headers, "roll-once")
    first = await client.post(f"/v1/api_keys/{old['id']}/roll", headers=headers)
    again = await client.post(f"/v1/api_keys/{old['id']}/roll", headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(await all_key_ids(client, account.headers)) == 3


async def test_posts_without_idempotency_key_each_take_effect(client, account):
    body = {"kind": "publishable"}
    first = await client.post("/v1/api_keys", headers=account.headers, json=body)
    second = await client.post("/v1/api_keys", headers=account.headers, json=body)
    assert first.json()["id"] != second.json()["id"]
    assert "idempotent-replayed" not in second.headers


async def test_same_key_with_a_different_body_is_a_422(client, account):
    headers = idempotent(account.headers, "reused")
    assert (
        await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    ).status_code == 201
    response = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret"})
    assert_error(response, 422, "idempotency_key_reused", "Idempotency-Key")
    assert response.json()["error"]["type"] == "idempotency_error"
    assert len(await all_key_ids(client, account.headers)) == 2


async def test_same_key_on_another_route_is_a_422(client, account):
    headers = idempotent(account.headers, "reused-across-routes")
    created = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    assert created.status_code == 201
    response = await client.post(f"/v1/api_keys/{created.json()['id']}/roll", headers=headers)
    assert_error(response, 422, "idempotency_key_reused")


async def test_idempotency_keys_are_per_account(client, make_account):
    a, b = make_account("A"), make_account("B")
    key = f"shared-{uuid.uuid4()}"
    body = {"kind": "publishable"}
    made_by_a = await client.post("/v1/api_keys", headers=idempotent(a.headers, key), json=body)
    made_by_b = await client.post("/v1/api_keys", headers=idempotent(b.headers, key), json=body)
    assert made_by_a.status_code == made_by_b.status_code == 201
    assert "idempotent-replayed" not in made_by_b.headers
    assert made_by_b.json()["id"] != made_by_a.json()["id"]
    assert made_by_b.json()["secret"].startswith(f"lic_pk_{uuid.UUID(b.id).hex}")
    assert made_by_b.json()["id"] in await all_key_ids(client, b.headers)
    # B's different body under the same key is not compared with A's request either.
    other = await client.post(
        "/v1/api_keys", headers=idempotent(b.headers, key + "-2"), json={"kind": "secret"}
    )
    assert other.status_code == 201


async def test_a_failed_request_stores_nothing_so_a_corrected_retry_runs(client, account):
    headers = idempotent(account.headers, "fix-and-retry")
    # Rejected by the database (name too long), so the transaction and its key roll back ...
    failed = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret", "name": "x" * 201})
    assert_error(failed, 422, "invalid_parameter")
    # ... the same failure is not replayed but runs again ...
    again = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret", "name": "x" * 201})
    assert_error(again, 422, "invalid_parameter")
    assert "idempotent-replayed" not in again.headers
    # ... and a corrected request under the same key takes effect once.
    fixed = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret", "name": "ok"})
    assert fixed.status_code == 201
    assert "idempotent-replayed" not in fixed.headers
    replay = await client.post("/v1/api_keys", headers=headers, json={"kind": "secret", "name": "ok"})
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == fixed.json()["id"]


async def test_a_request_rejected_before_the_database_stores_nothing(client, account):
    headers = idempotent(account.headers, "validated")
    assert_error(
        await client.post("/v1/api_keys", headers=headers, json={"kind": "nope"}), 422, "invalid_parameter"
    )
    fixed = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    assert fixed.status_code == 201
    assert "idempotent-replayed" not in fixed.headers


async def test_a_conflict_stores_nothing(client, account):
    key = await create_key(client, account.headers)
    await client.delete(f"/v1/api_keys/{key['id']}", headers=account.headers)
    headers = idempotent(account.headers, "roll-revoked")
    assert_error(await client.post(f"/v1/api_keys/{key['id']}/roll", headers=headers), 409, "invalid_state")
    again = await client.post(f"/v1/api_keys/{key['id']}/roll", headers=headers)
    assert_error(again, 409, "invalid_state")
    assert "idempotent-replayed" not in again.headers


async def license_ids(client, headers: dict[str, str]) -> list[str]:
    response = await client.get("/v1/licenses", headers=headers, params={"limit": 100})
    assert response.status_code == 200, response.text
    return [license["id"] for license in response.json()["data"]]


@pytest.mark.parametrize("kind", ["publishable", "agent"])
async def test_a_secret_keys_answer_is_not_replayed_to_another_kind_of_key(
    client, account, database_url, kind
):
    make_policy(database_url, account.id, "pro")
    body = {"policy_code": "pro"}
    created = await client.post("/v1/licenses", headers=idempotent(account.headers, "new-license"), json=body)
    assert created.status_code == 201
    if kind == "publishable":
        other = (await create_key(client, account.headers, "publishable"))["secret"]
    else:
        agent = await client.post("/v1/agents", headers=account.headers, json={"name": "bot"})
        other = agent.json()["token"]

    response = await client.post("/v1/licenses", headers=idempotent(bearer(other), "new-license"), json=body)
    # The key may not create licenses, so it gets no license key either.
    assert_error(response, 403, "forbidden")
    assert created.json()["key"] not in response.text
    assert await license_ids(client, account.headers) == [created.json()["id"]]


async def test_answers_belong_to_the_key_that_made_them(client, account, database_url):
    make_policy(database_url, account.id, "pro")
    body = {"policy_code": "pro"}
    headers = idempotent(account.headers, "per-key")
    first = await client.post("/v1/licenses", headers=headers, json=body)
    second_key = await create_key(client, account.headers)
    by_second = await client.post(
        "/v1/licenses", headers=idempotent(bearer(second_key["secret"]), "per-key"), json=body
    )
    assert first.status_code == by_second.status_code == 201
    assert "idempotent-replayed" not in by_second.headers
    assert by_second.json()["id"] != first.json()["id"]
    # The first key still gets its own answer ...
    again = await client.post("/v1/licenses", headers=headers, json=body)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    # ... and a key rolled from it is another key: it does not see that answer.
    rolled = await client.post(f"/v1/api_keys/{second_key['id']}/roll", headers=account.headers)
    by_rolled = await client.post(
        "/v1/licenses", headers=idempotent(bearer(rolled.json()["secret"]), "per-key"), json=body
    )
    assert by_rolled.status_code == 201
    assert "idempotent-replayed" not in by_rolled.headers
    assert len(await license_ids(client, account.headers)) == 3


def as_sql_key(database_url: str, secret: str, statement: str) -> str:
    with psycopg.connect(database_url) as conn:
        conn.execute("select from api.authenticate(secret => %s)", (secret,))
        return conn.execute(statement).fetchone()[0]


def test_a_key_in_use_by_one_api_key_does_not_block_another(account, database_url):
    other = as_sql_key(
        database_url, account.secret_key, "select secret from api.create_api_key(kind => 'secret')"
    )
    claim = "select api.claim_idempotency_key(key => 'held', fingerprint => 'fp')"
    with psycopg.connect(database_url) as holder:
        holder.execute("select from api.authenticate(secret => %s)", (account.secret_key,))
        holder.execute(claim)
        # Same key string, another API key: its own request, not "in progress".
        with psycopg.connect(database_url) as conn:
            conn.execute("select from api.authenticate(secret => %s)", (other,))
            assert conn.execute(claim).fetchone() == (None,)
        # The same API key is still told the request is in progress.
        with psycopg.connect(database_url) as conn:
            conn.execute("select from api.authenticate(secret => %s)", (account.secret_key,))
            with pytest.raises(psycopg.Error) as raised:
                conn.execute(claim)
            assert raised.value.sqlstate == "LIDEM"


def test_answers_stored_before_principals_stay_with_the_accounts_usable_secret_keys(
    empty_database: Callable[[], str], tmp_path: Path
):
    """sql/0031 gives every answer stored without a principal to each usable secret key of its account."""
    for name in ("sql", "functions", "policies"):
        shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / "sql" / "0031_idempotency_principal.sql").unlink()
    url = empty_database()
    migrate(url, tmp_path)
    account = create_account(url, "Before", "free")
    second = as_sql_key(url, account["secret_key"], "select secret from api.create_api_key(kind => 'secret')")
    publishable = as_sql_key(
        url, account["secret_key"], "select secret from api.create_api_key(kind => 'publishable')"
    )
    revoked = as_sql_key(url, account["secret_key"], "select id from api.create_api_key(kind => 'secret')")
    as_sql_key(url, account["secret_key"], f"select id from api.revoke_api_key(api_key_id => '{revoked}')")
    with psycopg.connect(url) as conn:
        conn.execute(
            "insert into lic.idempotency_keys (account_id, key, request_fingerprint, response_status,"
            " response_body) values (%s, 'before', 'fp', 201, '{\"id\": 1}')",
            (account["account_id"],),
        )

    migrate(url)

    claim = "select (api.claim_idempotency_key(key => 'before', fingerprint => 'fp')).body::text"
    assert as_sql_key(url, account["secret_key"], claim) == '{"id": 1}'
    assert as_sql_key(url, second, claim) == '{"id": 1}'
    assert as_sql_key(url, publishable, claim) is None
    with psycopg.connect(url) as conn:
        kinds = conn.execute(
            "select principal_kind, count(*) from lic.idempotency_keys group by 1"
        ).fetchall()
    assert kinds == [("secret", 2)]


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_idempotency_key_of_bad_length_is_a_422(client, account, key):
    response = await client.post(
        "/v1/api_keys", headers=idempotent(account.headers, key), json={"kind": "secret"}
    )
    assert_error(response, 422, "invalid_parameter", "Idempotency-Key")
    assert len(await all_key_ids(client, account.headers)) == 1


async def test_idempotency_key_of_255_characters_is_accepted(client, account):
    headers = idempotent(account.headers, "k" * 255)
    first = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    again = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]


async def test_idempotency_key_is_ignored_on_get(client, account):
    headers = idempotent(account.headers, "on-a-get")
    assert (await client.get("/v1/account", headers=headers)).status_code == 200
    response = await client.get("/v1/account", headers=headers)
    assert response.status_code == 200
    assert "idempotent-replayed" not in response.headers
    # and the key was not taken: a POST may still use it.
    created = await client.post("/v1/api_keys", headers=headers, json={"kind": "publishable"})
    assert created.status_code == 201 and "idempotent-replayed" not in created.headers


@pytest.fixture(scope="module")
def live_server(settings) -> Iterator[str]:
    """The app behind a real uvicorn on a free port, so that concurrent requests
    really run concurrently (the test client hands the app one request at a time)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.mark.parametrize("round_", range(3))
async def test_concurrent_requests_with_one_key_take_effect_once(live_server, account, round_):
    headers = idempotent(account.headers, f"race-{uuid.uuid4()}")
    body = {"kind": "publishable", "name": "race"}
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        before = await all_key_ids(http, account.headers)
        responses = await asyncio.gather(
            *(http.post("/v1/api_keys", headers=headers, json=body) for _ in range(8))
        )
        after = await all_key_ids(http, account.headers)

    created = [r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    replayed = [
        r for r in responses if r.status_code == 201 and r.headers.get("idempotent-replayed") == "true"
    ]
    in_use = [r for r in responses if r.status_code == 409]
    assert len(created) == 1, [(r.status_code, r.text) for r in responses]
    assert len(created) + len(replayed) + len(in_use) == len(responses), [r.text for r in responses]
    for response in in_use:
        assert_error(response, 409, "idempotency_key_in_use", "Idempotency-Key")
    new_id = created[0].json()["id"]
    assert all(r.json()["id"] == new_id for r in replayed)
    assert len(after) == len(before) + 1
    assert after[0] == new_id


async def test_concurrent_requests_with_different_keys_all_take_effect(live_server, account):
    async with httpx.AsyncClient(base_url=live_server, timeout=10) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    "/v1/api_keys", headers=idempotent(account.headers, f"k{i}"), json={"kind": "publishable"}
                )
                for i in range(8)
            )
        )
        assert [r.status_code for r in responses] == [201] * 8
        assert len({r.json()["id"] for r in responses}) == 8
        assert len(await all_key_ids(http, account.headers)) == 9
