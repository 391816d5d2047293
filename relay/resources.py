"""What a worker process opens once at start-up and shares between its jobs."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from redis.asyncio import Redis

from config import Settings
from relay.delivery.slots import Slots
from relay.delivery.transport import new_delivery_client
from relay.store.store import Store
from relay.upstream.client import VargClient, new_http_client


@dataclass
class Resources:
    settings: Settings
    redis: Redis
    store: Store
    varg: VargClient
    upstream_http: httpx.AsyncClient
    delivery_http: httpx.AsyncClient
    slots: Slots


def open_resources(
    settings: Settings, transport: httpx.AsyncBaseTransport | None = None
) -> Resources:
    redis = Redis.from_url(settings.redis_url, decode_responses=True)
    upstream = new_http_client(transport)
    delivery = new_delivery_client(settings.delivery_timeout, transport=transport)
    return Resources(
        settings=settings,
        redis=redis,
        store=Store(redis),
        varg=VargClient(settings.varg_api_url, settings.varg_api_key, upstream,
                        deadline=settings.upstream_timeout),
        upstream_http=upstream,
        delivery_http=delivery,
        slots=Slots(settings.delivery_concurrency_per_host,
                    settings.delivery_concurrency_per_tenant, settings.delivery_timeout),
    )


async def close_resources(resources: Resources) -> None:
    await resources.upstream_http.aclose()
    await resources.delivery_http.aclose()
    await resources.redis.aclose()
