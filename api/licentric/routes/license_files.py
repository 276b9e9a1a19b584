"""Offline license files, the web side (docs/license-files.md): the account's signing keys and the
signed files.

SQL stores the keys, decides which one is current and assembles each file's payload
(functions/77_license_files.sql). This module does what SQL cannot: it makes Ed25519 key pairs and
encrypts their private halves before they reach the database (licentric.crypto, purpose signing_key,
bound to the account), and signs a payload's exact bytes with the decrypted key, in the transaction
that assembled it, so an Idempotency-Key stores the signed file and a failure records no issuance.
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody

from licentric.crypto import DecryptionError, SecretBox
from licentric.db import TenantDb
from licentric.errors import ApiError
from licentric.pagination import Page
from licentric.routes.shapes import IdempotentOperation, errors
from licentric.settings import Settings

log = logging.getLogger("licentric.license_files")

PURPOSE = "signing_key"
FORMAT_VERSION = 1
ALGORITHM = "Ed25519"
# Bounds of api.issue_license_file, checked here too so that a refusal names the field sent.
TtlSeconds = Annotated[int, msgspec.Meta(ge=3600, le=31622400)]


class SigningKey(msgspec.Struct, kw_only=True):
    object: str = "signing_key"
    kid: UUID
    algorithm: Literal["Ed25519"]
    public_key: str  # 32 bytes, base64url without padding
    created_at: datetime
    retired_at: datetime | None  # null: current, signing new files; retired keys still verify


class SigningKeyList(msgspec.Struct, kw_only=True):
    object: str = "list"
    data: list[SigningKey]
    has_more: bool


class LicenseFile(msgspec.Struct, kw_only=True):
    """A signed license file: the signature is over the payload's bytes exactly as sent (base64url)."""

    object: str = "license_file"
    version: int
    algorithm: Literal["Ed25519"]
    kid: UUID
    payload: str  # base64url (no padding) of the payload, UTF-8 JSON
    signature: str  # base64url (no padding) of the 64-byte Ed25519 signature of the payload bytes


class LicenseFileRequest(msgspec.Struct, forbid_unknown_fields=True):
    # The file is for this machine, which must be activated on the license.
    fingerprint: str | None = None
    # How long the file verifies: 1 hour to 366 days; null: 30 days.
    ttl_seconds: TtlSeconds | None = None


class LicenseFileByKeyRequest(msgspec.Struct, forbid_unknown_fields=True):
    key: str
    # Required with a publishable key.
    fingerprint: str | None = None
    ttl_seconds: TtlSeconds | None = None


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class Signer:
    """Makes key pairs and signs payloads, with the service's secret key."""

    settings: Settings

    @property
    def box(self) -> SecretBox:
        if self.settings.secret_key is None:
            raise ApiError(
                "LCONF",
                "license files are not configured on this server: set LICENTRIC_SECRET_KEY (32 random "
                "bytes, base64), which encrypts the signing keys",
            )
        return SecretBox(self.settings.secret_key)

    def new_key(self, account_id: UUID) -> dict[str, Any]:
        """A new key pair as api.ensure_signing_key and api.rotate_signing_key take it."""
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return {
            "public_key": key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
            "private_key_ciphertext": self.box.seal(private, account_id, PURPOSE),
        }

    async def rotation(self, conn: psycopg.AsyncConnection, account_id: UUID) -> dict[str, Any]:
        return self.new_key(account_id)

    async def ensure_key(self, conn: psycopg.AsyncConnection, account_id: UUID) -> dict[str, Any]:
        """Give the account its first key when it has none (SQL decides; a spare pair is dropped)."""
        await conn.execute(
            "select from api.ensure_signing_key(public_key => %(public_key)s,"
            " private_key_ciphertext => %(private_key_ciphertext)s)",
            self.new_key(account_id),
        )
        return {}

    def sign(self, account_id: UUID, rows: list[dict[str, Any]]) -> list[Any]:
        """api.issue_license_file's content, signed: the license file."""
        content = rows[0]
        try:
            private = self.box.open(content["private_key_ciphertext"], account_id, PURPOSE)
        except DecryptionError as exc:
            log.error("signing key %s does not decrypt: %s", content["kid"], exc)
            raise ApiError(
                "LCONF",
                "the account's signing key does not decrypt with this server's LICENTRIC_SECRET_KEY; "
                "rotate it (POST /v1/signing_keys/rotate)",
            ) from exc
        payload = content["payload"].encode()
        signature = Ed25519PrivateKey.from_private_bytes(private).sign(payload)
        return [
            {
                "version": FORMAT_VERSION,
                "algorithm": ALGORITHM,
                "kid": content["kid"],
                "payload": b64url(payload),
                "signature": b64url(signature),
            }
        ]


