"""Input rules of the relay API (contract §4), as pure functions raising ValidationError."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from relay.delivery.urls import UnsafeURL, validate_url_syntax
from relay.errors import NotFoundError, ValidationError
from relay.events import ALL_EVENTS
from relay.ids import DELIVERY_ID, SUBSCRIPTION_ID
from relay.strictjson import is_strict

# The patterns are also the OpenAPI document's (relay/api/openapi.py), so the schema states
# exactly what is enforced. A job id of dots alone is refused: in a URL path it means a folder.
JOB_ID_PATTERN = r"^[A-Za-z0-9_.:-]*[A-Za-z0-9_:-][A-Za-z0-9_.:-]*$"
JOB_ID_MAX = 128
CURSOR_PATTERN = r"^(sub_[0-9A-Z]{26})?$"
JOB_ID = re.compile(JOB_ID_PATTERN)
CURSOR = re.compile(CURSOR_PATTERN)
METADATA_MAX_BYTES = 4096
BODY_MAX_BYTES = 64 * 1024
PAGE_DEFAULT, PAGE_MAX = 20, 100
SUBSCRIPTION_FIELDS = {"job_id", "url", "events", "metadata"}


@dataclass(frozen=True)
class NewSubscription:
    job_id: str
    url: str
    events: list[str]
    metadata: dict[str, Any]


def _shown(value: Any, limit: int = 64) -> str:
    """`repr(value)` cut short: error messages must not echo large inputs back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf, which cannot be sent back as JSON
        raise ValueError(f"{text} is out of range")
    return value


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        # Strict UTF-8 first: json.loads(bytes) would let encoded surrogates (ED A0 80) through.
        text = raw.decode("utf-8")
        body = json.loads(text, parse_constant=_no_constants, parse_float=_finite_float)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ValidationError("the body is not valid JSON in UTF-8") from None
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    _refuse_lone_surrogates(body)
    return body


def _refuse_lone_surrogates(body: dict[str, Any]) -> None:
    """A lone surrogate (`"\\ud800"`) parses, but can never be written out as UTF-8: stored,
    it would break every answer that shows it. Name the field that holds one."""
    if is_strict(body):
        return
    for name, value in body.items():
        if not is_strict(name):
            raise ValidationError("a field name holds a lone surrogate (\\ud800-\\udfff); "
                                  "JSON text must be valid Unicode")
        if not is_strict(value):
            raise ValidationError(f"{name} holds a lone surrogate (\\ud800-\\udfff); JSON "
                                  "text must be valid Unicode", field=name)


def new_subscription(body: dict[str, Any]) -> NewSubscription:
    unknown = sorted(set(body) - SUBSCRIPTION_FIELDS)
    if unknown:
        raise ValidationError(f"unknown field {_shown(unknown[0])}", field=unknown[0])
    return NewSubscription(
        job_id=job_id(body.get("job_id")),
        url=callback_url(body.get("url")),
        events=events(body.get("events")),
        metadata=metadata(body.get("metadata")),
    )


def job_id(value: Any, field: str = "job_id") -> str:
    if not isinstance(value, str) or len(value) > JOB_ID_MAX or not JOB_ID.fullmatch(value):
        raise ValidationError(
            "job_id must be 1-128 characters of letters, digits and _ . : -", field=field
        )
    return value


def callback_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError("url is required and must be a string", field="url")
    try:
        return validate_url_syntax(value)
    except UnsafeURL as exc:
        raise ValidationError(str(exc), field="url") from None


def events(value: Any) -> list[str]:
    if value is None:
        return [str(e) for e in ALL_EVENTS]
    known = {str(e) for e in ALL_EVENTS}
    if not isinstance(value, list) or not value:
        raise ValidationError("events must be a non-empty list of event types", field="events")
    for item in value:
        if not isinstance(item, str) or item not in known:
            raise ValidationError(
                f"unknown event type {_shown(item)}; known: {', '.join(sorted(known))}",
                field="events",
            )
    return list(dict.fromkeys(value))


def metadata(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError("metadata must be a JSON object", field="metadata")
    if len(json.dumps(value, separators=(",", ":")).encode()) > METADATA_MAX_BYTES:
        raise ValidationError("metadata must be at most 4 KiB of JSON", field="metadata")
    return value


def page_limit(value: str | None) -> int:
    if value is None:
        return PAGE_DEFAULT
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= PAGE_MAX:
        raise ValidationError(f"limit must be a whole number from 1 to {PAGE_MAX}", field="limit")
    return int(value)


def cursor(value: str | None) -> str | None:
    if value is None:
        return None
    if not CURSOR.fullmatch(value):
        raise ValidationError("cursor is not one this API returned", field="cursor")
    return value or None


# --- the dashboard's routes (relay/api/dashboard.py) ----------------------------------------

STATUS = re.compile(r"[a-z_]{1,32}")
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
# A position in the list of deliveries: after a subscription, or after one of its deliveries.
DELIVERY_CURSOR = re.compile(r"(sub_[0-9A-Z]{26})(?:\.(msg_[0-9A-Za-z]{1,64}))?")
RETRY_FIELDS = {"since"}


def job_status(value: str | None) -> str | None:
    """A job status to filter by: Varg's, or the relay's `not_found` and `watch_expired`."""
    if value is None or value == "":
        return None
    if not STATUS.fullmatch(value):
        raise ValidationError("status must be a job status such as completed", field="status")
    return value


def job_query(value: str | None) -> str | None:
    """Part of a job id to search for."""
    if value is None or value == "":
        return None
    return job_id(value, field="q")


def delivery_status(value: str | None) -> str | None:
    if value is None:
        return None
    if value not in DELIVERY_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(DELIVERY_STATUSES)}",
                              field="status")
    return value


def since(value: Any, required: bool = False) -> float | None:
    """An ISO 8601 time (UTC when it has no offset), as Unix seconds."""
    if value is None:
        if required:
            raise ValidationError("since is required: an ISO 8601 time", field="since")
        return None
    try:
        if not isinstance(value, str) or len(value) > 64:
            raise ValueError(value)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError):
        raise ValidationError(
            "since must be an ISO 8601 time such as 2026-01-31T12:00:00Z", field="since"
        ) from None


def delivery_cursor(value: str | None) -> tuple[str, str | None] | None:
    if value is None or value == "":
        return None
    found = DELIVERY_CURSOR.fullmatch(value)
    if not found:
        raise ValidationError("cursor is not one this API returned", field="cursor")
    return found[1], found[2]


def retry_since(body: dict[str, Any]) -> float:
    unknown = sorted(set(body) - RETRY_FIELDS)
    if unknown:
        raise ValidationError(f"unknown field {_shown(unknown[0])}", field=unknown[0])
    found = since(body.get("since"), required=True)
    assert found is not None
    return found


def subscription_id(value: str) -> str:
    """A path's subscription id: one of the shape the relay issues, else 404 (before Redis)."""
    if not SUBSCRIPTION_ID.fullmatch(value):
        raise NotFoundError(f"no subscription {value[:64]}")
    return value


def delivery_id(value: str, sid: str) -> str:
    if not DELIVERY_ID.fullmatch(value):
        raise NotFoundError(f"no delivery {value[:64]} for subscription {sid}")
    return value
