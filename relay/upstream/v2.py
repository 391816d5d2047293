"""Varg's v2 API, adapted so the rest of the relay sees one job shape.

v2 differs from v1 where the relay looks (docs: the v2 API reference, "Migrating from v1"):
jobs carry `id` rather than `job_id`; statuses go `queued -> submitting -> running ->
completed | failed | cancelled`; the model sits in `input.model`; outputs are a list; errors
are `{"error": {"code", "message"}}`; `GET /jobs/{id}/status` is a lighter poll without the
output, and there is no SSE stream (v2 offers webhooks instead: relay/api/ingest.py).

The relay polls `GET {VARG_API_URL}/jobs/{id}` (the full job, so a webhook carries the output)
and reads it through `normalise`; events carry the v2 job as received.
"""

from __future__ import annotations

from typing import Any

import httpx

from relay.strictjson import loads_lenient
from relay.upstream.client import Outcome, PollResult, classify

# v2's statuses between queued and a terminal one: announced as job.processing (relay/events.py).
RUNNING_STATUSES = ("submitting", "running")


def api_base(url: str, version: str) -> str:
    """The base URL for `version`: a VARG_API_URL left at Varg's `/v1` means its `/v2` in v2."""
    url = url.rstrip("/")
    if version == "v2" and url.endswith("/v1"):
        return url[: -len("/v1")] + "/v2"
    return url


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def normalise(job: dict[str, Any]) -> dict[str, Any] | None:
    """A v2 job as the v1 fields the relay reads (`job_id`, `status`, `model`, `created_at`,
    `completed_at`), or None when it is not a job."""
    job_id, status = _text(job.get("id")), _text(job.get("status"))
    if not job_id or not status:
        return None
    given = job.get("input")
    model = (_text(job.get("model")) or (isinstance(given, dict) and _text(given.get("model")))
             or _text(job.get("tool")) or "")
    found = {"job_id": job_id, "status": status, "model": model,
             "created_at": _text(job.get("created_at")) or ""}
    if _text(job.get("completed_at")):
        found["completed_at"] = job["completed_at"]
    return found


def parse_v2_job(content: bytes) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(normalised job, job as received), or None when the body is not a v2 job."""
    try:
        job = loads_lenient(content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(job, dict):
        return None
    found = normalise(job)
    return None if found is None else (found, job)


def classify_v2(response: httpx.Response, now: float, content: bytes | None = None) -> PollResult:
    """Like the v1 `classify`: the status code decides; a 200 must be a v2 job (`content` is
    its body, None when past the cap)."""
    if response.status_code != 200:
        return classify(response, now, content)
    headers = {k.lower(): v for k, v in response.headers.items()
               if k.lower().startswith("x-ratelimit")}
    parsed = parse_v2_job(content) if content is not None else None
    if parsed is None:
        return PollResult(Outcome.malformed, status_code=200, rate_headers=headers)
    return PollResult(Outcome.ok, job=parsed[0], received=parsed[1], status_code=200,
                      rate_headers=headers)
