"""`POST /v1/ingest/varg`: Varg's own v2 webhooks, taken as hints (the route: routes.py).

Varg POSTs a job's snapshot to the `options.webhook_url` given at creation once the job is
terminal, signed `X-Varg-Signature: v1=<hex HMAC-SHA256>`. Varg's docs name the header and the
scheme but not what is signed; the relay checks what Varg's own SDK signs and Stripe does: the
HMAC-SHA256, under VARG_WEBHOOK_SECRET, of "{X-Varg-Timestamp}.{raw body}", the timestamp in
Unix seconds or milliseconds and within 5 minutes of now (a Stripe-style `t=` inside the
signature header is read too). Several `v1=` values may be sent (secret rotation); one must
match.

A verified webhook only makes its job due now (store `hint`): the poll that follows is the
source of truth. So a forged webhook is refused (401), a replayed one is ignored, and even a
genuine one sets no status by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from relay.api import validation
from relay.errors import AuthError, ValidationError

TOLERANCE = 300.0  # seconds a signed timestamp may be away from now, as Stripe allows
_PAIR = re.compile(r"([a-z0-9]+)=([^,\s]+)")


def signature_parts(header: str) -> tuple[str | None, list[str]]:
    """(`t=` timestamp if any, every `v1=` signature) of an X-Varg-Signature header."""
    pairs = _PAIR.findall(header)
    stamp = next((value for key, value in pairs if key == "t"), None)
    return stamp, [value.lower() for key, value in pairs if key == "v1"]


def timestamp_seconds(text: str) -> float | None:
    """A Unix timestamp in seconds or milliseconds (Varg's SDK sends milliseconds)."""
    if not text.isdigit() or len(text) > 16:
        return None
    value = float(text)
    return value / 1000 if value > 1e11 else value


def verify(secret: str, body: bytes, headers: Mapping[str, str], now: float) -> bool:
    """Is this Varg's webhook, signed with `secret`, and recent?"""
    stamp, signatures = signature_parts(headers.get("x-varg-signature", ""))
    stamp = headers.get("x-varg-timestamp", stamp or "").strip()
    seconds = timestamp_seconds(stamp)
    if not signatures or seconds is None or abs(now - seconds) > TOLERANCE:
        return False
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
    digest = expected.hexdigest()
    # Compare with every candidate, so the time taken says nothing about which matched.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(candidate, digest)
    return matched


def replay_key(headers: Mapping[str, str]) -> str:
    """What identifies one signed delivery: a retry by Varg is signed anew, a replay is not."""
    seen = headers.get("x-varg-timestamp", "") + "|" + headers.get("x-varg-signature", "")
    return hashlib.sha256(seen.encode()).hexdigest()[:32]


def hinted_job_id(body: dict[str, Any]) -> str:
    """The job a webhook is about: v2's `id` (or v1's `job_id`)."""
    if "id" in body:
        return validation.job_id(body["id"], field="id")
    if "job_id" in body:
        return validation.job_id(body["job_id"])
    raise ValidationError("the webhook names no job (`id`)", field="id")


def refuse() -> AuthError:
    return AuthError("X-Varg-Signature does not verify with VARG_WEBHOOK_SECRET")
