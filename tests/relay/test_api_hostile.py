"""The API against a hostile tenant: ids shaped like key names, poisoned JSON, too many
subscriptions. Through ASGITransport, against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from config import Settings
from relay.store import keys
from tests.conftest import OTHER_TOKEN, api_client
from tests.relay.test_api import HOOK, assert_error, create

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
    sid = (await create(api, url=long_url, metadata={"k": "v" * 100}))["id"]
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
    sid = (await create(api))["id"]
    response = await api.post(f"/v1/subscriptions/{sid}/deliveries/{mid}/retry")
    assert_error(response, 404, "NotFoundError")
    assert await redis.get(keys.MSG_SEQ) == "41"


async def test_a_job_id_with_colons_is_an_ordinary_job_id(api: httpx.AsyncClient) -> None:
    """Job ids are the user's own and may hold `:`; no key of another type starts like theirs."""
    await create(api, job_id="a:b")
    for job_id in ("a:b:url", "a:b:metadata", "a", "seq", "a:b:"):
        assert_error(await api.get(f"/v1/jobs/{job_id}"), 404, "NotFoundError")
    assert (await api.get("/v1/jobs/a:b")).status_code == 200
