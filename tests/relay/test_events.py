"""relay.events: which event announces a status, and which statuses end a watch."""

from __future__ import annotations

import pytest

from relay.events import (
    ALL_EVENTS,
    EVENT_CODES,
    NOT_FOUND,
    WATCH_EXPIRED,
    EventType,
    JobStatus,
    decode_events,
    encode_events,
    event_for,
    is_terminal,
)


@pytest.mark.parametrize(
    ("status", "event"),
    [("queued", "job.queued"), ("processing", "job.processing"),
     ("completed", "job.completed"), ("failed", "job.failed"),
     ("cancelled", "job.cancelled")],
)
def test_event_for_each_status(status: str, event: str) -> None:
    assert event_for(status) == event
    assert isinstance(event_for(status), EventType)


@pytest.mark.parametrize(
    "status", ["upscaling", "COMPLETED", "", "job.completed", "status_changed"]
)
def test_unknown_status_is_status_changed(status: str) -> None:
    assert event_for(status) is EventType.status_changed


def test_not_found_pseudo_status() -> None:
    assert event_for(NOT_FOUND) is EventType.not_found


def test_watch_expired_pseudo_status() -> None:
    assert event_for(WATCH_EXPIRED) is EventType.watch_expired


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled", NOT_FOUND, WATCH_EXPIRED])
def test_terminal(status: str) -> None:
    assert is_terminal(status)


@pytest.mark.parametrize("status", ["queued", "processing", "upscaling", ""])
def test_not_terminal(status: str) -> None:
    assert not is_terminal(status)


def test_all_events_are_the_contract_types() -> None:
    assert {str(e) for e in ALL_EVENTS} == {
        "job.queued", "job.processing", "job.completed", "job.failed", "job.cancelled",
        "job.status_changed", "job.not_found", "job.watch_expired",
    }


def test_every_job_status_has_its_own_event() -> None:
    assert {event_for(s) for s in JobStatus} == {
        EventType.queued, EventType.processing, EventType.completed, EventType.failed,
        EventType.cancelled,
    }


def test_every_event_has_its_own_letter() -> None:
    assert set(EVENT_CODES) == set(ALL_EVENTS)
    assert all(len(code) == 1 for code in EVENT_CODES.values())
    assert len(set(EVENT_CODES.values())) == len(EVENT_CODES)


def test_events_round_trip_through_letters_in_their_order() -> None:
    given = ["job.not_found", "job.queued", "job.completed"]
    assert encode_events(given) == "nqc"
    assert decode_events(encode_events(given)) == given
    every = [str(e) for e in ALL_EVENTS]
    assert decode_events(encode_events(every)) == every
