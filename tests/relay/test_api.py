"""The relay API (contract §4) through ASGITransport, against a real Redis.

Tests that need deliveries run the in-process arq worker against the simulator and the
verifying receiver. No test makes real DNS queries: the SSRF test fakes the loop's resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from config import Settings
from relay.app import create_app
from relay.store import keys
from relay.store.store import Store
from tests.conftest import (
    OTHER_TOKEN,
    TOKEN,
    Receiver,
    SettingsFactory,
    api_client,
    deliveries,
    sim_job,
    subscribe,
    walk,
)
from tests.support import eventually

ALL_EVENTS = [
    "job.queued", "job.processing", "job.completed", "job.failed", "job.cancelled",
    "job.status_changed", "job.not_found", "job.watch_expired",
]
SUB_ID = re.compile(r"^sub_[0-9A-Z]{26}$")
MSG_ID = re.compile(r"^msg_[0-9A-Za-z]+$")
SUBSCRIPTION_KEYS = {"id", "job_id", "url", "events", "metadata", "state", "last_status",
                     "created_at", "updated_at"}
FAKE_SID = "sub_01JZZZZZZZZZZZZZZZZZZZZZZZ"
FAKE_MID = "msg_01JZZZZZZZZZZZZZZZZZZZZZZZ"
# Loopback, discard port: even if a worker were to deliver to it, nothing leaves the machine.
HOOK = "http://127.0.0.1:9/varg"

Json = dict[str, Any]


# --- helpers ---------------------------------------------------------------------------------


def is_iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.tzinfo is not None


def assert_error(response: httpx.Response, status: int, name: str,
                 field: str | None = None) -> Json:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: Json = response.json()
    assert body["error"] == name
    assert body["statusCode"] == status
    assert isinstance(body["message"], str) and body["message"]
    if field is None:
        assert set(body) <= {"error", "message", "field", "statusCode"}
    else:
        assert set(body) == {"error", "message", "field", "statusCode"}
        assert body["field"] == field, body
    return body


def assert_validation(response: httpx.Response, field: str | None) -> Json:
    return assert_error(response, 400, "ValidationError", field)


async def list_all(client: httpx.AsyncClient, limit: int, **params: str) -> list[Json]:
    """Walk every page; fail on a loop or a duplicate."""
    seen: list[Json] = []
    cursor: str | None = None
    for _ in range(100):
        query: dict[str, str | int] = {"limit": limit, **params}
        if cursor:
            query["cursor"] = cursor
        response = await client.get("/v1/subscriptions", params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"data", "next_cursor"}
        assert len(page["data"]) <= limit
        seen.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page["data"], "a non-final page is never empty"
    ids = [s["id"] for s in seen]
    assert len(ids) == len(set(ids)), "duplicates across pages"
    return seen


async def create_in_order(client: httpx.AsyncClient, count: int, **fields: Any) -> list[str]:
    """Create `count` subscriptions, a few milliseconds apart (ids order by millisecond)."""
    ids = []
    for n in range(count):
        sub = await subscribe(client, url=f"{HOOK}/{n}", **fields)
        ids.append(sub["id"])
        await asyncio.sleep(0.003)
    return ids


@pytest.fixture
async def bob(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    """A second, valid API token: a different owner."""
    async with api_client(settings, OTHER_TOKEN) as client:
        yield client


@pytest.fixture
async def anonymous(settings: Settings, redis: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings, None) as client:
        yield client


# --- POST /v1/subscriptions ------------------------------------------------------------------


async def test_create_returns_201_location_and_full_shape(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/subscriptions", json={
        "job_id": "job_abc", "url": HOOK, "metadata": {"order": 42, "tags": ["a"]}})
    assert response.status_code == 201
    sub = response.json()
    assert set(sub) == SUBSCRIPTION_KEYS
    assert SUB_ID.match(sub["id"])
    assert response.headers["location"] == f"/v1/subscriptions/{sub['id']}"
    assert sub["job_id"] == "job_abc"
    assert sub["url"] == HOOK
    assert sub["events"] == ALL_EVENTS
    assert sub["metadata"] == {"order": 42, "tags": ["a"]}
    assert sub["state"] == "active"
    assert sub["last_status"] is None
    assert is_iso(sub["created_at"]) and is_iso(sub["updated_at"])
    assert sub["created_at"] <= sub["updated_at"]


async def test_location_resolves_to_same_subscription(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/subscriptions", json={"job_id": "j", "url": HOOK})
    again = await api.get(response.headers["location"])
    assert again.status_code == 200
    assert again.json() == response.json()


async def test_metadata_defaults_to_empty_object(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api)
    assert sub["metadata"] == {}


async def test_explicit_events_are_kept(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api, events=["job.completed", "job.failed"])
    assert sub["events"] == ["job.completed", "job.failed"]


async def test_events_come_back_in_the_order_given(api: httpx.AsyncClient) -> None:
    given = ["job.watch_expired", "job.failed", "job.queued", "job.status_changed"]
    sub = await subscribe(api, events=given)
    assert sub["events"] == given
    assert (await api.get(f"/v1/subscriptions/{sub['id']}")).json()["events"] == given


async def test_duplicate_events_are_collapsed(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api, events=["job.completed", "job.completed"])
    assert sub["events"] == ["job.completed"]


async def test_same_registration_while_active_returns_200_same_id(
    api: httpx.AsyncClient,
) -> None:
    first = await subscribe(api, events=["job.completed", "job.failed"])
    again = await api.post("/v1/subscriptions", json={
        "job_id": "job_1", "url": HOOK, "events": ["job.failed", "job.completed"]})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    assert again.headers["location"] == f"/v1/subscriptions/{first['id']}"


async def test_default_events_equal_explicit_all_events(api: httpx.AsyncClient) -> None:
    first = await subscribe(api)
    again = await api.post("/v1/subscriptions",
                           json={"job_id": "job_1", "url": HOOK, "events": ALL_EVENTS[::-1]})
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]


async def test_different_events_make_a_new_subscription(api: httpx.AsyncClient) -> None:
    first = await subscribe(api, events=["job.completed"])
    second = await subscribe(api, events=["job.completed", "job.failed"])
    assert second["id"] != first["id"]


async def test_different_url_or_job_makes_a_new_subscription(api: httpx.AsyncClient) -> None:
    first = await subscribe(api)
    assert (await subscribe(api, url=HOOK + "/other"))["id"] != first["id"]
    assert (await subscribe(api, job_id="job_2"))["id"] != first["id"]


async def test_same_registration_after_delete_is_new(api: httpx.AsyncClient) -> None:
    first = await subscribe(api)
    assert (await api.delete(f"/v1/subscriptions/{first['id']}")).status_code == 204
    second = await subscribe(api)
    assert second["id"] != first["id"]
    assert second["state"] == "active"


async def test_other_token_gets_its_own_subscription(
    api: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    mine = await subscribe(api)
    theirs = await subscribe(bob)
    assert theirs["id"] != mine["id"]


# --- input rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", [
    None, "", "a" * 129, "has space", "a/b", "job?x", "ünïcode", 123, ["job"], ".", "..",
])
async def test_invalid_job_id(api: httpx.AsyncClient, job_id: Any) -> None:
    body: Json = {"url": HOOK}
    if job_id is not None:
        body["job_id"] = job_id
    assert_validation(await api.post("/v1/subscriptions", json=body), "job_id")


@pytest.mark.parametrize("job_id", ["a", "a" * 128, "Job_1.2:3-x", "gen:abc.DEF_9"])
async def test_valid_job_id(api: httpx.AsyncClient, job_id: str) -> None:
    assert (await subscribe(api, job_id=job_id))["job_id"] == job_id


@pytest.mark.parametrize("url", [
    None, "", 123, "not a url", "/relative/path", "example.com/hook", "ftp://example.com/",
    "file:///etc/passwd", "javascript:alert(1)", "http://", "https://exa mple.com/",
    "https://example.com/" + "a" * 2030,
])
async def test_invalid_url(api: httpx.AsyncClient, url: Any) -> None:
    body: Json = {"job_id": "job_1"}
    if url is not None:
        body["url"] = url
    assert_validation(await api.post("/v1/subscriptions", json=body), "url")


async def test_url_of_exactly_2048_characters_is_accepted(api: httpx.AsyncClient) -> None:
    url = HOOK + "/"
    url += "a" * (2048 - len(url))
    assert (await subscribe(api, url=url))["url"] == url


async def test_long_url_and_metadata_read_back_everywhere(api: httpx.AsyncClient) -> None:
    # Long values are stored apart from the subscription hash (relay/store); no view shows it.
    url, metadata = HOOK + "/" + "u" * 100, {"blob": "m" * 4000}
    sub = await subscribe(api, job_id="job_long", url=url, metadata=metadata)
    assert (sub["url"], sub["metadata"]) == (url, metadata)
    assert (await api.get(f"/v1/subscriptions/{sub['id']}")).json() == sub
    assert (await api.get("/v1/subscriptions")).json()["data"] == [sub]
    assert (await api.get("/v1/subscriptions?job_id=job_long")).json()["data"] == [sub]
    assert (await api.get("/v1/jobs/job_long")).json()["subscriptions"] == [sub]


@pytest.mark.parametrize("events", [
    [], "job.completed", ["job.nope"], ["job.completed", "job.bogus"], [1], {"a": 1}, [None],
    ["JOB.COMPLETED"],
])
async def test_invalid_events(api: httpx.AsyncClient, events: Any) -> None:
    response = await api.post("/v1/subscriptions",
                              json={"job_id": "job_1", "url": HOOK, "events": events})
    assert_validation(response, "events")


@pytest.mark.parametrize("metadata", [[], "text", 1, True, [{"a": 1}]])
async def test_metadata_must_be_an_object(api: httpx.AsyncClient, metadata: Any) -> None:
    response = await api.post("/v1/subscriptions",
                              json={"job_id": "job_1", "url": HOOK, "metadata": metadata})
    assert_validation(response, "metadata")


async def test_metadata_over_4_kib_is_refused(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/subscriptions", json={
        "job_id": "job_1", "url": HOOK, "metadata": {"blob": "x" * 4096}})
    assert_validation(response, "metadata")


async def test_metadata_of_4_kib_is_accepted(api: httpx.AsyncClient) -> None:
    overhead = len(json.dumps({"blob": ""}, separators=(",", ":")))
    metadata = {"blob": "x" * (4096 - overhead)}
    assert (await subscribe(api, metadata=metadata))["metadata"] == metadata


async def test_unknown_field_is_named(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/subscriptions",
                              json={"job_id": "job_1", "url": HOOK, "callback": "x"})
    assert_validation(response, "callback")


@pytest.mark.parametrize("raw", [
    b"", b"{", b"{'job_id': 'x'}", b"{\"job_id\": NaN}", b"\xff\xfe\x00", b"[" * 30000,
    b"{\"a\": Infinity}", b"{} {}",
])
async def test_malformed_json_is_400_not_500(api: httpx.AsyncClient, raw: bytes) -> None:
    response = await api.post("/v1/subscriptions", content=raw,
                              headers={"content-type": "application/json"})
    assert_validation(response, None)


@pytest.mark.parametrize("raw", [b"[]", b"\"text\"", b"42", b"null", b"true"])
async def test_body_must_be_an_object(api: httpx.AsyncClient, raw: bytes) -> None:
    response = await api.post("/v1/subscriptions", content=raw,
                              headers={"content-type": "application/json"})
    assert_validation(response, None)


def padded_body(size: int) -> bytes:
    """A valid subscription body padded with whitespace to exactly `size` bytes."""
    raw = json.dumps({"job_id": "job_1", "url": HOOK}).encode()
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


async def test_body_of_exactly_64_kib_is_accepted(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/subscriptions", content=padded_body(64 * 1024),
                              headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text


async def test_body_over_64_kib_with_content_length_is_413(api: httpx.AsyncClient) -> None:
    raw = padded_body(64 * 1024 + 1)
    response = await api.post("/v1/subscriptions", content=raw,
                              headers={"content-type": "application/json"})
    assert_error(response, 413, "PayloadTooLarge")


async def test_body_over_64_kib_streamed_without_length_is_413(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"job_id": "job_1", "url": "' + HOOK.encode() + b'", "metadata": {"x": "'
        for _ in range(40):  # 40 x 4 KiB: far past the limit
            yield b"x" * 4096
        yield b'"}}'

    request = api.build_request("POST", "/v1/subscriptions", content=chunks(),
                                headers={"content-type": "application/json"})
    assert "content-length" not in request.headers
    response = await api.send(request)
    assert_error(response, 413, "PayloadTooLarge")


async def test_small_streamed_body_is_accepted(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"job_id": "job_1", '
        yield b'"url": "' + HOOK.encode() + b'"}'

    response = await api.post("/v1/subscriptions", content=chunks(),
                              headers={"content-type": "application/json"})
    assert response.status_code == 201, response.text


async def test_error_message_does_not_echo_huge_input(api: httpx.AsyncClient) -> None:
    response = await api.post("/v1/subscriptions",
                              json={"job_id": "job_1", "url": HOOK, "events": ["x" * 20000]})
    body = assert_validation(response, "events")
    assert len(body["message"]) < 2000


# --- auth ------------------------------------------------------------------------------------

V1_ROUTES = [
    ("POST", "/v1/subscriptions"),
    ("GET", "/v1/subscriptions"),
    ("GET", f"/v1/subscriptions/{FAKE_SID}"),
    ("DELETE", f"/v1/subscriptions/{FAKE_SID}"),
    ("GET", f"/v1/subscriptions/{FAKE_SID}/deliveries"),
    ("POST", f"/v1/subscriptions/{FAKE_SID}/deliveries/{FAKE_MID}/retry"),
    ("GET", "/v1/jobs/job_1"),
]


@pytest.mark.parametrize("authorization", [
    None, "", "Basic dG9rX2FsaWNlOg==", "Token tok_alice", "tok_alice", "Bearer",
    "Bearer ", "Bearer tok_unknown", "Bearer tok_alice_", "Bearer tok_alic",
    f"Bearer {TOKEN},{OTHER_TOKEN}",
])
async def test_v1_routes_need_a_valid_bearer_token(
    anonymous: httpx.AsyncClient, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    for method, path in V1_ROUTES:
        body = {"job_id": "job_1", "url": HOOK} if method == "POST" else None
        response = await anonymous.request(method, path, headers=headers, json=body)
        assert_error(response, 401, "AuthError")


async def test_auth_is_checked_before_the_body(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/v1/subscriptions", content=b"{not json")
    assert_error(response, 401, "AuthError")


async def test_bearer_scheme_is_case_insensitive(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/subscriptions",
                                   headers={"authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


async def test_failed_auth_has_no_side_effects(
    anonymous: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    await anonymous.post("/v1/subscriptions", json={"job_id": "job_1", "url": HOOK},
                         headers={"authorization": "Bearer nope"})
    assert (await api.get("/v1/subscriptions")).json()["data"] == []


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/openapi.json"])
async def test_operational_routes_need_no_auth(anonymous: httpx.AsyncClient, path: str) -> None:
    assert (await anonymous.get(path)).status_code == 200


# --- ownership -------------------------------------------------------------------------------


async def test_other_token_cannot_see_or_touch_a_subscription(
    api: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    sub = await subscribe(api)
    sid = sub["id"]
    assert_error(await bob.get(f"/v1/subscriptions/{sid}"), 404, "NotFoundError")
    assert_error(await bob.delete(f"/v1/subscriptions/{sid}"), 404, "NotFoundError")
    assert_error(await bob.get(f"/v1/subscriptions/{sid}/deliveries"), 404, "NotFoundError")
    assert_error(await bob.post(f"/v1/subscriptions/{sid}/deliveries/{FAKE_MID}/retry"),
                 404, "NotFoundError")
    assert_error(await bob.get("/v1/jobs/job_1"), 404, "NotFoundError")
    assert (await bob.get("/v1/subscriptions")).json() == {"data": [], "next_cursor": None}
    listed = await bob.get("/v1/subscriptions", params={"job_id": "job_1"})
    assert listed.json() == {"data": [], "next_cursor": None}
    # Bob's failed DELETE changed nothing.
    assert (await api.get(f"/v1/subscriptions/{sid}")).json()["state"] == "active"


async def test_not_found_for_other_owner_looks_like_unknown_id(
    api: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    sub = await subscribe(api)
    foreign = (await bob.get(f"/v1/subscriptions/{sub['id']}")).json()
    unknown = (await bob.get(f"/v1/subscriptions/{FAKE_SID}")).json()
    assert set(foreign) == set(unknown)
    assert foreign["message"].replace(sub["id"], "X") == unknown["message"].replace(FAKE_SID,
                                                                                    "X")


async def test_lists_are_per_owner(api: httpx.AsyncClient, bob: httpx.AsyncClient) -> None:
    mine = {(await subscribe(api, url=f"{HOOK}/{n}"))["id"] for n in range(3)}
    theirs = {(await subscribe(bob, url=f"{HOOK}/{n}"))["id"] for n in range(2)}
    assert {s["id"] for s in await list_all(api, 100)} == mine
    assert {s["id"] for s in await list_all(bob, 100)} == theirs
    assert {s["id"] for s in await list_all(api, 100, job_id="job_1")} == mine


async def test_job_view_shows_only_own_subscriptions(
    api: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    mine = await subscribe(api)
    theirs = await subscribe(bob)
    mine_view = (await api.get("/v1/jobs/job_1")).json()
    theirs_view = (await bob.get("/v1/jobs/job_1")).json()
    assert [s["id"] for s in mine_view["subscriptions"]] == [mine["id"]]
    assert [s["id"] for s in theirs_view["subscriptions"]] == [theirs["id"]]


# --- GET /v1/subscriptions -------------------------------------------------------------------


async def test_empty_list(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/subscriptions")
    assert response.status_code == 200
    assert response.json() == {"data": [], "next_cursor": None}


async def test_list_items_have_the_subscription_shape(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api, metadata={"k": "v"})
    data = (await api.get("/v1/subscriptions")).json()["data"]
    assert data == [sub]


async def test_pagination_walks_every_subscription_once_in_creation_order(
    api: httpx.AsyncClient,
) -> None:
    ids = await create_in_order(api, 7)
    for limit in (1, 3, 7, 100):
        assert [s["id"] for s in await list_all(api, limit)] == ids


async def test_page_sizes_and_last_cursor(api: httpx.AsyncClient) -> None:
    await create_in_order(api, 5)
    first = (await api.get("/v1/subscriptions", params={"limit": 2})).json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    exact = (await api.get("/v1/subscriptions", params={"limit": 5})).json()
    assert len(exact["data"]) == 5 and exact["next_cursor"] is None


async def test_default_limit_is_20(api: httpx.AsyncClient) -> None:
    await create_in_order(api, 21)
    page = (await api.get("/v1/subscriptions")).json()
    assert len(page["data"]) == 20 and page["next_cursor"]


async def test_cursor_past_the_end_gives_an_empty_page(api: httpx.AsyncClient) -> None:
    ids = await create_in_order(api, 2)
    page = (await api.get("/v1/subscriptions", params={"cursor": ids[-1]})).json()
    assert page == {"data": [], "next_cursor": None}


async def test_job_id_filter_with_pagination(api: httpx.AsyncClient) -> None:
    wanted = await create_in_order(api, 5, job_id="job_a")
    await create_in_order(api, 3, job_id="job_b")
    for limit in (1, 2, 5, 100):
        found = await list_all(api, limit, job_id="job_a")
        assert [s["id"] for s in found] == wanted
        assert {s["job_id"] for s in found} == {"job_a"}


async def test_job_id_filter_for_unknown_job_is_empty(api: httpx.AsyncClient) -> None:
    await subscribe(api)
    page = (await api.get("/v1/subscriptions", params={"job_id": "job_zzz"})).json()
    assert page == {"data": [], "next_cursor": None}


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc", "1.5", "", " 5", "1e2"])
async def test_invalid_limit(api: httpx.AsyncClient, limit: str) -> None:
    response = await api.get("/v1/subscriptions", params={"limit": limit})
    assert_validation(response, "limit")


@pytest.mark.parametrize("limit", ["1", "100"])
async def test_limit_bounds_are_inclusive(api: httpx.AsyncClient, limit: str) -> None:
    assert (await api.get("/v1/subscriptions", params={"limit": limit})).status_code == 200


@pytest.mark.parametrize("cursor", ["bogus", "sub_short", "msg_01JZZZZZZZZZZZZZZZZZZZZZZZ",
                                    "sub_01jzzzzzzzzzzzzzzzzzzzzzzz", "' OR 1=1 --"])
async def test_invalid_cursor(api: httpx.AsyncClient, cursor: str) -> None:
    response = await api.get("/v1/subscriptions", params={"cursor": cursor})
    assert_validation(response, "cursor")


async def test_invalid_job_id_filter(api: httpx.AsyncClient) -> None:
    response = await api.get("/v1/subscriptions", params={"job_id": "a b"})
    assert_validation(response, "job_id")


# --- GET / DELETE /v1/subscriptions/{id} -----------------------------------------------------


async def test_get_subscription(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api)
    response = await api.get(f"/v1/subscriptions/{sub['id']}")
    assert response.status_code == 200
    assert response.json() == sub


async def test_delete_then_get_shows_deleted(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api)
    response = await api.delete(f"/v1/subscriptions/{sub['id']}")
    assert response.status_code == 204
    assert response.content == b""
    after = (await api.get(f"/v1/subscriptions/{sub['id']}")).json()
    assert after["state"] == "deleted"
    assert after["updated_at"] >= sub["updated_at"]
    assert {k: v for k, v in after.items() if k not in ("state", "updated_at")} == {
        k: v for k, v in sub.items() if k not in ("state", "updated_at")}


async def test_delete_twice_is_204(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api)
    assert (await api.delete(f"/v1/subscriptions/{sub['id']}")).status_code == 204
    assert (await api.delete(f"/v1/subscriptions/{sub['id']}")).status_code == 204


@pytest.mark.parametrize("sid", [FAKE_SID, "nope", "sub_"])
async def test_unknown_subscription_is_404(api: httpx.AsyncClient, sid: str) -> None:
    assert_error(await api.get(f"/v1/subscriptions/{sid}"), 404, "NotFoundError")
    assert_error(await api.delete(f"/v1/subscriptions/{sid}"), 404, "NotFoundError")
    assert_error(await api.get(f"/v1/subscriptions/{sid}/deliveries"), 404, "NotFoundError")


async def test_unknown_delivery_is_404(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api)
    response = await api.post(f"/v1/subscriptions/{sub['id']}/deliveries/{FAKE_MID}/retry")
    assert_error(response, 404, "NotFoundError")


async def test_new_subscription_has_no_deliveries(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api)
    assert await deliveries(api, sub["id"]) == []


# --- GET /v1/jobs/{job_id} -------------------------------------------------------------------


async def test_job_not_watched_is_404(api: httpx.AsyncClient) -> None:
    assert_error(await api.get("/v1/jobs/job_unknown"), 404, "NotFoundError")


async def test_job_view_with_invalid_job_id_is_400(api: httpx.AsyncClient) -> None:
    assert_validation(await api.get("/v1/jobs/bad%20id"), "job_id")


async def test_job_view_after_registration(api: httpx.AsyncClient) -> None:
    sub = await subscribe(api, job_id="job_view")
    response = await api.get("/v1/jobs/job_view")
    assert response.status_code == 200
    view = response.json()
    assert {"job_id", "status", "job", "last_polled_at", "next_poll_at",
            "subscriptions"} <= set(view)
    assert view["job_id"] == "job_view"
    assert view["status"] is None and view["job"] is None  # not polled yet: no worker
    assert view["last_polled_at"] is None
    assert is_iso(view["next_poll_at"])
    assert view["subscriptions"] == [sub]


async def test_job_view_after_polling(
    api: httpx.AsyncClient, worker: Worker, simulator: str, receiver: Receiver
) -> None:
    sim_job(simulator, "job_polled", [("processing", 0)], model="flux-schnell")
    await subscribe(api, job_id="job_polled", url=receiver.url("/p"))

    async def polled() -> Json:
        view: Json = (await api.get("/v1/jobs/job_polled")).json()
        assert view["status"] == "processing", view
        return view

    view = await eventually(polled)
    assert view["job"]["job_id"] == "job_polled"
    assert view["job"]["status"] == "processing"
    assert is_iso(view["last_polled_at"])
    assert view["subscriptions"][0]["last_status"] in (None, "processing")


# --- deliveries and retry (with the worker) --------------------------------------------------


def assert_attempt(attempt: Json, status_code: int) -> None:
    assert set(attempt) == {"at", "status_code", "duration_ms", "error", "response_body"}
    assert is_iso(attempt["at"])
    assert attempt["status_code"] == status_code
    assert isinstance(attempt["duration_ms"], int) and attempt["duration_ms"] >= 0
    if 200 <= status_code < 300:
        assert attempt["error"] is None
    else:
        assert isinstance(attempt["error"], str) and attempt["error"]
    assert isinstance(attempt["response_body"], str)
    assert len(attempt["response_body"].encode()) <= 1024


async def test_deliveries_are_listed_oldest_first(
    api: httpx.AsyncClient, worker: Worker, simulator: str, receiver: Receiver
) -> None:
    sim_job(simulator, "job_d", [("queued", 0)])
    sub = await subscribe(api, job_id="job_d", url=receiver.url("/d"), metadata={"n": 1})
    await walk(simulator, "job_d", ["processing", "completed"], lambda: len(receiver.types("/d")))
    expected = ["job.queued", "job.processing", "job.completed"]
    await eventually(lambda: receiver.types("/d") == expected)

    async def settled() -> Json:
        found = await deliveries(api, sub["id"])
        assert [d["status"] for d in found] == ["succeeded"] * 3, found
        return {"data": found}

    found = (await eventually(settled))["data"]
    assert [d["event_type"] for d in found] == expected
    assert [d["created_at"] for d in found] == sorted(d["created_at"] for d in found)
    webhook_ids = [r.webhook_id for r in receiver.received if r.path == "/d"]
    assert [d["id"] for d in found] == webhook_ids
    for item in found:
        assert {"id", "event_type", "status", "attempts", "next_attempt_at",
                "created_at"} <= set(item)
        assert MSG_ID.match(item["id"])
        assert item["next_attempt_at"] is None
        assert is_iso(item["created_at"])
        assert len(item["attempts"]) == 1
        assert_attempt(item["attempts"][0], 200)
    assert receiver.rejected == []


async def test_failed_first_attempt_is_visible(
    api: httpx.AsyncClient, worker: Worker, simulator: str, receiver: Receiver
) -> None:
    receiver.plan["/x"] = [500]
    sim_job(simulator, "job_x", [("completed", 0)])
    sub = await subscribe(api, job_id="job_x", url=receiver.url("/x"), events=["job.completed"])

    async def retried() -> Json:
        found = await deliveries(api, sub["id"])
        assert len(found) == 1 and found[0]["status"] == "succeeded", found
        return found[0]

    item = await eventually(retried)
    assert item["event_type"] == "job.completed"
    assert len(item["attempts"]) == 2
    assert_attempt(item["attempts"][0], 500)
    assert item["attempts"][0]["response_body"] == '{"ok":false}'
    assert_attempt(item["attempts"][1], 200)
    assert item["attempts"][0]["at"] <= item["attempts"][1]["at"]
    attempts = [mid for path, mid in receiver.attempts if path == "/x"]
    assert attempts == [item["id"], item["id"]]


async def test_pending_delivery_shows_next_attempt(
    api: httpx.AsyncClient, worker: Worker, simulator: str, receiver: Receiver
) -> None:
    receiver.plan["/slow"] = [503] * 10
    sim_job(simulator, "job_p", [("completed", 0)])
    sub = await subscribe(api, job_id="job_p", url=receiver.url("/slow"), events=["job.completed"])

    async def failing() -> Json:
        found = await deliveries(api, sub["id"])
        assert found and found[0]["attempts"], found
        return found[0]

    item = await eventually(failing)
    if item["status"] == "pending":
        assert is_iso(item["next_attempt_at"])
    assert_attempt(item["attempts"][0], 503)


async def test_retry_resends_with_the_same_webhook_id(
    api: httpx.AsyncClient, bob: httpx.AsyncClient, worker: Worker, simulator: str,
    receiver: Receiver,
) -> None:
    sim_job(simulator, "job_r", [("completed", 0)])
    sub = await subscribe(api, job_id="job_r", url=receiver.url("/r"))
    await eventually(lambda: receiver.types("/r") == ["job.completed"])

    async def delivered() -> Json:
        found = await deliveries(api, sub["id"])
        assert len(found) == 1 and found[0]["status"] == "succeeded", found
        return found[0]

    item = await eventually(delivered)
    path = f"/v1/subscriptions/{sub['id']}/deliveries/{item['id']}/retry"
    assert_error(await bob.post(path), 404, "NotFoundError")

    response = await api.post(path)
    assert response.status_code == 202, response.text
    assert response.json()["id"] == item["id"]
    await eventually(lambda: len(receiver.events("/r")) == 2)
    first, second = [r for r in receiver.received if r.path == "/r"]
    assert first.webhook_id == second.webhook_id == item["id"]
    assert first.body == second.body
    assert receiver.rejected == []

    async def two_attempts() -> Json:
        found = await deliveries(api, sub["id"])
        assert len(found[0]["attempts"]) == 2 and found[0]["status"] == "succeeded", found
        return found[0]

    await eventually(two_attempts)


async def test_retry_with_a_delivery_of_another_subscription_is_404(
    api: httpx.AsyncClient, worker: Worker, simulator: str, receiver: Receiver
) -> None:
    sim_job(simulator, "job_o", [("completed", 0)])
    one = await subscribe(api, job_id="job_o", url=receiver.url("/one"))
    two = await subscribe(api, job_id="job_o", url=receiver.url("/two"))

    async def delivered() -> Json:
        found = await deliveries(api, one["id"])
        assert found, found
        return found[0]

    item = await eventually(delivered)
    response = await api.post(f"/v1/subscriptions/{two['id']}/deliveries/{item['id']}/retry")
    assert_error(response, 404, "NotFoundError")


# --- SSRF at registration --------------------------------------------------------------------

_REAL_GETADDRINFO = asyncio.BaseEventLoop.getaddrinfo


@pytest.fixture
def offline_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The loop's resolver answers only IP literals and localhost; other names fail locally."""
    lookups: list[str] = []

    async def getaddrinfo(self: asyncio.AbstractEventLoop, host: Any, port: Any,
                          *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        lookups.append(name)
        try:
            ipaddress.ip_address(name)
        except ValueError:
            if name != "localhost":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return await _REAL_GETADDRINFO(self, host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    return lookups


@pytest.fixture
async def strict_api(
    make_settings: SettingsFactory, redis: Redis, offline_dns: list[str]
) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(make_settings(RELAY_ALLOW_PRIVATE_CALLBACKS="false")) as client:
        yield client


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/", "http://localhost/", "http://[::1]/", "http://169.254.169.254/",
    "http://2130706433/", "http://10.0.0.1/", "http://192.168.1.1:8080/hook",
    "http://100.64.0.1/", "http://0.0.0.0/", "http://[::ffff:127.0.0.1]/", "http://0x7f.1/",
    "https://localhost./x", "http://172.16.0.1/", "http://224.0.0.1/",
])
async def test_private_callbacks_are_refused(strict_api: httpx.AsyncClient, url: str) -> None:
    response = await strict_api.post("/v1/subscriptions", json={"job_id": "job_1", "url": url})
    assert_validation(response, "url")
    assert "RELAY_ALLOW_PRIVATE_CALLBACKS=true" in response.json()["message"]  # the way out
    assert (await strict_api.get("/v1/subscriptions")).json()["data"] == []


