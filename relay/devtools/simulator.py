"""A local, in-memory simulator of the Varg Gateway API's job endpoints.

It speaks the seed contract (``GET /v1/jobs/{job_id}``), Varg's v1 job stream
(``GET /v1/jobs/{job_id}/stream``: Server-Sent Events, a ``status`` event with the job JSON at
every change, ``: keepalive`` comments, closed at a terminal status or after a time limit), and
the v2 API (``GET /v2/jobs/{id}``, ``GET /v2/jobs/{id}/status``: jobs by ``id``, ``processing``
shown as ``running``, errors as ``{"error": {"code", "message"}}``, no stream). A job created
with a ``webhook_url`` gets Varg's v2 webhook at its terminal status, signed with
``X-Varg-Signature``. A control API under ``/_sim`` (no auth) scripts jobs, injects faults and
reads request statistics:

- ``POST /_sim/jobs``: create or replace a job with a status timeline (and ``webhook_url``;
  ``cache_hit: true`` reports it served from Varg's cache).
- ``GET /_sim/jobs`` / ``GET /_sim/jobs/{job_id}``: control views (timeline, changes, current).
- ``POST /_sim/faults`` / ``GET /_sim/faults``: queue faults for the next job requests (polls
  and stream connections alike, in either version); ``cut`` is for streams only: the stream
  breaks off mid-way after ``delay`` seconds.
- ``POST /_sim/config``: ``{"stream": false}`` answers the stream with 404 (an upstream without
  it); ``keepalive`` and ``stream_limit`` (seconds) shorten the stream's timers for tests.
- ``GET /_sim/stats``: request counts by status code and by job, streams open and opened.
- ``GET /_sim/webhooks``: every v2 webhook attempt made.
- ``POST /_sim/reset``: forget jobs, faults, stats, webhooks and the rate-limit window, and
  restore the configuration the simulator started with.

A job's status is the last timeline step whose offset (seconds after creation) has passed; until
the first step (or ``appears_after``) has passed, the job answers 404 like an unknown job.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = ["Change", "SimJob", "Simulator", "Step", "create_simulator", "status_at"]

Clock = Callable[[], float]

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
FAULT_MODES = ("429", "500", "502", "401", "timeout", "malformed", "missing_fields", "cut")
# `cut` is taken by stream connections only: the stream sends what it has, then the
# connection breaks mid-stream after `delay` seconds (polls pass it by).
RATE_WINDOW = 60.0
DEFAULT_MODEL = "fal:flux-schnell"
DEFAULT_ERROR = "Provider returned an error"
OUTPUT_BASE = "https://s3.varg.ai/o/"
JOB_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
MAX_STEPS = 100
MAX_TEXT = 2048

_VIDEO_HINTS = (
    "kling",
    "veo",
    "sora",
    "hailuo",
    "minimax",
    "luma",
    "runway",
    "seedance",
    "pika",
    "ltx",
    "wan-",
    "wan2",
    "video",
    "lipsync",
)
_AUDIO_HINTS = ("elevenlabs", "tts", "speech", "music", "audio", "sound", "voice", "suno")
_EXTENSIONS = {
    "video/mp4": "mp4",
    "image/png": "png",
    "audio/mpeg": "mp3",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "audio/wav": "wav",
}


class Step(NamedTuple):
    """One timeline step: ``status`` becomes current ``after`` seconds past creation."""

    status: str
    after: float


class Change(NamedTuple):
    """A status that became visible to clients at ``at`` (unix seconds)."""

    status: str
    at: float


DEFAULT_TIMELINE = (Step("queued", 0.0), Step("processing", 2.0), Step("completed", 6.0))
V2_BASE = "https://api.varg.ai/v2"
V2_STATUS = {"processing": "running"}  # v2 splits processing into submitting and running
KEEPALIVE = 15.0  # seconds between keepalive comments on a stream, as Varg sends them
STREAM_LIMIT = 600.0  # Varg closes a stream after 10 minutes
WEBHOOK_RETRIES = 8  # Varg's v2 webhooks are retried 8 times
WEBHOOK_BACKOFF = 0.5  # seconds before the first retry, doubled each time (up to 30 s)


def status_at(timeline: Sequence[tuple[str, float]], elapsed: float) -> str | None:
    """The status of the last step whose offset has passed (later steps win ties), else None."""
    current: str | None = None
    best = -math.inf
    for status, after in timeline:
        if after <= elapsed and after >= best:
            current, best = status, after
    return current


def visible_changes(timeline: Sequence[tuple[str, float]], appears_after: float) -> list[Step]:
    """The status changes a client can observe, with the offset at which each became visible.

    Steps hidden behind ``appears_after`` or overtaken at the same instant are dropped, and so
    are steps that repeat the status before them.
    """
    changes: list[Step] = []
    for status, after in sorted(timeline, key=lambda step: step[1]):
        shown = max(after, appears_after)
        if changes and changes[-1].after == shown:
            changes.pop()
        if not changes or changes[-1].status != status:
            changes.append(Step(status, shown))
    return changes


def iso(ts: float) -> str:
    """ISO 8601 UTC with a ``Z`` suffix, to the second, like the seed's examples."""
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def media_type_for(model: str) -> str:
    """Guess the output media type from the model name: video, audio, else image."""
    name = model.lower()
    if any(hint in name for hint in _VIDEO_HINTS):
        return "video/mp4"
    if any(hint in name for hint in _AUDIO_HINTS):
        return "audio/mpeg"
    return "image/png"


