"""tests/support.py: the database each pytest-xdist worker flushes, and the one wait rule."""

from __future__ import annotations

import pytest

from tests.support import eventually, eventually_sync, redis_url_for_tests


@pytest.mark.parametrize(("base", "worker", "expected"), [
    ("redis://127.0.0.1:6379/6", None, "redis://127.0.0.1:6379/6"),
    ("redis://127.0.0.1:6379/6", "gw0", "redis://127.0.0.1:6379/6"),
    ("redis://127.0.0.1:6379/6", "gw1", "redis://127.0.0.1:6379/7"),
    ("redis://127.0.0.1:6379/15", "gw1", "redis://127.0.0.1:6379/14"),
    ("redis://:pw@127.0.0.1:6379/15", "gw2", "redis://:pw@127.0.0.1:6379/13"),
    ("redis://127.0.0.1:6379", "gw1", "redis://127.0.0.1:6379/1"),
])
def test_each_xdist_worker_gets_a_database_of_its_own(
    base: str, worker: str | None, expected: str
) -> None:
    environ = {"TEST_REDIS_URL": base} | ({"PYTEST_XDIST_WORKER": worker} if worker else {})
    assert redis_url_for_tests(environ) == expected


def test_without_test_redis_url_the_default_database_is_15() -> None:
    assert redis_url_for_tests({}) == "redis://127.0.0.1:6379/15"


def test_other_xdist_workers_prefer_a_redis_server_of_their_own() -> None:
    def own() -> str:
        return "redis://127.0.0.1:7777/0"

    first = {"TEST_REDIS_URL": "redis://127.0.0.1:6379/6", "PYTEST_XDIST_WORKER": "gw0"}
    assert redis_url_for_tests(first, own) == "redis://127.0.0.1:6379/6"
    assert redis_url_for_tests(first | {"PYTEST_XDIST_WORKER": "gw1"}, own) == own()


def test_a_wait_returns_the_first_accepted_value() -> None:
    values = iter([0, 1, 2, 3])
    assert eventually_sync(lambda: next(values), 5, until=lambda v: v >= 2, every=0) == 2


def test_a_wait_fails_with_the_check_s_last_assertion() -> None:
    def check() -> None:
        raise AssertionError("still red")

    with pytest.raises(AssertionError, match="still red"):
        eventually_sync(check, 0.05, every=0.01)


def test_a_wait_that_times_out_says_what_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"the light: still 'red' after 0.05s"):
        eventually_sync(lambda: "red", 0.05, until=lambda v: v == "green", what="the light",
                        every=0.01)


async def test_an_async_wait_awaits_coroutine_checks() -> None:
    seen: list[int] = []

    async def check() -> int:
        seen.append(len(seen))
        assert len(seen) > 2, "not yet"
        return len(seen)

    assert await eventually(check, 5, every=0) == 3


async def test_another_exception_ends_the_wait_at_once() -> None:
    def check() -> None:
        raise RuntimeError("the process died")

    with pytest.raises(RuntimeError, match="died"):
        await eventually(check, 60)
