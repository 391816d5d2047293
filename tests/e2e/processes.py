"""Real `varg-relay` processes for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

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
