"""Prometheus metrics. The API serves them on /metrics; each worker on RELAY_METRICS_PORT."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

disable_created_metrics()  # type: ignore[no-untyped-call]  # the *_created series only add noise to every scrape

POLLS = Counter("relay_polls_total", "Upstream polls by outcome", ["outcome"])
UPSTREAM_LATENCY = Histogram(
    "relay_upstream_latency_seconds", "Time of one upstream GET /jobs/{id}",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
STATUS_CHANGES = Counter("relay_status_changes_total", "Status changes observed", ["status"])
DELIVERIES = Counter(
    "relay_deliveries_total", "Webhook attempts by outcome and attempt number",
    ["outcome", "attempt"],
)
DELIVERY_LATENCY = Histogram(
    "relay_delivery_attempt_seconds", "Time of one webhook attempt",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
)
CHANGE_TO_DELIVERY = Histogram(
    "relay_change_to_delivery_seconds",
    "From the relay seeing a status change to the receiver acknowledging it",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
)
WATCHES = Gauge("relay_watches", "Jobs being watched")
DUE = Gauge("relay_watches_due", "Watched jobs worth polling now, waiting for the budget")
OVERDUE = Gauge("relay_watches_overdue", "Watched jobs worth polling for more than 10 s")
BUDGET = Gauge(
    "relay_upstream_budget_per_minute",
    "Upstream requests a minute the workers share: RELAY_UPSTREAM_RATE_LIMIT, or Varg's lower"
    " X-RateLimit-Limit",
)
PENDING = Gauge("relay_subscriptions_pending", "Subscriptions with undelivered events")
RATE_LIMIT_WAITS = Counter(
    "relay_rate_limit_waits_total", "Times a worker waited for the upstream budget", ["reason"]
)
SUBSCRIPTIONS = Counter("relay_subscriptions_created_total", "Subscriptions created")
DELIVERIES_DEFERRED = Counter(
    "relay_deliveries_deferred_total",
    "Webhook attempts put off because their destination (host) or API token (tenant) had"
    " as many in flight on this worker as allowed",
    ["reason"],
)
STREAMS_OPEN = Gauge(
    "relay_streams_open",
    "Jobs followed on Varg's stream: this worker's on its port, the deployment's on the API",
)
STREAM_RECONNECTS = Counter(
    "relay_stream_reconnects_total", "Stream connections opened again for a job still streamed"
)
STREAM_FALLBACKS = Counter(
    "relay_stream_fallbacks_total", "Streamed jobs handed back to polling, by why", ["reason"]
)
HINTS = Counter(
    "relay_varg_hints_total", "Varg's own webhooks at POST /v1/ingest/varg, by outcome",
    ["outcome"],
)
