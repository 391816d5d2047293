"""varg_relay_receiver: the helper integrators use to verify, parse and dedupe varg-relay webhooks,
fed with headers built by the relay's own delivery code and used from real framework requests."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from varg_relay_receiver import (
    Event,
    InvalidWebhook,
    MemorySeen,
    RedisSeen,
    WebhookReceiver,
)

from relay.delivery.send import webhook_headers
from relay.delivery.signing import new_secret, signature_header
from tests.conftest import REDIS_URL

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-key-of-32-bytes-length!!").decode()
MSG_ID = "msg_2mDbB4hYbzPzmXhWqTQq1E7Vv1a"


def event_body(**data: Any) -> bytes:
    payload = {
        "type": "job.completed",
        "timestamp": "2025-01-02T03:04:05Z",
        "data": {
            "subscription_id": "sub_1", "job_id": "job_1", "status": "completed",
            "previous_status": "processing", "job": {"id": "job_1", "status": "completed"},
            "metadata": {"order": 42},
        } | data,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


BODY = event_body()


def signed(
    body: bytes = BODY, msg_id: str = MSG_ID, secrets: tuple[str, ...] = (SECRET,),
    timestamp: int | None = None,
) -> dict[str, str]:
    at = int(time.time()) if timestamp is None else timestamp
    return webhook_headers(msg_id, body, secrets, at)


# --- verification ---------------------------------------------------------------------------

def test_valid_webhook_gives_a_typed_event() -> None:
    event = WebhookReceiver(secret=SECRET).receive(BODY, signed())
    assert event == Event(
        id=MSG_ID, type="job.completed", timestamp=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        subscription_id="sub_1", job_id="job_1", status="completed", previous_status="processing",
        job={"id": "job_1", "status": "completed"}, metadata={"order": 42},
        raw=json.loads(BODY),
    )


def test_str_body_and_mixed_case_headers_are_accepted() -> None:
    headers = {key.title(): value for key, value in signed().items()}
    event = WebhookReceiver(secret=SECRET).verify(BODY.decode(), headers)
    assert event.id == MSG_ID


def test_null_job_and_previous_status() -> None:
    body = event_body(job=None, previous_status=None, status="not_found")
    event = WebhookReceiver(secret=SECRET).verify(body, signed(body))
    assert (event.job, event.previous_status, event.raw["data"]["job"]) == ({}, None, None)


def test_tampered_body_is_rejected() -> None:
    headers = signed()
    with pytest.raises(InvalidWebhook, match="signature"):
        WebhookReceiver(secret=SECRET).receive(BODY.replace(b"42", b"43"), headers)


def test_wrong_secret_is_rejected() -> None:
    with pytest.raises(InvalidWebhook, match="signature"):
        WebhookReceiver(secret=new_secret()).receive(BODY, signed())


@pytest.mark.parametrize("relay_secrets", [(SECRET,), (OTHER_SECRET,), (OTHER_SECRET, SECRET)])
def test_rotation_accepts_any_configured_secret(relay_secrets: tuple[str, ...]) -> None:
    receiver = WebhookReceiver(secrets=[SECRET, OTHER_SECRET])
    assert receiver.verify(BODY, signed(secrets=relay_secrets)).id == MSG_ID


def test_secret_and_secrets_combine() -> None:
    receiver = WebhookReceiver(SECRET, secrets=[OTHER_SECRET])
    assert receiver.verify(BODY, signed(secrets=(OTHER_SECRET,))).id == MSG_ID


def test_rotation_still_rejects_an_unknown_secret() -> None:
    receiver = WebhookReceiver(secrets=[SECRET, OTHER_SECRET])
    with pytest.raises(InvalidWebhook, match="signature"):
        receiver.verify(BODY, signed(secrets=(new_secret(),)))


def test_no_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookReceiver()


@pytest.mark.parametrize(("offset", "word"), [(-600, "too old"), (600, "too new")])
def test_timestamp_outside_tolerance_is_rejected(offset: int, word: str) -> None:
    headers = signed(timestamp=int(time.time()) + offset)
    with pytest.raises(InvalidWebhook, match=word):
        WebhookReceiver(secret=SECRET).receive(BODY, headers)


def test_timestamp_header_is_signed() -> None:
    headers = signed() | {"webhook-timestamp": str(int(time.time()) - 1)}
    with pytest.raises(InvalidWebhook, match="signature"):
        WebhookReceiver(secret=SECRET).receive(BODY, headers)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(missing: str) -> None:
    headers = {k: v for k, v in signed().items() if k != missing}
    with pytest.raises(InvalidWebhook, match="Missing"):
        WebhookReceiver(secret=SECRET).receive(BODY, headers)


@pytest.mark.parametrize("bad", ["v1", "v1,a,b", "garbage", "v1,####"])
def test_malformed_signature_header_is_rejected(bad: str) -> None:
    with pytest.raises(InvalidWebhook):
        WebhookReceiver(secret=SECRET).receive(BODY, signed() | {"webhook-signature": bad})


def test_non_utf8_body_is_rejected() -> None:
    body = b"\xff\xfe"
    with pytest.raises(InvalidWebhook):
        WebhookReceiver(secret=SECRET).receive(body, signed(body))


@pytest.mark.parametrize("body", [b"not json", b"[1]", b'{"type":"job.completed"}',
                                  event_body(job_id=7), event_body(metadata=[1])])
def test_signed_but_malformed_body_is_rejected(body: bytes) -> None:
    with pytest.raises(InvalidWebhook, match="not a varg-relay event"):
        WebhookReceiver(secret=SECRET).receive(body, signed(body))


def test_unsigned_version_is_ignored() -> None:
    header = "v2,abc " + signature_header((SECRET,), MSG_ID, int(time.time()), BODY)
    headers = signed() | {"webhook-signature": header}
    assert WebhookReceiver(secret=SECRET).verify(BODY, headers).id == MSG_ID


# --- dedupe ---------------------------------------------------------------------------------

def test_duplicate_webhook_id_is_dropped() -> None:
    receiver = WebhookReceiver(secret=SECRET)
    assert receiver.receive(BODY, signed()) is not None
    # A retry: same id, new attempt timestamp and signature.
    assert receiver.receive(BODY, signed(timestamp=int(time.time()) + 1)) is None
    assert receiver.receive(BODY, signed(msg_id="msg_other")) is not None


def test_invalid_webhook_does_not_mark_the_id_seen() -> None:
    receiver = WebhookReceiver(secret=SECRET)
    with pytest.raises(InvalidWebhook):
        receiver.receive(BODY, signed(secrets=(new_secret(),)))
    assert receiver.receive(BODY, signed()) is not None


def test_verify_then_mark_seen_after_processing() -> None:
    receiver = WebhookReceiver(secret=SECRET)
    first = receiver.verify(BODY, signed())
    # The handler failed: nothing marked, so the relay's retry is processed.
    retry = receiver.verify(BODY, signed())
    assert retry == first
    assert receiver.seen.add(retry.id) is True
    assert receiver.receive(BODY, signed()) is None


def test_process_handles_each_webhook_id_once() -> None:
    receiver, handled = WebhookReceiver(secret=SECRET), []
    event = receiver.process(BODY, signed(), handled.append)
    assert event is not None and handled == [event]
    assert receiver.process(BODY, signed(timestamp=int(time.time()) + 1), handled.append) is None
    assert handled == [event]


def test_process_releases_the_id_when_handling_fails() -> None:
    receiver = WebhookReceiver(secret=SECRET)

    def fail(event: Event) -> None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        receiver.process(BODY, signed(), fail)
    handled: list[Event] = []
    assert receiver.process(BODY, signed(), handled.append) is not None  # the relay's retry
    assert len(handled) == 1


def test_process_marks_nothing_for_an_invalid_webhook() -> None:
    receiver, handled = WebhookReceiver(secret=SECRET), []
    with pytest.raises(InvalidWebhook):
        receiver.process(BODY, signed(secrets=(new_secret(),)), handled.append)
    assert receiver.process(BODY, signed(), handled.append) is not None and len(handled) == 1


def test_process_needs_a_store_that_can_release() -> None:
    class AddOnly:
        def add(self, webhook_id: str) -> bool:
            return True

    with pytest.raises(TypeError, match="discard"):
        WebhookReceiver(secret=SECRET, seen=AddOnly()).process(BODY, signed(), print)


def test_redis_seen_releases_an_id(sync_redis: redis.Redis) -> None:
    seen = RedisSeen(sync_redis)
    assert seen.add(MSG_ID) is True
    seen.discard(MSG_ID)
    assert seen.add(MSG_ID) is True


def test_custom_seen_store() -> None:
    class Never:
        def add(self, webhook_id: str) -> bool:
            return False

    assert WebhookReceiver(secret=SECRET, seen=Never()).receive(BODY, signed()) is None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_seen_is_bounded() -> None:
    seen = MemorySeen(max_items=3)
    assert all(seen.add(f"msg_{i}") for i in range(5))
    assert len(seen) == 3
    assert [seen.add(f"msg_{i}") for i in (4, 3, 2)] == [False, False, False]
    # The oldest were evicted, so they count as new again.
    assert seen.add("msg_0") is True
    assert len(seen) == 3


def test_memory_seen_ttl() -> None:
    clock = Clock()
    seen = MemorySeen(ttl=60, clock=clock)
    assert seen.add("msg_a") is True
    clock.now += 30
    assert seen.add("msg_b") is True
    assert seen.add("msg_a") is False
    clock.now += 30
    assert seen.add("msg_a") is True  # expired exactly at its TTL
    assert seen.add("msg_b") is False
    clock.now += 31
    assert len(seen) == 2
    assert seen.add("msg_c") is True
    assert len(seen) == 2  # msg_b expired and was evicted; msg_a (re-added) lives on


@pytest.mark.parametrize("kwargs", [{"max_items": 0}, {"ttl": 0}])
def test_memory_seen_rejects_nonsense_limits(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        MemorySeen(**kwargs)  # type: ignore[arg-type]


@pytest.fixture
def sync_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_redis_seen_against_real_redis(sync_redis: redis.Redis) -> None:
    seen = RedisSeen(sync_redis, ttl=120)
    assert seen.add(MSG_ID) is True
    assert seen.add(MSG_ID) is False
    assert seen.add("msg_other") is True
    key = seen.prefix + MSG_ID
    assert 0 < int(sync_redis.ttl(key)) <= 120  # type: ignore[arg-type]
    sync_redis.delete(key)  # as if the TTL had run out
    assert seen.add(MSG_ID) is True


def test_redis_seen_is_shared_between_receivers(sync_redis: redis.Redis) -> None:
    one = WebhookReceiver(secret=SECRET, seen=RedisSeen(sync_redis))
    two = WebhookReceiver(secret=SECRET, seen=RedisSeen(sync_redis))
    assert one.receive(BODY, signed()) is not None
    assert two.receive(BODY, signed()) is None


def test_redis_seen_refuses_an_async_client() -> None:
    from redis.asyncio import Redis as AsyncRedis

    # Types can't tell sync from async clients (both return Awaitable | Any): a run-time check.
    seen = RedisSeen(AsyncRedis.from_url(REDIS_URL))
    with pytest.raises(TypeError, match="sync redis client"):
        seen.add(MSG_ID)


def test_redis_seen_rejects_a_zero_ttl(sync_redis: redis.Redis) -> None:
    with pytest.raises(ValueError, match="ttl"):
        RedisSeen(sync_redis, ttl=0)


# --- frameworks -----------------------------------------------------------------------------

async def test_starlette_app_through_asgi_transport() -> None:
    receiver = WebhookReceiver(secret=SECRET)
    handled: list[Event] = []

    async def hook(request: Request) -> Response:
        try:
            event = receiver.receive(await request.body(), request.headers)
        except InvalidWebhook:
            return Response(status_code=400)
        if event:
            handled.append(event)
        return JSONResponse({"duplicate": event is None})

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.post("/hook", content=BODY, headers=signed())
        again = await client.post("/hook", content=BODY, headers=signed())
        bad = await client.post("/hook", content=BODY + b" ", headers=signed())
    assert (first.json(), again.json(), bad.status_code) == (
        {"duplicate": False}, {"duplicate": True}, 400)
    assert [e.job_id for e in handled] == ["job_1"]


def test_flask_app_through_test_client() -> None:
    flask = pytest.importorskip("flask")
    receiver = WebhookReceiver(secret=SECRET)
    app = flask.Flask(__name__)

    @app.post("/hook")
    def hook() -> tuple[str, int]:
        try:
            event = receiver.receive(flask.request.get_data(), flask.request.headers)
        except InvalidWebhook:
            return "", 400
        return (event.status if event else "duplicate"), 200

    client = app.test_client()
    first = client.post("/hook", data=BODY, headers=signed())
    again = client.post("/hook", data=BODY, headers=signed())
    bad = client.post("/hook", data=BODY, headers=signed(secrets=(new_secret(),)))
    assert (first.text, again.text, bad.status_code) == ("completed", "duplicate", 400)


def test_django_view_through_request_factory() -> None:
    pytest.importorskip("django")
    from django.conf import settings

    if not settings.configured:
        settings.configure(ALLOWED_HOSTS=["testserver"], DEFAULT_CHARSET="utf-8")
    from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
    from django.test import RequestFactory

    receiver = WebhookReceiver(secret=SECRET)

    def hook(request: HttpRequest) -> HttpResponse:
        try:
            event = receiver.receive(request.body, request.headers)
        except InvalidWebhook:
            return HttpResponseBadRequest()
        return HttpResponse(event.type if event else "duplicate")

    factory = RequestFactory()

    def post(headers: dict[str, str]) -> HttpResponse:
        return hook(factory.post("/hook", BODY, content_type="application/json", headers=headers))

    first, again = post(signed()), post(signed())
    bad = post(signed(timestamp=int(time.time()) - 3600))
    assert (first.content, again.content, bad.status_code) == (b"job.completed", b"duplicate", 400)