def tool_for(media_type: str) -> str:
    """v2's `tool` for an output media type."""
    kind = media_type.split("/")[0]
    return {"audio": "speech"}.get(kind, kind)


def output_url(job_id: str, media_type: str) -> str:
    return f"{OUTPUT_BASE}{job_id}.{_EXTENSIONS.get(media_type, 'bin')}"


@dataclass
class SimJob:
    """A scripted job: its status follows ``timeline`` from ``created`` (unix seconds)."""

    job_id: str
    model: str
    created: float
    timeline: tuple[Step, ...] = DEFAULT_TIMELINE
    media_type: str = ""
    url: str = ""
    error: str = DEFAULT_ERROR
    appears_after: float = 0.0
    webhook_url: str = ""  # v2: POSTed the job at its terminal status
    cache_hit: bool = False  # served from Varg's cache (`cache.hit`)

    def __post_init__(self) -> None:
        self.media_type = self.media_type or media_type_for(self.model)
        self.url = self.url or output_url(self.job_id, self.media_type)

    def status(self, now: float) -> str | None:
        """The status a client sees at ``now``; None while the job does not exist yet."""
        elapsed = now - self.created
        if elapsed < self.appears_after:
            return None
        return status_at(self.timeline, elapsed)

    def changes(self, now: float) -> list[Change]:
        """Changes already visible at ``now``, with absolute unix times."""
        elapsed = now - self.created
        return [
            Change(step.status, self.created + step.after)
            for step in visible_changes(self.timeline, self.appears_after)
            if step.after <= elapsed
        ]

    def response(self, now: float) -> dict[str, Any] | None:
        """The seed's JobResponse at ``now``, or None when the job answers 404."""
        status = self.status(now)
        if status is None:
            return None
        body: dict[str, Any] = {
            "job_id": self.job_id,
            "status": status,
            "model": self.model,
            "created_at": iso(self.created),
        }
        if status in TERMINAL_STATUSES:
            body["completed_at"] = iso(self.changes(now)[-1].at)
        if status == "completed":
            body["output"] = {"url": self.url, "media_type": self.media_type}
        if status == "failed":
            body["error"] = self.error
        body["cache"] = {"hit": self.cache_hit, "key": self.cache_key()}
        return body

    def next_change(self, now: float) -> float | None:
        """When the next visible change happens (unix seconds), if any is left."""
        for step in visible_changes(self.timeline, self.appears_after):
            if self.created + step.after > now:
                return self.created + step.after
        return None

    def terminal_at(self) -> float | None:
        """When the job becomes terminal (unix seconds), if its timeline ends so."""
        changes = visible_changes(self.timeline, self.appears_after)
        if changes and changes[-1].status in TERMINAL_STATUSES:
            return self.created + changes[-1].after
        return None

    def response_v2(self, now: float) -> dict[str, Any] | None:
        """The job as Varg's v2 API shows it, or None while it answers 404."""
        status = self.status(now)
        if status is None:
            return None
        body: dict[str, Any] = {
            "id": self.job_id,
            "status": V2_STATUS.get(status, status),
            "tool": tool_for(self.media_type),
            "input": {"model": self.model},
            "created_at": iso(self.created),
        }
        if status in TERMINAL_STATUSES:
            body["completed_at"] = iso(self.changes(now)[-1].at)
        if status == "completed":
            body["output"] = {"version": "v1", "outputs": [
                {"url": self.url, "file_id": "file_" + self.job_id,
                 "media_type": self.media_type}]}
        if status == "failed":
            body["error"] = {"code": "provider_error", "message": self.error}
        base = f"{V2_BASE}/jobs/{self.job_id}"
        body["urls"] = {"self": base, "status": base + "/status", "cancel": base + "/cancel"}
        return body

    def cache_key(self) -> str:
        return "sha256:" + hashlib.sha256(f"{self.model}\n{self.job_id}".encode()).hexdigest()

    def control_view(self, now: float) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "model": self.model,
            "created_at": iso(self.created),
            "appears_after": self.appears_after,
            "webhook_url": self.webhook_url or None,
            "cache_hit": self.cache_hit,
            "timeline": [{"status": s.status, "after": s.after} for s in self.timeline],
            "changes": [{"status": c.status, "at": c.at} for c in self.changes(now)],
            "current": self.status(now),
        }