async def test_unresolvable_name_is_accepted(
    strict_api: httpx.AsyncClient, offline_dns: list[str]
) -> None:
    url = "http://nonexistent.invalid/hook"
    response = await strict_api.post("/v1/subscriptions", json={"job_id": "job_1", "url": url})
    assert response.status_code == 201, response.text
    assert response.json()["url"] == url
    assert "nonexistent.invalid" in offline_dns  # it was looked up, through the fake
    # Delete at once: a worker must never try to deliver to it (that would be real DNS).
    deleted = await strict_api.delete(f"/v1/subscriptions/{response.json()['id']}")
    assert deleted.status_code == 204


async def test_private_callbacks_allowed_when_configured(api: httpx.AsyncClient) -> None:
    assert (await subscribe(api, url="http://127.0.0.1:9/hook"))["url"] == "http://127.0.0.1:9/hook"


# --- operational routes ----------------------------------------------------------------------


async def test_healthz(api: httpx.AsyncClient) -> None:
    response = await api.get("/healthz")
    assert response.status_code == 200


async def test_readyz_with_redis(api: httpx.AsyncClient) -> None:
    response = await api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_readyz_names_upstream_auth_failure(api: httpx.AsyncClient, redis: Redis) -> None:
    await Store(redis).set_upstream_unauthorized(60)
    response = await api.get("/readyz")
    assert response.status_code == 503
    assert response.json()["reason"] == "upstream: unauthorized"
    await Store(redis).clear_upstream_unauthorized()
    assert (await api.get("/readyz")).status_code == 200


