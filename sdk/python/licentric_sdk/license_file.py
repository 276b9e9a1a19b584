"""Offline verification of Licentric license files (docs/license-files.md).

A license file is a JSON document:

    {"object": "license_file", "version": 1, "algorithm": "Ed25519", "kid": "<signing key id>",
     "payload": "<base64url of the payload bytes>", "signature": "<base64url of their Ed25519 signature>"}

The signature covers the payload's bytes exactly as sent: nothing is re-serialised before verifying.
The payload (JSON) carries the answer validation gave when the file was issued, and the instants after
which a valid answer changes (the license's expiry, the end of its payment grace period), so this module
compares a clock with what the server decided and copies none of its rules.

    from licentric_sdk import license_file

    result = license_file.verify(data, public_keys, fingerprint=this_machine)
    if not result.valid:
        refuse(result.code)  # EXPIRED, SUSPENDED, FINGERPRINT_SCOPE_MISMATCH, SIGNATURE_INVALID, ...

`public_keys` are the account's keys from GET /v1/signing_keys (client.signing_keys.list()), shipped with
the app: a mapping of kid to public key (base64url or 32 raw bytes), or the listed key objects themselves.
Keep retired keys: files they signed before a rotation still verify with them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT_VERSION = 1
ALGORITHM = "Ed25519"
# How far this machine's clock may be from the server's when judging the file's own validity window.
DEFAULT_TOLERANCE = timedelta(minutes=5)

PublicKeys = Mapping[str, str | bytes] | Iterable[Any]


@dataclass(frozen=True)
class Verification:
    """The answer of verify: valid and a code as api.validate_license answers them, plus the file's own
    codes (MALFORMED_FILE, UNKNOWN_KEY, SIGNATURE_INVALID, FILE_NOT_YET_VALID, FILE_EXPIRED).
    payload is the verified content, or None when the signature was not checked or failed."""

    valid: bool
    code: str
    detail: str
    payload: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def license(self) -> dict[str, Any] | None:
        return self.payload["license"] if self.payload else None

    @property
    def entitlements(self) -> list[str]:
        return list(self.payload.get("entitlements") or []) if self.payload else []

    @property
    def machine(self) -> dict[str, Any] | None:
        return self.payload.get("machine") if self.payload else None

    @property
    def budgets(self) -> list[dict[str, Any]]:
        return list(self.payload.get("budgets") or []) if self.payload else []

    @property
    def expires_at(self) -> datetime | None:
        """Until when the file verifies: fetch a new one before."""
        return _instant(self.payload["expires_at"]) if self.payload else None


class _Refused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def verify(
    data: str | bytes | Mapping[str, Any] | msgspec.Struct,
    public_keys: PublicKeys,
    *,
    fingerprint: str | None = None,
    entitlements: Iterable[str] | None = None,
    now: datetime | None = None,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> Verification:
    """Verify a license file offline and answer what validation would. data: the file as the server sent
    it (JSON text or bytes), parsed, or as the client answers it (client.license_files.issue).

    fingerprint: this machine's; required for a file issued for a machine, and a file issued for none
    (or another) does not vouch for it. entitlements: each must be among the file's effective ones.
    now: the instant to judge at (default: this machine's clock). tolerance: clock skew allowed on the
    file's issue and expiry instants. The first check that fails answers, in this order: MALFORMED_FILE,
    UNKNOWN_KEY, SIGNATURE_INVALID, FILE_NOT_YET_VALID, FILE_EXPIRED; the answer at issue when it was not
    valid (CANCELED, SUSPENDED, EXPIRED, DISPUTED, TOO_MANY_MACHINES, ...); EXPIRED or OVERDUE once the
    license's expiry or grace end has passed; FINGERPRINT_SCOPE_REQUIRED, FINGERPRINT_SCOPE_MISMATCH;
    ENTITLEMENTS_MISSING; else the valid answer at issue (VALID or PAYMENT_GRACE).
    """
    at = datetime.now(UTC) if now is None else now
    if at.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    keys = _key_table(public_keys)
    try:
        payload = _verified_payload(data, keys)
    except _Refused as refused:
        return Verification(False, refused.code, refused.detail)
    try:
        valid, code, detail = _judge(payload, at, tolerance, fingerprint, entitlements)
    except (KeyError, TypeError, ValueError, AttributeError):
        # Signed, so made by the key's holder, but not a payload this version understands.
        return Verification(False, "MALFORMED_FILE", "the signed payload lacks a field or has a wrong one")
    return Verification(valid, code, detail, payload)


def _verified_payload(
    data: str | bytes | Mapping[str, Any] | msgspec.Struct, keys: dict[str, Ed25519PublicKey]
) -> dict[str, Any]:
    envelope = _envelope(data)
    kid = envelope["kid"]
    public_key = keys.get(kid)
    if public_key is None:
        raise _Refused("UNKNOWN_KEY", f"no public key with kid {kid} was given: fetch GET /v1/signing_keys")
    payload_bytes = _b64url(envelope["payload"])
    try:
        public_key.verify(_b64url(envelope["signature"]), payload_bytes)
    except InvalidSignature:
        raise _Refused("SIGNATURE_INVALID", "the signature does not match the payload and key") from None
    try:
        payload = json.loads(payload_bytes)
    except ValueError:
        raise _Refused("MALFORMED_FILE", "the signed payload is not JSON") from None
    if (
        not isinstance(payload, dict)
        or payload.get("object") != "license_file_payload"
        or payload.get("version") != FORMAT_VERSION
        or payload.get("kid") != kid
    ):
        raise _Refused("MALFORMED_FILE", "the signed payload is not a license file payload for this kid")
    return payload


def _envelope(data: str | bytes | Mapping[str, Any] | msgspec.Struct) -> dict[str, str]:
    if isinstance(data, msgspec.Struct):
        data = msgspec.structs.asdict(data)
    elif isinstance(data, str | bytes | bytearray):
        try:
            data = json.loads(data)
        except ValueError:
            raise _Refused("MALFORMED_FILE", "a license file is a JSON document") from None
    if not isinstance(data, Mapping):
        raise _Refused("MALFORMED_FILE", "a license file is a JSON object")
    if (
        data.get("object") != "license_file"
        or data.get("version") != FORMAT_VERSION
        or data.get("algorithm") != ALGORITHM
    ):
        raise _Refused("MALFORMED_FILE", f"not a version {FORMAT_VERSION} {ALGORITHM} license file")
    envelope = {name: data.get(name) for name in ("kid", "payload", "signature")}
    if not all(isinstance(value, str) for value in envelope.values()):
        raise _Refused("MALFORMED_FILE", "kid, payload and signature must be strings")
    return envelope


def _b64url(text: str) -> bytes:
    """Strict base64url without padding: only the one encoding of the bytes is accepted, so no change
    to the text (padding, stray characters, unused low bits) leaves the decoded bytes the same."""
    try:
        decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise _Refused("MALFORMED_FILE", "payload and signature must be base64url") from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=").decode() != text:
        raise _Refused("MALFORMED_FILE", "payload and signature must be canonical base64url, without padding")
    return decoded


def _judge(
    payload: dict[str, Any],
    at: datetime,
    tolerance: timedelta,
    fingerprint: str | None,
    entitlements: Iterable[str] | None,
) -> tuple[bool, str, str]:
    issued_at, expires_at = _instant(payload["issued_at"]), _instant(payload["expires_at"])
    if at < issued_at - tolerance:
        return False, "FILE_NOT_YET_VALID", f"the file was issued at {issued_at}, after this clock's {at}"
    if at > expires_at + tolerance:
        return False, "FILE_EXPIRED", f"the file expired at {expires_at}: fetch a new one"
    answer = payload["validation"]
    if not answer["valid"]:
        return False, answer["code"], answer["detail"]
    for change in reversed(payload["transitions"]):
        if _instant(change["at"]) <= at:
            return change["valid"], change["code"], f"{change['code'].lower()} since {change['at']}"
    machine = payload["machine"]
    if machine is not None and fingerprint is None:
        return False, "FINGERPRINT_SCOPE_REQUIRED", "the file is for one machine: give its fingerprint"
    if fingerprint is not None and (machine is None or machine["fingerprint"] != fingerprint.strip(" ")):
        return False, "FINGERPRINT_SCOPE_MISMATCH", "the file is not for a machine with this fingerprint"
    if entitlements is not None:
        missing = sorted(set(entitlements) - set(payload["entitlements"]))
        if missing:
            return False, "ENTITLEMENTS_MISSING", f"the license lacks {', '.join(missing)}"
    return True, answer["code"], answer["detail"]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _key_table(public_keys: PublicKeys) -> dict[str, Ed25519PublicKey]:
    if isinstance(public_keys, Mapping):
        pairs = list(public_keys.items())
    else:
        pairs = [(_field(key, "kid"), _field(key, "public_key")) for key in public_keys]
    table = {}
    for kid, key in pairs:
        raw = key if isinstance(key, bytes) else base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
        table[str(kid)] = Ed25519PublicKey.from_public_bytes(raw)
    return table


def _field(key: Any, name: str) -> Any:
    return key[name] if isinstance(key, Mapping) else getattr(key, name)
