"""Real `varg-relay` processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

from relay.devtools.redis_server import free_port
from tests.conftest import REDIS_URL, TOKEN, env_for
from tests.support import eventually_sync

BIN = [sys.executable, "-m", "relay.cli"]


class Process:
    """`varg-relay ARGS` with `env` added to this process's environment (or, with
    `inherit=False`, with exactly `env`), its output in a log file."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], inherit: bool = True
    ) -> None:
        self.name = name
        self.log = Path(tempfile.mkstemp(prefix=f"relay-{name}-", suffix=".log")[1])
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [*BIN, *args], env={**os.environ, **env} if inherit else env, stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        """True while the process runs; fails the wait at once, with its log, if it exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.proc.returncode}):\n"
                                 f"{self.text()[-3000:]}")
        return True

    def wait_for_log(self, needle: str, timeout: float = 20.0) -> None:
        eventually_sync(lambda: self.alive() and needle in self.text(), timeout,
                        what=f"{self.name} to log {needle!r}")

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

    def healthy() -> bool:
        try:
            return api.alive() and httpx.get(f"http://127.0.0.1:{port}/healthz").is_success
        except httpx.HTTPError:
            return False

    eventually_sync(healthy, 20, what="the api to answer /healthz")
    return api


def start_worker(env: dict[str, str], name: str = "worker") -> Process:
    worker = Process(name, ["worker"], env)
    worker.wait_for_log("worker started")
    return worker


class Relay:
    """API and worker processes over one Redis, and an authenticated client for the API."""

    def __init__(self, simulator: str, redis_url: str = REDIS_URL, **env: str) -> None:
        self.env = env_for(simulator, REDIS_URL=redis_url, RELAY_LOG_FORMAT="json", **env)
        self.redis_url = redis_url
        self.port = free_port()
        self.api: Process | None = None
        self.workers: list[Process] = []
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}",
                                   headers={"authorization": f"Bearer {TOKEN}"}, timeout=10)

    def start_api(self) -> Process:
        self.api = start_api(self.env, self.port)
        return self.api

    def add_worker(self, name: str) -> Process:
        worker = start_worker(self.env, name)
        self.workers.append(worker)
        return worker

    def subscribe(self, job_id: str, url: str, **extra: Any) -> dict[str, Any]:
        response = self.client.post("/v1/subscriptions", json={"job_id": job_id, "url": url,
                                                                **extra})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def get(self, path: str) -> dict[str, Any]:
        response = self.client.get(path)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def subscription(self, sid: str) -> dict[str, Any]:
        return self.get(f"/v1/subscriptions/{sid}")

    def stop(self) -> dict[str, int]:
        """SIGTERM to every process still running; their exit codes, by name."""
        codes = {}
        for process in [*self.workers, *([self.api] if self.api else [])]:
            if process.proc.poll() is None:
                codes[process.name] = process.terminate()
            elif not process._out.closed:
                process._out.close()
        self.client.close()
        return codes


def accepted_connections(pid: int, port: int) -> int:
    """Established TCP connections to `port` that process `pid` holds a socket of: the ones it
    has accepted, not those still waiting in the kernel's backlog."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().split("\n")[1:]:
            fields = row.split()
            # local address, remote address, state (01: established), ..., inode
            if fields and int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01" \
                    and fields[9] in inodes:
                count += 1
    return count
