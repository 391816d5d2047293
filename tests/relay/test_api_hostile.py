"""The API against a hostile tenant: ids shaped like key names, poisoned JSON, too many
subscriptions. Through ASGITransport, against a real Redis."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from config import Settings
from relay.store import keys
from tests.conftest import OTHER_TOKEN, SettingsFactory, api_client, subscribe
from tests.relay.test_api import HOOK, assert_error, assert_validation

Json = dict[str, Any]


@pytest.fixture
async def bob(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, OTHER_TOKEN) as client:
        yield client


# --- path ids: only the shapes the relay issues reach Redis --------------------------------

# Each names a key of a real subscription or delivery, or a fixed key, once prefixed.
KEYLIKE_SUFFIXES = [":url", ":metadata", ":", ":*", "*", ":seq", ":x:y"]


async def test_a_subscription_id_shaped_like_a_key_suffix_is_404_for_everyone(
    api: httpx.AsyncClient, bob: httpx.AsyncClient, redis: Redis
) -> None:
    long_url = HOOK + "/" + "x" * 100  # long enough to get a key of its own: vr:sub:{sid}:url
    sid = (await subscribe(api, url=long_url, metadata={"k": "v" * 100}))["id"]
    assert await redis.exists(keys.spilled(sid, "url"), keys.spilled(sid, "metadata")) == 2
    for suffix in KEYLIKE_SUFFIXES:
        for client in (api, bob):
            for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/deliveries"),
                                 ("POST", "/deliveries/msg_0000000000000000001/retry")):
                response = await client.request(method, f"/v1/subscriptions/{sid}{suffix}{path}")
                assert_error(response, 404, "NotFoundError")
    assert (await api.get(f"/v1/subscriptions/{sid}")).json()["state"] == "active"


@pytest.mark.parametrize("sid", [
    "seq", "sub_", "sub_01jzzzzzzzzzzzzzzzzzzzzzzz",  # lower case is not what ids.py makes
    "sub_01JZZZZZZZZZZZZZZZZZZZZZZI",  # I is not in Crockford's alphabet
    "sub_01JZZZZZZZZZZZZZZZZZZZZZZZZ", "x" * 5000, "sub_%00", "%E2%80%AE", "..",
])
async def test_odd_subscription_ids_are_404(api: httpx.AsyncClient, sid: str) -> None:
    body = assert_error(await api.get(f"/v1/subscriptions/{sid}"), 404, "NotFoundError")
    assert len(body["message"]) < 200  # a long path is not echoed back whole


@pytest.mark.parametrize("mid", [
    "seq", "msg_", "msg_0000000000000000001:x", "msg_ZZZZZZZZZZZZZZZZZZZ", "msg_*", "x" * 300,
])
async def test_odd_delivery_ids_are_404(api: httpx.AsyncClient, redis: Redis, mid: str) -> None:
    await redis.set(keys.MSG_SEQ, 41)  # vr:msg:seq: what `seq` would have named
    sid = (await subscribe(api))["id"]
    response = await api.post(f"/v1/subscriptions/{sid}/deliveries/{mid}/retry")
    assert_error(response, 404, "NotFoundError")
    assert await redis.get(keys.MSG_SEQ) == "41"


async def test_a_job_id_with_colons_is_an_ordinary_job_id(api: httpx.AsyncClient) -> None:
    """Job ids are the user's own and may hold `:`; no key of another type starts like theirs."""
    await subscribe(api, job_id="a:b")
    for job_id in ("a:b:url", "a:b:metadata", "a", "seq", "a:b:"):
        assert_error(await api.get(f"/v1/jobs/{job_id}"), 404, "NotFoundError")
    assert (await api.get("/v1/jobs/a:b")).status_code == 200


# --- lone surrogates and other JSON that cannot be written back out ------------------------

SURROGATES = ["\\ud800", "\\udfff", "\\uDBFF", "a\\ud800b", "\\ude00\\ud83d"]  # as JSON escapes


def body_with(field: str, text: str) -> bytes:
    """A subscription body whose `field` holds the raw JSON text `text`."""
    fields = {"job_id": '"job_1"', "url": json.dumps(HOOK), field: text}
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()


@pytest.mark.parametrize("escape", SURROGATES)
@pytest.mark.parametrize("field, template", [
    ("metadata", '{"k":"%s"}'), ("metadata", '{"%s":1}'), ("metadata", '{"a":[{"b":["%s"]}]}'),
    ("url", '"http://127.0.0.1:9/%s"'), ("job_id", '"job%s"'), ("events", '["%s"]'),
])
async def test_a_lone_surrogate_escape_is_refused_naming_its_field(
    api: httpx.AsyncClient, field: str, template: str, escape: str
) -> None:
    raw = body_with(field, template % escape)
    response = await api.post("/v1/subscriptions", content=raw,
                              headers={"content-type": "application/json"})
    assert_validation(response, field)
    assert (await api.get("/v1/subscriptions")).json()["data"] == []


