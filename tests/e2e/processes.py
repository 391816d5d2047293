"""Real `varg-relay` processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BIN = [sys.executable, "-m", "relay.cli"]


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix=f"relay-{name}-", suffix=".log")[1])
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [*BIN, *args], env={**os.environ, **env}, stdout=self._out, stderr=subprocess.STDOUT
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not log {needle!r}:\n{self.text()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._out.close()

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        finally:
            self._out.close()


def start_api(env: dict[str, str], port: int) -> Process:
    api = Process("api", ["api", "--port", str(port)], env)
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return api
        except httpx.HTTPError:
            pass
        if api.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"api did not start:\n{api.text()[-3000:]}")
        time.sleep(0.05)


def start_worker(env: dict[str, str], name: str = "worker") -> Process:
    worker = Process(name, ["worker"], env)
    worker.wait_for_log("worker started")
    return worker