async def test_readyz_names_an_unreachable_upstream_and_why(
    api: httpx.AsyncClient, redis: Redis
) -> None:
    reason = "simulator:8001: ConnectError: [Errno -2] Name or service not known"
    await Store(redis).set_upstream_unreachable(reason, 90)
    response = await api.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable",
                               "reason": f"upstream: unreachable ({reason})"}
    assert 0 < await redis.ttl(keys.UPSTREAM_UNREACHABLE) <= 90  # a dead worker's word expires
    await Store(redis).clear_upstream_unreachable()
    assert (await api.get("/readyz")).status_code == 200


async def test_readyz_names_the_refused_key_before_an_unreachable_upstream(
    api: httpx.AsyncClient, redis: Redis
) -> None:
    await Store(redis).set_upstream_unreachable("a:1: ReadTimeout", 90)
    await Store(redis).set_upstream_unauthorized(60)
    assert (await api.get("/readyz")).json()["reason"] == "upstream: unauthorized"


async def test_readyz_is_503_when_redis_stops_answering(
    settings: Settings, redis: Redis
) -> None:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        store: Store = app.state.relay.store
        real, store.redis = store.redis, Redis.from_url("redis://127.0.0.1:1/0")
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
                response = await client.get("/readyz")
                healthz = await client.get("/healthz")
        finally:
            await store.redis.aclose()
            store.redis = real
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["reason"].startswith("redis")
    assert healthz.status_code == 200


