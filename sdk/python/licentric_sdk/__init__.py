"""The Python SDK of Licentric (distribution `licentric-sdk`)."""

__version__ = "0.1.0"
