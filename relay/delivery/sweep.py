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
from relay.delivery.chain import chain_id, kick
from relay.resources import Resources

log = logging.getLogger("relay.sweeper")


async def sweep(ctx: dict[str, Any]) -> int:
    res: Resources = ctx["resources"]
    restarted = await restart_idle_chains(res, ctx["redis"])
    purged = await res.store.purge_finished(time.time() - res.settings.retention)
    # At DEBUG every sweep says so: proof, when debugging a stuck queue, that sweeps run.
    log.log(logging.INFO if restarted or purged else logging.DEBUG,
            "sweep restarted %d chains, purged %d subscriptions", restarted, purged)
    return restarted


async def restart_idle_chains(res: Resources, arq: Any) -> int:
    sids = await res.store.pending_outboxes()
    metrics.PENDING.set(len(sids))
    if not sids:
        return 0
    running = await res.store.jobs_alive([chain_id(sid) for sid in sids])
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
