"""The relay API's routes (contract §4). Handlers are thin: validate, call the store, render."""

from __future__ import annotations

import hashlib
import hmac
import socket
import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay import metrics
from relay.api import ingest, validation
from relay.api.render import JSONResponse, delivery, job_view, subscription
from relay.api.state import AppState
from relay.delivery.chain import kick
from relay.delivery.urls import UnsafeURL, check_callback_url
from relay.errors import (
    AuthError,
    NotFoundError,
    PayloadTooLarge,
    RateLimitError,
    ValidationError,
)
from relay.ids import new_id
from relay.store.store import CapReached, Resent


def state(request: Request) -> AppState:
    app_state: AppState = request.app.state.relay
    return app_state


def owner_of(request: Request) -> str:
    """The caller's identity: a hash of its token, so tokens are never stored."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    matched = False
    for known in state(request).settings.api_tokens:
        # Compare with every token, in constant time, so timing tells nothing.
        matched |= hmac.compare_digest(token.encode(), known.encode())
    if scheme.lower() != "bearer" or not token or not matched:
        raise AuthError("a valid bearer token is required")
    return hashlib.sha256(token.encode()).hexdigest()[:32]


async def read_body(request: Request) -> bytes:
    """The body, refused with 413 as soon as it passes 64 KiB (it is never read whole)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > validation.BODY_MAX_BYTES:
        raise PayloadTooLarge("the body must be at most 64 KiB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > validation.BODY_MAX_BYTES:
            raise PayloadTooLarge("the body must be at most 64 KiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def create_subscription(request: Request) -> Response:
    owner = owner_of(request)
    new = validation.new_subscription(validation.parse_body(await read_body(request)))
    st = state(request)
    if not st.settings.allow_private_callbacks:
        try:
            await check_callback_url(new.url, allow_private=False)
        except UnsafeURL as exc:
            raise ValidationError(str(exc), field="url") from None
        except (socket.gaierror, UnicodeError):
            pass  # contract: a name that does not resolve now is checked again at delivery
    cap = st.settings.max_subscriptions_per_token
    try:
        sid, created = await st.store.subscribe(
            new_id("sub"), owner, new.job_id, new.url, new.events, new.metadata,
            st.settings.watch_timeout, cap=cap,
        )
    except CapReached:
        raise RateLimitError(
            f"this token holds {cap} active subscriptions, its cap "
            f"(RELAY_MAX_SUBSCRIPTIONS_PER_TOKEN={cap}); delete some or wait for them to "
            "finish (done, disabled and deleted ones do not count)"
        ) from None
    sub = await st.store.subscription(sid)
    assert sub is not None
    if created:
        metrics.SUBSCRIPTIONS.inc()
    headers = {"location": f"/v1/subscriptions/{sid}"}
    return JSONResponse(subscription(sub), status_code=201 if created else 200, headers=headers)


async def owned_subscription(request: Request, owner: str) -> dict[str, str]:
    sid = validation.subscription_id(request.path_params["sid"])
    sub = await state(request).store.subscription(sid)
    if sub is None or not hmac.compare_digest(sub.get("owner", ""), owner):
        raise NotFoundError(f"no subscription {sid}")
    return sub


async def get_subscription(request: Request) -> Response:
    sub = await owned_subscription(request, owner_of(request))
    return JSONResponse(subscription(sub))


async def list_subscriptions(request: Request) -> Response:
    owner = owner_of(request)
    params = request.query_params
    limit = validation.page_limit(params.get("limit"))
    after = validation.cursor(params.get("cursor"))
    store = state(request).store
    if params.get("job_id") is not None:
        job_id = validation.job_id(params.get("job_id"))
        ids = [i for i in await store.job_subscription_ids(job_id) if after is None or i > after]
        subs = [s for s in await store.subscriptions(ids) if s.get("owner") == owner][: limit + 1]
    else:
        subs = await store.subscriptions(await store.owner_page(owner, after, limit + 1))
    more = len(subs) > limit
    page = subs[:limit]
    next_cursor = page[-1]["id"] if more and page else None
    return JSONResponse({"data": [subscription(s) for s in page], "next_cursor": next_cursor})


async def delete_subscription(request: Request) -> Response:
    sub = await owned_subscription(request, owner_of(request))
    if not await state(request).store.delete(sub["id"]):
        raise NotFoundError(f"no subscription {sub['id']}")  # purged since it was read
    return Response(status_code=204)


async def list_deliveries(request: Request) -> Response:
    sub = await owned_subscription(request, owner_of(request))
    store = state(request).store
    found = await store.deliveries(await store.delivery_ids(sub["id"]))
    return JSONResponse({"data": [delivery(msg, attempts) for msg, attempts in found]})


async def retry_delivery(request: Request) -> Response:
    sub = await owned_subscription(request, owner_of(request))
    mid = validation.delivery_id(request.path_params["mid"], sub["id"])
    st = state(request)
    resent = await st.store.resend(mid, sub["id"])
    if resent is Resent.deleted:
        raise ValidationError("the subscription is deleted; nothing more is sent for it")
    found = await st.store.deliveries([mid])
    if resent is Resent.missing or not found:
        raise NotFoundError(f"no delivery {mid} for subscription {sub['id']}")
    await kick(st.arq, sub["id"])
    msg, attempts = found[0]
    return JSONResponse(delivery(msg, attempts), status_code=202)


async def get_job(request: Request) -> Response:
    owner = owner_of(request)
    job_id = validation.job_id(request.path_params["job_id"])
    store = state(request).store
    subs = [s for s in await store.subscriptions(await store.job_subscription_ids(job_id))
            if s.get("owner") == owner]
    watch = await store.watch(job_id)
    if watch is None or not subs:
        raise NotFoundError(f"job {job_id} is not watched")
    return JSONResponse(job_view(job_id, watch, [subscription(s) for s in subs]))


async def ingest_varg(request: Request) -> Response:
    """Varg's own v2 webhook: a hint to poll the job now (relay/api/ingest.py). Signed by
    Varg, not by a relay token: Varg cannot send one."""
    st = state(request)
    secret = st.settings.varg_webhook_secret
    if not secret:
        raise NotFoundError("POST /v1/ingest/varg is off: VARG_WEBHOOK_SECRET is not set")
    raw = await read_body(request)
    if not ingest.verify(secret, raw, request.headers, time.time()):
        metrics.HINTS.labels("refused").inc()
        raise ingest.refuse()
    job_id = ingest.hinted_job_id(validation.parse_body(raw))
    outcome = await st.store.hint(job_id, st.settings.poll_min_interval,
                                  ingest.replay_key(request.headers), 2 * ingest.TOLERANCE)
    metrics.HINTS.labels(outcome).inc()
    return JSONResponse({"job_id": job_id, "outcome": outcome}, status_code=202)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    store = state(request).store
    try:
        await store.ping()
        unauthorized = await store.upstream_unauthorized()
        unreachable = await store.upstream_unreachable()
        stream_off = await store.stream_off()
    except Exception:
        return JSONResponse({"status": "unavailable", "reason": "redis: not answering"}, 503)
    if unauthorized:
        return JSONResponse({"status": "unavailable", "reason": "upstream: unauthorized"}, 503)
    if unreachable is not None:
        return JSONResponse(
            {"status": "unavailable", "reason": f"upstream: unreachable ({unreachable})"}, 503)
    return JSONResponse({"status": "ready", "stream": stream_state(state(request), stream_off)})


def stream_state(st: AppState, off: str | None) -> str:
    """Stream mode as the workers run it: `on`, or `off: why` (polling every job)."""
    if st.settings.stream == "off":
        return "off: RELAY_STREAM=off"
    if st.settings.varg_api_version != "v1":
        return "off: Varg's v2 API has no stream"
    return f"off for now: the upstream does not stream ({off})" if off else "on"


def routes() -> list[Route]:
    return [
        Route("/v1/subscriptions", create_subscription, methods=["POST"]),
        Route("/v1/subscriptions", list_subscriptions, methods=["GET"]),
        Route("/v1/subscriptions/{sid}", get_subscription, methods=["GET"]),
        Route("/v1/subscriptions/{sid}", delete_subscription, methods=["DELETE"]),
        Route("/v1/subscriptions/{sid}/deliveries", list_deliveries, methods=["GET"]),
        Route("/v1/subscriptions/{sid}/deliveries/{mid}/retry", retry_delivery,
              methods=["POST"]),
        Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
        Route("/v1/ingest/varg", ingest_varg, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]

