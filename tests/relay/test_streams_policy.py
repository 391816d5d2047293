"""relay.upstream.streams: the pure rules of stream mode (what follows a connection's end,
what a stream is worth, which jobs may stream)."""

from __future__ import annotations

import pytest

from relay.upstream.runtimes import Limits, PollPolicy
from relay.upstream.stream import End, StreamEnd
from relay.upstream.streams import (
    MAX_FAILURES,
    RECONNECT_CAP,
    Step,
    after_end,
    goes_quiet,
    stream_mode,
    stream_order,
    stream_ranking,
    stream_value,
    streamable,
    to_preempt,
)

LIMITS = Limits(not_found_grace=60.0, min_interval=1.0, max_interval=60.0)
NOW = 1_771_000_000.0


def ended(end: End, events: int = 0, detail: str = "") -> StreamEnd:
    return StreamEnd(end, 200, events=events, detail=detail)


def test_a_terminal_status_is_done() -> None:
    assert after_end(ended(End.terminal, 3), 0, True, LIMITS).step is Step.done


def test_varg_s_time_limit_reconnects_at_once() -> None:
    step = after_end(ended(End.closed, 1), 0, True, LIMITS)
    assert (step.step, step.delay) == (Step.reconnect, 0.0)


def test_a_close_without_any_event_counts_as_a_failure() -> None:
    step = after_end(ended(End.closed, 0), 1, True, LIMITS)
    assert step.step is Step.reconnect and step.delay >= LIMITS.min_interval


@pytest.mark.parametrize("failures", [1, 2])
def test_errors_reconnect_with_growing_backoff(failures: int) -> None:
    step = after_end(ended(End.error, detail="HTTP 502"), failures, True, LIMITS)
    assert step.step is Step.reconnect
    assert 0.8 * 2**failures <= step.delay <= min(RECONNECT_CAP, 1.2 * 2**failures)
    assert step.reason == "HTTP 502"


def test_too_many_failures_in_a_row_go_back_to_polling() -> None:
    step = after_end(ended(End.error), MAX_FAILURES, True, LIMITS)
    assert (step.step, step.reason) == (Step.release, "errors")


def test_no_stream_endpoint_turns_stream_mode_off() -> None:
    assert after_end(ended(End.unsupported, detail="HTTP 405"), 1, False, LIMITS).step is Step.off


def test_a_404_is_telling_only_for_a_job_already_found() -> None:
    assert after_end(ended(End.not_found), 1, True, LIMITS).step is Step.off
    unknown = after_end(ended(End.not_found), 1, False, LIMITS)
    assert (unknown.step, unknown.reason) == (Step.release, "not_found")


@pytest.mark.parametrize("end", [End.unauthorized, End.rate_limited])
def test_auth_and_rate_limits_go_to_polling(end: End) -> None:
    assert after_end(ended(end), 1, True, LIMITS).step is Step.release


def fields(model: str, age: float) -> dict[str, str]:
    return {"model": model, "started_at": str(NOW - age), "created_at": ""}


def test_a_job_near_its_end_is_worth_more_than_one_far_from_it() -> None:
    policy = PollPolicy()
    image_due = stream_value(fields("fal:flux-schnell", 8.0), NOW, LIMITS, policy)
    video_young = stream_value(fields("fal:kling-v2.5", 1.0), NOW, LIMITS, policy)
    assert 0 <= video_young < image_due <= 1


def test_a_new_job_is_valued_by_any_job_of_its_age() -> None:
    value = stream_value({"started_at": str(NOW)}, NOW, LIMITS, PollPolicy())
    assert 0 < value < 1


def test_a_job_unseen_for_the_max_interval_streams_before_more_valuable_ones() -> None:
    policy = PollPolicy()
    image_due = fields("fal:flux-schnell", 8.0)
    starved = fields("fal:kling-v2.5", 61.0) | {"last_polled_at": str(NOW - 60.0)}
    polled = fields("fal:kling-v2.5", 61.0) | {"last_polled_at": str(NOW - 59.0)}
    order = {name: stream_order(f, NOW, LIMITS, policy)
             for name, f in (("image", image_due), ("starved", starved), ("polled", polled))}
    assert order["image"][1] > order["starved"][1]  # the image job is worth more...
    assert sorted(order, key=order.__getitem__, reverse=True) == ["starved", "image", "polled"]


def test_with_a_slot_for_each_the_starved_go_first_and_with_fewer_value_decides() -> None:
    ranked = [((False, 0.9), "image"), ((True, 0.1), "starved"), ((False, 0.2), "video")]
    assert [j for _, j in stream_ranking(ranked, free=3)] == ["starved", "image", "video"]
    # Fewer slots than jobs: by value, as hand-overs are judged; the rest are polled.
    assert [j for _, j in stream_ranking(ranked, free=2)] == ["image", "video", "starved"]


@pytest.mark.parametrize(("short", "poll_waiting", "quiet"), [
    ("ok", True, False), ("budget", False, False), ("budget", True, True),
    ("cap", False, True), ("pause", False, True), ("off", False, True)])
def test_offers_go_quiet_unless_short_of_budget_with_no_poll_waiting(
        short: str, poll_waiting: bool, quiet: bool) -> None:
    assert goes_quiet(short, poll_waiting) is quiet


def test_only_healthy_jobs_stream() -> None:
    assert streamable({"failures": "0", "first_404": ""})
    assert not streamable({"failures": "2"})
    assert not streamable({"first_404": "1771000000.0"})


@pytest.mark.parametrize(("mode", "version", "on"), [
    ("auto", "v1", True), ("off", "v1", False), ("auto", "v2", False)])
def test_stream_mode(mode: str, version: str, on: bool) -> None:
    assert stream_mode(mode, version) is on


def test_streams_go_to_jobs_worth_twice_as_much() -> None:
    held = [(0.1, "video_young"), (0.5, "speech"), (0.05, "video_younger")]
    assert to_preempt([0.9, 0.15, 0.3], held) == ["video_younger", "video_young"]
    assert to_preempt([0.9], [(0.5, "speech")]) == []  # not worth twice as much: kept
    assert to_preempt([], held) == [] and to_preempt([0.9], []) == []
