"""Job statuses, event types, and the pure rule that turns a status change into an event."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    queued = "queued"  # accepted by Varg, not started
    processing = "processing"  # a provider is generating
    completed = "completed"  # output is ready (terminal)
    failed = "failed"  # generation failed; `error` says why (terminal)
    cancelled = "cancelled"  # cancelled by the user (terminal)


class EventType(StrEnum):
    queued = "job.queued"
    processing = "job.processing"
    completed = "job.completed"
    failed = "job.failed"
    cancelled = "job.cancelled"
    status_changed = "job.status_changed"  # a status this relay does not know
    not_found = "job.not_found"  # 404 past RELAY_NOT_FOUND_GRACE (terminal for the watch)
    watch_expired = "job.watch_expired"  # no terminal status within RELAY_WATCH_TIMEOUT


# Varg's v2 API splits `processing` in two; both are announced as job.processing, with the
# status itself in the event's `data.status` (README: Varg's v2 API).
V2_RUNNING = frozenset({"submitting", "running"})
TERMINAL_STATUSES = frozenset({JobStatus.completed, JobStatus.failed, JobStatus.cancelled})
# Pseudo-statuses the relay records when it gives up on a job; they end the watch like terminals.
NOT_FOUND = "not_found"
WATCH_EXPIRED = "watch_expired"
ALL_EVENTS = tuple(EventType)
TERMINAL_EVENTS = frozenset(
    {
        EventType.completed,
        EventType.failed,
        EventType.cancelled,
        EventType.not_found,
        EventType.watch_expired,
    }
)


def event_for(status: str) -> EventType:
    """The event announcing that a job now has `status`."""
    if status == NOT_FOUND:
        return EventType.not_found
    if status == WATCH_EXPIRED:
        return EventType.watch_expired
    if status in JobStatus.__members__:
        return EventType(f"job.{status}")
    if status in V2_RUNNING:
        return EventType.processing
    return EventType.status_changed


def is_terminal(status: str) -> bool:
    return status in TERMINAL_STATUSES or status in (NOT_FOUND, WATCH_EXPIRED)


# A subscription stores its event types as one letter each, in the order given, so that the
# hash holding it stays in Redis's compact encoding (a JSON list of eight types is 140 bytes;
# hash values past 64 bytes convert the whole hash). The API shows the list back as given.
# relay/store/lua/poll.lua holds the same table (tests/relay/test_events.py checks they agree).
EVENT_CODES: dict[str, str] = {
    EventType.queued: "q",
    EventType.processing: "p",
    EventType.completed: "c",
    EventType.failed: "f",
    EventType.cancelled: "x",
    EventType.status_changed: "s",
    EventType.not_found: "n",
    EventType.watch_expired: "w",
}
_EVENT_OF_CODE = {code: str(event) for event, code in EVENT_CODES.items()}


def encode_events(events: list[str]) -> str:
    return "".join(EVENT_CODES[event] for event in events)


def decode_events(code: str) -> list[str]:
    return [_EVENT_OF_CODE[letter] for letter in code]
