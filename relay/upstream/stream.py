"""Varg's job stream, `GET /jobs/{job_id}/stream`: Server-Sent Events read with a deadline.

Each `status` event's data is the job JSON, the shape a poll returns; the stream closes by
itself once the job is terminal; comments (`: keepalive`) arrive every 15 s and Varg closes a
connection after 10 minutes. `SSEParser` is the pure part (bytes in, events out, bounded
memory); `read_stream` is the I/O shell that opens one connection and says how it ended.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx

from relay.delivery.retry import parse_retry_after
from relay.events import is_terminal
from relay.upstream.client import parse_job

MAX_LINE = 256 * 1024  # a job JSON is a few hundred bytes; a longer line is hostile
MAX_EVENT = 1024 * 1024
CONNECT_TIMEOUT = 5.0
MAX_AGE = 15 * 60.0  # Varg closes at 10 minutes; never hold one connection longer than this
SSE_TYPE = "text/event-stream"
_BREAK = re.compile(rb"\r\n|\r|\n")


class StreamTooLarge(ValueError):
    """A line or an event past the caps: the upstream is broken or hostile."""


@dataclass(frozen=True)
class SSEvent:
    event: str  # "message" when the stream names none
    data: str
    id: str | None = None


@dataclass
class SSEParser:
    """Incremental Server-Sent Events parser (the WHATWG event-stream rules).

    Lines end in LF, CRLF or CR; `:` starts a comment (a keepalive); a blank line dispatches
    the event gathered so far (none when it has no data).
    """

    max_line: int = MAX_LINE
    max_event: int = MAX_EVENT
    _buffer: bytearray = field(default_factory=bytearray)
    _data: list[str] = field(default_factory=list)
    _size: int = 0
    _event: str = ""
    _id: str | None = None
    _scanned: int = 0
    _last_cr: bool = False  # the last chunk ended in CR: an LF starting the next one is its pair
    _started: bool = False

    def feed(self, chunk: bytes) -> list[SSEvent]:
        if self._last_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        self._last_cr = chunk.endswith(b"\r")
        self._buffer += chunk
        events: list[SSEvent] = []
        for line in self._lines():
            event = self._line(line)
            if event is not None:
                events.append(event)
        if len(self._buffer) > self.max_line:
            raise StreamTooLarge(f"an event-stream line over {self.max_line} bytes")
        return events

    def _lines(self) -> list[str]:
        lines, start = [], 0
        for match in _BREAK.finditer(self._buffer, self._scanned):
            lines.append(self._buffer[start:match.start()].decode("utf-8", "replace"))
            start = match.end()
        del self._buffer[:start]
        self._scanned = len(self._buffer)  # what is left holds no line break: never rescan it
        return lines

    def _line(self, line: str) -> SSEvent | None:
        if not self._started:
            self._started = True
            line = line.removeprefix("\ufeff")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment: the keepalive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._size += len(value) + 1
            if self._size > self.max_event:
                raise StreamTooLarge(f"an event over {self.max_event} bytes")
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        return None  # `retry` and unknown fields are ignored: the relay paces itself

    def _dispatch(self) -> SSEvent | None:
        data, event = self._data, self._event
        self._data, self._size, self._event = [], 0, ""
        if not data:
            return None
        return SSEvent(event or "message", "\n".join(data), self._id)


class End(StrEnum):
    """Why a stream connection ended."""

    terminal = "terminal"  # a terminal status arrived: the job is done
    closed = "closed"  # closed without one (Varg's 10-minute limit): reconnect
    error = "error"  # a network error, a deadline, a 5xx, a bad event: reconnect with backoff
    unsupported = "unsupported"  # 405, 501 or a non-SSE answer: the upstream has no stream
    not_found = "not_found"  # 404: no such job, or no such endpoint
    unauthorized = "unauthorized"  # 401/403
    rate_limited = "rate_limited"  # 429


@dataclass(frozen=True)
class StreamEnd:
    end: End
    status_code: int | None = None
    retry_after: float | None = None
    events: int = 0  # status events received on this connection
    detail: str = ""


OnJob = Callable[[dict[str, Any]], Awaitable[None]]
OnOpen = Callable[[dict[str, str]], Awaitable[None]]  # the answer's X-RateLimit-* headers


def end_for_status(response: httpx.Response) -> StreamEnd | None:
    """How a connection ends before its first byte of stream, or None to read it."""
    code = response.status_code
    if code in (405, 501):
        return StreamEnd(End.unsupported, code, detail=f"HTTP {code}")
    if code == 404:
        return StreamEnd(End.not_found, code)
    if code in (401, 403):
        return StreamEnd(End.unauthorized, code)
    if code == 429:
        retry = parse_retry_after(response.headers.get("retry-after"), time.time())
        return StreamEnd(End.rate_limited, code, retry_after=retry)
    if code != 200:
        return StreamEnd(End.error, code, detail=f"HTTP {code}")
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != SSE_TYPE:
        return StreamEnd(End.unsupported, code, detail=f"content-type {kind or 'missing'}")
    return None


async def read_stream(
    http: httpx.AsyncClient, url: str, headers: dict[str, str], idle_timeout: float,
    on_job: OnJob, on_alive: Callable[[], None], max_age: float = MAX_AGE,
    job_id: str | None = None, on_open: OnOpen | None = None,
) -> StreamEnd:
    """Open one stream and hand every job it carries to `on_job`, until it ends (an event
    that is not a job, or is another job than `job_id`, ends it as an error).

    Every read has a deadline (`idle_timeout`: a keepalive or an event must arrive within it),
    and the whole connection one too (`max_age`), so a stream can never hold a worker.
    """
    timeout = httpx.Timeout(idle_timeout, connect=CONNECT_TIMEOUT)
    seen = 0
    try:
        async with asyncio.timeout(max_age):
            request = http.build_request("GET", url, headers=headers | {"accept": SSE_TYPE},
                                         timeout=timeout)
            response = await http.send(request, stream=True)
            try:
                if on_open is not None:
                    await on_open({k.lower(): v for k, v in response.headers.items()
                                   if k.lower().startswith("x-ratelimit")})
                early = end_for_status(response)
                if early is not None:
                    return early
                parser = SSEParser()
                async for chunk in response.aiter_bytes():
                    on_alive()
                    for event in parser.feed(chunk):
                        if event.event != "status":
                            continue
                        job = parse_job(event.data.encode())
                        if job is None or job_id not in (None, job["job_id"]):
                            return StreamEnd(End.error, 200, events=seen, detail="bad event")
                        seen += 1
                        await on_job(job)
                        if is_terminal(str(job["status"])):
                            return StreamEnd(End.terminal, 200, events=seen)
            finally:
                await response.aclose()
    except TimeoutError:
        return StreamEnd(End.closed, 200, events=seen, detail="connection age limit")
    except StreamTooLarge as exc:
        return StreamEnd(End.error, 200, events=seen, detail=str(exc))
    except httpx.HTTPError as exc:
        return StreamEnd(End.error, events=seen, detail=type(exc).__name__)
    return StreamEnd(End.closed, 200, events=seen)