@pytest.mark.parametrize("encoded", [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xff", b"\xc0\xaf"])
async def test_raw_bytes_that_are_not_utf8_are_refused(
    api: httpx.AsyncClient, encoded: bytes
) -> None:
    raw = b'{"job_id": "job_1", "url": "' + HOOK.encode() + b'", "metadata": {"k": "' + encoded
    response = await api.post("/v1/subscriptions", content=raw + b'"}}')
    assert_validation(response, None)


async def test_a_lone_surrogate_in_a_field_name_is_refused(api: httpx.AsyncClient) -> None:
    raw = b'{"job_id": "job_1", "url": "' + HOOK.encode() + b'", "x\\ud800": 1}'
    body = assert_validation(await api.post("/v1/subscriptions", content=raw), None)
    assert "surrogate" in body["message"]


async def test_a_surrogate_pair_is_a_character_and_round_trips(api: httpx.AsyncClient) -> None:
    raw = body_with("metadata", '{"face":"\\ud83d\\ude00"}')
    response = await api.post("/v1/subscriptions", content=raw)
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    assert (await api.get(f"/v1/subscriptions/{sid}")).json()["metadata"] == {"face": "😀"}


async def test_a_record_poisoned_before_the_checks_does_not_break_listings(
    api: httpx.AsyncClient, redis: Redis
) -> None:
    """Data written before these checks (or by any other path) is shown, cleaned: never a 500
    for every listing until retention ends."""
    sid = (await subscribe(api))["id"]
    await redis.hset(keys.sub(sid), "metadata", '{"k":"\\ud800","n":NaN}')
    mid = "msg_0000000000000000001"
    await redis.hset(keys.msg(mid), mapping={
        "id": mid, "sub_id": sid, "event_type": "job.completed", "status": "succeeded",
        "next_attempt_at": "", "created_at": "1.0",
        "body": '{"data":{"job":{"progress":NaN,"size":Infinity,"m":"\\udc00"}}}'})
    await redis.rpush(keys.msgs(sid), mid)
    listed = await api.get("/v1/subscriptions")
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"][0]["metadata"] == {"k": "\ufffd", "n": None}
    assert (await api.get(f"/v1/subscriptions/{sid}")).status_code == 200
    found = await api.get(f"/v1/subscriptions/{sid}/deliveries")
    assert found.status_code == 200, found.text
    assert found.json()["data"][0]["payload"] == {
        "data": {"job": {"progress": None, "size": None, "m": "\ufffd"}}}
    for response in (listed, found):
        json.loads(response.content, parse_constant=_not_json)  # strict: no NaN, valid UTF-8


def _not_json(name: str) -> None:
    raise AssertionError(f"{name} in a response")


# --- a cap on the active subscriptions of one token ----------------------------------------


@pytest.fixture
async def capped(make_settings: SettingsFactory, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(make_settings(RELAY_MAX_SUBSCRIPTIONS_PER_TOKEN="3")) as client:
        yield client


@pytest.fixture
async def capped_bob(make_settings: SettingsFactory, redis: Redis
                     ) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(RELAY_MAX_SUBSCRIPTIONS_PER_TOKEN="3")
    async with api_client(settings, OTHER_TOKEN) as client:
        yield client


def assert_capped(response: httpx.Response, cap: int) -> None:
    body = assert_error(response, 429, "RateLimitError")
    assert set(body) == {"error", "message", "statusCode"}
    assert f"cap (RELAY_MAX_SUBSCRIPTIONS_PER_TOKEN={cap})" in body["message"]


async def test_past_the_cap_a_token_gets_429_naming_it(
    capped: httpx.AsyncClient, capped_bob: httpx.AsyncClient
) -> None:
    ids = [(await subscribe(capped, job_id=f"job_{n}"))["id"] for n in range(3)]
    assert_capped(await capped.post("/v1/subscriptions",
                                     json={"job_id": "job_9", "url": HOOK}), 3)
    # The same subscription again is not a new one: still 200 with the existing one.
    again = await capped.post("/v1/subscriptions", json={"job_id": "job_0", "url": HOOK})
    assert again.status_code == 200 and again.json()["id"] == ids[0]
    # Another token has places of its own.
    assert (await subscribe(capped_bob, job_id="job_9"))["state"] == "active"
    listed = (await capped.get("/v1/subscriptions")).json()["data"]
    assert [s["id"] for s in listed] == ids


async def test_a_deleted_subscription_frees_its_place_once(capped: httpx.AsyncClient) -> None:
    ids = [(await subscribe(capped, job_id=f"job_{n}"))["id"] for n in range(3)]
    assert (await capped.delete(f"/v1/subscriptions/{ids[0]}")).status_code == 204
    assert (await capped.delete(f"/v1/subscriptions/{ids[0]}")).status_code == 204
    await subscribe(capped, job_id="job_3")
    assert_capped(await capped.post("/v1/subscriptions",
                                     json={"job_id": "job_4", "url": HOOK}), 3)


async def test_the_cap_holds_under_concurrent_creates(
    make_settings: SettingsFactory, redis: Redis
) -> None:
    settings = make_settings(RELAY_MAX_SUBSCRIPTIONS_PER_TOKEN="5")
    async with api_client(settings) as client:
        responses = await asyncio.gather(*(
            client.post("/v1/subscriptions", json={"job_id": f"job_{n}", "url": HOOK})
            for n in range(40)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 5 + [429] * 35
    assert await redis.hget(keys.ACTIVE, next(iter(await redis.hkeys(keys.ACTIVE)))) == "5"
