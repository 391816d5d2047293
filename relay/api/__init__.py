"""The HTTP API: routes, input validation, rendering and the OpenAPI document."""
