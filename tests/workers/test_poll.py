"""relay.upstream.poller: Varg's X-RateLimit headers (a spent budget, the key's own limit)."""

from __future__ import annotations

import pytest

from relay.upstream.poller import Rechecks, rate_header_limit, rate_header_pause, upstream_budget

NOW = 1_771_000_000.0


def headers(remaining: str | None = None, reset: str | None = None) -> dict[str, str]:
    found = {"x-ratelimit-remaining": remaining, "x-ratelimit-reset": reset}
    return {k: v for k, v in found.items() if v is not None}


def test_spent_until_epoch_reset() -> None:
    assert rate_header_pause(headers("0", str(int(NOW) + 20)), NOW) == 20.0


def test_spent_until_delta_reset() -> None:
    assert rate_header_pause(headers("0", "12"), NOW) == 12.0


def test_pause_capped_at_a_minute() -> None:
    assert rate_header_pause(headers("0", "3600"), NOW) == 60.0
    assert rate_header_pause(headers("0", str(int(NOW) + 3600)), NOW) == 60.0


def test_reset_in_the_past_still_pauses_briefly() -> None:
    assert rate_header_pause(headers("0", str(int(NOW) - 5)), NOW) == 0.5
    assert rate_header_pause(headers("0", "0"), NOW) == 0.5


def test_spent_without_reset_pauses_a_second() -> None:
    assert rate_header_pause(headers("0"), NOW) == 1.0


@pytest.mark.parametrize("remaining", ["1", "57"])
def test_budget_left_no_pause(remaining: str) -> None:
    assert rate_header_pause(headers(remaining, "30"), NOW) is None


def test_missing_headers_no_pause() -> None:
    assert rate_header_pause({}, NOW) is None
    assert rate_header_pause(headers(reset="30"), NOW) is None


@pytest.mark.parametrize(("remaining", "reset"), [("none", "30"), ("0", "soon"), ("", "30")])
def test_garbage_headers_no_pause(remaining: str, reset: str) -> None:
    assert rate_header_pause(headers(remaining, reset), NOW) is None


@pytest.mark.parametrize(("headers", "limit"), [
    ({"x-ratelimit-limit": "100"}, 100),
    ({"x-ratelimit-limit": "10", "x-ratelimit-remaining": "3"}, 10),
    ({}, None),
    ({"x-ratelimit-limit": "0"}, None),
    ({"x-ratelimit-limit": "-5"}, None),
    ({"x-ratelimit-limit": "lots"}, None),
])
def test_rate_header_limit(headers: dict[str, str], limit: int | None) -> None:
    assert rate_header_limit(headers) == limit


def test_a_dropped_kick_is_tried_once_more_after_the_delay() -> None:
    rechecks = Rechecks(delay=1.0)
    rechecks.add("sub_a", now=10.0)
    rechecks.add("sub_a", now=10.5)  # a second drop does not push the retry out
    rechecks.add("sub_b", now=10.6)
    assert rechecks.due(10.9) == []
    assert rechecks.due(11.0) == ["sub_a"]
    assert rechecks.due(11.0) == []  # once
    assert rechecks.due(12.0) == ["sub_b"]


@pytest.mark.parametrize("per_minute", [1, 45, 60, 100, 1200])
def test_the_budget_paced_alone_never_fills_varg_s_minute(per_minute: int) -> None:
    """At most one request short of the limit in any 61 s, so the relay's own requests never
    fill Varg's 60 s window and make it answer `X-RateLimit-Remaining: 0` (which pauses every
    worker until the reset), paced evenly over those 61 s; a limit of 1 still polls."""
    budget = upstream_budget(per_minute)
    assert budget.window == 61.0
    assert budget.limit == max(1, per_minute - 1)
    assert budget.pace == pytest.approx(61.0 / budget.limit)
    assert budget.burst == max(1, per_minute * 2 // 60)
