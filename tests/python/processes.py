"""Helpers for tests that run the real `licentric` command as a subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# The console script installed beside the interpreter running the tests.
LICENTRIC = str(Path(sys.executable).parent / "licentric")

SECRET_KEY_LINE = re.compile(r"^secret key: (lic_sk_[0-9a-f]+)$", re.MULTILINE)


def cli_env(**overrides: str | None) -> dict[str, str]:
    """The test process's environment without DATABASE_URL, plus overrides (None removes a name)."""
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LICENTRIC, *args], env=env, capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A long-running `licentric` command (serve, up) with its output in files."""

    def __init__(self, args: list[str], env: dict[str, str], logs: Path) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path = logs / "stdout"
        self.stderr_path = logs / "stderr"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            # A session of its own, as a terminal gives a job, so Ctrl-C can go to its whole group.
            self.process = subprocess.Popen(
                [LICENTRIC, *args], env=env, stdout=out, stderr=err, start_new_session=True
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_healthy(self, base_url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"exited with {self.process.returncode} before answering:\n{self.stderr}"
                )
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"no healthy answer from {base_url} within {timeout} s:\n{self.stderr}")

    def secret_key(self) -> str:
        match = SECRET_KEY_LINE.search(self.stdout)
        assert match, f"no `secret key: lic_sk_…` line in:\n{self.stdout}"
        return match.group(1)

    def ctrl_c(self, timeout: float = 30) -> int:
        """What Ctrl-C in a terminal does: SIGINT to every process of the foreground job."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
        return self.wait(timeout)

    def stop(self, signum: int, timeout: float = 30) -> int:
        """What a supervisor does: signum to the command's process alone."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        """Wait for the exit; the process is killed if it does not stop in time."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"still running {timeout} s after the signal:\n{self.stderr}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
