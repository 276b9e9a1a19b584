"""All configuration, read from the environment in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


@dataclass(frozen=True)
class Settings:
    # None means "no server given": `licentric up` then starts an embedded one.
    database_url: str | None
    host: str
    port: int
    # Requests per minute per API key (or per client address without a key).
    rate_limit_per_minute: int
    pool_min_size: int
    pool_max_size: int
    log_level: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            database_url=os.environ.get("DATABASE_URL") or None,
            host=os.environ.get("LICENTRIC_HOST", "127.0.0.1"),
            port=_int("LICENTRIC_PORT", 8000),
            rate_limit_per_minute=_int("LICENTRIC_RATE_LIMIT_PER_MINUTE", 1200),
            pool_min_size=_int("LICENTRIC_POOL_MIN_SIZE", 2),
            pool_max_size=_int("LICENTRIC_POOL_MAX_SIZE", 10),
            log_level=os.environ.get("LICENTRIC_LOG_LEVEL", "INFO"),
        )
