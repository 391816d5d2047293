"""One webhook attempt: sign, POST to the checked address, classify the answer."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import httpx

from relay.delivery.retry import Failure, parse_retry_after
from relay.delivery.signing import signature_header
from relay.delivery.transport import pinned
from relay.delivery.urls import UnsafeURL, pin_target
from relay.version import VERSION

RESPONSE_BODY_CAP = 1024  # bytes of a receiver's answer that are kept, and read
ERROR_TEXT_CAP = 1024  # bytes of an attempt's error that are kept (and logged)

# Given the destination an attempt is about to call ("address:port"), a place for it there, or
# relay.delivery.slots.Busy, which send() lets through: then nothing was sent.
Admit = Callable[[str], AbstractContextManager[object]]


def _admit_all(destination: str) -> AbstractContextManager[object]:
    return nullcontext()


@dataclass(frozen=True)
class Attempt:
    at: float
    status_code: int | None
    duration_ms: int
    error: str | None
    response_body: str | None
    retry_after: float | None = None
    timed_out: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410

    def failure(self) -> Failure:
        return Failure(self.status_code, self.timed_out, self.retry_after)

    def record(self) -> dict[str, Any]:
        """The attempt as the API shows it (timestamps are rendered there)."""
        return {
            "at": self.at, "status_code": self.status_code, "duration_ms": self.duration_ms,
            "error": self.error, "response_body": self.response_body,
        }


def webhook_headers(
    msg_id: str, body: bytes, secrets: tuple[str, ...], timestamp: int
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "user-agent": f"varg-relay/{VERSION}",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }


async def send(
    client: httpx.AsyncClient, url: str, msg_id: str, body: bytes, secrets: tuple[str, ...],
    timeout: float, allow_private: bool, admit: Admit = _admit_all,
) -> Attempt:
    started, at = time.monotonic(), time.time()

    def done(code: int | None, error: str | None, text: str | None = None, **kw: Any) -> Attempt:
        ms = int((time.monotonic() - started) * 1000)
        return Attempt(at, code, ms, None if error is None else capped(error), text, **kw)

    try:
        return await asyncio.wait_for(
            _post(client, url, msg_id, body, secrets, timeout, allow_private, admit, done),
            timeout,
        )
    except (TimeoutError, httpx.TimeoutException):
        return done(None, f"timed out after {timeout:g}s", timed_out=True)
    except UnsafeURL as exc:
        return done(None, f"refused: {exc}")
    except socket.gaierror:
        return done(None, "the callback host does not resolve")
    except httpx.HTTPError as exc:
        return done(None, f"{type(exc).__name__}: {exc}"[:200])


async def _post(
    client: httpx.AsyncClient, url: str, msg_id: str, body: bytes, secrets: tuple[str, ...],
    timeout: float, allow_private: bool, admit: Admit, done: Any,
) -> Attempt:
    pin = await pin_target(url, allow_private)
    headers = webhook_headers(msg_id, body, secrets, int(time.time()))
    request = client.build_request(
        "POST", url, content=body, headers=headers, timeout=timeout, extensions=pin.extensions()
    )
    # A place at the destination first (or Busy); a connection opened for this request goes
    # to an address checked now.
    with admit(pin.destination), pinned(pin):
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            text = await _read_capped(response)
        finally:
            await response.aclose()
    retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
    error = None if 200 <= response.status_code < 300 else _error_text(response)
    attempt: Attempt = done(response.status_code, error, text, retry_after=retry_after)
    return attempt


async def _read_capped(response: httpx.Response) -> str:
    """Read at most RESPONSE_BODY_CAP bytes: a receiver may answer with anything."""
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= RESPONSE_BODY_CAP:
            break
    return capped(kept[:RESPONSE_BODY_CAP].decode("utf-8", errors="replace"), RESPONSE_BODY_CAP)


def capped(text: str, cap: int = ERROR_TEXT_CAP) -> str:
    """`text` cut to at most `cap` bytes of UTF-8, never inside a character."""
    if len(text) * 4 <= cap:  # cannot be over: a character is at most 4 bytes
        return text
    return text.encode("utf-8", errors="replace")[:cap].decode("utf-8", errors="ignore")


def _error_text(response: httpx.Response) -> str:
    if 300 <= response.status_code < 400:
        # A receiver chooses the Location, at any length: keep room for what follows it.
        location = capped(response.headers.get("location", "?"), ERROR_TEXT_CAP - 64)
        return f"redirect to {location} (not followed)"
    return f"HTTP {response.status_code}"
