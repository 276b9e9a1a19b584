"""All configuration, read from the environment in one place."""

from __future__ import annotations

import base64
import binascii
import math
import os
from dataclasses import dataclass, field


class ConfigurationError(ValueError):
    """A setting has a value the service must not start with."""


# The kinds of LICENTRIC_MAIL_URL (licentric/mail.py).
MAIL_SCHEMES = ("smtp", "smtps", "smtp+insecure", "file", "console")


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {value!r}") from None


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    return seconds


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, not {value!r}")


def _optional_int(name: str) -> int | None:
    return _int(name, 0) if os.environ.get(name) else None


def parse_secret_key(text: str) -> bytes:
    """LICENTRIC_SECRET_KEY: 32 random bytes, base64 (standard or URL-safe alphabet, padding optional).
    Make one with `python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"`."""
    value = text.strip()
    try:
        key = base64.b64decode(
            value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigurationError(
            "LICENTRIC_SECRET_KEY must be 32 random bytes in base64 (44 characters), e.g. the output of "
            '`python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"`'
        )
    return key


@dataclass(frozen=True)
class Settings:
    # The process's own login (DATABASE_URL): `serve` must log in as lic_web, `worker` as lic_worker.
    # None means "no server given": `licentric up` then starts an embedded one.
    database_url: str | None
    host: str
    port: int
    # Requests a minute per API key or agent token, and per client address of requests no key vouches for
    # (keys that fail, the portal's pages, requests without a well-formed key; decision 59).
    rate_limit_per_minute: int
    pool_min_size: int
    pool_max_size: int
    log_level: str
    # Encrypts the Stripe keys and signing secrets tenants give (AES-256-GCM,
    # licentric/crypto.py); None: the Stripe routes answer 503 not_configured.
    # `licentric up` makes one in its data directory when none is set.
    secret_key: bytes | None = field(default=None, repr=False)
    # Where Stripe reaches this service (webhook endpoint URLs); None: http://{host}:{port}.
    public_url: str | None = None
    # Stripe's API base; None: the real Stripe. Tests point it at a fake.
    stripe_api_base: str | None = None
    # Seconds a Stripe-Signature timestamp may lie in the past, and in the future.
    stripe_webhook_tolerance: int = 300
    stripe_webhook_max_future_skew: int = 300
    # Deliveries a minute to one account's Stripe webhook (Stripe bursts, and retries a 429 later).
    stripe_rate_limit_per_minute: int = 6000
    # `licentric worker` (licentric/worker.py): seconds between runs of the license sweeps (expiry, payment
    # grace) and of the metering partition upkeep; rows a sweep transaction handles at most.
    worker_sweep_interval: float = 60
    worker_partition_interval: float = 3600
    worker_batch_size: int = 1000
    # Monthly partitions of lic.metering_events made ahead of the current month; months of events kept
    # (None: all; the hourly rollups are kept whatever this says).
    metering_partitions_ahead: int = 3
    metering_retention_months: int | None = None
    # Outbound webhooks (licentric/webhook_delivery.py): whether endpoints may resolve to private, loopback
    # or link-local addresses (tests and local development only); deliveries one worker has in flight at
    # once; seconds a receiver has to answer; seconds a claimed delivery stays leased to its worker (longer
    # than the timeout: a worker that dies mid-delivery frees it when the lease ends); seconds between polls
    # when no NOTIFY arrives; days finished deliveries and their attempts are kept.
    webhook_allow_private_targets: bool = False
    webhook_concurrency: int = 64
    webhook_timeout: float = 15
    webhook_lease: float = 60
    webhook_poll_interval: float = 5
    webhook_retention_days: int = 30
    # The customer portal (licentric/portal/): whether its cookies are Secure, with the __Host- prefix (turn
    # off only to use it over plain http on this machine).
    portal_secure_cookies: bool = True
    # Where mail goes (licentric/mail.py): smtp://user:pass@host:587 (STARTTLS), smtps://…:465 (TLS),
    # smtp+insecure://host:1025 (no TLS: a local mail catcher), file:///dir (one .eml per message) or
    # console: (standard output); None: mail cannot be sent (logged). The sender's address.
    mail_url: str | None = field(default=None, repr=False)
    mail_from: str = "no-reply@localhost"
    # The privileged login of `migrate` and the operator commands (DATABASE_ADMIN_URL); None: DATABASE_URL,
    # as installs that ran everything on one superuser URL did. Never used to serve.
    admin_database_url: str | None = field(default=None, repr=False)
    # Whether `licentric migrate` may install into a server that holds another Licentric database (whose
    # cluster-wide roles it would share): test servers only.
    shared_roles: bool = False

    def __post_init__(self) -> None:
        # A tolerance of 0 (or less) would make the SDK skip the recency check:
        # a captured delivery could then be replayed forever.
        if self.stripe_webhook_tolerance <= 0:
            raise ConfigurationError(
                "LICENTRIC_STRIPE_WEBHOOK_TOLERANCE must be a positive number of seconds (default 300); "
                "0 would disable the replay check"
            )
        if self.stripe_webhook_max_future_skew < 0:
            raise ConfigurationError("LICENTRIC_STRIPE_WEBHOOK_MAX_FUTURE_SKEW must be 0 or more seconds")
        if self.secret_key is not None and len(self.secret_key) != 32:
            raise ConfigurationError("the secret key must be 32 bytes")
        if self.worker_sweep_interval <= 0 or self.worker_partition_interval <= 0:
            raise ConfigurationError(
                "LICENTRIC_WORKER_SWEEP_INTERVAL and LICENTRIC_WORKER_PARTITION_INTERVAL must be above 0"
            )
        if self.worker_batch_size < 1:
            raise ConfigurationError("LICENTRIC_WORKER_BATCH_SIZE must be at least 1")
        if not 0 <= self.metering_partitions_ahead <= 120:
            raise ConfigurationError("LICENTRIC_METERING_PARTITIONS_AHEAD must be between 0 and 120 months")
        # Ingest takes events up to 35 days old: two months always cover them.
        if self.metering_retention_months is not None and not 2 <= self.metering_retention_months <= 1200:
            raise ConfigurationError(
                "LICENTRIC_METERING_RETENTION_MONTHS must be between 2 and 1200 months (unset: keep them all)"
            )

        if self.webhook_concurrency < 1:
            raise ConfigurationError("LICENTRIC_WEBHOOK_CONCURRENCY must be at least 1")
        if not 0 < self.webhook_timeout < self.webhook_lease:
            raise ConfigurationError(
                "LICENTRIC_WEBHOOK_TIMEOUT must be above 0 and below LICENTRIC_WEBHOOK_LEASE (a delivery "
                "must finish before its lease frees it for another worker)"
            )
        if self.webhook_poll_interval <= 0:
            raise ConfigurationError("LICENTRIC_WEBHOOK_POLL_INTERVAL must be above 0")
        if self.webhook_retention_days < 1:
            raise ConfigurationError("LICENTRIC_WEBHOOK_RETENTION_DAYS must be at least 1")
        if self.mail_url is not None and self.mail_url.partition(":")[0].lower() not in MAIL_SCHEMES:
            raise ConfigurationError(
                "LICENTRIC_MAIL_URL must start with one of " + ", ".join(f"{s}:" for s in MAIL_SCHEMES)
            )

    @property
    def base_url(self) -> str:
        """The service's public address, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls) -> Settings:
        secret_key = os.environ.get("LICENTRIC_SECRET_KEY")
        return cls(
            database_url=os.environ.get("DATABASE_URL") or None,
            host=os.environ.get("LICENTRIC_HOST", "127.0.0.1"),
            port=_int("LICENTRIC_PORT", 8000),
            rate_limit_per_minute=_int("LICENTRIC_RATE_LIMIT_PER_MINUTE", 1200),
            pool_min_size=_int("LICENTRIC_POOL_MIN_SIZE", 2),
            pool_max_size=_int("LICENTRIC_POOL_MAX_SIZE", 10),
            log_level=os.environ.get("LICENTRIC_LOG_LEVEL", "INFO"),
            secret_key=parse_secret_key(secret_key) if secret_key else None,
            public_url=os.environ.get("LICENTRIC_PUBLIC_URL") or None,
            stripe_api_base=os.environ.get("LICENTRIC_STRIPE_API_BASE") or None,
            stripe_webhook_tolerance=_int("LICENTRIC_STRIPE_WEBHOOK_TOLERANCE", 300),
            stripe_webhook_max_future_skew=_int("LICENTRIC_STRIPE_WEBHOOK_MAX_FUTURE_SKEW", 300),
            stripe_rate_limit_per_minute=_int("LICENTRIC_STRIPE_RATE_LIMIT_PER_MINUTE", 6000),
            worker_sweep_interval=_seconds("LICENTRIC_WORKER_SWEEP_INTERVAL", 60),
            worker_partition_interval=_seconds("LICENTRIC_WORKER_PARTITION_INTERVAL", 3600),
            worker_batch_size=_int("LICENTRIC_WORKER_BATCH_SIZE", 1000),
            metering_partitions_ahead=_int("LICENTRIC_METERING_PARTITIONS_AHEAD", 3),
            metering_retention_months=_optional_int("LICENTRIC_METERING_RETENTION_MONTHS"),
            webhook_allow_private_targets=_bool("LICENTRIC_WEBHOOK_ALLOW_PRIVATE_TARGETS", False),
            webhook_concurrency=_int("LICENTRIC_WEBHOOK_CONCURRENCY", 64),
            webhook_timeout=_seconds("LICENTRIC_WEBHOOK_TIMEOUT", 15),
            webhook_lease=_seconds("LICENTRIC_WEBHOOK_LEASE", 60),
            webhook_poll_interval=_seconds("LICENTRIC_WEBHOOK_POLL_INTERVAL", 5),
            webhook_retention_days=_int("LICENTRIC_WEBHOOK_RETENTION_DAYS", 30),
            portal_secure_cookies=_bool("LICENTRIC_PORTAL_SECURE_COOKIES", True),
            mail_url=os.environ.get("LICENTRIC_MAIL_URL") or None,
            mail_from=os.environ.get("LICENTRIC_MAIL_FROM") or "no-reply@localhost",
            admin_database_url=os.environ.get("DATABASE_ADMIN_URL") or None,
            shared_roles=_bool("LICENTRIC_SHARED_ROLES", False),
        )
