"""Encryption of the credentials tenants give Licentric (their Stripe API key and webhook signing
secrets), of the signing secrets of their outbound webhook endpoints and of the private halves of
their license file signing keys, before they reach the database, with LICENTRIC_SECRET_KEY, which
never does.

AES-256-GCM with a random 96-bit nonce. The associated data binds each ciphertext to its account and
its purpose, so a ciphertext copied to another tenant's row, or from a signing secret's row to an API
key's, fails to decrypt instead of being used there. Layout: version (1 byte) | nonce (12) | ciphertext
and tag.
"""

from __future__ import annotations

import os
from typing import Literal
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = b"\x01"
NONCE_BYTES = 12

Purpose = Literal["stripe_api_key", "stripe_webhook_secret", "webhook_endpoint_secret", "signing_key"]


class DecryptionError(Exception):
    """The ciphertext was not made with this key for this account and purpose (or was altered)."""


def _associated_data(account_id: UUID | str, purpose: Purpose) -> bytes:
    return b"licentric\x00" + VERSION + UUID(str(account_id)).bytes + purpose.encode()


class SecretBox:
    """Encrypts and decrypts short secrets with the service's secret key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: str, account_id: UUID | str, purpose: Purpose) -> bytes:
        return self.seal(plaintext.encode(), account_id, purpose)

    def decrypt(self, ciphertext: bytes, account_id: UUID | str, purpose: Purpose) -> str:
        try:
            return self.open(ciphertext, account_id, purpose).decode()
        except UnicodeDecodeError:
            raise DecryptionError("cannot decrypt: the plaintext is not text") from None

    def seal(self, plaintext: bytes, account_id: UUID | str, purpose: Purpose) -> bytes:
        """encrypt for bytes (a private key)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, _associated_data(account_id, purpose))
        return VERSION + nonce + sealed

    def open(self, ciphertext: bytes, account_id: UUID | str, purpose: Purpose) -> bytes:
        """decrypt for bytes."""
        data = bytes(ciphertext)
        if data[:1] != VERSION or len(data) < 1 + NONCE_BYTES + 16:
            raise DecryptionError("not a Licentric ciphertext")
        nonce, sealed = data[1 : 1 + NONCE_BYTES], data[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, _associated_data(account_id, purpose))
        except InvalidTag:
            raise DecryptionError(
                "cannot decrypt: another LICENTRIC_SECRET_KEY, account or purpose made it"
            ) from None