@dataclass
class Fault:
    """``remaining`` upcoming ``GET /v1/jobs`` requests answer with ``mode``."""

    mode: str
    remaining: int
    retry_after: int = 1
    delay: float = 30.0

    def view(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "count": self.remaining,
            "retry_after": self.retry_after,
            "delay": self.delay,
        }


@dataclass
class SlidingWindow:
    """Accepted request times over the last 60 seconds, for one API key."""

    limit: int
    hits: deque[float] = field(default_factory=deque)

    def prune(self, now: float) -> None:
        while self.hits and self.hits[0] <= now - RATE_WINDOW:
            self.hits.popleft()

    def try_acquire(self, now: float) -> bool:
        self.prune(now)
        if len(self.hits) >= self.limit:
            return False
        self.hits.append(now)
        return True

    def retry_after(self, now: float) -> int:
        self.prune(now)
        if len(self.hits) < self.limit:
            return 1
        return max(1, math.ceil(self.hits[0] + RATE_WINDOW - now))

    def headers(self, now: float) -> dict[str, str]:
        self.prune(now)
        reset = self.hits[0] + RATE_WINDOW if self.hits else now
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.limit - len(self.hits))),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }


class StreamCut(Exception):
    """Raised inside a stream's body: the server drops the connection mid-stream."""


class Invalid(Exception):
    """Bad control-API input; answered with a 400 ValidationError."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def error_response(
    status_code: int,
    error: str,
    message: str,
    *,
    field: str | None = None,
    provider: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error in the seed's ErrorResponse shape."""
    body: dict[str, Any] = {"error": error, "message": message}
    if field is not None:
        body["field"] = field
    if provider is not None:
        body["provider"] = provider
    body["statusCode"] = status_code
    return JSONResponse(body, status_code=status_code, headers=headers)


def auth_error() -> JSONResponse:
    return error_response(401, "AuthError", "Invalid API key")


def not_found() -> JSONResponse:
    return error_response(404, "NotFoundError", "Job not found")


def rate_limited(retry_after: int) -> JSONResponse:
    return error_response(
        429, "RateLimitError", "Rate limit exceeded", headers={"Retry-After": str(retry_after)}
    )


V2_CODES = {401: "unauthorized", 404: "job_not_found", 429: "rate_limited",
            500: "internal_error", 502: "provider_error"}


