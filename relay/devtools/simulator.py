"""A local, in-memory simulator of the Varg Gateway API's ``GET /v1/jobs/{job_id}``.

It speaks the seed contract (``shared/seeds/varg-get-job-openapi.txt``) and adds a control API
under ``/_sim`` (no auth) to script jobs, inject faults and read request statistics:

- ``POST /_sim/jobs``: create or replace a job with a status timeline (``cache_hit: true``
  reports it served from Varg's cache).
- ``GET /_sim/jobs`` / ``GET /_sim/jobs/{job_id}``: control views (timeline, changes, current).
- ``POST /_sim/faults`` / ``GET /_sim/faults``: queue faults for the next ``GET /v1/jobs`` requests.
- ``GET /_sim/stats``: request counts by status code and by job.
- ``POST /_sim/reset``: forget jobs, faults, stats and the rate-limit window.

A job's status is the last timeline step whose offset (seconds after creation) has passed; until
the first step (or ``appears_after``) has passed, the job answers 404 like an unknown job.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["Change", "SimJob", "Simulator", "Step", "create_simulator", "status_at"]

Clock = Callable[[], float]

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
FAULT_MODES = ("429", "500", "502", "401", "timeout", "malformed", "missing_fields")
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

    def cache_key(self) -> str:
        return "sha256:" + hashlib.sha256(f"{self.model}\n{self.job_id}".encode()).hexdigest()

    def control_view(self, now: float) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "model": self.model,
            "created_at": iso(self.created),
            "appears_after": self.appears_after,
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


# --- input validation -------------------------------------------------------------------------

_JOB_FIELDS = frozenset(
    {"job_id", "model", "timeline", "output", "error", "appears_after", "cache_hit"}
)
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
        cache_hit=as_bool(body.get("cache_hit", False), "cache_hit"),
    )


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

    def record(self, job_id: str, status_code: int) -> None:
        self.requests += 1
        self.by_code[str(status_code)] += 1
        self.by_job[job_id] += 1

    def view(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_code": dict(self.by_code),
            "by_job": dict(self.by_job),
        }


class Simulator:
    """All simulator state; one per app, reachable as ``app.state.simulator``."""

    def __init__(self, api_key: str, rate_limit: int | None, clock: Clock) -> None:
        if rate_limit is not None and rate_limit < 1:
            raise ValueError("rate_limit must be at least 1 request per minute")
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.jobs: dict[str, SimJob] = {}
        self.faults: deque[Fault] = deque()
        self.stats = Stats()
        self.window = SlidingWindow(self.rate_limit) if self.rate_limit else None

    def add_job(self, job: SimJob) -> None:
        self.jobs[job.job_id] = job

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def take_fault(self) -> Fault | None:
        if not self.faults:
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

    # -- control API

    async def create_job(self, request: Request) -> Response:
        job = parse_job(await read_object(request), self.clock())
        self.add_job(job)
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
        return JSONResponse(self.stats.view())

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
) -> Starlette:
    """A Starlette app that simulates ``GET /v1/jobs/{job_id}`` plus the ``/_sim`` control API.

    ``rate_limit`` is requests per minute for ``api_key`` (a sliding 60-second window); ``clock``
    returns unix seconds and exists so tests can move time without sleeping.
    """
    sim = Simulator(api_key, rate_limit, clock)
    routes = [
        Route("/v1/jobs/{job_id}", sim.get_job, methods=["GET"]),
        Route("/_sim/jobs", sim.create_job, methods=["POST"]),
        Route("/_sim/jobs", sim.list_jobs, methods=["GET"]),
        Route("/_sim/jobs/{job_id}", sim.view_job, methods=["GET"]),
        Route("/_sim/faults", sim.create_fault, methods=["POST"]),
        Route("/_sim/faults", sim.list_faults, methods=["GET"]),
        Route("/_sim/stats", sim.get_stats, methods=["GET"]),
        Route("/_sim/reset", sim.reset_all, methods=["POST"]),
    ]
    handlers = {Invalid: _invalid, 404: _http_error, 405: _http_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.simulator = sim
    return app
