"""The periodic safety net: restart delivery chains that nothing is running, forget old data.

Every crash window in the delivery path ends here: an event appended while its chain was
finishing (arq drops an enqueue whose job id still exists), a worker killed between recording
an event and kicking its chain, an arq job that expired. It is also where retention happens.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from relay import metrics
from workers.deliver import kick
from workers.resources import Resources

log = logging.getLogger("relay.sweeper")
ARQ_JOB_KEY = "arq:job:deliver:{sid}"
ARQ_IN_PROGRESS_KEY = "arq:in-progress:deliver:{sid}"


async def sweep(ctx: dict[str, Any]) -> int:
    res: Resources = ctx["resources"]
    restarted = await restart_idle_chains(res, ctx["redis"])
    purged = await res.store.purge_finished(time.time() - res.settings.retention)
    if restarted or purged:
        log.info("sweep restarted %d chains, purged %d subscriptions", restarted, purged)
    return restarted


async def restart_idle_chains(res: Resources, arq: Any) -> int:
    sids = await res.store.pending_outboxes()
    metrics.PENDING.set(len(sids))
    if not sids:
        return 0
    async with res.redis.pipeline(transaction=False) as pipe:
        for sid in sids:
            pipe.exists(ARQ_JOB_KEY.format(sid=sid), ARQ_IN_PROGRESS_KEY.format(sid=sid))
        running = await pipe.execute()
    restarted = 0
    for sid, alive in zip(sids, running, strict=True):
        if alive:
            continue
        head = await res.store.outbox_head(sid)
        if head is None:
            continue
        wait = float(head[0].get("next_attempt_at") or 0) - time.time()
        await kick(arq, sid, defer=wait)
        restarted += 1
    return restarted