def v2_error(status_code: int, code: str, message: str,
             headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error in v2's envelope: ``{"error": {"code", "message"}}``."""
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def as_v2_error(response: JSONResponse) -> JSONResponse:
    """A v1-shaped error answer in v2's envelope, keeping its code and Retry-After."""
    v1 = json.loads(bytes(response.body))
    code = response.status_code
    retry = {"Retry-After": response.headers["retry-after"]} if "retry-after" in response.headers \
        else None
    return v2_error(code, V2_CODES.get(code, "error"), str(v1["message"]), retry)


def status_v2(job: SimJob, now: float) -> dict[str, Any] | None:
    """``GET /v2/jobs/{id}/status``: the status and a progress estimate, without the output."""
    status = job.status(now)
    if status is None:
        return None
    end = job.terminal_at()
    done = 1.0 if status in TERMINAL_STATUSES else (
        0.0 if end is None else min(0.99, (now - job.created) / max(end - job.created, 1e-9)))
    shown = V2_STATUS.get(status, status)
    return {"id": job.job_id, "status": shown, "progress": round(done, 3),
            "progress_message": f"{shown} ({done:.0%})"}


def compact(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))


def sse(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


def varg_webhook_headers(secret: str | None, body: bytes, event: str,
                         timestamp_ms: int) -> dict[str, str]:
    """Varg's v2 webhook headers: `X-Varg-Signature: v1=<hex HMAC-SHA256>` of
    "{timestamp}.{body}" under the secret, the timestamp in Unix milliseconds (as Varg's SDK
    signs its own webhooks)."""
    headers = {"content-type": "application/json", "user-agent": "varg-simulator",
               "x-varg-event": event, "x-varg-timestamp": str(timestamp_ms)}
    if secret:
        signed = str(timestamp_ms).encode() + b"." + body
        digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        headers["x-varg-signature"] = "v1=" + digest
    return headers


async def post_once(client: httpx.AsyncClient, url: str, body: bytes,
                    headers: dict[str, str]) -> tuple[int | None, str | None]:
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, type(exc).__name__
    return response.status_code, None


# --- input validation -------------------------------------------------------------------------

_JOB_FIELDS = frozenset({"job_id", "model", "timeline", "output", "error", "appears_after",
                         "webhook_url", "cache_hit"})
_CONFIG_FIELDS = frozenset({"stream", "keepalive", "stream_limit"})
_FAULT_FIELDS = frozenset({"mode", "count", "retry_after", "delay"})


async def read_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body counts as ``{}``)."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise Invalid("Body must be valid JSON") from exc
    if not isinstance(body, dict):
        raise Invalid("Body must be a JSON object")
    return body


