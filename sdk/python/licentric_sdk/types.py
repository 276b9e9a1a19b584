"""The API's request and response structs (msgspec), generated from its OpenAPI document."""

from licentric_sdk._generated import *  # noqa: F403
from licentric_sdk._generated import API_VERSION  # noqa: F401
