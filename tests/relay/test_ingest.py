"""POST /v1/ingest/varg: Varg's v2 webhooks verified with VARG_WEBHOOK_SECRET, taken as hints.

The signer here is the simulator's (`varg_webhook_headers`), written apart from the relay's
verifier, so a test that passes proves the two agree on Varg's scheme.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from relay.api.ingest import TOLERANCE, signature_parts, timestamp_seconds, verify
from relay.devtools.simulator import varg_webhook_headers
from relay.store import keys
from tests.conftest import SettingsFactory, api_client

HOOK_SECRET = "vhook_test_secret_0123456789"
JOB = {"id": "job_hint", "status": "completed", "tool": "image"}
NOW = 1_771_000_000.0


def signed(body: bytes, secret: str = HOOK_SECRET, at: float = NOW) -> dict[str, str]:
    return varg_webhook_headers(secret, body, "job.completed", int(at * 1000))


# --- the signature, pure -------------------------------------------------------------------


def test_a_webhook_signed_as_varg_signs_verifies() -> None:
    body = json.dumps(JOB).encode()
    assert verify(HOOK_SECRET, body, signed(body), NOW)


@pytest.mark.parametrize(("why", "body", "headers", "now"), [
    ("another secret", b"{}", signed(b"{}", secret="vhook_other_secret_0000000"), NOW),
    ("body changed", b'{"id":"x"}', signed(b"{}"), NOW),
    ("too old", b"{}", signed(b"{}"), NOW + TOLERANCE + 1),
    ("from the future", b"{}", signed(b"{}"), NOW - TOLERANCE - 1),
    ("unsigned", b"{}", {"x-varg-timestamp": str(int(NOW * 1000))}, NOW),
    ("no timestamp", b"{}", {"x-varg-signature": signed(b"{}")["x-varg-signature"]}, NOW),
])
def test_forged_or_stale_webhooks_do_not_verify(
    why: str, body: bytes, headers: dict[str, str], now: float
) -> None:
    assert not verify(HOOK_SECRET, body, headers, now), why


def test_any_of_several_signatures_and_a_stripe_style_header() -> None:
    body = b'{"id":"job_1"}'
    digest = hmac.new(HOOK_SECRET.encode(), b"1771000000." + body, hashlib.sha256).hexdigest()
    assert verify(HOOK_SECRET, body, {"x-varg-signature": f"t=1771000000,v1={digest}"}, NOW)
    rotated = {"x-varg-timestamp": "1771000000", "x-varg-signature": f"v1={'0' * 64} v1={digest}"}
    assert verify(HOOK_SECRET, body, rotated, NOW)


def test_header_parts() -> None:
    assert signature_parts("v1=AB, v1=cd") == (None, ["ab", "cd"])
    assert signature_parts("t=12,v1=ab") == ("12", ["ab"])
    assert signature_parts("sha256=ab") == (None, [])
    assert timestamp_seconds("1771000000123") == pytest.approx(1771000000.123)
    assert timestamp_seconds("1771000000") == 1771000000.0
    assert timestamp_seconds("-5") is None and timestamp_seconds("soon") is None


# --- the route, against a real Redis ----------------------------------------------------------


@pytest.fixture
async def ingest(make_settings: SettingsFactory, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(make_settings(VARG_WEBHOOK_SECRET=HOOK_SECRET), token=None) as client:
        yield client


async def post(client: httpx.AsyncClient, job: dict[str, Any],
               headers: dict[str, str] | None = None) -> httpx.Response:
    body = json.dumps(job).encode()
    sent = headers if headers is not None else signed(body, at=time.time())
    return await client.post("/v1/ingest/varg", content=body, headers=sent)


async def watched(make_settings: SettingsFactory, job_id: str) -> None:
    async with api_client(make_settings()) as api:
        response = await api.post("/v1/subscriptions", json={
            "job_id": job_id, "url": "https://hooks.example.com/x"})
        assert response.status_code == 201


async def test_off_without_a_secret(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/ingest/varg", json=JOB)
    assert response.status_code == 404
    assert "VARG_WEBHOOK_SECRET" in response.json()["message"]


async def test_a_forged_hint_is_refused_and_changes_nothing(
    ingest: httpx.AsyncClient, make_settings: SettingsFactory, redis: Redis
) -> None:
    await watched(make_settings, "job_hint")
    await redis.zadd(keys.DUE, {"job_hint": 9e9})
    before = await redis.hgetall(keys.watch("job_hint"))
    forged = signed(json.dumps(JOB).encode(), secret="vhook_guessed_secret_00000000")
    response = await post(ingest, JOB, forged)
    assert response.status_code == 401
    assert response.json()["error"] == "AuthError"
    assert await redis.zscore(keys.DUE, "job_hint") == 9e9
    assert await redis.hgetall(keys.watch("job_hint")) == before


async def test_a_genuine_hint_makes_the_job_due_now_once(
    ingest: httpx.AsyncClient, make_settings: SettingsFactory, redis: Redis
) -> None:
    await watched(make_settings, "job_hint")
    await redis.zadd(keys.DUE, {"job_hint": 9e9})
    body = json.dumps(JOB).encode()
    headers = signed(body, at=time.time())
    first = await ingest.post("/v1/ingest/varg", content=body, headers=headers)
    assert first.status_code == 202
    assert first.json() == {"job_id": "job_hint", "outcome": "polled"}
    assert await redis.zscore(keys.DUE, "job_hint") < 9e9
    replayed = await ingest.post("/v1/ingest/varg", content=body, headers=headers)
    assert (replayed.status_code, replayed.json()["outcome"]) == (202, "replay")
    watch = await redis.hgetall(keys.watch("job_hint"))
    assert "status" not in watch and not await redis.exists(keys.job("job_hint"))  # no status


async def test_a_hint_for_an_unwatched_job_is_taken_and_ignored(
    ingest: httpx.AsyncClient, redis: Redis
) -> None:
    response = await post(ingest, {"id": "job_elsewhere", "status": "completed"})
    assert (response.status_code, response.json()["outcome"]) == (202, "unwatched")
    assert await redis.exists(keys.watch("job_elsewhere")) == 0


@pytest.mark.parametrize(("job", "field"), [
    ({"status": "completed"}, "id"),
    ({"id": "has space"}, "id"),
    ({"job_id": 12}, "job_id"),
])
async def test_a_signed_body_without_a_job_is_400(
    ingest: httpx.AsyncClient, job: dict[str, Any], field: str
) -> None:
    response = await post(ingest, job)
    assert response.status_code == 400
    assert response.json()["field"] == field


async def test_a_body_over_64_kib_is_413(ingest: httpx.AsyncClient) -> None:
    response = await post(ingest, {"id": "j", "pad": "x" * 70_000})
    assert response.status_code == 413
