"""The dev inbox (relay/devtools/dev.py): `varg-relay inbox` and `varg-relay dev`'s /_dev/inbox
keep the webhooks whose signature verifies and list them; anything else gets 400."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from relay.delivery.signing import new_secret, signature_header
from relay.devtools.dev import inbox_app
from relay.devtools.redis_server import free_port
from tests.e2e.processes import Process

SECRET = new_secret()
EVENT = {"type": "job.completed", "timestamp": "2026-12-03T09:00:00.000Z",
         "data": {"job_id": "job_a", "status": "completed"}}


def signed(body: bytes, secret: str = SECRET, msg_id: str = "msg_1") -> dict[str, str]:
    now = int(time.time())
    return {"content-type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(now),
            "webhook-signature": signature_header((secret,), msg_id, now, body)}


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=inbox_app(SECRET)),
                             base_url="http://inbox")


async def test_a_signed_webhook_is_kept_and_listed() -> None:
    body = json.dumps(EVENT).encode()
    async with client() as inbox:
        answer = await inbox.post("/_dev/inbox", content=body, headers=signed(body))
        listed = (await inbox.get("/_dev/inbox")).json()["data"]
    assert answer.status_code == 200 and answer.json() == {"verified": True}
    assert listed == [{"webhook_id": "msg_1", "event": EVENT}]


@pytest.mark.parametrize("headers", [
    pytest.param(signed(json.dumps(EVENT).encode(), secret=new_secret()), id="other-secret"),
    pytest.param(signed(b'{"type": "job.failed"}'), id="other-body"),
    pytest.param({"content-type": "application/json"}, id="unsigned"),
])
async def test_anything_not_signed_with_the_secret_is_refused(headers: dict[str, str]) -> None:
    async with client() as inbox:
        answer = await inbox.post("/_dev/inbox", content=json.dumps(EVENT).encode(),
                                  headers=headers)
        listed = (await inbox.get("/_dev/inbox")).json()["data"]
    assert answer.status_code == 400 and answer.json()["verified"] is False
    assert listed == []


def test_the_inbox_command_verifies_with_the_first_signing_secret_and_stops_on_sigterm() -> None:
    port = free_port()
    other = new_secret()
    inbox = Process("inbox", ["inbox", "--port", str(port)],
                    {"RELAY_SIGNING_SECRETS": f"{SECRET} {other}", "RELAY_LOG_FORMAT": "text"})
    try:
        inbox.wait_for_log(f"inbox on http://127.0.0.1:{port}/_dev/inbox")
        url = f"http://127.0.0.1:{port}/_dev/inbox"
        body = json.dumps(EVENT).encode()
        deadline = time.monotonic() + 20
        while True:  # the line is printed just before uvicorn binds the port
            try:
                answer = httpx.post(url, content=body, headers=signed(body))
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, inbox.text()
                time.sleep(0.05)
        assert answer.status_code == 200
        assert httpx.get(url).json()["data"] == [{"webhook_id": "msg_1", "event": EVENT}]
        assert "job.completed for job_a (verified, msg_1)" in inbox.text()
    finally:
        code = inbox.terminate()  # SIGTERM
    assert code == 0


def test_the_inbox_command_names_a_missing_secret() -> None:
    inbox = Process("inbox", ["inbox", "--port", str(free_port())],
                    {"RELAY_SIGNING_SECRETS": ""})
    inbox.proc.wait(timeout=20)
    assert inbox.terminate() != 0  # it stopped by itself: this only collects the exit code
    assert "RELAY_SIGNING_SECRETS" in inbox.text()
