"""The receiver helper, as it was imported before it became its own distribution.

It lives in `receiver/` (package `varg_relay_receiver`, depending on `standardwebhooks` only),
so that a service that only receives webhooks installs it without the server.
"""

from varg_relay_receiver import (
    DAY,
    Event,
    InvalidWebhook,
    MemorySeen,
    RedisSeen,
    ReleasableSeenStore,
    SeenStore,
    WebhookReceiver,
)

__all__ = [
    "DAY",
    "Event",
    "InvalidWebhook",
    "MemorySeen",
    "RedisSeen",
    "ReleasableSeenStore",
    "SeenStore",
    "WebhookReceiver",
]
