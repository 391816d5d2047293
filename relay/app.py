"""The API process: `create_app(settings)` builds the Starlette app with its lifespan."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from arq.connections import RedisSettings, create_pool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from config import Settings
from relay import metrics
from relay.api.dashboard import dashboard_routes
from relay.api.openapi import openapi_document
from relay.api.render import JSONResponse
from relay.api.routes import routes, state
from relay.api.state import AppState
from relay.errors import (
    InternalError,
    MethodNotAllowed,
    NotFoundError,
    RelayError,
    ValidationError,
)
from relay.store.store import Store
from relay.ui import ui_mount

log = logging.getLogger("relay.api")


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        redis = Redis.from_url(settings.redis_url, decode_responses=True)
        arq = await create_pool(RedisSettings.from_dsn(settings.redis_url))
        app.state.relay = AppState(settings, Store(redis), arq)
        try:
            yield
        finally:
            await arq.aclose()
            await redis.aclose()

    app = Starlette(
        routes=[
            *routes(),
            *dashboard_routes(),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            Route("/openapi.json", openapi_endpoint, methods=["GET"]),
            ui_mount(),
        ],
        lifespan=lifespan,
        exception_handlers={
            RelayError: relay_error,
            HTTPException: http_error,
            Exception: internal_error,
        },
    )
    return app


async def relay_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RelayError)
    return JSONResponse(exc.body(), status_code=exc.status_code)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405, in the contract's error shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return await relay_error(request, NotFoundError(f"no route {request.url.path}"))
    if exc.status_code == 405:
        allowed = allowed_methods(request.app.routes, request.url.path)
        refused = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}; "
                                   f"use {', '.join(allowed)}")
        return JSONResponse(refused.body(), 405, headers={"allow": ", ".join(allowed)})
    error = ValidationError(exc.detail)
    body = error.body() | {"statusCode": exc.status_code}
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def allowed_methods(routes: list[BaseRoute], path: str) -> list[str]:
    """Every method some route serves at `path` (Starlette's own Allow names only the first
    route's, and several routes share a path here: one per method)."""
    methods = {method for route in routes if isinstance(route, Route)
               and route.path_regex.fullmatch(path) for method in route.methods or ()}
    return sorted(methods)


async def internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return await relay_error(request, InternalError("an unexpected error occurred"))


async def metrics_endpoint(request: Request) -> Response:
    await refresh_gauges(state(request).store, state(request).settings.upstream_rate_limit)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def refresh_gauges(store: Store, budget: int) -> None:
    """Deployment-wide gauges are read from Redis when scraped, so any API instance is right."""
    try:
        now = time.time()
        total, due = await store.due_counts(now)
        _, overdue = await store.due_counts(now - 10)
        pending = len(await store.pending_outboxes())
        cap = await store.upstream_cap()
        streams = await store.streams_open(now)
    except Exception:
        return
    metrics.STREAMS_OPEN.set(streams)
    metrics.BUDGET.set(min(budget, cap or budget))
    metrics.WATCHES.set(total)
    metrics.DUE.set(due)
    metrics.OVERDUE.set(overdue)
    metrics.PENDING.set(pending)


async def openapi_endpoint(request: Request) -> Response:
    return JSONResponse(openapi_document())
