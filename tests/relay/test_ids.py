"""relay.ids: prefixed ULID-style ids that sort by creation time."""

from __future__ import annotations

import re

from relay.api.validation import cursor
from relay.ids import new_id

ID = re.compile(r"sub_[0-9A-HJKMNP-TV-Z]{26}")


def test_prefix_and_length() -> None:
    value = new_id("sub", now=1_700_000_000.0)
    assert value.startswith("sub_")
    assert len(value) == 4 + 26
    assert ID.fullmatch(value)


def test_other_prefix() -> None:
    assert new_id("msg").startswith("msg_")


def test_ids_sort_by_creation_time() -> None:
    moments = [0.001, 0.031, 0.032, 1.0, 1_000.0, 1_700_000_000.0, 1_700_000_000.001, 4e9]
    ids = [new_id("sub", now=t) for t in moments]
    assert sorted(ids) == ids


def test_later_millisecond_sorts_after_any_random_part() -> None:
    for _ in range(50):
        assert new_id("sub", now=1_000.000) < new_id("sub", now=1_000.001)


def test_same_millisecond_ids_differ() -> None:
    ids = {new_id("sub", now=1_000.0) for _ in range(100)}
    assert len(ids) == 100


def test_time_part_is_shared_within_a_millisecond() -> None:
    assert new_id("sub", now=1_000.0)[:14] == new_id("sub", now=1_000.0004)[:14]


def test_ids_are_valid_cursors() -> None:
    value = new_id("sub")
    assert cursor(value) == value
