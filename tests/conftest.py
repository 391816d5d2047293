"""Shared fixtures: a real Redis (flushed per test), real HTTP servers in threads for the Varg
simulator and for a receiver that verifies every webhook with `standardwebhooks`."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from arq.worker import Worker
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config import Settings, load_settings
from relay.app import create_app
from relay.devtools.redis_server import free_port
from relay.devtools.simulator import create_simulator
from relay.worker import running_worker
from tests.support import eventually, eventually_sync, own_redis_server, redis_url_for_tests

REDIS_URL = redis_url_for_tests(
    own_server=own_redis_server if shutil.which("redis-server") else None)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SIM_KEY = "varg_test_key"
TOKEN = "tok_alice"
OTHER_TOKEN = "tok_bob"


class ServerThread:
    """A real uvicorn server on a free loopback port, in its own thread (as httpx tests do)."""

    def __init__(self, app: Any, lifespan: str = "off") -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                access_log=False, lifespan=lifespan)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerThread:
        self.thread.start()
        eventually_sync(lambda: self.server.started, 10, what="the test server to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@dataclass
class Received:
    path: str
    webhook_id: str
    timestamp: str
    body: dict[str, Any]
    at: float


@dataclass
class Receiver:
    """Records verified webhooks per path; answers from a plan of status codes, then 200.

    `plan["/a"] = [500, 500]` makes the first two attempts to /a fail. Every request is
    verified with the standardwebhooks library; a request that fails verification is recorded
    in `rejected` and answered 400, so a test that checks `rejected == []` proves signatures.
    """

    base_url: str = ""
    plan: dict[str, list[int]] = field(default_factory=dict)
    delay: dict[str, float] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    attempts: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base_url + path

    def events(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r.body for r in self.received if r.path == path]

    def types(self, path: str) -> list[str]:
        return [str(e["type"]) for e in self.events(path)]

    def app(self, secret: str) -> Starlette:
        hook = Webhook(secret)

        async def receive(request: Request) -> Response:
            path = "/" + request.path_params["name"]
            raw = await request.body()
            headers = dict(request.headers)
            with self.lock:
                self.attempts.append((path, headers.get("webhook-id", "")))
            try:
                body = hook.verify(raw, headers)
            except WebhookVerificationError as exc:
                with self.lock:
                    self.rejected.append(f"{path}: {exc}")
                return JSONResponse({"error": str(exc)}, status_code=400)
            if path in self.delay:
                await asyncio.sleep(self.delay[path])
            with self.lock:
                planned = self.plan.get(path)
                code = planned.pop(0) if planned else 200
                if 200 <= code < 300:
                    self.received.append(Received(path, headers["webhook-id"],
                                                  headers["webhook-timestamp"], body,
                                                  time.time()))
            return JSONResponse({"ok": code < 300}, status_code=code)

        return Starlette(routes=[Route("/{name:path}", receive, methods=["POST"])])


# Fixtures that talk to the Redis at TEST_REDIS_URL: a test using one is marked `redis`.
REDIS_FIXTURES = frozenset({"redis", "sync_redis", "clean_redis", "flushed"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if REDIS_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.redis)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Undo what configure_logging does to the root and the noisy loggers."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    noisy = {n: logging.getLogger(n).level for n in ("httpx", "httpcore", "arq.worker",
                                                     "arq.jobs")}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(scope="session")
def simulator_server() -> Iterator[ServerThread]:
    with ServerThread(create_simulator(api_key=SIM_KEY)) as server:
        yield server


@pytest.fixture
def simulator(simulator_server: ServerThread) -> Iterator[str]:
    """Base URL of the simulator (without /v1), reset for each test."""
    httpx.post(simulator_server.url + "/_sim/reset").raise_for_status()
    yield simulator_server.url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    with ServerThread(rec.app(SECRET)) as server:
        rec.base_url = server.url
        yield rec


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


def env_for(simulator_url: str, **extra: str) -> dict[str, str]:
    return {
        "REDIS_URL": REDIS_URL,
        "VARG_API_URL": simulator_url + "/v1",
        "VARG_API_KEY": SIM_KEY,
        "RELAY_API_TOKENS": f"{TOKEN},{OTHER_TOKEN}",
        "RELAY_SIGNING_SECRETS": SECRET,
        "RELAY_ALLOW_PRIVATE_CALLBACKS": "true",
        "RELAY_RETRY_SCHEDULE": "200ms,200ms,200ms",
        "RELAY_POLL_MIN_INTERVAL": "100ms",
        "RELAY_POLL_MAX_INTERVAL": "500ms",
        "RELAY_DELIVERY_TIMEOUT": "3s",
        "RELAY_NOT_FOUND_GRACE": "1s",
        "RELAY_UPSTREAM_RATE_LIMIT": "6000",
        "RELAY_POLL_LEASE": "5s",
        "RELAY_SWEEP_INTERVAL": "1s",
        "RELAY_METRICS_PORT": "0",
        "RELAY_LOG_FORMAT": "text",
        **extra,
    }


SettingsFactory = Callable[..., Settings]


@pytest.fixture
def make_settings(simulator: str) -> SettingsFactory:
    """Settings against the test simulator; keyword arguments override environment values."""

    def make(**env: str) -> Settings:
        return load_settings(env_for(simulator, **env))

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings()


@asynccontextmanager
async def api_client(
    settings: Settings, token: str | None = TOKEN
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay",
                                     headers=headers) as client:
            yield client


async def subscribe(
    client: httpx.AsyncClient, job_id: str = "job_1", url: str = "http://127.0.0.1:9/varg",
    **extra: Any,
) -> dict[str, Any]:
    """POST /v1/subscriptions, which must create it (201); the subscription."""
    response = await client.post("/v1/subscriptions", json={"job_id": job_id, "url": url,
                                                            **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def deliveries(client: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    """GET /v1/subscriptions/{sid}/deliveries, which must answer 200 `{"data": [...]}`."""
    response = await client.get(f"/v1/subscriptions/{sid}/deliveries")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"data"}
    data: list[dict[str, Any]] = body["data"]
    return data


@pytest.fixture
async def api(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """The relay API through ASGITransport, authenticated as TOKEN, over a clean Redis."""
    async with api_client(settings) as client:
        yield client


@pytest.fixture
async def worker(settings: Settings, redis: Redis) -> AsyncIterator[Worker]:
    async with running_worker(settings) as w:
        yield w


def sim_job(simulator: str, job_id: str, steps: list[tuple[str, float]], **extra: Any) -> None:
    timeline = [{"status": s, "after": a} for s, a in steps]
    body = {"job_id": job_id, "timeline": timeline, **extra}
    httpx.post(simulator + "/_sim/jobs", json=body).raise_for_status()


async def walk(simulator: str, job_id: str, statuses: list[str], seen: Callable[[], int]) -> None:
    """Move a simulated job on to each of `statuses` once the relay has seen the one before
    (`seen()` counts the statuses it has seen so far), so that a test expecting every status
    does not depend on a poll falling between two timeline steps on a loaded machine."""
    for count, status in enumerate(statuses, start=1):
        await eventually(lambda n=count: seen() >= n, what=f"status {count} to be seen")
        sim_job(simulator, job_id, [(status, 0)])
