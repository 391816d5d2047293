"""The one way tests wait: `eventually` (in async tests) and `eventually_sync` (in threads and
in tests that drive real processes) share one rule.

`check` is called every `every` seconds until it returns something `until` accepts (truthy by
default) without raising AssertionError; that value is returned. After `timeout` seconds the
wait fails with the check's last AssertionError, or with what it last returned. `check` may be
a plain function or a coroutine function (async form only). Any other exception ends the wait
at once (a process that died will not come back). Bounds are generous: a wait fails only when
something does not happen at all, never because it was slow.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import os
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

EVERY = 0.05
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"
REDIS_DATABASES = 16  # Redis's default `databases`


class _Waiting:
    def __init__(self, timeout: float, until: Callable[[Any], Any], what: str) -> None:
        self.deadline = time.monotonic() + timeout
        self.timeout, self.until, self.what = timeout, until, what
        self.error: AssertionError | None = None
        self.value: Any = None

    def met(self, attempt: Callable[[], Any]) -> bool:
        try:
            self.value, self.error = attempt(), None
            return bool(self.until(self.value))
        except AssertionError as exc:
            self.error = exc
            return False

    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def failure(self) -> AssertionError:
        if self.error is not None:
            return self.error
        what = f"{self.what}: " if self.what else ""
        return AssertionError(f"{what}still {self.value!r} after {self.timeout}s")


async def eventually(
    check: Callable[[], Any], timeout: float = 15.0, *, until: Callable[[Any], Any] = bool,
    what: str = "", every: float = EVERY,
) -> Any:
    waiting = _Waiting(timeout, until, what)
    while True:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await value
        except AssertionError as exc:
            value = exc
        if waiting.met(lambda v=value: _unwrap(v)):
            return waiting.value
        if waiting.expired():
            raise waiting.failure()
        await asyncio.sleep(every)


def eventually_sync(
    check: Callable[[], Any], timeout: float = 15.0, *, until: Callable[[Any], Any] = bool,
    what: str = "", every: float = EVERY,
) -> Any:
    waiting = _Waiting(timeout, until, what)
    while not waiting.met(check):
        if waiting.expired():
            raise waiting.failure()
        time.sleep(every)
    return waiting.value


def _unwrap(value: Any) -> Any:
    if isinstance(value, AssertionError):
        raise value
    return value


def redis_url_for_tests(
    environ: Mapping[str, str] = os.environ, own_server: Callable[[], str] | None = None
) -> str:
    """The Redis database this test process may flush, so that pytest-xdist workers never flush
    each other's data: TEST_REDIS_URL's for the first worker (gw0, or no xdist); for the others
    a throwaway redis-server of their own (`own_server`) where one can be started, else
    database base + N for worker gwN (base - N when that would pass the last database).
    Several checkouts testing at once on one Redis each give one database only, then."""
    url = environ.get("TEST_REDIS_URL", DEFAULT_TEST_REDIS_URL)
    worker = environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0)
    if index == 0:
        return url
    if own_server is not None:
        return own_server()
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    db = base + index if base + index < REDIS_DATABASES else base - index
    if db < 0:
        raise RuntimeError(f"too many pytest-xdist workers for the databases of {url}")
    return urlunsplit(parts._replace(path=f"/{db}"))


def own_redis_server() -> str:
    """A throwaway redis-server for this test process, stopped when it exits."""
    from relay.devtools.redis_server import ThrowawayRedis

    server = ThrowawayRedis()
    url = server.start()
    atexit.register(server.stop)
    return url
