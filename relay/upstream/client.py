"""The Varg client: `GET /jobs/{job_id}`, classified into what the poller must do next.

Varg is trusted to say what a job is, not to be well-behaved: each request has one deadline for
the whole of it (httpx's timeouts bound each read, so a body trickling a byte at a time would
hold the poll batch for as long as it trickles), the body is read up to a cap, and its JSON is
made strict (relay/strictjson.py) before anything is stored or relayed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import httpx

from relay.delivery.retry import parse_retry_after
from relay.strictjson import loads_lenient

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_DEADLINE = 10.0  # seconds for a whole request, body included (RELAY_UPSTREAM_TIMEOUT)
BODY_MAX_BYTES = 256 * 1024  # a JobResponse is a few hundred bytes; past this it is not one
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=50)
REQUIRED_FIELDS = ("job_id", "status", "model", "created_at")
MAX_ERROR = 200  # characters of an exception's text kept as the reason Varg did not answer


class Outcome(StrEnum):
    ok = "ok"  # a valid JobResponse
    not_found = "not_found"  # 404
    unauthorized = "unauthorized"  # 401: the key is refused
    rate_limited = "rate_limited"  # 429: every worker must pause
    server_error = "server_error"  # 5xx
    timeout = "timeout"  # no answer in time, or the connection failed
    malformed = "malformed"  # 2xx that is not a JobResponse


@dataclass(frozen=True)
class PollResult:
    outcome: Outcome
    job: dict[str, Any] | None = None
    retry_after: float | None = None
    status_code: int | None = None
    duration: float = 0.0
    rate_headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # why no answer came (Outcome.timeout): "host:port: ConnectError: ..."
    received: dict[str, Any] | None = None  # the job as sent, when `job` is adapted from it (v2)

    @property
    def status(self) -> str | None:
        return None if self.job is None else str(self.job["status"])


def classify(response: httpx.Response, now: float, content: bytes | None = None) -> PollResult:
    """The result of one answer; `content` is its body when read apart (None: past the cap)."""
    code = response.status_code
    headers = {
        k.lower(): v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit")
    }
    if code == 200:
        job = parse_job(content) if content is not None else None
        outcome = Outcome.ok if job is not None else Outcome.malformed
        return PollResult(outcome, job=job, status_code=code, rate_headers=headers)
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    outcome = {401: Outcome.unauthorized, 403: Outcome.unauthorized, 404: Outcome.not_found,
               429: Outcome.rate_limited}.get(code, Outcome.server_error)
    return PollResult(outcome, retry_after=retry_after, status_code=code, rate_headers=headers)


def parse_job(content: bytes) -> dict[str, Any] | None:
    """A JobResponse, made strict JSON (NaN and 1e999 as null, lone surrogates as U+FFFD), or
    None when the body is not one."""
    try:
        job = loads_lenient(content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(job, dict) or any(not isinstance(job.get(f), str) for f in REQUIRED_FIELDS):
        return None
    return job


Classify = Callable[[httpx.Response, float, bytes | None], PollResult]


class VargClient:
    def __init__(self, base_url: str, api_key: str | None, client: httpx.AsyncClient,
                 classify_response: Classify = classify,
                 deadline: float = DEFAULT_DEADLINE) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client
        self._classify = classify_response  # relay/upstream/v2.py `classify_v2` for v2
        self._deadline = deadline

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def stream_url(self, job_id: str) -> str:
        """Varg's SSE stream of one job (v1 only: relay/upstream/stream.py)."""
        return f"{self._base_url}/jobs/{job_id}/stream"

    async def get_job(self, job_id: str) -> PollResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._deadline):
                result = await self._fetch(job_id)
        except TimeoutError:
            return PollResult(Outcome.timeout, duration=time.monotonic() - started,
                              error=f"no whole answer within {self._deadline:g}s")
        except httpx.HTTPError as exc:  # a timeout, or the connection failed
            return PollResult(Outcome.timeout, duration=time.monotonic() - started,
                              error=self.describe(exc))
        return replace(result, duration=time.monotonic() - started)

    async def _fetch(self, job_id: str) -> PollResult:
        url = f"{self._base_url}/jobs/{job_id}"
        async with self._client.stream("GET", url, headers=self._headers) as response:
            # Only a 200's body is used; an error's status and headers say all that matters.
            content = await read_capped(response) if response.status_code == 200 else b""
        return self._classify(response, time.time(), content)

    async def probe(self) -> str | None:
        """Does Varg answer at all? An unauthenticated GET of the base URL, so it spends none
        of the key's budget; any HTTP status is an answer. Returns why it did not answer."""
        try:
            async with asyncio.timeout(self._deadline):
                await self._client.get(self._base_url)
        except TimeoutError:
            return f"no answer within {self._deadline:g}s"
        except httpx.HTTPError as exc:
            return self.describe(exc)
        return None

    def describe(self, exc: Exception) -> str:
        """`host:port: ConnectError: [Errno -2] Name or service not known` (no key, no path)."""
        url = httpx.URL(self._base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        text = f"{url.host}:{port}: {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
        return text[:MAX_ERROR]


async def read_capped(response: httpx.Response, cap: int = BODY_MAX_BYTES) -> bytes | None:
    """The body, or None as soon as it passes `cap` bytes (it is never read whole)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    chunks, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def unreachable(errors: list[str | None]) -> str | None:
    """Why Varg looks unreachable: no request of a batch (or probe) got an answer. None when
    one did: a 5xx or a 401 is an answer, and has its own handling."""
    return errors[0] if errors and all(errors) else None


def new_http_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=DEFAULT_TIMEOUT, limits=DEFAULT_LIMITS, transport=transport, follow_redirects=False
    )
