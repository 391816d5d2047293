"""bench.streams and bench.stream_memory: the pure parts (arms, live jobs, RSS reading)."""

from __future__ import annotations

import os

import pytest

from bench.plan import FULL
from bench.stream_memory import rss_bytes
from bench.streams import arms, live_jobs


def test_live_jobs_is_arrival_rate_times_mean_run_time() -> None:
    # 40% images 5-15 s, 20% speech 10-30 s, 40% video 60-300 s: mean 80 s.
    assert live_jobs(0.5) == pytest.approx(40.0)


def test_the_capped_arm_streams_half_the_live_jobs() -> None:
    found = arms(FULL)
    assert list(found) == ["poll", "stream", "stream_capped"]
    assert found["poll"] == {"RELAY_STREAM": "off"}
    assert found["stream_capped"]["RELAY_STREAMS_PER_WORKER"] == "20"


def test_rss_of_this_process() -> None:
    assert 10 * 2**20 < rss_bytes(os.getpid()) < 4 * 2**30
