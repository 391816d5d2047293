"""Receive varg-relay webhooks in your own service (Starlette, FastAPI, Flask, Django, ...).

    from varg_relay_receiver import InvalidWebhook, WebhookReceiver
    receiver = WebhookReceiver(secret="whsec_...")    # rotation: secrets=["whsec_new", "whsec_old"]
    receiver.process(body_bytes, headers, handle)     # handle(event) once per webhook-id

Every method verifies the Standard Webhooks signature and timestamp (5 minutes tolerance) and
parses the body into an `Event`; it raises `InvalidWebhook` for a bad signature, a timestamp
too old or too new, missing headers or a malformed body: answer 400 then. The relay delivers
at least once, and a retry carries the same `webhook-id`, so duplicates are dropped by that id:

- `process(body, headers, handle)` calls `handle(event)` unless the id was handled already. The
  id is claimed before `handle` runs (a duplicate arriving meanwhile is dropped) and released
  if `handle` raises (the exception goes on: answer 5xx, and the relay's retry is handled).
- `receive(body, headers)` returns the event, or None for an id already seen; the id counts as
  seen at once, so if your handling then fails, the relay's retry is dropped.
- `verify(body, headers)` does no dedupe at all.

`MemorySeen` (the default) lives in one process; with several workers or hosts use `RedisSeen`.
Install this package alone: it depends on `standardwebhooks` and nothing else.
"""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

__all__ = [
    "DAY",
    "Event",
    "InvalidWebhook",
    "MemorySeen",
    "RedisSeen",
    "ReleasableSeenStore",
    "SeenStore",
    "WebhookReceiver",
]

DAY = 24 * 60 * 60


class InvalidWebhook(Exception):
    """The webhook did not verify or its body is not a varg-relay event: answer 400."""


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    timestamp: datetime
    subscription_id: str
    job_id: str
    status: str
    previous_status: str | None
    job: dict[str, Any]
    metadata: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)


class SeenStore(Protocol):
    def add(self, webhook_id: str) -> bool:
        """Record the id; True if it was not seen before (within the store's TTL)."""
        ...


class ReleasableSeenStore(SeenStore, Protocol):
    def discard(self, webhook_id: str) -> None:
        """Forget the id, so that its next delivery counts as new."""
        ...


class MemorySeen:
    """In-process, bounded: the oldest ids go first when full or older than `ttl` seconds."""

    def __init__(
        self, max_items: int = 10_000, ttl: float = DAY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_items < 1 or ttl <= 0:
            raise ValueError("max_items and ttl must be positive")
        self.max_items, self.ttl, self._clock = max_items, ttl, clock
        self._expiry: OrderedDict[str, float] = OrderedDict()
        # Flask and Django serve requests from several threads.
        self._lock = threading.Lock()

    def add(self, webhook_id: str) -> bool:
        now = self._clock()
        with self._lock:
            self._evict(now)
            if webhook_id in self._expiry:
                return False
            self._expiry[webhook_id] = now + self.ttl
            if len(self._expiry) > self.max_items:
                self._expiry.popitem(last=False)
            return True

    def discard(self, webhook_id: str) -> None:
        with self._lock:
            self._expiry.pop(webhook_id, None)

    def __len__(self) -> int:
        return len(self._expiry)

    def _evict(self, now: float) -> None:
        # One TTL for all, so insertion order is expiry order: stop at the first live id.
        while self._expiry:
            oldest, expires = next(iter(self._expiry.items()))
            if expires > now:
                return
            del self._expiry[oldest]


class _SyncRedis(Protocol):
    def set(self, name: str, value: str, *, nx: bool, ex: int) -> Any: ...

    def delete(self, *names: str) -> Any: ...


class RedisSeen:
    """Shared across processes: `SET <prefix><id> 1 NX EX ttl` with a sync redis-py client."""

    def __init__(
        self, client: _SyncRedis, ttl: int = DAY, prefix: str = "varg-relay:seen:"
    ) -> None:
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        self.client, self.ttl, self.prefix = client, ttl, prefix

    def add(self, webhook_id: str) -> bool:
        result = self.client.set(self.prefix + webhook_id, "1", nx=True, ex=self.ttl)
        if inspect.isawaitable(result):
            # An un-awaited coroutine is truthy: every duplicate would pass as new.
            if inspect.iscoroutine(result):
                result.close()
            raise TypeError("RedisSeen needs a sync redis client (redis.Redis), not redis.asyncio")
        return bool(result)

    def discard(self, webhook_id: str) -> None:
        self.client.delete(self.prefix + webhook_id)


class WebhookReceiver:
    def __init__(
        self, secret: str | None = None, *, secrets: Sequence[str] = (),
        seen: SeenStore | None = None,
    ) -> None:
        keys = ([secret] if secret else []) + list(secrets)
        if not keys:
            raise ValueError("give a secret or secrets")
        self._webhooks = [Webhook(key) for key in keys]
        self.seen: SeenStore = seen if seen is not None else MemorySeen()

    def process(
        self, body: bytes | str, headers: Mapping[str, str], handle: Callable[[Event], object]
    ) -> Event | None:
        """Verify, parse and `handle(event)` unless this webhook-id was handled already; the
        event, or None for a duplicate. If `handle` raises, the id is released and the
        exception goes on, so that the relay's retry (answer it 5xx) is handled."""
        seen = self.seen
        if not hasattr(seen, "discard"):
            raise TypeError("process() needs a seen store with discard(); use receive()")
        event = self.verify(body, headers)
        if not seen.add(event.id):
            return None
        try:
            handle(event)
        except BaseException:
            seen.discard(event.id)
            raise
        return event

    def receive(self, body: bytes | str, headers: Mapping[str, str]) -> Event | None:
        """Verify and parse; None if this webhook-id was already seen (a redelivery)."""
        event = self.verify(body, headers)
        return event if self.seen.add(event.id) else None

    def verify(self, body: bytes | str, headers: Mapping[str, str]) -> Event:
        """Verify and parse without dedupe. Raises InvalidWebhook."""
        lowered = {key.lower(): value for key, value in headers.items()}
        self._check_signature(body, lowered)
        return _parse(lowered["webhook-id"], body)

    def _check_signature(self, body: bytes | str, headers: dict[str, str]) -> None:
        errors: list[str] = []
        for webhook in self._webhooks:
            try:
                webhook.verify(body, headers, json_parse=False)
                return
            # The library lets ValueError out for non-UTF-8 bodies and malformed signatures.
            except (WebhookVerificationError, ValueError) as exc:
                errors.append(str(exc) or type(exc).__name__)
        # Header and timestamp errors are the same for every secret; report the first.
        raise InvalidWebhook(errors[0])


def _parse(webhook_id: str, body: bytes | str) -> Event:
    try:
        raw = json.loads(body)
        data = raw["data"]
        return Event(
            id=webhook_id,
            type=_str(raw["type"]),
            timestamp=datetime.fromisoformat(raw["timestamp"]),
            subscription_id=_str(data["subscription_id"]),
            job_id=_str(data["job_id"]),
            status=_str(data["status"]),
            previous_status=_optional_str(data.get("previous_status")),
            # `job` is null for job.not_found and the like; `raw` keeps the original.
            job=_dict(data.get("job")),
            metadata=_dict(data.get("metadata")),
            raw=raw,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidWebhook(f"not a varg-relay event: {exc!r}") from exc


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _optional_str(value: object) -> str | None:
    return None if value is None else _str(value)


def _dict(value: object) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {value!r}")
    return value
