"""How many webhook attempts one worker has in flight to one destination, and for one tenant.

A receiver that never answers holds each attempt for the whole RELAY_DELIVERY_TIMEOUT: 500
subscriptions pointing at one took every delivery slot of a worker, and another tenant's
webhook waited for a free one. So each worker lets at most RELAY_DELIVERY_CONCURRENCY_PER_HOST
attempts go to one destination (the address and port called, however the URL spells them)
and RELAY_DELIVERY_CONCURRENCY_PER_TENANT go out for one API token at once.

A chain that finds its destination or tenant full does not wait for a place: waiting would
hold a worker slot all the same. It raises `Busy`, and the chain is deferred (arq `Retry`,
which keeps the subscription's chain, so its events keep their order and nothing is lost) for
about as long as the attempts in flight there have been running (a fast receiver frees a
place within milliseconds, one that never answers only at the timeout), and longer each time
the same chain is put off again, so hundreds of chains waiting on one receiver do not keep a
worker busy picking them up.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

MIN_DEFER = 0.05  # seconds: a busy but fast receiver is tried again this soon
JITTER = 0.5  # deferrals are spread over [d, d * 1.5] so they do not return in a herd


class Busy(Exception):
    """No place for this attempt now; try again in `defer` seconds."""

    def __init__(self, reason: str, defer: float) -> None:
        super().__init__(f"{reason} is busy; again in {defer:.2f}s")
        self.reason = reason  # "host" or "tenant"
        self.defer = defer


def defer_for(started: Iterable[float], now: float, most: float, tries: int = 1,
              rng: random.Random | None = None) -> float:
    """Seconds to defer a chain that found these attempts in flight (their start times), on
    its `tries`th run: as long as the oldest has run, at least MIN_DEFER doubled per run."""
    oldest = now - min(started)
    floor = MIN_DEFER * 2.0 ** min(tries - 1, 16)
    return min(most, max(floor, oldest)) * (1 + (rng or random).uniform(0, JITTER))


class Slots:
    def __init__(self, per_host: int, per_tenant: int, most_defer: float) -> None:
        self.per_host = per_host
        self.per_tenant = per_tenant
        self.most_defer = most_defer  # an attempt in flight ends within this (its timeout)
        self._running: dict[str, dict[int, float]] = {}  # key -> attempt -> started
        self._tickets = itertools.count()

    @contextmanager
    def hold(self, destination: str, tenant: str, tries: int = 1) -> Iterator[None]:
        """A place for one attempt to `destination` for `tenant`, or Busy (for a chain on its
        `tries`th run)."""
        keys = (("host", "to " + destination, self.per_host),
                ("tenant", "by " + tenant, self.per_tenant))
        now = time.monotonic()
        for reason, key, cap in keys:
            running = self._running.get(key, {})
            if len(running) >= cap:
                raise Busy(reason, defer_for(running.values(), now, self.most_defer, tries))
        ticket = next(self._tickets)
        for _, key, _ in keys:
            self._running.setdefault(key, {})[ticket] = now
        try:
            yield
        finally:
            for _, key, _ in keys:
                running = self._running[key]
                del running[ticket]
                if not running:
                    del self._running[key]

    def in_flight(self, destination: str) -> int:
        return len(self._running.get("to " + destination, {}))
