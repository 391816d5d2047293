"""Routes the dashboard (/ui) reads, for any client: the caller's jobs, a job's timeline, its
deliveries across subscriptions (and retrying the failed ones), and the upstream's health.

Everything is found from the caller's own subscription index, newest first, so a token sees
only what its subscriptions reach. The scans are bounded per request (`SCAN_MAX`): when a
filter leaves few matches, a page may hold fewer than `limit` items and still have a
`next_cursor`; follow it until it is null.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.api import validation
from relay.api.render import delivery, job_summary, timeline
from relay.api.routes import owner_of, read_body, state
from relay.delivery.chain import kick
from relay.errors import NotFoundError
from relay.store.store import Resent, Store
from relay.times import iso

SCAN_CHUNK = 100  # subscriptions read per round trip
SCAN_MAX = 1000  # subscriptions read per request at most
HISTORY_STEP, HISTORY_STEPS = 5.0, 12  # the requests chart: 5 s bars over the last minute
RATE_LIMITED_STEP = 300.0  # the 429 chart: 5-minute bars over the last hour
MS = 0.001  # stored times are rounded to the millisecond


# --- GET /v1/jobs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class JobRow:
    position: str  # the caller's newest subscription of the job: where the job sits in the list
    job_id: str
    watch: dict[str, str]
    subscriptions: int


async def list_jobs(request: Request) -> Response:
    owner = owner_of(request)
    params = request.query_params
    limit = validation.page_limit(params.get("limit"))
    after = validation.cursor(params.get("cursor"))
    status = validation.job_status(params.get("status"))
    query = validation.job_query(params.get("q"))
    rows, next_cursor = await job_page(state(request).store, owner, after, limit, status, query)
    data = [job_summary(r.job_id, r.watch, r.subscriptions) for r in rows]
    return JSONResponse({"data": data, "next_cursor": next_cursor})


async def job_page(
    store: Store, owner: str, after: str | None, limit: int, status: str | None,
    query: str | None,
) -> tuple[list[JobRow], str | None]:
    """Jobs by the caller's newest subscription of each, newest first, after `after`."""
    rows: list[JobRow] = []
    seen: set[str] = set()
    cursor = after
    for _ in range(SCAN_MAX // SCAN_CHUNK):
        sids = await store.owner_page_desc(owner, cursor, SCAN_CHUNK)
        fresh: dict[str, str] = {}  # job -> its position, in list order
        for sid, sub in zip(sids, await store.subscription_fields(sids, ("job_id",)),
                            strict=True):
            job_id = sub.get("job_id")
            if job_id and job_id not in seen:
                seen.add(job_id)
                if query is None or query in job_id:
                    fresh[job_id] = sid
        for row in await _job_rows(store, owner, after, fresh):
            if status is None or row.watch.get("status") == status:
                rows.append(row)
            if len(rows) > limit:
                return rows[:limit], rows[limit - 1].position
        if len(sids) < SCAN_CHUNK:
            return rows, None
        cursor = sids[-1]
    return rows, cursor  # the scan stopped at SCAN_MAX: more may follow


async def _job_rows(store: Store, owner: str, after: str | None,
                    fresh: dict[str, str]) -> list[JobRow]:
    """The jobs' rows, leaving out those a page before this one listed (the caller has a
    subscription of them newer than the cursor)."""
    job_ids = list(fresh)
    if not job_ids:
        return []
    sid_lists = await store.jobs_subscription_ids(job_ids)
    every = [sid for sids in sid_lists for sid in sids]
    owners = await store.subscription_fields(every, ("owner",))
    mine = {sid for sid, sub in zip(every, owners, strict=True) if sub.get("owner") == owner}
    rows = []
    watches = await store.watch_hashes(job_ids)
    for job_id, sids, watch in zip(job_ids, sid_lists, watches, strict=True):
        own = [sid for sid in sids if sid in mine]
        if after is None or not own or max(own) < after:
            rows.append(JobRow(fresh[job_id], job_id, watch, len(own)))
    return rows


# --- GET /v1/jobs/{job_id}/events --------------------------------------------------------------


async def job_events(request: Request) -> Response:
    owner = owner_of(request)
    job_id = validation.job_id(request.path_params["job_id"])
    store = state(request).store
    sids = await store.job_subscription_ids(job_id)
    owners = await store.subscription_fields(sids, ("owner",))
    mine = [sid for sid, sub in zip(sids, owners, strict=True) if sub.get("owner") == owner]
    if not mine:
        raise NotFoundError(f"job {job_id} is not watched")
    mids = [mid for ids in await store.delivery_id_lists(mine) for mid in ids]
    return JSONResponse({"job_id": job_id, "data": timeline(await store.deliveries(mids))})


# --- GET /v1/deliveries, POST /v1/deliveries/retry ---------------------------------------------


async def list_all_deliveries(request: Request) -> Response:
    owner = owner_of(request)
    params = request.query_params
    limit = validation.page_limit(params.get("limit"))
    position = validation.delivery_cursor(params.get("cursor"))
    status = validation.delivery_status(params.get("status"))
    since = validation.since(params.get("since"))
    store = state(request).store
    picked, next_cursor = await delivery_page(store, owner, position, limit, status, since)
    found = await store.deliveries([mid for _, mid in picked])
    return JSONResponse({"data": [delivery(msg, attempts) for msg, attempts in found],
                         "next_cursor": next_cursor})


async def delivery_page(
    store: Store, owner: str, position: tuple[str, str | None] | None, limit: int,
    status: str | None, since: float | None,
) -> tuple[list[tuple[str, str]], str | None]:
    """(subscription, delivery) pairs: newest subscription first, newest delivery first."""
    picked: list[tuple[str, str]] = []
    at_sid, at_mid = position or (None, None)
    cursor, inclusive = at_sid, at_mid is not None
    for _ in range(SCAN_MAX // SCAN_CHUNK):
        sids = await store.owner_page_desc(owner, cursor, SCAN_CHUNK, inclusive)
        for sid, mids in await _matching(store, sids, status, since):
            if sid == at_sid and at_mid is not None:
                mids = mids[mids.index(at_mid) + 1:] if at_mid in mids else []
            for mid in mids:
                picked.append((sid, mid))
                if len(picked) > limit:
                    last_sid, last_mid = picked[limit - 1]
                    return picked[:limit], f"{last_sid}.{last_mid}"
        if len(sids) < SCAN_CHUNK:
            return picked, None
        cursor, inclusive = sids[-1], False
    return picked, cursor


async def _matching(store: Store, sids: list[str], status: str | None,
                    since: float | None) -> list[tuple[str, list[str]]]:
    """Each subscription's deliveries with this status created since `since`, newest first.
    Deleted subscriptions are left out: nothing more is sent for them."""
    subs = await store.subscription_fields(sids, ("state", "updated_at"))
    # A subscription's updated_at moves with every event it gets: older ones have none since.
    live = [sid for sid, sub in zip(sids, subs, strict=True)
            if sub and sub.get("state") != "deleted"
            and (since is None or float(sub.get("updated_at") or 0) >= since - MS)]
    lists = await store.delivery_id_lists(live)
    mids = [mid for ids in lists for mid in ids]
    fields = await store.delivery_fields(mids, ("status", "created_at"))
    wanted = {mid for mid, msg in zip(mids, fields, strict=True)
              if msg and (status is None or msg.get("status") == status)
              and (since is None or float(msg.get("created_at") or 0) >= since)}
    return [(sid, [mid for mid in reversed(ids) if mid in wanted])
            for sid, ids in zip(live, lists, strict=True)]


async def retry_failed(request: Request) -> Response:
    """Queue every failed delivery created since `since` again (each with its own webhook-id),
    oldest first per subscription, so each subscription's order holds."""
    owner = owner_of(request)
    since = validation.retry_since(validation.parse_body(await read_body(request)))
    st = state(request)
    queued, subscriptions, cursor = 0, 0, None
    while True:
        sids = await st.store.owner_page_desc(owner, cursor, SCAN_CHUNK)
        for sid, mids in await _matching(st.store, sids, "failed", since):
            resent = [await st.store.resend(mid, sid) is Resent.queued for mid in reversed(mids)]
            if any(resent):
                await kick(st.arq, sid)
                queued += sum(resent)
                subscriptions += 1
        if len(sids) < SCAN_CHUNK:
            break
        cursor = sids[-1]
    return JSONResponse({"queued": queued, "subscriptions": subscriptions}, status_code=202)


# --- GET /v1/upstream ----------------------------------------------------------------------


async def upstream(request: Request) -> Response:
    """Deployment-wide: the same for every token (what /metrics and /readyz show, in JSON)."""
    owner_of(request)
    st = state(request)
    now = await st.store.now()
    edges = [now - HISTORY_STEP * i for i in range(HISTORY_STEPS, -1, -1)]
    limited_edges = [now - RATE_LIMITED_STEP * i for i in range(12, -1, -1)]
    counts = await st.store.upstream_counts(edges, limited_edges)
    total, due = await st.store.due_counts(now)
    _, overdue = await st.store.due_counts(now - 10)
    configured = st.settings.upstream_rate_limit
    last_10s = sum(counts.requests[-int(10 / HISTORY_STEP):])
    return JSONResponse({
        "at": iso(now),
        "budget_per_minute": min(configured, counts.cap or configured),
        "configured_per_minute": configured,
        "requests_last_minute": sum(counts.requests),
        "polls_per_second": round(last_10s / 10, 2),
        "requests": _bars(edges, counts.requests),
        "rate_limited_last_hour": sum(counts.rate_limited),
        "rate_limited": _bars(limited_edges, counts.rate_limited),
        "unauthorized": counts.unauthorized,
        "paused_for": counts.paused_for,
        "watches": {"total": total, "due": due, "overdue": overdue},
    })


def _bars(edges: list[float], counts: list[int]) -> list[dict[str, object]]:
    return [{"start": iso(start), "count": count}
            for start, count in zip(edges, counts, strict=False)]


def dashboard_routes() -> list[Route]:
    return [
        Route("/v1/jobs", list_jobs, methods=["GET"]),
        Route("/v1/jobs/{job_id}/events", job_events, methods=["GET"]),
        Route("/v1/deliveries", list_all_deliveries, methods=["GET"]),
        Route("/v1/deliveries/retry", retry_failed, methods=["POST"]),
        Route("/v1/upstream", upstream, methods=["GET"]),
    ]