def reject_unknown(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key in body:
        if key not in allowed:
            raise Invalid(f"Unknown field {key!r}", key)


def as_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise Invalid(f"{name} must be a non-empty string of at most {MAX_TEXT} characters", name)
    return value


def as_seconds(value: Any, name: str, maximum: float = 86400.0) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or not 0 <= value <= maximum:
        raise Invalid(f"{name} must be a number of seconds between 0 and {maximum:g}", name)
    return float(value)


def as_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false", name)
    return value


def as_int(value: Any, name: str, minimum: int, maximum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise Invalid(f"{name} must be an integer between {minimum} and {maximum}", name)
    return value


def parse_job_id(value: Any) -> str:
    if value is None:
        return "job_" + secrets.token_hex(6)
    if not isinstance(value, str) or not JOB_ID_RE.fullmatch(value):
        raise Invalid("job_id must be 1-128 characters of [A-Za-z0-9_.:-]", "job_id")
    return value


def parse_step(item: Any, index: int) -> Step:
    name = f"timeline[{index}]"
    if not isinstance(item, dict):
        raise Invalid(f"{name} must be an object with status and after", name)
    reject_unknown(item, frozenset({"status", "after"}))
    status = as_text(item.get("status"), f"{name}.status")
    return Step(status, as_seconds(item.get("after", 0.0), f"{name}.after"))


def parse_timeline(value: Any) -> tuple[Step, ...]:
    if value is None:
        return DEFAULT_TIMELINE
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_STEPS:
        raise Invalid(f"timeline must be a list of 1 to {MAX_STEPS} steps", "timeline")
    steps = tuple(parse_step(item, i) for i, item in enumerate(value))
    for i in range(1, len(steps)):
        if steps[i].after < steps[i - 1].after:
            raise Invalid("timeline offsets must not decrease", f"timeline[{i}].after")
    return steps


def parse_output(value: Any) -> tuple[str, str]:
    """``(url, media_type)``; empty strings mean "derive from the job"."""
    if value is None:
        return "", ""
    if not isinstance(value, dict):
        raise Invalid("output must be an object with url and media_type", "output")
    reject_unknown(value, frozenset({"url", "media_type"}))
    url = as_text(value["url"], "output.url") if "url" in value else ""
    media = as_text(value["media_type"], "output.media_type") if "media_type" in value else ""
    return url, media


def parse_job(body: Mapping[str, Any], now: float) -> SimJob:
    reject_unknown(body, _JOB_FIELDS)
    url, media_type = parse_output(body.get("output"))
    return SimJob(
        job_id=parse_job_id(body.get("job_id")),
        model=as_text(body.get("model", DEFAULT_MODEL), "model"),
        created=now,
        timeline=parse_timeline(body.get("timeline")),
        media_type=media_type,
        url=url,
        error=as_text(body.get("error", DEFAULT_ERROR), "error"),
        appears_after=as_seconds(body.get("appears_after", 0.0), "appears_after"),
        webhook_url=parse_webhook_url(body.get("webhook_url")),
        cache_hit=as_bool(body.get("cache_hit", False), "cache_hit"),
    )


def parse_webhook_url(value: Any) -> str:
    if value is None:
        return ""
    url = as_text(value, "webhook_url")
    if not re.fullmatch(r"https?://\S+", url):
        raise Invalid("webhook_url must be an http(s) URL", "webhook_url")
    return url


def parse_fault(body: Mapping[str, Any]) -> Fault:
    reject_unknown(body, _FAULT_FIELDS)
    mode = body.get("mode")
    if mode not in FAULT_MODES:
        raise Invalid("mode must be one of " + ", ".join(FAULT_MODES), "mode")
    return Fault(
        mode=str(mode),
        remaining=as_int(body.get("count"), "count", 1, 1_000_000),
        retry_after=as_int(body.get("retry_after", 1), "retry_after", 0, 86400),
        delay=as_seconds(body.get("delay", 30.0), "delay", 3600.0),
    )


# --- the simulator ----------------------------------------------------------------------------


@dataclass
class Stats:
    requests: int = 0
    by_code: Counter[str] = field(default_factory=Counter)
    by_job: Counter[str] = field(default_factory=Counter)
    streams_opened: int = 0

    def record(self, job_id: str, status_code: int) -> None:
        self.requests += 1
        self.by_code[str(status_code)] += 1
        self.by_job[job_id] += 1

    def view(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_code": dict(self.by_code),
            "by_job": dict(self.by_job),
            "streams_opened": self.streams_opened,
        }


@dataclass
class StreamConfig:
    """How the v1 stream behaves; ``POST /_sim/config`` changes it."""

    enabled: bool = True  # False: the stream answers 404, as an upstream without it
    keepalive: float = KEEPALIVE
    limit: float = STREAM_LIMIT

    def view(self) -> dict[str, Any]:
        return {"stream": self.enabled, "keepalive": self.keepalive, "stream_limit": self.limit}


class Simulator:
    """All simulator state; one per app, reachable as ``app.state.simulator``."""

    def __init__(self, api_key: str, rate_limit: int | None, clock: Clock,
                 stream: StreamConfig | None = None, webhook_secret: str | None = None) -> None:
        if rate_limit is not None and rate_limit < 1:
            raise ValueError("rate_limit must be at least 1 request per minute")
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.clock = clock
        self.initial_stream = stream or StreamConfig()
        self.webhook_secret = webhook_secret
        self.open_streams = 0  # live connections: not forgotten by a reset
        self.tasks: set[asyncio.Task[None]] = set()
        # A job posted again (a new timeline) wakes the streams that follow its old one.
        self.replaced: dict[str, asyncio.Event] = {}
        self.reset()

    def reset(self) -> None:
        self.jobs: dict[str, SimJob] = {}
        self.faults: deque[Fault] = deque()
        self.stats = Stats()
        self.window = SlidingWindow(self.rate_limit) if self.rate_limit else None
        self.stream = StreamConfig(**vars(self.initial_stream))
        self.webhooks: list[dict[str, Any]] = []
        for task in self.tasks:
            task.cancel()

    def add_job(self, job: SimJob) -> None:
        self.jobs[job.job_id] = job
        waiting = self.replaced.pop(job.job_id, None)
        if waiting is not None:
            waiting.set()

    async def until_replaced(self, job_id: str, seconds: float) -> None:
        """Sleep `seconds`, or less if the job is posted again meanwhile."""
        replaced = self.replaced.setdefault(job_id, asyncio.Event())
        try:
            await asyncio.wait_for(replaced.wait(), seconds)
        except TimeoutError:
            pass

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def take_fault(self, stream: bool = False) -> Fault | None:
        if not self.faults or (self.faults[0].mode == "cut" and not stream):
            return None
        fault = self.faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            self.faults.popleft()
        return fault

    def authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    # -- GET /v1/jobs/{job_id}

    async def get_job(self, request: Request) -> Response:
        job_id = str(request.path_params["job_id"])
        response = await self.answer(request, job_id)
        self.stats.record(job_id, response.status_code)
        if self.window is not None:
            response.headers.update(self.window.headers(self.clock()))
        return response

    async def answer(self, request: Request, job_id: str) -> Response:
        if not self.authorized(request):
            return auth_error()
        if self.window is not None and not self.window.try_acquire(self.clock()):
            return rate_limited(self.window.retry_after(self.clock()))
        fault = self.take_fault()
        if fault is not None and fault.mode == "timeout":
            await asyncio.sleep(fault.delay)
        elif fault is not None:
            return self.fault_response(fault, job_id)
        job = self.jobs.get(job_id)
        body = job.response(self.clock()) if job is not None else None
        return JSONResponse(body) if body is not None else not_found()

    def fault_response(self, fault: Fault, job_id: str) -> Response:
        if fault.mode == "429":
            return rate_limited(fault.retry_after)
        if fault.mode == "500":
            return error_response(500, "InternalError", "An unexpected error occurred")
        if fault.mode == "502":
            return error_response(502, "ProviderError", DEFAULT_ERROR, provider="fal")
        if fault.mode == "401":
            return auth_error()
        if fault.mode == "malformed":
            return Response("{not json", media_type="application/json")
        job = self.jobs.get(job_id)
        status = (job.status(self.clock()) if job is not None else None) or "queued"
        return JSONResponse({"job_id": job_id, "status": status})

    def finish(self, job_id: str, response: Response) -> Response:
        self.stats.record(job_id, response.status_code)
        if self.window is not None:
            response.headers.update(self.window.headers(self.clock()))
        return response

    async def gate(self, request: Request, job_id: str,
                   stream: bool = False) -> Response | Fault | None:
        """What every job request meets first: the key, the rate limit and the next fault.
        Returns an error answer (v1 shape), a fault that shapes the body, or None to go on."""
        if not self.authorized(request):
            return auth_error()
        if self.window is not None and not self.window.try_acquire(self.clock()):
            return rate_limited(self.window.retry_after(self.clock()))
        fault = self.take_fault(stream)
        if fault is None:
            return None
        if fault.mode == "timeout":
            await asyncio.sleep(fault.delay)
            return None
        if fault.mode in ("malformed", "missing_fields", "cut"):
            return fault
        return self.fault_response(fault, job_id)

    # -- GET /v1/jobs/{job_id}/stream

    async def stream_job(self, request: Request) -> Response:
        job_id = str(request.path_params["job_id"])
        if not self.stream.enabled:
            return self.finish(job_id, error_response(404, "NotFoundError", "Not found"))
        found = await self.gate(request, job_id, stream=True)
        if isinstance(found, Response):
            return self.finish(job_id, found)
        job = self.jobs.get(job_id)
        if job is None or job.status(self.clock()) is None:
            return self.finish(job_id, not_found())
        if found is not None and found.mode == "cut":
            events = self.events(job, cut_after=found.delay)
        else:
            events = self.bad_event(found, job_id) if found else self.events(job)
        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        response = StreamingResponse(events, media_type="text/event-stream", headers=headers)
        return self.finish(job_id, response)

    async def events(self, job: SimJob, cut_after: float | None = None) -> AsyncIterator[bytes]:
        """A `status` event at every change, keepalives between, closed at a terminal status
        or after the stream limit (or broken off after `cut_after` seconds)."""
        self.open_streams += 1
        self.stats.streams_opened += 1
        try:
            started = written = self.clock()
            limit = self.stream.limit if cut_after is None else cut_after
            sent: str | None = None
            while True:
                now = self.clock()
                job = self.jobs.get(job.job_id, job)  # the latest timeline posted for it
                body = job.response(now)
                if body is not None and body["status"] != sent:
                    sent, written = body["status"], now
                    yield sse("status", compact(body))
                    if sent in TERMINAL_STATUSES:
                        return
                if now >= started + limit:
                    if cut_after is not None:
                        raise StreamCut(f"stream of {job.job_id} cut (fault)")
                    return
                if now - written >= self.stream.keepalive:
                    written = now
                    yield b": keepalive\n\n"
                wake = min(t for t in (job.next_change(now), written + self.stream.keepalive,
                                       started + limit) if t is not None)
                await self.until_replaced(job.job_id, max(0.0, wake - self.clock()) + 0.0005)
        finally:
            self.open_streams -= 1

    async def bad_event(self, fault: Fault, job_id: str) -> AsyncIterator[bytes]:
        """A malformed fault on a stream: one event that is not a job, then the end."""
        if fault.mode == "malformed":
            yield sse("status", "{not json")
        else:
            yield sse("status", compact({"job_id": job_id, "status": "queued"}))

    # -- GET /v2/jobs/{id} and /v2/jobs/{id}/status

    async def get_job_v2(self, request: Request) -> Response:
        return await self.answer_v2(request, lambda job, now: job.response_v2(now))

    async def get_status_v2(self, request: Request) -> Response:
        return await self.answer_v2(request, status_v2)

    async def answer_v2(self, request: Request,
                        render: Callable[[SimJob, float], dict[str, Any] | None]) -> Response:
        job_id = str(request.path_params["job_id"])
        found = await self.gate(request, job_id)
        if isinstance(found, JSONResponse):
            return self.finish(job_id, as_v2_error(found))
        if isinstance(found, Response):
            return self.finish(job_id, found)
        if found is not None:
            body = {"id": job_id} if found.mode == "missing_fields" else None
            bad = JSONResponse(body) if body else Response("{not json",
                                                           media_type="application/json")
            return self.finish(job_id, bad)
        job = self.jobs.get(job_id)
        shown = render(job, self.clock()) if job is not None else None
        if shown is None:
            return self.finish(job_id, v2_error(404, "job_not_found", "Job not found"))
        return self.finish(job_id, JSONResponse(shown))

    # -- v2 webhooks: POST {webhook_url} at the terminal status, signed

    def schedule_webhook(self, job: SimJob) -> None:
        at = job.terminal_at()
        if job.webhook_url and at is not None:
            task = asyncio.create_task(self.send_webhook(job, at))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def send_webhook(self, job: SimJob, at: float) -> None:
        await asyncio.sleep(max(0.0, at - self.clock()))
        snapshot = job.response_v2(self.clock())
        assert snapshot is not None
        body = compact(snapshot).encode()
        event = "job." + str(snapshot["status"])
        async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
            for attempt in range(WEBHOOK_RETRIES + 1):
                headers = varg_webhook_headers(self.webhook_secret, body, event,
                                               int(self.clock() * 1000))
                code, error = await post_once(client, job.webhook_url, body, headers)
                self.webhooks.append({"job_id": job.job_id, "url": job.webhook_url,
                                      "attempt": attempt + 1, "status_code": code,
                                      "error": error, "at": self.clock()})
                if code is not None and 200 <= code < 300:
                    return
                await asyncio.sleep(min(30.0, WEBHOOK_BACKOFF * 2**attempt))

    # -- control API

    async def create_job(self, request: Request) -> Response:
        job = parse_job(await read_object(request), self.clock())
        self.add_job(job)
        self.schedule_webhook(job)
        return JSONResponse(job.control_view(self.clock()), status_code=201)

    async def list_jobs(self, request: Request) -> Response:
        now = self.clock()
        return JSONResponse({"data": [job.control_view(now) for job in self.jobs.values()]})

    async def view_job(self, request: Request) -> Response:
        job = self.jobs.get(str(request.path_params["job_id"]))
        if job is None:
            return not_found()
        return JSONResponse(job.control_view(self.clock()))

    async def create_fault(self, request: Request) -> Response:
        fault = parse_fault(await read_object(request))
        self.add_fault(fault)
        body = fault.view() | {"pending": sum(f.remaining for f in self.faults)}
        return JSONResponse(body, status_code=201)

    async def list_faults(self, request: Request) -> Response:
        return JSONResponse({"data": [fault.view() for fault in self.faults]})

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.view() | {"streams_open": self.open_streams})

    async def configure(self, request: Request) -> Response:
        body = await read_object(request)
        reject_unknown(body, _CONFIG_FIELDS)
        if "stream" in body:
            if not isinstance(body["stream"], bool):
                raise Invalid("stream must be true or false", "stream")
            self.stream.enabled = body["stream"]
        if "keepalive" in body:
            self.stream.keepalive = max(0.01, as_seconds(body["keepalive"], "keepalive", 3600))
        if "stream_limit" in body:
            self.stream.limit = max(0.01, as_seconds(body["stream_limit"], "stream_limit"))
        return JSONResponse(self.stream.view())

    async def list_webhooks(self, request: Request) -> Response:
        return JSONResponse({"data": self.webhooks})

    async def reset_all(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"reset": True})


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Invalid)
    return error_response(400, "ValidationError", exc.message, field=exc.field)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(405, "MethodNotAllowed", "Method not allowed", headers=exc.headers)
    return error_response(404, "NotFoundError", "Not found")


