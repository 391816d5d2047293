"""Stored records as the API shows them."""

from __future__ import annotations

import json
from typing import Any

from starlette import responses

from relay.events import decode_events
from relay.strictjson import clean
from relay.times import iso, parse_time


class JSONResponse(responses.JSONResponse):
    """Strict JSON (Starlette's renderer refuses NaN and cannot encode a lone surrogate). A
    value that is not, stored before the input checks existed, is cleaned (NaN as null, a
    lone surrogate as U+FFFD) instead of making every answer that shows it a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # UnicodeEncodeError is one
            return super().render(clean(content))


def subscription(sub: dict[str, str]) -> dict[str, Any]:
    return {
        "id": sub["id"],
        "job_id": sub["job_id"],
        "url": sub["url"],
        "events": decode_events(sub["events"]),
        "metadata": json.loads(sub["metadata"]),
        "state": sub["state"],
        "last_status": sub.get("last_status") or None,
        "created_at": iso(sub["created_at"]),
        "updated_at": iso(sub["updated_at"]),
    }


def attempt(raw: str) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(raw)
    record["at"] = iso(record["at"])
    return record


def delivery(msg: dict[str, str], attempts: list[str]) -> dict[str, Any]:
    return {
        "id": msg["id"],
        "subscription_id": msg["sub_id"],
        "event_type": msg["event_type"],
        "status": msg["status"],
        "attempts": [attempt(a) for a in attempts],
        "next_attempt_at": iso(msg.get("next_attempt_at")) if msg["status"] == "pending" else None,
        "created_at": iso(msg["created_at"]),
        "payload": json.loads(msg["body"]),
    }


def job_view(job_id: str, watch: dict[str, str], subs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "status": watch.get("status") or None,
        "job": json.loads(watch["job"]) if watch.get("job") else None,
        "last_polled_at": iso(watch.get("last_polled_at")),
        "next_poll_at": iso(watch.get("next_poll_at")),
        "watching": watch.get("active") == "1",
        "streaming": watch.get("stream") == "1",
        "polls": int(watch.get("polls") or 0),
        "subscriptions": subs,
    }


def _moment(value: str | None) -> str | None:
    """A stored time as the API shows it; None for one out of range."""
    try:
        return iso(value)
    except (ValueError, OverflowError, OSError):
        return None


def job_summary(job_id: str, watch: dict[str, str], subscriptions: int) -> dict[str, Any]:
    """A row of `GET /v1/jobs`: the job as last polled, without its JSON."""
    created = parse_time(watch.get("created_at")) or watch.get("started_at")
    return {
        "job_id": job_id,
        "status": watch.get("status") or None,
        "model": watch.get("model") or None,
        "created_at": _moment(str(created)) if created else None,
        "watching": watch.get("active") == "1",
        "last_polled_at": _moment(watch.get("last_polled_at")),
        "next_poll_at": _moment(watch.get("next_poll_at")),
        "polls": int(watch.get("polls") or 0),
        "subscription_count": subscriptions,
    }


def timeline(found: list[tuple[dict[str, str], list[str]]]) -> list[dict[str, Any]]:
    """Each status the relay observed (one poll's observation), with the webhooks it produced,
    oldest first."""
    entries: dict[tuple[float, str], dict[str, Any]] = {}
    for msg, attempts in found:
        status = str(json.loads(msg["body"])["data"]["status"])
        at = float(msg.get("observed_at") or msg["created_at"])
        entry = entries.setdefault((at, status), {"status": status, "observed_at": iso(at),
                                                  "webhooks": []})
        entry["webhooks"].append({
            "id": msg["id"], "subscription_id": msg["sub_id"], "event_type": msg["event_type"],
            "status": msg["status"], "attempts": len(attempts),
        })
    for entry in entries.values():
        entry["webhooks"].sort(key=lambda w: w["subscription_id"])
    return [entries[key] for key in sorted(entries)]
