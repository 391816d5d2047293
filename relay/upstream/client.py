"""The Varg client: `GET /jobs/{job_id}`, classified into what the poller must do next."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import httpx

from relay.delivery.retry import parse_retry_after

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=50)
REQUIRED_FIELDS = ("job_id", "status", "model", "created_at")


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
    received: dict[str, Any] | None = None  # the job as sent, when `job` is adapted from it (v2)

    @property
    def status(self) -> str | None:
        return None if self.job is None else str(self.job["status"])


def classify(response: httpx.Response, now: float) -> PollResult:
    code = response.status_code
    headers = {
        k.lower(): v for k, v in response.headers.items() if k.lower().startswith("x-ratelimit")
    }
    if code == 200:
        job = parse_job(response.content)
        outcome = Outcome.ok if job is not None else Outcome.malformed
        return PollResult(outcome, job=job, status_code=code, rate_headers=headers)
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    outcome = {401: Outcome.unauthorized, 403: Outcome.unauthorized, 404: Outcome.not_found,
               429: Outcome.rate_limited}.get(code, Outcome.server_error)
    return PollResult(outcome, retry_after=retry_after, status_code=code, rate_headers=headers)


def parse_job(content: bytes) -> dict[str, Any] | None:
    try:
        job = json.loads(content)
    except ValueError:
        return None
    if not isinstance(job, dict) or any(not isinstance(job.get(f), str) for f in REQUIRED_FIELDS):
        return None
    return job


Classify = Callable[[httpx.Response, float], PollResult]


class VargClient:
    def __init__(self, base_url: str, api_key: str | None, client: httpx.AsyncClient,
                 classify_response: Classify = classify) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client
        self._classify = classify_response  # relay/upstream/v2.py `classify_v2` for v2

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def stream_url(self, job_id: str) -> str:
        """Varg's SSE stream of one job (v1 only: relay/upstream/stream.py)."""
        return f"{self._base_url}/jobs/{job_id}/stream"

    async def get_job(self, job_id: str) -> PollResult:
        started = time.monotonic()
        try:
            response = await self._client.get(
                f"{self._base_url}/jobs/{job_id}", headers=self._headers
            )
        except httpx.TimeoutException:
            return PollResult(Outcome.timeout, duration=time.monotonic() - started)
        except httpx.HTTPError:
            return PollResult(Outcome.timeout, duration=time.monotonic() - started)
        result = self._classify(response, time.time())
        return replace(result, duration=time.monotonic() - started)


def new_http_client(transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=DEFAULT_TIMEOUT, limits=DEFAULT_LIMITS, transport=transport, follow_redirects=False
    )
