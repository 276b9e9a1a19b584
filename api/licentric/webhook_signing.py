"""The signature headers of an outbound webhook delivery (docs/webhooks.md, DESIGN §6).

Two schemes from the same secret string `whsec_<base64 of the random key>`, so a receiver can verify
with either library unchanged:

- `Licentric-Signature: t=<unix>,v1=<hex>`: Stripe's format. The HMAC-SHA256 key is the secret string's
  UTF-8 bytes (what `stripe.WebhookSignature.verify_header(body, header, secret)` uses), over
  "<t>.<body>". One `v1=` per valid secret, the current one first.
- `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64> ...`: Standard Webhooks. The key is
  the base64-decoded part after `whsec_` (what `standardwebhooks.Webhook(secret).verify` uses), over
  "<id>.<t>.<body>". One `v1,` per valid secret, space-separated.

During a rotation both the new and the old secret sign, so a receiver holding either verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
USER_AGENT = "Licentric-Webhooks/1"


def _standard_key(secret: str) -> bytes:
    """The HMAC key of the Standard Webhooks scheme: the bytes the secret's base64 part encodes."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret starts with whsec_")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a webhook secret must not be empty")
    return key


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def signature_headers(body: str, event_id: str, timestamp: int, secrets: Sequence[str]) -> dict[str, str]:
    """Every header of one delivery of body (the exact text sent), signed with each secret in order."""
    if not secrets:
        raise ValueError("a delivery needs at least one secret to sign with")
    payload = body.encode()
    stamp = str(int(timestamp))
    stripe_message = stamp.encode() + b"." + payload
    standard_message = f"{event_id}.{stamp}.".encode() + payload
    stripe_format = ",".join(
        [f"t={stamp}", *(f"v1={_hmac(secret.encode(), stripe_message).hex()}" for secret in secrets)]
    )
    standard = " ".join(
        "v1," + base64.b64encode(_hmac(_standard_key(secret), standard_message)).decode()
        for secret in secrets
    )
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Licentric-Signature": stripe_format,
        "webhook-id": event_id,
        "webhook-timestamp": stamp,
        "webhook-signature": standard,
    }
