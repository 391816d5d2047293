"""relay.upstream.stream: the SSE parser (pure) and how a stream response is classified."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from relay.upstream.stream import (
    MAX_LINE,
    End,
    SSEParser,
    SSEvent,
    StreamEnd,
    StreamTooLarge,
    end_for_status,
    read_stream,
)

JOB = '{"job_id":"job_1","status":"processing","model":"fal:kling-v2.5","created_at":"x"}'
VARG_EXAMPLE = (
    "event: status\ndata: " + JOB + "\n\n"
    ": keepalive\n\n"
    "event: status\ndata: " + JOB.replace("processing", "completed") + "\n\n"
).encode()


def feed_all(chunks: list[bytes]) -> list[SSEvent]:
    parser = SSEParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_varg_documented_example() -> None:
    events = feed_all([VARG_EXAMPLE])
    assert [e.event for e in events] == ["status", "status"]
    assert '"completed"' in events[1].data
    assert events[0].data == JOB


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    chunks = [VARG_EXAMPLE[i : i + size] for i in range(0, len(VARG_EXAMPLE), size)]
    assert feed_all(chunks) == feed_all([VARG_EXAMPLE])


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(newline: bytes) -> None:
    raw = b"event: status" + newline + b"data: x" + newline + newline
    assert feed_all([raw]) == [SSEvent("status", "x")]
    # A CRLF split between two chunks is one line break, not two (which would dispatch early).
    half = len(b"event: status") + 1
    assert feed_all([raw[:half], raw[half:]]) == [SSEvent("status", "x")]


def test_comments_are_keepalives_and_dispatch_nothing() -> None:
    assert feed_all([b": keepalive\n\n: keepalive\n\n"]) == []


def test_multi_line_data_and_defaults() -> None:
    events = feed_all([b"data: a\ndata:b\nid: 7\n\n"])
    assert events == [SSEvent("message", "a\nb", "7")]


def test_an_event_without_data_is_not_dispatched_and_resets_its_type() -> None:
    assert feed_all([b"event: status\n\ndata: x\n\n"]) == [SSEvent("message", "x")]


def test_a_byte_order_mark_is_skipped() -> None:
    assert feed_all([b"\xef\xbb\xbfdata: x\n\n"]) == [SSEvent("message", "x")]


def test_an_unfinished_event_is_held_back() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: status\ndata: x\n") == []
    assert parser.feed(b"\n") == [SSEvent("status", "x")]


def test_a_line_without_end_past_the_cap_is_refused() -> None:
    parser = SSEParser(max_line=100)
    parser.feed(b"data: " + b"x" * 50)
    with pytest.raises(StreamTooLarge):
        parser.feed(b"x" * 60)


def test_an_event_past_the_cap_is_refused() -> None:
    parser = SSEParser(max_event=100)
    with pytest.raises(StreamTooLarge):
        parser.feed(b"data: " + b"x" * 60 + b"\ndata: " + b"x" * 60 + b"\n")


def test_a_slow_drip_is_scanned_once() -> None:
    parser = SSEParser()
    for byte in b"data: " + b"x" * 5000:
        assert parser.feed(bytes([byte])) == []
    assert parser._scanned == len(b"data: ") + 5000  # nothing rescanned from the start
    assert parser.feed(b"\n\n") == [SSEvent("message", "x" * 5000)]


def response(code: int, content_type: str = "text/event-stream", **headers: str) -> httpx.Response:
    return httpx.Response(code, headers={"content-type": content_type, **headers})


@pytest.mark.parametrize(("code", "kind", "end"), [
    (200, "text/event-stream", None),
    (200, "text/event-stream; charset=utf-8", None),
    (200, "application/json", End.unsupported),
    (200, "", End.unsupported),
    (405, "application/json", End.unsupported),
    (501, "application/json", End.unsupported),
    (404, "application/json", End.not_found),
    (401, "application/json", End.unauthorized),
    (403, "application/json", End.unauthorized),
    (429, "application/json", End.rate_limited),
    (500, "application/json", End.error),
    (502, "application/json", End.error),
])
def test_end_for_status(code: int, kind: str, end: End | None) -> None:
    found = end_for_status(response(code, kind))
    assert (found.end if found else None) == end


def test_a_429_carries_retry_after() -> None:
    found = end_for_status(response(429, "application/json", **{"retry-after": "7"}))
    assert found is not None and found.retry_after == 7.0


# --- read_stream over httpx.MockTransport: how one connection ends -------------------------

JOB_DONE = JOB.replace("processing", "completed")


async def read(body: bytes, content_type: str = "text/event-stream",
               job_id: str | None = "job_1") -> tuple[StreamEnd, list[str], int]:
    seen: list[str] = []
    alive: list[int] = []

    async def on_job(job: dict[str, Any]) -> None:
        seen.append(str(job["status"]))

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["accept"] == "text/event-stream"
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        end = await read_stream(http, "http://varg/v1/jobs/job_1/stream", {}, 5.0, on_job,
                                lambda: alive.append(1), job_id=job_id)
    return end, seen, len(alive)


async def test_a_stream_to_its_terminal_status() -> None:
    end, seen, alive = await read(VARG_EXAMPLE)
    assert (end.end, end.events, seen) == (End.terminal, 2, ["processing", "completed"])
    assert alive >= 1


async def test_a_stream_closed_before_a_terminal_status() -> None:
    end, seen, _ = await read(("event: status\ndata: " + JOB + "\n\n: keepalive\n\n").encode())
    assert (end.end, end.events, seen) == (End.closed, 1, ["processing"])


@pytest.mark.parametrize("data", ["{not json", '{"job_id":"job_1"}',
                                  JOB.replace("job_1", "job_other")])
async def test_an_event_that_is_not_this_job_ends_it_as_an_error(data: str) -> None:
    end, seen, _ = await read(f"event: status\ndata: {data}\n\n".encode())
    assert (end.end, seen) == (End.error, [])


async def test_other_event_types_are_ignored() -> None:
    end, seen, _ = await read(b"event: progress\ndata: 0.5\n\n" + VARG_EXAMPLE)
    assert (end.end, seen) == (End.terminal, ["processing", "completed"])


async def test_a_json_answer_is_no_stream() -> None:
    end, _, _ = await read(JOB.encode(), content_type="application/json")
    assert (end.end, end.detail) == (End.unsupported, "content-type application/json")


async def test_a_runaway_line_ends_it() -> None:
    end, _, _ = await read(b"data: " + b"x" * (MAX_LINE + 10))
    assert end.end is End.error and "line" in end.detail
