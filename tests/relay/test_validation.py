"""relay.api.validation: the input rules of contract section 4, each failing on the right field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from relay.api.validation import (
    METADATA_MAX_BYTES,
    PAGE_DEFAULT,
    PAGE_MAX,
    NewSubscription,
    callback_url,
    cursor,
    events,
    job_id,
    metadata,
    new_subscription,
    page_limit,
    parse_body,
)
from relay.errors import ValidationError
from relay.events import ALL_EVENTS

URL = "https://example.com/hooks/varg"


def field_of(call: Any, *args: Any) -> str | None:
    with pytest.raises(ValidationError) as caught:
        call(*args)
    assert caught.value.status_code == 400
    assert caught.value.body()["error"] == "ValidationError"
    return caught.value.field


@pytest.mark.parametrize(
    "value", ["job_a1b2c3d4", "a", "x" * 128, "fal:abc-1.2_3", "A.B", "...a", "-"]
)
def test_job_id_accepted(value: str) -> None:
    assert job_id(value) == value


@pytest.mark.parametrize(
    "value",
    ["", "x" * 129, "job 1", "job/1", "job\n", "job_1\n", "..", ".", "...", "jöb", "job?x",
     "job%2F", 123, None, ["job_1"]],
)
def test_job_id_refused(value: Any) -> None:
    assert field_of(job_id, value) == "job_id"


def test_job_id_field_name_can_be_given() -> None:
    assert field_of(job_id, "..", "id") == "id"


@pytest.mark.parametrize(
    "value", [URL, "http://example.com", "https://example.com:8443/a?b=c#d"]
)
def test_url_accepted(value: str) -> None:
    assert callback_url(value) == value


def test_url_length_limit() -> None:
    longest = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    assert callback_url(longest) == longest
    assert field_of(callback_url, longest + "a") == "url"


@pytest.mark.parametrize(
    "value",
    ["ftp://example.com/hook", "javascript:alert(1)", "example.com/hook", "//example.com/hook",
     "https://user:secret@example.com/hook", "https://user@example.com/hook", "https://",
     "", 5, None],
)
def test_url_refused(value: Any) -> None:
    assert field_of(callback_url, value) == "url"


def test_events_default_to_all() -> None:
    assert events(None) == [str(e) for e in ALL_EVENTS]


@pytest.mark.parametrize(
    "value", [[], "job.completed", {"job.completed": True}, ["job.done"], ["completed"],
              [{"type": "job.completed"}], [["job.completed"]], [None]]
)
def test_events_refused(value: Any) -> None:
    assert field_of(events, value) == "events"


def test_events_duplicates_collapse_in_order() -> None:
    value = ["job.failed", "job.completed", "job.failed"]
    assert events(value) == ["job.failed", "job.completed"]


def test_metadata_default_is_empty() -> None:
    assert metadata(None) == {}


@pytest.mark.parametrize("value", [[], "x", 1, True, [{"a": 1}]])
def test_metadata_must_be_an_object(value: Any) -> None:
    assert field_of(metadata, value) == "metadata"


def test_metadata_at_most_4_kib() -> None:
    fits = {"k": "a" * (METADATA_MAX_BYTES - len('{"k":""}'))}
    assert len(json.dumps(fits, separators=(",", ":"))) == METADATA_MAX_BYTES
    assert metadata(fits) == fits
    assert field_of(metadata, {"k": fits["k"] + "a"}) == "metadata"


def test_new_subscription() -> None:
    sub = new_subscription({"job_id": "job_1", "url": URL, "events": ["job.completed"],
                            "metadata": {"order": 7}})
    assert sub == NewSubscription("job_1", URL, ["job.completed"], {"order": 7})


def test_new_subscription_defaults() -> None:
    sub = new_subscription({"job_id": "job_1", "url": URL})
    assert sub.events == [str(e) for e in ALL_EVENTS]
    assert sub.metadata == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"url": URL}, "job_id"), ({"job_id": "job_1"}, "url"),
     ({"job_id": "job_1", "url": URL, "callback": URL}, "callback"),
     ({"job_id": "job_1", "url": URL, "events": []}, "events"),
     ({"job_id": "job_1", "url": URL, "metadata": "x"}, "metadata")],
)
def test_new_subscription_refused(body: dict[str, Any], field: str) -> None:
    assert field_of(new_subscription, body) == field


def test_parse_body() -> None:
    assert parse_body(b'{"job_id": "job_1", "n": 1.5}') == {"job_id": "job_1", "n": 1.5}


@pytest.mark.parametrize(
    "raw",
    [b'{"m": NaN}', b'{"m": Infinity}', b'{"m": -Infinity}', b'{"m": 1e999}', b'{"m": -1e400}'],
)
def test_parse_body_refuses_non_finite_numbers(raw: bytes) -> None:
    assert field_of(parse_body, raw) is None


@pytest.mark.parametrize("raw", [b"", b"{", b"{'a': 1}", b"\xff\xfe{", b'{"a": 1,}'])
def test_parse_body_refuses_invalid_json(raw: bytes) -> None:
    with pytest.raises(ValidationError, match="not valid JSON"):
        parse_body(raw)


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"1", b"null"])
def test_parse_body_must_be_an_object(raw: bytes) -> None:
    with pytest.raises(ValidationError, match="JSON object"):
        parse_body(raw)


def test_parse_body_refuses_deep_nesting() -> None:
    with pytest.raises(ValidationError):
        parse_body(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize(("value", "limit"), [(None, PAGE_DEFAULT), ("1", 1), ("100", PAGE_MAX)])
def test_page_limit(value: str | None, limit: int) -> None:
    assert page_limit(value) == limit


@pytest.mark.parametrize("value", ["0", "101", "-1", "abc", "1.5", "", " 5", "²", "٣"])
def test_page_limit_refused(value: str) -> None:
    assert field_of(page_limit, value) == "limit"


def test_cursor() -> None:
    value = "sub_01HQ3V5Z8K2M4N6P7R9S1T3V5W"
    assert cursor(value) == value
    assert cursor(None) is None
    assert cursor("") is None


@pytest.mark.parametrize(
    "value",
    ["sub_x", "msg_01HQ3V5Z8K2M4N6P7R9S1T3V5W", "sub_01hq3v5z8k2m4n6p7r9s1t3v5w",
     "sub_01HQ3V5Z8K2M4N6P7R9S1T3V5W\n", "sub_01HQ3V5Z8K2M4N6P7R9S1T3V5WX"],
)
def test_cursor_refused(value: str) -> None:
    assert field_of(cursor, value) == "cursor"
