"""The delivery chain: one arq job per subscription drains its outbox, oldest event first.

The job id is `deliver:{sid}`, so arq runs at most one chain per subscription; that is what
keeps events in order. A failed attempt raises `Retry(defer=...)`, which keeps the chain (and
with it the subscription's place in line) until the next attempt is due.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from arq import Retry
from arq.connections import ArqRedis

from relay import metrics
from relay.delivery.retry import retry_delay
from relay.delivery.send import Attempt, send
from relay.delivery.slots import Busy
from relay.resources import Resources
from relay.store.keys import DELIVERY_QUEUE

log = logging.getLogger("relay.delivery")
MARGIN = 5.0  # seconds kept free at the end of a chain's run, for recording the last attempt


def job_timeout(delivery_timeout: float) -> float:
    """Room for at least two attempts; arq's in-progress lease is this plus 10 s."""
    return 2 * delivery_timeout + 2 * MARGIN


def chain_id(sid: str) -> str:
    return f"deliver:{sid}"


async def kick(redis: ArqRedis, sid: str, defer: float = 0.0) -> bool:
    """Start the subscription's chain unless one is queued or running (arq drops the duplicate);
    whether a chain was queued."""
    job = await redis.enqueue_job(
        "deliver", sid, _job_id=chain_id(sid), _queue_name=DELIVERY_QUEUE,
        _defer_by=defer if defer > 0 else None,
    )
    return job is not None


async def deliver(ctx: dict[str, Any], sid: str) -> None:
    res: Resources = ctx["resources"]
    budget_end = time.monotonic() + job_timeout(res.settings.delivery_timeout)
    while (head := await res.store.outbox_head(sid)) is not None:
        msg, sub, attempts = head
        if sub.get("state") == "deleted":
            return
        wait = float(msg["next_attempt_at"] or 0) - time.time()
        if wait > 0:
            raise Retry(defer=wait)
        if time.monotonic() + res.settings.delivery_timeout + MARGIN > budget_end:
            raise Retry(defer=0)  # continue in a fresh run, within arq's timeout
        await attempt_once(res, msg, sub, attempts, int(ctx.get("job_try") or 1))


async def attempt_once(
    res: Resources, msg: dict[str, str], sub: dict[str, str], attempts: int, tries: int = 1
) -> None:
    """One attempt at the head event; `tries` counts the chain's runs (arq's job_try)."""
    settings = res.settings
    owner = sub.get("owner", "")
    try:
        attempt = await send(
            res.delivery_http, sub["url"], msg["id"], msg["body"].encode(),
            settings.signing_secrets, settings.delivery_timeout,
            settings.allow_private_callbacks,
            admit=lambda destination: res.slots.hold(destination, owner, tries),
        )
    except Busy as busy:
        # Nothing was sent. The chain keeps its place (and the subscription its order); a
        # worker slot is not held waiting for the receiver to free one.
        metrics.DELIVERIES_DEFERRED.labels(busy.reason).inc()
        raise Retry(defer=busy.defer) from None
    outcome, delay = classify(attempt, attempts + 1 - int(msg.get("retry_base") or 0),
                              settings.retry_schedule)
    next_at = None if delay is None else time.time() + delay
    await res.store.record_attempt(msg, attempt.record(), outcome, next_at)
    observe(msg, attempt, outcome, attempts + 1, delay)
    if delay is not None:
        raise Retry(defer=delay)


def observe(
    msg: dict[str, str], attempt: Attempt, outcome: str, number: int, delay: float | None
) -> None:
    metrics.DELIVERIES.labels(outcome, str(min(number, 10))).inc()
    metrics.DELIVERY_LATENCY.observe(attempt.duration_ms / 1000)
    if outcome == "succeeded":
        metrics.CHANGE_TO_DELIVERY.observe(time.time() - float(msg.get("observed_at") or 0))
    context = {"webhook_id": msg["id"], "subscription_id": msg["sub_id"],
               "event_type": msg["event_type"], "attempt": number,
               "status_code": attempt.status_code, "duration_ms": attempt.duration_ms}
    if outcome == "succeeded":
        log.info("delivered %s %s", msg["event_type"], msg["id"], extra=context)
    elif outcome == "retry":
        log.warning("attempt %d of %s failed (%s); next in %.1fs", number, msg["id"],
                    attempt.error, delay, extra=context)
    else:
        log.warning("delivery %s %s: %s", msg["id"], outcome, attempt.error, extra=context)


def classify(
    attempt: Attempt, failures: int, schedule: tuple[float, ...]
) -> tuple[str, float | None]:
    """(outcome, seconds until the next try) after an attempt; `failures` counts this one."""
    if attempt.succeeded:
        return "succeeded", None
    if attempt.gone:
        return "disabled", None
    delay = retry_delay(failures, schedule, attempt.failure())
    return ("failed", None) if delay is None else ("retry", delay)
