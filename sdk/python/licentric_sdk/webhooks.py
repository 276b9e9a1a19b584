"""Receiving Licentric's webhooks: verify a delivery's signature and read it as a typed event.

    event = construct_event(request.body, request.headers, "whsec_…")

Both schemes a delivery carries (docs/webhooks.md) are checked: `Licentric-Signature: t=…,v1=…` (Stripe's
format, HMAC-SHA256 keyed with the secret string over "t.body") and Standard Webhooks (`webhook-id`,
`webhook-timestamp`, `webhook-signature: v1,…`, keyed with the base64 after `whsec_` over "id.t.body").
Every scheme present must verify and at least one must be present; a timestamp further than `tolerance`
seconds from now (either way) is refused, so a captured delivery cannot be replayed later. During a secret
rotation pass both secrets: a delivery verifies if any secret made any of its signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from licentric_sdk import _generated
from licentric_sdk.errors import LicentricError

DEFAULT_TOLERANCE = 300
SECRET_PREFIX = "whsec_"


class WebhookVerificationError(LicentricError):
    """The delivery is not proven to come from Licentric. `code`: signature_missing, signature_invalid,
    timestamp_outside_tolerance, secret_invalid or payload_invalid."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, status=400, type="webhook_error", code=code)


class EventData(msgspec.Struct, kw_only=True):
    """`object`: the object after the change, as the API answers it: a struct of `licentric_sdk.types` when
    its `object` names one (License, Machine, …), else the JSON object. `previous_attributes`: the old values
    of the fields that changed (None when there was no before)."""

    object: Any
    previous_attributes: dict[str, Any] | None = None


class Event(msgspec.Struct, kw_only=True):
    """One delivery: deduplicate on `id` (the same on every attempt and replay)."""

    id: str
    type: str
    created: int
    data: EventData
    object: str = "event"
    account: str | None = None


def _structs_by_object() -> dict[str, type[msgspec.Struct]]:
    """The struct of each object name: the generated struct whose `object` field defaults to it, for the
    names exactly one struct has (`list`, say, has many)."""
    found: dict[str, list[type[msgspec.Struct]]] = {}
    for value in vars(_generated).values():
        if isinstance(value, type) and issubclass(value, msgspec.Struct):
            for info in msgspec.structs.fields(value):
                if info.name == "object" and isinstance(info.default, str):
                    found.setdefault(info.default, []).append(value)
    return {name: structs[0] for name, structs in found.items() if len(structs) == 1}


_STRUCTS = _structs_by_object()


def _typed(value: Any) -> Any:
    struct = _STRUCTS.get(value.get("object")) if isinstance(value, dict) else None
    if struct is None:
        return value
    try:
        return msgspec.convert(value, struct, strict=False)
    except msgspec.ValidationError:
        return value  # e.g. `ping`'s object, which carries only the endpoint's id


def _standard_key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise WebhookVerificationError("secret_invalid", "a webhook secret starts with whsec_")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("secret_invalid", "a webhook secret is whsec_ and base64") from None


def _mac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def _any_match(expected: list[bytes], given: list[bytes]) -> bool:
    # Every comparison runs, in constant time each, so timing tells nothing about which one failed.
    matched = False
    for mac in expected:
        for candidate in given:
            matched |= hmac.compare_digest(mac, candidate)
    return matched


def _timestamp(value: str, now: float, tolerance: float) -> None:
    try:
        stamp = int(value)
    except ValueError:
        raise WebhookVerificationError("signature_invalid", "the timestamp is not a number") from None
    if abs(now - stamp) > tolerance:
        raise WebhookVerificationError(
            "timestamp_outside_tolerance",
            f"the delivery was signed at {stamp}, more than {tolerance} s from now ({int(now)})",
        )


def _verify_licentric(
    header: str, payload: bytes, secrets: Sequence[str], now: float, tolerance: float
) -> None:
    parts = [item.split("=", 1) for item in header.split(",") if "=" in item]
    stamps = [value.strip() for key, value in parts if key.strip() == "t"]
    if len(stamps) != 1:
        raise WebhookVerificationError("signature_invalid", "Licentric-Signature needs one t=")
    _timestamp(stamps[0], now, tolerance)
    given = []
    for key, value in parts:
        if key.strip() == "v1":
            try:
                given.append(bytes.fromhex(value.strip()))
            except ValueError:
                continue
    message = stamps[0].encode() + b"." + payload
    if not _any_match([_mac(secret.encode(), message) for secret in secrets], given):
        raise WebhookVerificationError("signature_invalid", "no v1 of Licentric-Signature matches")


def _verify_standard(
    headers: Mapping[str, str], payload: bytes, secrets: Sequence[str], now: float, tolerance: float
) -> None:
    event_id, stamp, header = (
        headers.get(name) for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
    )
    if not (event_id and stamp and header):
        raise WebhookVerificationError(
            "signature_missing", "webhook-id, webhook-timestamp and webhook-signature go together"
        )
    _timestamp(stamp, now, tolerance)
    given = []
    for item in header.split():
        version, _, value = item.partition(",")
        if version == "v1":
            try:
                given.append(base64.b64decode(value, validate=True))
            except (binascii.Error, ValueError):
                continue
    message = f"{event_id}.{stamp}.".encode() + payload
    if not _any_match([_mac(_standard_key(secret), message) for secret in secrets], given):
        raise WebhookVerificationError("signature_invalid", "no v1 of webhook-signature matches")


def verify(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Raise WebhookVerificationError unless the delivery's signatures verify (see the module's doc)."""
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    secrets = [secret] if isinstance(secret, str) else list(secret)
    if not secrets:
        raise WebhookVerificationError("secret_invalid", "no secret to verify with")
    lowered = {name.lower(): value for name, value in headers.items()}
    now = time.time() if now is None else now
    licentric = lowered.get("licentric-signature")
    standard = any(name in lowered for name in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if licentric is None and not standard:
        raise WebhookVerificationError(
            "signature_missing", "neither Licentric-Signature nor webhook-signature is present"
        )
    if licentric is not None:
        _verify_licentric(licentric, body, secrets, now, tolerance)
    if standard:
        _verify_standard(lowered, body, secrets, now, tolerance)


def construct_event(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> Event:
    """Verify the delivery (the raw body, before any parsing) and answer its event, typed."""
    verify(payload, headers, secret, tolerance=tolerance, now=now)
    try:
        event = msgspec.json.decode(payload, type=Event)
    except msgspec.DecodeError as exc:
        raise WebhookVerificationError("payload_invalid", f"the body is not an event: {exc}") from None
    event.data.object = _typed(event.data.object)
    return event