@pytest.mark.parametrize("path", ["/nope", "/v1/nope", "/v1/subscriptions/a/b/c/d", "/v2/x"])
async def test_unknown_route_is_404_in_error_shape(api: httpx.AsyncClient, path: str) -> None:
    assert_error(await api.get(path), 404, "NotFoundError")


async def test_wrong_method_is_405_in_error_shape(api: httpx.AsyncClient) -> None:
    response = await api.put("/v1/subscriptions")
    assert response.status_code == 405
    body = response.json()
    assert body == {"error": "MethodNotAllowed", "statusCode": 405,
                    "message": "PUT is not allowed on /v1/subscriptions; use GET, HEAD, POST"}


@pytest.mark.parametrize(("path", "allow"), [
    ("/v1/subscriptions", "GET, HEAD, POST"),
    ("/v1/subscriptions/sub_x", "DELETE, GET, HEAD"),
    ("/v1/subscriptions/sub_x/deliveries/msg_y/retry", "POST"),
    ("/healthz", "GET, HEAD"),
])
async def test_405_allow_lists_every_method_of_the_path(
    api: httpx.AsyncClient, path: str, allow: str
) -> None:
    response = await api.request("OPTIONS", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow


async def test_metrics_is_prometheus_text(api: httpx.AsyncClient) -> None:
    await subscribe(api)
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# HELP " in text and "# TYPE " in text
    assert re.search(r"^relay_watches \d", text, re.MULTILINE), text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_and_labels, _, value = line.rpartition(" ")
            assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})?$", name_and_labels), line
            float(value)


async def test_metrics_show_the_budget_and_varg_s_lower_cap(
    api: httpx.AsyncClient, redis: Redis
) -> None:
    """The configured budget (6000/min in tests), then Varg's lower X-RateLimit-Limit once a
    worker has recorded it."""
    def budget(text: str) -> float:
        found = re.search(r"^relay_upstream_budget_per_minute (\S+)$", text, re.MULTILINE)
        assert found, text
        return float(found.group(1))

    assert budget((await api.get("/metrics")).text) == 6000
    await Store(redis).cap_upstream(100, 60)
    assert budget((await api.get("/metrics")).text) == 100
