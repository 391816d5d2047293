"""relay.store.keys: one home for key names, which the Lua scripts receive in their prelude."""

from __future__ import annotations

from redis.asyncio import Redis

from relay.events import EVENT_CODES
from relay.store import keys
from relay.store.store import lua_prelude


def test_per_record_keys_share_the_prefix() -> None:
    assert keys.sub("sub_1") == "vr:sub:sub_1"
    assert keys.spilled("sub_1", "url") == "vr:sub:sub_1:url"
    assert all(prefix.startswith(keys.PREFIX) for prefix in keys.PER_RECORD.values())
    assert keys.DELIVERY_QUEUE.startswith(keys.PREFIX)


async def test_scripts_see_the_same_names_and_letters(redis: Redis) -> None:
    script = lua_prelude() + "return {K.sub, K.watch, K.msg_seq, EVENT_CODES['job.completed']}"
    seen = await redis.eval(script, 0)  # type: ignore[misc]
    assert seen == [keys.sub(""), keys.watch(""), keys.MSG_SEQ, EVENT_CODES["job.completed"]]


async def test_the_prelude_carries_every_event_code(redis: Redis) -> None:
    script = lua_prelude() + "local out = {} for k, v in pairs(EVENT_CODES) do " \
        "out[#out + 1] = k .. '=' .. v end return out"
    seen = await redis.eval(script, 0)  # type: ignore[misc]
    assert sorted(seen) == sorted(f"{e}={c}" for e, c in EVENT_CODES.items())
