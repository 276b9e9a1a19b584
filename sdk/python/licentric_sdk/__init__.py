"""The Python SDK of Licentric (distribution `licentric-sdk`): `Licentric` and `AsyncLicentric`, typed
structs of the API in `licentric_sdk.types`, errors in `licentric_sdk.errors`, webhook verification in
`licentric_sdk.webhooks`. docs/sdk.md."""

__version__ = "0.1.0"

from licentric_sdk._transport import RetryPolicy
from licentric_sdk.client import AsyncLicentric, Licentric, Versions
from licentric_sdk.errors import LicentricError
from licentric_sdk.local import LocalOptions, LocalStats
from licentric_sdk.usage import Consumption, RecorderOptions, UsageStats

__all__ = [
    "AsyncLicentric",
    "Consumption",
    "Licentric",
    "LicentricError",
    "LocalOptions",
    "LocalStats",
    "RecorderOptions",
    "RetryPolicy",
    "UsageStats",
    "Versions",
    "__version__",
]
