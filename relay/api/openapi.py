"""The OpenAPI 3.1 document of the relay API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from relay.events import ALL_EVENTS
from relay.version import VERSION

TIME = {"type": "string", "format": "date-time"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}


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
            "job_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
            "url": {"type": "string", "format": "uri", "maxLength": 2048},
            "events": {"type": "array", "minItems": 1, "items": _ref("EventType")},
            "metadata": {"type": "object", "description": "at most 4 KiB of JSON"},
        },
    },
    "Subscription": {
        "type": "object",
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
            "polls": {"type": "integer"},
            "subscriptions": {"type": "array", "items": _ref("Subscription")},
        },
    },
}

_SID = {"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}
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
                {"name": "job_id", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                {"name": "cursor", "in": "query", "schema": {"type": "string"}},
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
            "operationId": "getSubscription", "parameters": [_SID],
            "responses": {"200": _json(_ref("Subscription"), "the subscription"),
                          **_errors(404), **_AUTHED},
        },
        "delete": {
            "operationId": "deleteSubscription", "parameters": [_SID],
            "responses": {"204": {"description": "deleted; nothing more is sent"},
                          **_errors(404), **_AUTHED},
        },
    },
    "/v1/subscriptions/{sid}/deliveries": {
        "get": {
            "operationId": "listDeliveries", "parameters": [_SID],
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
                            "schema": {"type": "string"}}],
            "responses": {"200": _json(_ref("Job"), "the relay's view of the job"),
                          **_errors(400, 404), **_AUTHED},
        },
    },
    "/healthz": {"get": {"operationId": "healthz", "security": [],
                         "responses": {"200": {"description": "the process lives"}}}},
    "/readyz": {"get": {"operationId": "readyz", "security": [], "responses": {
        "200": {"description": "Redis answers; Varg answers and accepts the key"},
        "503": {"description": "not ready; `reason` says why"}}}},
    "/metrics": {"get": {"operationId": "metrics", "security": [], "responses": {
        "200": {"description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/openapi.json": {"get": {"operationId": "openapi", "security": [], "responses": {
        "200": _json({"type": "object"}, "this OpenAPI 3.1 document")}}},
}


# --- the dashboard's routes (relay/api/dashboard.py) -----------------------------------------

_PAGE = [
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
    {"name": "cursor", "in": "query", "schema": {"type": "string"},
     "description": "`next_cursor` of the previous page"},
]
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

_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}

PATHS.update({
    "/v1/jobs": {"get": {
        "operationId": "listJobs",
        "description": "Jobs the caller has subscriptions on, by its newest subscription of "
                       "each, newest first. A page may be short while `next_cursor` is set.",
        "parameters": [
            {"name": "status", "in": "query", "schema": {"type": "string"},
             "description": "only jobs last seen with this status"},
            {"name": "q", "in": "query", "schema": {"type": "string"},
             "description": "part of a job id"},
            *_PAGE,
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
            *_PAGE,
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


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "varg-relay", "version": VERSION,
                 "description": "Webhooks for Varg jobs: register a job, get signed events."},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
