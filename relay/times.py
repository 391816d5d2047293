"""Times as the relay shows them (ISO 8601, UTC, milliseconds) and reads them from Varg."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(epoch: float | str | None) -> str | None:
    if epoch in (None, ""):
        return None
    moment = datetime.fromtimestamp(float(epoch), UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    # Without an offset the time is UTC (Varg's own are), never the worker's local time.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
