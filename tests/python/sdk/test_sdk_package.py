"""The SDK's distribution: installed beside the app, light, and honest about its version."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import licentric_sdk


def test_sdk_version_is_the_distributions():
    assert licentric_sdk.__version__ == version("licentric-sdk")


def test_sdk_imports_neither_the_app_nor_its_server_dependencies():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, licentric_sdk; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert not {"litestar", "psycopg", "licentric", "stripe"} & set(loaded)
