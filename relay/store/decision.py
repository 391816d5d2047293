"""What one look at a job writes back: the typed boundary between the poll policy and poll.lua.

`relay/upstream/policy.py` decides (pure); `Store.poll_cycle` hands `Decision.lua()` to
poll.lua, which applies it atomically: the status and job JSON, one event per subscription that
wants it, the next poll time or the end of the watch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from relay.events import event_for, is_terminal
from relay.times import iso


@dataclass(frozen=True)
class Decision:
    job_id: str
    token: str  # the lease this answers: poll.lua ignores a decision whose lease has moved on
    observed_at: float  # when the relay saw it (Unix seconds): the event's timestamp
    delay: float  # seconds until the next poll, unless the watch ends
    status: str | None = None  # a status to record and announce; None when nothing was seen
    job: str | None = None  # the job JSON as received; None: announce the job as last seen
    model: str | None = None
    created_at: str | None = None
    first_404: float | str = ""  # when 404s began ("" while the job is found)
    failures: int = 0  # upstream errors in a row
    end_watch: bool = False
    learn: str | None = None  # a run-time histogram field to count (relay/upstream/runtimes.py)
    stream: bool = False  # seen on a stream (relay/upstream/streams.py), not by a poll
    hold: float = 0.0  # a stream keeps its lease this many seconds more; 0: the lease ends

    def lua(self) -> dict[str, Any]:
        """The decision as poll.lua reads it, with what it derives from the status."""
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        fields["last_polled_at"] = self.observed_at
        fields["observed_iso"] = iso(self.observed_at)
        if self.status is not None:
            fields["event_type"] = str(event_for(self.status))
            fields["terminal"] = is_terminal(self.status)
        return fields
