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
            "streaming": {"type": "boolean",
                          "description": "followed on Varg's stream now, not polled"},
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
                **_errors(400, 413), **_AUTHED,
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
        "200": {"description": "Redis answers and the upstream key is accepted; `stream` says "
                               "whether workers follow jobs on Varg's stream (`on`) or why "
                               "not (`off: ...`)"},
        "503": {"description": "not ready; `reason` says why"}}}},
    "/metrics": {"get": {"operationId": "metrics", "security": [], "responses": {
        "200": {"description": "Prometheus text format",
                "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    "/openapi.json": {"get": {"operationId": "openapi", "security": [], "responses": {
        "200": _json({"type": "object"}, "this OpenAPI 3.1 document")}}},
}


def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "varg-relay", "version": VERSION,
                 "description": "Webhooks for Varg jobs: register a job, get signed events."},
        "paths": PATHS,
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
