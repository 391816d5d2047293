"""Stored records as the API shows them."""

from __future__ import annotations

import json
from typing import Any

from relay.events import decode_events
from relay.times import iso


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