def create_simulator(
    api_key: str = "varg_sim",
    rate_limit: int | None = None,
    *,
    clock: Clock = time.time,
    stream: bool = True,
    keepalive: float = KEEPALIVE,
    stream_limit: float = STREAM_LIMIT,
    webhook_secret: str | None = None,
) -> Starlette:
    """A Starlette app that simulates Varg's job endpoints (v1, its stream, v2) plus the
    ``/_sim`` control API.

    ``rate_limit`` is requests per minute for ``api_key`` (a sliding 60-second window; a stream
    connection counts as one request); ``clock`` returns unix seconds and exists so tests can
    move time without sleeping (streams and webhooks wait on it in real time);
    ``stream=False`` answers the stream with 404; ``webhook_secret`` signs v2 webhooks.
    """
    config = StreamConfig(stream, keepalive, stream_limit)
    sim = Simulator(api_key, rate_limit, clock, config, webhook_secret)
    routes = [
        Route("/v1/jobs/{job_id}", sim.get_job, methods=["GET"]),
        Route("/v1/jobs/{job_id}/stream", sim.stream_job, methods=["GET"]),
        Route("/v2/jobs/{job_id}", sim.get_job_v2, methods=["GET"]),
        Route("/v2/jobs/{job_id}/status", sim.get_status_v2, methods=["GET"]),
        Route("/_sim/jobs", sim.create_job, methods=["POST"]),
        Route("/_sim/jobs", sim.list_jobs, methods=["GET"]),
        Route("/_sim/jobs/{job_id}", sim.view_job, methods=["GET"]),
        Route("/_sim/faults", sim.create_fault, methods=["POST"]),
        Route("/_sim/faults", sim.list_faults, methods=["GET"]),
        Route("/_sim/config", sim.configure, methods=["POST"]),
        Route("/_sim/stats", sim.get_stats, methods=["GET"]),
        Route("/_sim/webhooks", sim.list_webhooks, methods=["GET"]),
        Route("/_sim/reset", sim.reset_all, methods=["POST"]),
    ]
    handlers = {Invalid: _invalid, 404: _http_error, 405: _http_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.simulator = sim
    return app
