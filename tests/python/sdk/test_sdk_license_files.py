"""Offline license files end to end: issued by a real `licentric serve`, verified by
licentric_sdk.license_file with the keys GET /v1/signing_keys lists (docs/license-files.md)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from licentric.crypto import SecretBox
from licentric_sdk import Licentric, license_file

from licensing_support import make_policy, superuser


@pytest.fixture
def server(serve_url: str) -> str:
    """A real `licentric serve` (tests/python/conftest.py)."""
    return serve_url


@dataclass
class Tenant:
    """An account on the live server with a license policy; http calls answer the response."""

    account: Any  # conftest's Account
    http: httpx.Client
    policy: str
    database_url: str

    def call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.account.secret_key}", **kwargs.pop("headers", {})}
        return self.http.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> dict[str, Any]:
        response = self.call(method, path, key, **kwargs)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def license(self, **fields: Any) -> dict[str, Any]:
        return self.ok("POST", "/v1/licenses", json={"policy_code": self.policy, **fields})

    def activate(self, license_id: str, fingerprint: str) -> dict[str, Any]:
        return self.ok("POST", f"/v1/licenses/{license_id}/machines", json={"fingerprint": fingerprint})

    def issue(self, license_id: str, **body: Any) -> str:
        """The file as the server sent it, byte for byte."""
        response = self.call("POST", f"/v1/licenses/{license_id}/license_file", json=body)
        assert response.status_code == 200, response.text
        return response.text

    def grant(self, license_id: str, code: str) -> None:
        self.ok("POST", "/v1/entitlements", json={"code": code, "name": code})
        self.ok("PUT", f"/v1/licenses/{license_id}/entitlements/{code}", json={"effect": "grant"})

    def keys(self, key: str | None = None) -> list[dict[str, Any]]:
        return self.ok("GET", "/v1/signing_keys", key, params={"limit": 100})["data"]

    def publishable_key(self) -> str:
        return self.ok("POST", "/v1/api_keys", json={"kind": "publishable"})["secret"]


@pytest.fixture
def make_tenant(server, make_account, database_url) -> Iterator[Callable[..., Tenant]]:
    with httpx.Client(base_url=server, timeout=30) as http:

        def make(**policy: Any) -> Tenant:
            account = make_account()
            return Tenant(account, http, make_policy(database_url, account.id, **policy), database_url)

        yield make


@pytest.fixture
def tenant(make_tenant) -> Tenant:
    return make_tenant()


def payload_of(file: str) -> dict[str, Any]:
    text = json.loads(file)["payload"]
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def at(file: str, name: str) -> datetime:
    return datetime.fromisoformat(payload_of(file)[name])


def test_an_issued_file_verifies_offline_with_the_listed_keys(tenant):
    license = tenant.license(metadata={"seat": "studio"})
    tenant.grant(license["id"], "export-4k")

    file = tenant.issue(license["id"])
    result = license_file.verify(file, tenant.keys())

    assert (result.valid, result.code) == (True, "VALID")
    assert result.license["id"] == license["id"]
    assert result.license["metadata"] == {"seat": "studio"}
    assert result.entitlements == ["export-4k"]
    assert result.machine is None
    assert result.budgets == []
    # Default validity: 30 days from issue.
    assert result.expires_at - at(file, "issued_at") == timedelta(days=30)
    payload = result.payload
    assert payload["kid"] == json.loads(file)["kid"] == tenant.keys()[0]["kid"]
    assert payload["account_id"] == tenant.account.id
    events = superuser(
        tenant.database_url,
        "select object from lic.events where account_id = %s and type = 'license.file_issued'",
        (tenant.account.id,),
    )
    assert [e["object"]["id"] for e in events] == [payload["id"]]
    assert events[0]["object"]["license_id"] == license["id"]


def test_the_first_signing_key_is_made_on_first_use_and_kept(tenant):
    first = tenant.keys()
    assert len(first) == 1 and first[0]["retired_at"] is None and first[0]["algorithm"] == "Ed25519"
    tenant.issue(tenant.license()["id"])
    assert tenant.keys() == first


def test_concurrent_first_uses_make_one_key_and_concurrent_rotations_leave_one_current(tenant, server):
    def call(method_path: tuple[str, str]) -> int:
        with httpx.Client(base_url=server, timeout=30) as http:
            headers = {"Authorization": f"Bearer {tenant.account.secret_key}"}
            return http.request(*method_path, headers=headers).status_code

    license = tenant.license()
    first_uses = [("GET", "/v1/signing_keys")] * 4 + [
        ("POST", f"/v1/licenses/{license['id']}/license_file")
    ] * 4
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(call, first_uses)) == {200}
    assert len(tenant.keys()) == 1
    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(call, [("POST", "/v1/signing_keys/rotate")] * 6)) == {200}
    keys = tenant.keys()
    assert len(keys) == 7
    assert [k["retired_at"] is None for k in keys] == [True] + [False] * 6


def test_the_private_key_is_stored_encrypted_for_its_account_and_purpose(tenant, settings):
    (key,) = tenant.keys()
    (row,) = superuser(
        tenant.database_url,
        "select public_key, private_key_ciphertext from lic.signing_keys where account_id = %s",
        (tenant.account.id,),
    )
    box = SecretBox(settings.secret_key)
    private = box.open(row["private_key_ciphertext"], tenant.account.id, "signing_key")
    public = Ed25519PrivateKey.from_private_bytes(private).public_key().public_bytes_raw()
    assert public == bytes(row["public_key"]) == base64.urlsafe_b64decode(key["public_key"] + "=")
    assert private not in bytes(row["private_key_ciphertext"])
    with pytest.raises(Exception, match="cannot decrypt"):
        box.open(row["private_key_ciphertext"], tenant.account.id, "webhook_endpoint_secret")


@pytest.mark.parametrize("mask", [0x01, 0x20])
def test_changing_any_byte_of_a_file_fails_verification(tenant, mask):
    file = tenant.issue(tenant.license()["id"])
    keys = tenant.keys()
    envelope = json.loads(file)
    regions = {name: file.index(json.dumps(envelope[name])) for name in ("payload", "signature", "kid")}
    codes: dict[str, set[str]] = {"payload": set(), "signature": set(), "kid": set(), "other": set()}
    data = file.encode()
    for position in range(len(data)):
        tampered = bytearray(data)
        tampered[position] ^= mask
        result = license_file.verify(bytes(tampered), keys)
        assert not result.valid, f"a change at byte {position} verified"
        assert result.payload is None
        region = next(
            (
                name
                for name, start in regions.items()
                if start < position < start + len(json.dumps(envelope[name])) - 1
            ),
            "other",
        )
        codes[region].add(result.code)
    assert "SIGNATURE_INVALID" in codes["payload"] and codes["payload"] <= {
        "SIGNATURE_INVALID",
        "MALFORMED_FILE",
    }
    assert "SIGNATURE_INVALID" in codes["signature"]
    assert codes["signature"] <= {"SIGNATURE_INVALID", "MALFORMED_FILE"}
    assert "UNKNOWN_KEY" in codes["kid"] and codes["kid"] <= {"UNKNOWN_KEY", "MALFORMED_FILE"}
    assert codes["other"] <= {"MALFORMED_FILE", "UNKNOWN_KEY"}


def test_a_file_is_judged_within_its_validity_window_with_clock_skew_tolerance(tenant):
    file = tenant.issue(tenant.license()["id"], ttl_seconds=3600)
    keys = tenant.keys()
    issued, expires = at(file, "issued_at"), at(file, "expires_at")
    assert expires - issued == timedelta(hours=1)
    skew = timedelta(minutes=5)

    def code(now: datetime, **options: Any) -> str:
        return license_file.verify(file, keys, now=now, **options).code

    assert code(issued - skew + timedelta(seconds=1)) == "VALID"
    assert code(issued - skew - timedelta(seconds=1)) == "FILE_NOT_YET_VALID"
    assert code(expires + skew) == "VALID"
    assert code(expires + skew + timedelta(seconds=1)) == "FILE_EXPIRED"
    assert code(expires + timedelta(seconds=1), tolerance=timedelta(0)) == "FILE_EXPIRED"


def test_a_license_expiring_or_leaving_grace_while_offline_answers_expired_or_overdue(tenant):
    expiring = tenant.license(expires_at=(datetime.now().astimezone() + timedelta(days=2)).isoformat())
    file = tenant.issue(expiring["id"])
    keys = tenant.keys()
    issued = at(file, "issued_at")
    assert license_file.verify(file, keys, now=issued + timedelta(days=1)).code == "VALID"
    assert license_file.verify(file, keys, now=issued + timedelta(days=3)).code == "EXPIRED"

    grace = tenant.license()
    superuser(
        tenant.database_url,
        "update lic.licenses set status = 'past_due', grace_ends_at = now() + interval '1 day' where id = %s",
        (grace["id"],),
    )
    file = tenant.issue(grace["id"])
    assert license_file.verify(file, keys, now=issued + timedelta(hours=1)).code == "PAYMENT_GRACE"
    late = license_file.verify(file, keys, now=issued + timedelta(days=2))
    assert (late.valid, late.code) == (False, "OVERDUE")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("status = 'suspended'", "SUSPENDED"),
        ("status = 'canceled', canceled_at = now()", "CANCELED"),
        ("expires_at = now() - interval '1 day'", "EXPIRED"),
    ],
)
def test_a_file_issued_for_an_unusable_license_carries_the_validation_code(tenant, change, code):
    license = tenant.license()
    superuser(tenant.database_url, f"update lic.licenses set {change} where id = %s", (license["id"],))
    result = license_file.verify(tenant.issue(license["id"]), tenant.keys())
    assert (result.valid, result.code) == (False, code)


def test_a_machine_scoped_file_verifies_only_on_that_machine(tenant):
    license = tenant.license()
    tenant.activate(license["id"], "machine-1")
    scoped = tenant.issue(license["id"], fingerprint="machine-1")
    unscoped = tenant.issue(license["id"])
    keys = tenant.keys()

    on_it = license_file.verify(scoped, keys, fingerprint="machine-1")
    assert (on_it.valid, on_it.code, on_it.machine["fingerprint"]) == (True, "VALID", "machine-1")
    assert license_file.verify(scoped, keys, fingerprint="machine-2").code == "FINGERPRINT_SCOPE_MISMATCH"
    assert license_file.verify(scoped, keys).code == "FINGERPRINT_SCOPE_REQUIRED"
    assert license_file.verify(unscoped, keys, fingerprint="machine-1").code == "FINGERPRINT_SCOPE_MISMATCH"
    assert license_file.verify(unscoped, keys).code == "VALID"


def test_a_file_for_a_machine_not_activated_on_the_license_is_refused(tenant):
    license = tenant.license()
    other = tenant.license()
    tenant.activate(other["id"], "elsewhere")
    for fingerprint in ("never-seen", "elsewhere"):
        response = tenant.call(
            "POST", f"/v1/licenses/{license['id']}/license_file", json={"fingerprint": fingerprint}
        )
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "resource_missing"
        assert response.json()["error"]["param"] == "fingerprint"


def test_a_file_answers_entitlements_missing_for_an_entitlement_it_lacks(tenant):
    license = tenant.license()
    tenant.grant(license["id"], "sync")
    file = tenant.issue(license["id"])
    keys = tenant.keys()
    assert license_file.verify(file, keys, entitlements=["sync"]).code == "VALID"
    missing = license_file.verify(file, keys, entitlements=["sync", "export-4k"])
    assert (missing.valid, missing.code) == (False, "ENTITLEMENTS_MISSING")


def test_a_file_carries_its_licenses_budgets_remaining_at_issue(tenant):
    license = tenant.license()
    tenant.ok("POST", "/v1/meters", json={"code": "renders", "name": "Renders", "aggregation": "sum"})
    budget = tenant.ok(
        "POST",
        "/v1/budgets",
        json={"meter_code": "renders", "license_id": license["id"], "period": "month", "limit": "100"},
    )
    tenant.ok(
        "POST",
        "/v1/usage/events",
        json=[{"id": "e1", "meter": "renders", "license_id": license["id"], "quantity": 30}],
    )
    (carried,) = license_file.verify(tenant.issue(license["id"]), tenant.keys()).budgets
    assert carried["id"] == budget["id"]
    assert (carried["meter"], carried["period"], carried["hard"]) == ("renders", "month", True)
    assert (carried["limit"], carried["used"], carried["remaining"]) == (100, 30, 70)


def test_a_key_of_no_account_given_is_an_unknown_key(tenant, make_tenant):
    file = tenant.issue(tenant.license()["id"])
    other = make_tenant()
    assert license_file.verify(file, other.keys()).code == "UNKNOWN_KEY"
    assert license_file.verify(file, {}).code == "UNKNOWN_KEY"


def test_a_rotated_key_is_retired_listed_and_still_verifies_its_files(tenant):
    license = tenant.license()
    old_file = tenant.issue(license["id"])
    (old_key,) = tenant.keys()
    new_key = tenant.ok("POST", "/v1/signing_keys/rotate")
    new_file = tenant.issue(license["id"])

    keys = tenant.keys()
    assert [k["kid"] for k in keys] == [new_key["kid"], old_key["kid"]]
    assert keys[0]["retired_at"] is None and keys[1]["retired_at"] is not None
    assert json.loads(new_file)["kid"] == new_key["kid"]
    assert license_file.verify(old_file, keys).code == "VALID"
    assert license_file.verify(new_file, keys).code == "VALID"
    # Mapping form: kid → public key.
    assert license_file.verify(old_file, {k["kid"]: k["public_key"] for k in keys}).valid
    assert license_file.verify(old_file, [keys[0]]).code == "UNKNOWN_KEY"
    # The old file claiming the new key's id: that key did not sign it.
    swapped = json.dumps({**json.loads(old_file), "kid": new_key["kid"]})
    assert license_file.verify(swapped, keys).code == "SIGNATURE_INVALID"
    types = superuser(
        tenant.database_url,
        "select type from lic.events where account_id = %s and type like 'signing_key.%%' order by id",
        (tenant.account.id,),
    )
    assert [t["type"] for t in types] == ["signing_key.created", "signing_key.retired", "signing_key.created"]


def test_a_publishable_key_fetches_its_own_license_file_by_key_and_activated_fingerprint(tenant, make_tenant):
    license = tenant.license()
    tenant.activate(license["id"], "desktop-1")
    pk = tenant.publishable_key()

    def by_key(key: str = pk, **body: Any) -> httpx.Response:
        return tenant.call("POST", "/v1/licenses/license_file", key, json={"key": license["key"], **body})

    response = by_key(fingerprint="desktop-1")
    assert response.status_code == 200, response.text
    keys = tenant.keys(pk)
    result = license_file.verify(response.text, keys, fingerprint="desktop-1")
    assert (result.valid, result.code) == (True, "VALID")

    # Never a file for any machine, nor by license id, nor a rotation.
    for refused in (
        by_key(),
        tenant.call(
            "POST", f"/v1/licenses/{license['id']}/license_file", pk, json={"fingerprint": "desktop-1"}
        ),
        tenant.call("POST", "/v1/signing_keys/rotate", pk),
    ):
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
    assert by_key(fingerprint="desktop-2").status_code == 404
    # Another account's publishable key does not find the license.
    other = make_tenant()
    assert by_key(other.publishable_key(), fingerprint="desktop-1").status_code == 404
    # A secret key may ask by key too, for any machine or none.
    assert by_key(tenant.account.secret_key).status_code == 200


def test_another_accounts_license_is_not_found(tenant, make_tenant):
    license = tenant.license()
    other = make_tenant()
    response = other.call("POST", f"/v1/licenses/{license['id']}/license_file")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "resource_missing"


@pytest.mark.parametrize(
    ("body", "param"),
    [({"ttl_seconds": 60}, "ttl_seconds"), ({"ttl_seconds": 31622401}, "ttl_seconds"), ({"nope": 1}, None)],
)
def test_bad_requests_are_refused_with_their_field(tenant, body, param):
    response = tenant.call("POST", f"/v1/licenses/{tenant.license()['id']}/license_file", json=body)
    assert response.status_code in (400, 422), response.text
    if param:
        assert response.json()["error"]["param"] == param


def test_a_repeated_idempotency_key_answers_the_same_signed_file(tenant):
    license = tenant.license()
    headers = {"Idempotency-Key": "file-once"}
    first = tenant.call("POST", f"/v1/licenses/{license['id']}/license_file", headers=headers)
    again = tenant.call("POST", f"/v1/licenses/{license['id']}/license_file", headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert license_file.verify(again.text, tenant.keys()).valid
    (count,) = superuser(
        tenant.database_url,
        "select count(*) from lic.events where account_id = %s and type = 'license.file_issued'",
        (tenant.account.id,),
    )
    assert count["count"] == 1


async def test_without_a_secret_key_configured_license_files_are_not_configured(make_client, account):
    async with make_client(secret_key=None) as client:
        for method, path in (("GET", "/v1/signing_keys"), ("POST", "/v1/signing_keys/rotate")):
            response = await client.request(method, path, headers=account.headers)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "not_configured"


async def test_a_key_that_does_not_decrypt_is_not_configured_and_records_no_issuance(
    make_client, settings, account, database_url
):
    policy = make_policy(database_url, account.id)
    async with make_client() as client:
        license = (
            await client.post("/v1/licenses", headers=account.headers, json={"policy_code": policy})
        ).json()
        assert (await client.get("/v1/signing_keys", headers=account.headers)).status_code == 200
    async with make_client(secret_key=bytes(reversed(settings.secret_key))) as client:
        response = await client.post(f"/v1/licenses/{license['id']}/license_file", headers=account.headers)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_configured"
    with psycopg.connect(database_url) as conn:
        (count,) = conn.execute(
            "select count(*) from lic.events where account_id = %s and type = 'license.file_issued'",
            (account.id,),
        ).fetchone()
    assert count == 0


def test_the_verifier_refuses_what_is_not_a_license_file():
    key = Ed25519PrivateKey.generate()
    keys = {"k": key.public_key().public_bytes_raw()}

    def envelope(payload: bytes, **fields: Any) -> dict[str, Any]:
        encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        signature = base64.urlsafe_b64encode(key.sign(payload)).rstrip(b"=").decode()
        return {
            "object": "license_file",
            "version": 1,
            "algorithm": "Ed25519",
            "kid": "k",
            "payload": encoded,
            "signature": signature,
            **fields,
        }

    signed_garbage = envelope(b"not json")
    wrong_kid = envelope(
        json.dumps({"object": "license_file_payload", "version": 1, "kid": "other"}).encode()
    )
    for data in (
        "",
        "[]",
        b"\xff",
        {"object": "license_file"},
        envelope(b"{}", version=2),
        signed_garbage,
        wrong_kid,
    ):
        result = license_file.verify(data, keys)
        assert (result.valid, result.code, result.payload) == (False, "MALFORMED_FILE", None)
    with pytest.raises(ValueError):
        license_file.verify(json.dumps(envelope(b"{}")), keys, now=datetime(2030, 1, 1))


def test_the_client_issues_and_lists_what_verify_takes(tenant, server):
    license = tenant.license()
    tenant.activate(license["id"], "laptop")
    with Licentric(tenant.account.secret_key, base_url=server) as client:
        file = client.license_files.issue(license["id"], fingerprint="laptop", ttl_seconds=86400)
        keys = list(client.signing_keys.list())
    result = license_file.verify(file, keys, fingerprint="laptop")
    assert (result.valid, result.code, result.license["id"]) == (True, "VALID", license["id"])
    assert result.expires_at - at(json.dumps({"payload": file.payload}), "issued_at") == timedelta(days=1)


def test_a_publishable_key_may_list_the_public_keys(tenant):
    pk = tenant.publishable_key()
    assert tenant.keys(pk) == tenant.keys()


def test_signing_keys_are_listed_in_pages(tenant):
    for _ in range(3):
        tenant.ok("POST", "/v1/signing_keys/rotate")
    first = tenant.ok("GET", "/v1/signing_keys", params={"limit": 2})
    rest = tenant.ok(
        "GET", "/v1/signing_keys", params={"limit": 2, "starting_after": first["data"][-1]["kid"]}
    )
    assert first["has_more"] and not rest["has_more"]
    assert len(first["data"]) + len(rest["data"]) == 3


def test_the_worked_example_of_the_format_document_verifies():
    doc = (Path(__file__).parents[3] / "docs" / "license-files.md").read_text()
    file = re.search(r'```json\n(\{"object":"license_file".*?)\n```', doc, re.S).group(1)
    kid, public_key = re.search(r"\| `([0-9a-f-]{36})` \| `([A-Za-z0-9_-]{43})` \|", doc).groups()
    shown = json.loads(re.search(r"here re-indented\):\n\n```json\n(.*?)\n```", doc, re.S).group(1))
    assert Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key().public_bytes_raw() == (
        base64.urlsafe_b64decode(public_key + "=")
    )
    keys = {kid: public_key}
    result = license_file.verify(
        file, keys, fingerprint="a1b2c3d4", now=at(file, "issued_at") + timedelta(days=1)
    )
    assert (result.valid, result.code, result.payload) == (True, "VALID", shown)
    late = license_file.verify(
        file, keys, fingerprint="a1b2c3d4", now=datetime.fromisoformat("2027-01-06T19:05:00Z")
    )
    assert late.code == "FILE_EXPIRED"
