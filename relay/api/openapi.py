"""The OpenAPI 3.1 document of the relay API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from relay.api.validation import (
    CURSOR_PATTERN,
    JOB_ID_MAX,
    JOB_ID_PATTERN,
    METADATA_MAX_BYTES,
    PAGE_MAX,
)
from relay.delivery.urls import MAX_URL_LENGTH
from relay.events import ALL_EVENTS, EventType
from relay.version import VERSION

TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
JOB_ID = {"type": "string", "minLength": 1, "maxLength": JOB_ID_MAX, "pattern": JOB_ID_PATTERN,
          "description": "letters, digits and _ . : - (not only dots)"}
# An absolute http(s) URL: no user name or password, no white space, control characters or
# backslashes (spelled out: `\s` means slightly different things to Python and ECMA-262), a
# host name of dot-separated labels of up to 63 letters, digits, _ and - (253 in all), an IP
# address, or a bracketed IPv6 address, and a port from 1 to 65535. (Internationalised host
# names are accepted too, checked in their punycode form; the pattern leaves them out.)
_NOT_IN_URL = (r"\x00-\x20\x7f-\x9f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f"
               r"\u3000\\")
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = rf"(({_LABEL}\.)*{_LABEL}\.?|\[[0-9A-Fa-f:.]+\])"
_PORT = (r"(:(0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]"
         r"|6553[0-5]))?)?")
URL_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://{_HOST}{_PORT}([/?#][^{_NOT_IN_URL}]*)?$"
# A host name over 253 characters (one trailing dot aside): said apart, as a pattern with a
# look-ahead makes generating examples from the schema impractically slow.
LONG_HOST_PATTERN = r"^[^:]*://([^/?#:\[]{255,}|[^/?#:\[]{253}[^/?#:\[.])([/?#:]|$)"
DELETED_STAYS = ("A deleted subscription stays readable, with state `deleted`, until "
                 "RELAY_RETENTION passes; nothing more is sent for it.")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    names = {400: "ValidationError", 401: "AuthError", 404: "NotFoundError",
             413: "PayloadTooLarge", 429: "RateLimitError", 500: "InternalError"}
    return {str(c): _json(_ref("Error"), names[c]) for c in codes}


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message", "statusCode"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "field": {"type": "string"},
            "statusCode": {"type": "integer"},
        },
    },
    "EventType": {"type": "string", "enum": [str(e) for e in ALL_EVENTS]},
    "NewSubscription": {
        "type": "object",
        "additionalProperties": False,
        "required": ["job_id", "url"],
        "properties": {
            "job_id": JOB_ID,
            "url": {"type": "string", "format": "uri", "maxLength": MAX_URL_LENGTH,
                    "pattern": URL_PATTERN, "not": {"pattern": LONG_HOST_PATTERN},
                    "description": "an absolute http(s) URL; internationalised host names are "
                                   "accepted too (checked as punycode)"},
            "events": {"type": ["array", "null"], "minItems": 1, "items": _ref("EventType"),
                       "description": "the event types to send; null or absent: all of them"},
            "metadata": {"type": ["object", "null"], "description": (
                f"at most {METADATA_MAX_BYTES} bytes as compact JSON, returned in every "
                "webhook; null or absent: {}")},
        },
    },
    "Subscription": {
        "type": "object",
        "description": DELETED_STAYS,
        "required": ["id", "job_id", "url", "events", "metadata", "state", "last_status",
                     "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string", "pattern": "^sub_"},
            "job_id": {"type": "string"},
            "url": {"type": "string"},
            "events": {"type": "array", "items": _ref("EventType")},
            "metadata": {"type": "object"},
            "state": {"type": "string", "enum": ["active", "done", "disabled", "deleted"]},
            "last_status": {"type": ["string", "null"]},
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "Attempt": {
        "type": "object",
        "required": ["at", "status_code", "duration_ms", "error", "response_body"],
        "properties": {
            "at": TIME,
            "status_code": {"type": ["integer", "null"]},
            "duration_ms": {"type": "integer"},
            "error": {"type": ["string", "null"]},
            "response_body": {"type": ["string", "null"], "maxLength": 1024},
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "event_type", "status", "attempts", "next_attempt_at", "created_at"],
        "properties": {
            "id": {"type": "string", "pattern": "^msg_"},
            "subscription_id": {"type": "string"},
            "event_type": _ref("EventType"),
            "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
            "attempts": {"type": "array", "items": _ref("Attempt")},
            "next_attempt_at": NULLABLE_TIME,
            "created_at": TIME,
            "payload": {"type": "object", "description": "the webhook body, as sent"},
        },
    },
    "WebhookEvent": {
        "type": "object",
        "description": "The body of every webhook, signed as sent (Standard Webhooks).",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": _ref("EventType"),
            "timestamp": {**TIME, "description": "when the relay saw the change"},
            "data": {
                "type": "object",
                "required": ["subscription_id", "job_id", "status", "previous_status", "job",
                             "metadata"],
                "properties": {
                    "subscription_id": {"type": "string", "pattern": "^sub_"},
                    "job_id": JOB_ID,
                    "status": {"type": "string", "description": (
                        "the job's status as Varg reported it; `not_found` or "
                        "`watch_expired` when the relay gave up on the job")},
                    "previous_status": {"type": ["string", "null"], "description": (
                        "null on the first status seen after subscribing")},
                    "job": {"type": ["object", "null"], "description": (
                        "Varg's JobResponse as received; null for job.not_found")},
                    "metadata": {"type": "object",
                                 "description": "the subscription's metadata"},
                },
            },
        },
    },
    "Job": {
        "type": "object",
        "required": ["job_id", "status", "job", "last_polled_at", "next_poll_at",
                     "subscriptions"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": ["string", "null"]},
            "job": {"type": ["object", "null"], "description": "Varg's JobResponse, as polled"},
            "last_polled_at": NULLABLE_TIME,
            "next_poll_at": NULLABLE_TIME,
            "watching": {"type": "boolean"},
            "streaming": {"type": "boolean",
                          "description": "followed on Varg's stream now, not polled"},
            "polls": {"type": "integer"},
            "subscriptions": {"type": "array", "items": _ref("Subscription")},
        },
    },
}

_SID = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "a subscription id (`sub_…`); any other value is 404"}
_MID = {"name": "mid", "in": "path", "required": True, "schema": {"type": "string"}}
_AUTHED = _errors(401, 500)

PATHS: dict[str, Any] = {
    "/v1/subscriptions": {
        "post": {
            "operationId": "createSubscription",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("NewSubscription")}}},
            "responses": {
                "200": _json(_ref("Subscription"), "the live subscription with these values"),
                "201": _json(_ref("Subscription"), "created"),
                **_errors(400, 413, 429), **_AUTHED,
            },
        },
        "get": {
            "operationId": "listSubscriptions",
            "parameters": [
                {"name": "job_id", "in": "query", "schema": JOB_ID},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX}},
                {"name": "cursor", "in": "query", "schema": {
                    "type": "string", "pattern": CURSOR_PATTERN,
                    "description": "the `next_cursor` of the previous page"}},
            ],
            "responses": {
                "200": _json({
                    "type": "object", "required": ["data", "next_cursor"],
                    "properties": {"data": {"type": "array", "items": _ref("Subscription")},
                                   "next_cursor": {"type": ["string", "null"]}},
                }, "a page, oldest first"),
                **_errors(400), **_AUTHED,
            },
        },
    },
    "/v1/subscriptions/{sid}": {
        "get": {
            "operationId": "getSubscription", "parameters": [_SID], "description": DELETED_STAYS,
            "responses": {"200": _json(_ref("Subscription"), "the subscription"),
                          **_errors(404), **_AUTHED},
        },
        "delete": {
            "operationId": "deleteSubscription", "parameters": [_SID],
            "description": "Stops every delivery for the subscription. " + DELETED_STAYS,
            "responses": {"204": {"description": "deleted; nothing more is sent"},
                          **_errors(404), **_AUTHED},
        },
    },
    "/v1/subscriptions/{sid}/deliveries": {
        "get": {
            "operationId": "listDeliveries", "parameters": [_SID],
            "description": "Every event of the subscription, oldest first; still listed after "
                           "the subscription is deleted, until RELAY_RETENTION passes.",
            "responses": {
                "200": _json({"type": "object", "required": ["data"], "properties": {
                    "data": {"type": "array", "items": _ref("Delivery")}}}, "oldest first"),
                **_errors(404), **_AUTHED,
            },
        },
    },
    "/v1/subscriptions/{sid}/deliveries/{mid}/retry": {
        "post": {
            "operationId": "retryDelivery", "parameters": [_SID, _MID],
            "responses": {"202": _json(_ref("Delivery"), "queued again, same webhook-id"),
                          **_errors(400, 404), **_AUTHED},
        },
    },
    "/v1/jobs/{job_id}": {
        "get": {
            "operationId": "getJob",
            "parameters": [{"name": "job_id", "in": "path", "required": True,
                            "schema": JOB_ID}],
            "responses": {"200": _json(_ref("Job"), "the relay's view of the job"),
                          **_errors(400, 404), **_AUTHED},
        },
    },
    "/v1/ingest/varg": {
        "post": {
            "operationId": "ingestVargWebhook",
            "summary": "Varg's own v2 webhook: a hint to poll the job now, never a source of truth",
            "description": "Give this URL to Varg as `options.webhook_url`. Authenticated by "
                           "`X-Varg-Signature: v1=<hex HMAC-SHA256 of \"{X-Varg-Timestamp}."
                           "{body}\">` under VARG_WEBHOOK_SECRET (timestamp within 5 minutes), "
                           "not by a bearer token. 404 while VARG_WEBHOOK_SECRET is not set.",
            "security": [{"vargSignature": []}],
            "parameters": [{"name": "X-Varg-Timestamp", "in": "header",
                            "schema": {"type": "string"},
                            "description": "Unix time of signing, in ms or s"}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "description": "Varg's v2 job snapshot (`id`, `status`, ...)",
                "properties": {"id": {"type": "string"}}}}}},
            "responses": {
                "202": _json({
                    "type": "object", "required": ["job_id", "outcome"],
                    "properties": {
                        "job_id": {"type": "string"},
                        "outcome": {"type": "string",
                                    "enum": ["polled", "replay", "unwatched", "leased"]},
                    }}, "taken: `polled` means the job is polled at once"),
                **_errors(400, 401, 404, 413, 500),
            },
        },
    },
    "/healthz": {"get": {"operationId": "healthz", "security": [],
                         "responses": {"200": {"description": "the process lives"}}}},
    "/readyz": {"get": {"operationId": "readyz", "security": [], "responses": {
        "200": {"description": "Redis answers; Varg answers and accepts the key; `stream` says "
                               "whether workers follow jobs on Varg's stream (`on`) or why "
                               "not (`off: ...`)"},
        "503": {"description": "not ready; `reason` says why"}}}},
    "/metrics": {"get": {"operationId": "metrics", "security": [], "responses": {
        "200": {"description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/openapi.json": {"get": {"operationId": "openapi", "security": [], "responses": {
        "200": _json({"type": "object"}, "this OpenAPI 3.1 document")}}},
}


# --- the dashboard's routes (relay/api/dashboard.py) -----------------------------------------

def _page(cursor_pattern: str) -> list[dict[str, Any]]:
    return [
        {"name": "limit", "in": "query",
         "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
        {"name": "cursor", "in": "query", "schema": {"type": "string", "pattern": cursor_pattern},
         "description": "`next_cursor` of the previous page"},
    ]


DELIVERY_CURSOR_PATTERN = r"^(sub_[0-9A-Z]{26}(\.msg_[0-9A-Za-z]{1,64})?)?$"
_SINCE = {"type": "string", "format": "date-time",
          "description": "ISO 8601; UTC when it has no offset"}


def _page_of(name: str, description: str) -> dict[str, Any]:
    return _json({
        "type": "object", "required": ["data", "next_cursor"],
        "properties": {"data": {"type": "array", "items": _ref(name)},
                       "next_cursor": {"type": ["string", "null"]}},
    }, description)


def _bars(description: str) -> dict[str, Any]:
    return {"type": "array", "description": description, "items": {
        "type": "object", "required": ["start", "count"],
        "properties": {"start": TIME, "count": {"type": "integer", "minimum": 0}}}}


SCHEMAS.update({
    "JobSummary": {
        "type": "object",
        "required": ["job_id", "status", "model", "created_at", "watching", "last_polled_at",
                     "next_poll_at", "polls", "subscription_count"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"type": ["string", "null"], "description": "null until first polled"},
            "model": {"type": ["string", "null"]},
            "created_at": {**NULLABLE_TIME, "description": "Varg's, else when first watched"},
            "watching": {"type": "boolean"},
            "last_polled_at": NULLABLE_TIME,
            "next_poll_at": NULLABLE_TIME,
            "polls": {"type": "integer"},
            "subscription_count": {"type": "integer", "description": "the caller's, of this job"},
        },
    },
    "TimelineEntry": {
        "type": "object",
        "required": ["status", "observed_at", "webhooks"],
        "properties": {
            "status": {"type": "string"},
            "observed_at": TIME,
            "webhooks": {"type": "array", "items": {
                "type": "object",
                "required": ["id", "subscription_id", "event_type", "status", "attempts"],
                "properties": {
                    "id": {"type": "string", "pattern": "^msg_"},
                    "subscription_id": {"type": "string", "pattern": "^sub_"},
                    "event_type": _ref("EventType"),
                    "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
                    "attempts": {"type": "integer"},
                }}},
        },
    },
    "UpstreamHealth": {
        "type": "object",
        "required": ["at", "budget_per_minute", "configured_per_minute", "requests_last_minute",
                     "polls_per_second", "requests", "rate_limited_last_hour", "rate_limited",
                     "unauthorized", "paused_for", "watches"],
        "properties": {
            "at": TIME,
            "budget_per_minute": {"type": "integer",
                                  "description": "configured, or Varg's lower limit"},
            "configured_per_minute": {"type": "integer"},
            "requests_last_minute": {"type": "integer"},
            "polls_per_second": {"type": "number", "description": "over the last 10 s"},
            "requests": _bars("upstream requests per 5 s over the last minute, oldest first"),
            "rate_limited_last_hour": {"type": "integer"},
            "rate_limited": _bars("429s per 5 minutes over the last hour, oldest first"),
            "unauthorized": {"type": "boolean", "description": "Varg refused the key lately"},
            "paused_for": {"type": "number", "description": "seconds polling still waits"},
            "watches": {"type": "object", "required": ["total", "due", "overdue"],
                        "properties": {"total": {"type": "integer"}, "due": {"type": "integer"},
                                       "overdue": {"type": "integer"}}},
        },
    },
})

_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": JOB_ID}

PATHS.update({
    "/v1/jobs": {"get": {
        "operationId": "listJobs",
        "description": "Jobs the caller has subscriptions on, by its newest subscription of "
                       "each, newest first. A page may be short while `next_cursor` is set.",
        "parameters": [
            {"name": "status", "in": "query",
             "schema": {"type": "string", "pattern": "^([a-z_]{1,32})?$"},
             "description": "only jobs last seen with this status"},
            {"name": "q", "in": "query",
             "schema": {"type": "string", "maxLength": JOB_ID_MAX,
                        "pattern": f"^$|{JOB_ID_PATTERN}"},
             "description": "part of a job id"},
            *_page(CURSOR_PATTERN),
        ],
        "responses": {"200": _page_of("JobSummary", "a page, newest first"),
                      **_errors(400), **_AUTHED},
    }},
    "/v1/jobs/{job_id}/events": {"get": {
        "operationId": "getJobEvents",
        "description": "Every status the relay observed and announced to the caller's "
                       "subscriptions, with the webhooks it produced, oldest first.",
        "parameters": [_JOB_ID],
        "responses": {
            "200": _json({"type": "object", "required": ["job_id", "data"], "properties": {
                "job_id": {"type": "string"},
                "data": {"type": "array", "items": _ref("TimelineEntry")}}}, "the timeline"),
            **_errors(400, 404), **_AUTHED,
        },
    }},
    "/v1/deliveries": {"get": {
        "operationId": "listAllDeliveries",
        "description": "Deliveries of all the caller's subscriptions except deleted ones: "
                       "newest subscription first, each one's newest delivery first.",
        "parameters": [
            {"name": "status", "in": "query",
             "schema": {"type": "string", "enum": ["pending", "succeeded", "failed"]}},
            {"name": "since", "in": "query", "schema": _SINCE,
             "description": "only deliveries created at or after this time"},
            *_page(DELIVERY_CURSOR_PATTERN),
        ],
        "responses": {"200": _page_of("Delivery", "a page"), **_errors(400), **_AUTHED},
    }},
    "/v1/deliveries/retry": {"post": {
        "operationId": "retryFailedDeliveries",
        "description": "Send again every failed delivery created since `since`, of all the "
                       "caller's subscriptions except deleted ones, in order, same webhook-ids.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "required": ["since"],
            "properties": {"since": _SINCE}}}}},
        "responses": {
            "202": _json({"type": "object", "required": ["queued", "subscriptions"],
                          "properties": {"queued": {"type": "integer"},
                                         "subscriptions": {"type": "integer"}}},
                         "how many deliveries were queued again, on how many subscriptions"),
            **_errors(400, 413), **_AUTHED,
        },
    }},
    "/v1/upstream": {"get": {
        "operationId": "getUpstream",
        "description": "Deployment-wide upstream health, the same for every token: what "
                       "/metrics and /readyz tell, in JSON.",
        "responses": {"200": _json(_ref("UpstreamHealth"), "upstream health"), **_AUTHED},
    }},
})


WEBHOOK_HEADERS = [
    ("webhook-id", "`msg_…`: one per subscription and status change, the same on every retry; "
                   "drop duplicates by it"),
    ("webhook-timestamp", "Unix seconds of this attempt"),
    ("webhook-signature", "`v1,<base64 HMAC-SHA256 of \"{id}.{timestamp}.{body}\">` for each "
                          "signing secret, space-separated (Standard Webhooks)"),
    ("user-agent", f"`varg-relay/{VERSION}`"),
]


def _webhook(event: EventType) -> dict[str, Any]:
    schema = {"allOf": [_ref("WebhookEvent"), {"properties": {"type": {"const": str(event)}}}]}
    return {"post": {
        "operationId": f"webhook_{event.name}",
        "summary": f"{event}: sent to each matching subscription's url",
        "parameters": [{"name": name, "in": "header", "required": True,
                        "schema": {"type": "string"}, "description": text}
                       for name, text in WEBHOOK_HEADERS],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "2XX": {"description": "received: the event is delivered"},
            "410": {"description": "gone: the subscription is disabled, nothing more is sent"},
            "default": {"description": "anything else, a timeout or a redirect: retried on "
                                       "RELAY_RETRY_SCHEDULE (a 429's or 503's Retry-After "
                                       "is honoured)"},
        },
        "security": [],
    }}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "varg-relay", "version": VERSION,
                 "description": "Webhooks for Varg jobs: register a job, get signed events."},
        "paths": PATHS,
        "webhooks": {str(event): _webhook(event) for event in ALL_EVENTS},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "vargSignature": {"type": "apiKey", "in": "header", "name": "X-Varg-Signature",
                                  "description": "Varg's webhook signature (ingest only)"},
            },
        },
        "security": [{"bearer": []}],
    }
