"""What a worker process opens once at start-up and shares between its jobs."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from config import Settings
from relay.delivery.slots import Slots
from relay.delivery.transport import new_delivery_client
from relay.store.store import Store
from relay.upstream.client import VargClient, classify, new_http_client
from relay.upstream.v2 import api_base, classify_v2


@dataclass
class Resources:
    settings: Settings
    redis: Redis
    store: Store
    varg: VargClient
    upstream_http: httpx.AsyncClient
    delivery_http: httpx.AsyncClient
    slots: Slots
    stream_http: httpx.AsyncClient


def open_resources(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> Resources:
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    upstream = new_http_client(transport)
    delivery = new_delivery_client(settings.delivery_timeout, transport=transport)
    # Streams hold one connection each for minutes; never reused (Varg closes them).
    stream = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.stream_idle_timeout, connect=5.0),
        limits=httpx.Limits(max_connections=settings.streams_per_worker + 1,
                            max_keepalive_connections=0),
        follow_redirects=False,
        transport=transport,
    )
    return Resources(
        settings=settings,
        redis=redis,
        store=Store(redis),
        varg=varg_client(settings, upstream),
        upstream_http=upstream,
        delivery_http=delivery,
        stream_http=stream,
        slots=Slots(settings.delivery_concurrency_per_host,
                    settings.delivery_concurrency_per_tenant, settings.delivery_timeout),
    )


def varg_client(settings: Settings, http: httpx.AsyncClient) -> VargClient:
    version = settings.varg_api_version
    return VargClient(api_base(settings.varg_api_url, version), settings.varg_api_key, http,
                      classify_v2 if version == "v2" else classify)


async def close_resources(resources: Resources) -> None:
    await resources.upstream_http.aclose()
    await resources.delivery_http.aclose()
    await resources.stream_http.aclose()
    await resources.redis.aclose()
