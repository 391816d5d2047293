"""Counting Redis work: client round trips (in this process) and commands per DB (MONITOR).

The Redis server is shared with other work, so server-wide `INFO commandstats` would count
other databases too; MONITOR lines carry the DB and say whether a command ran inside Lua.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

_trips = Counter[str]()
_original_send = AbstractConnection.send_packed_command


async def _counted_send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
    _trips["sent"] += 1  # one write per command or pipeline: one round trip
    await _original_send(self, command, check_health)


def count_round_trips() -> None:
    """Count every request any redis-py asyncio connection of this process sends."""
    AbstractConnection.send_packed_command = _counted_send  # type: ignore[method-assign]


def round_trips() -> int:
    return _trips["sent"]


async def monitor_db(redis_url: str, db: int, seconds: float) -> Counter[str]:
    """Commands seen on `db` for `seconds`: counts under 'lua' and 'client', and per command."""
    counts = Counter[str]()
    client = Redis.from_url(redis_url, decode_responses=True)
    async with client.monitor() as monitor:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(monitor.next_command(), left)
            except TimeoutError:
                break
            if int(line.get("db", -1)) == db:
                source = "lua" if line.get("client_type") == "lua" else "client"
                counts[source] += 1
                counts[f"{source}:{str(line['command']).split(' ')[0].upper()}"] += 1
    await client.aclose()
    return counts