def provide_signer(state: State) -> Signer:
    return Signer(state.settings)


SIGNER_DEPENDENCIES = {"signer": Provide(provide_signer, sync_to_thread=False)}


class SigningKeyController(Controller):
    path = "/v1/signing_keys"
    tags = ("signing_keys",)
    dependencies = SIGNER_DEPENDENCIES

    @get(operation_id="listSigningKeys", responses=errors(422))
    async def list_signing_keys(
        self, db: NamedDependency[TenantDb], page: NamedDependency[Page], signer: NamedDependency[Signer]
    ) -> SigningKeyList:
        """The account's public signing keys, current and retired, newest first (secret or publishable
        key). Verifiers keep them all: a file verifies with the key its kid names. The first call makes
        the account's first key."""
        return await db.page(SigningKeyList, "api.list_signing_keys", page, prepare=signer.ensure_key)

    @post(
        "/rotate",
        operation_id="rotateSigningKey",
        status_code=200,
        responses=errors(422),
        operation_class=IdempotentOperation,
    )
    async def rotate_signing_key(
        self, db: NamedDependency[TenantDb], signer: NamedDependency[Signer]
    ) -> Response[SigningKey]:
        """Make a new current signing key; the one before is retired, stays listed and still verifies
        the files it signed."""
        return await db.one(SigningKey, "api.rotate_signing_key", prepare=signer.rotation)


class LicenseFileController(Controller):
    path = "/v1/licenses"
    tags = ("license_files",)
    dependencies = SIGNER_DEPENDENCIES

    @post(
        "/{license_id:uuid}/license_file",
        operation_id="issueLicenseFile",
        status_code=200,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def issue_license_file(
        self,
        db: NamedDependency[TenantDb],
        signer: NamedDependency[Signer],
        license_id: FromPath[UUID],
        data: JSONBody[LicenseFileRequest | None] = None,
    ) -> Response[LicenseFile]:
        """A signed license file for offline verification (docs/license-files.md): the license, the
        answer validation gives it now (for the machine, when a fingerprint is given), its entitlements,
        budgets and the instants the answer changes at. Secret key."""
        data = data or LicenseFileRequest()
        return await db.one(
            LicenseFile,
            "api.issue_license_file",
            {"license_id": license_id, "fingerprint": data.fingerprint, "ttl_seconds": data.ttl_seconds},
            prepare=signer.ensure_key,
            finish=signer.sign,
        )

    @post(
        "/license_file",
        operation_id="issueLicenseFileByKey",
        status_code=200,
        responses=errors(404, 409, 422),
        operation_class=IdempotentOperation,
    )
    async def issue_license_file_by_key(
        self,
        db: NamedDependency[TenantDb],
        signer: NamedDependency[Signer],
        data: JSONBody[LicenseFileByKeyRequest],
    ) -> Response[LicenseFile]:
        """A signed license file for the license with this key: what an app with a publishable key
        fetches for itself, for its machine's fingerprint (required with a publishable key: the machine
        must be activated on the license)."""
        return await db.one(
            LicenseFile,
            "api.issue_license_file",
            {"key": data.key, "fingerprint": data.fingerprint, "ttl_seconds": data.ttl_seconds},
            prepare=signer.ensure_key,
            finish=signer.sign,
        )
