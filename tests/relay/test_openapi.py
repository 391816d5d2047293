"""/openapi.json: a valid OpenAPI 3.1 document covering contract §4, which real responses obey."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Mount

from relay.app import create_app
from tests.conftest import OTHER_TOKEN, Receiver, api_client, sim_job, walk
from tests.support import eventually

Json = dict[str, Any]
DOC_URI = "urn:varg-relay:openapi"
HOOK = "http://127.0.0.1:9/varg"  # loopback: nothing could leave the machine

# Contract §4, route by route.
CONTRACT_ROUTES = {
    "/v1/subscriptions": {"post", "get"},
    "/v1/subscriptions/{sid}": {"get", "delete"},
    "/v1/subscriptions/{sid}/deliveries": {"get"},
    "/v1/subscriptions/{sid}/deliveries/{mid}/retry": {"post"},
    "/v1/jobs/{job_id}": {"get"},
    "/healthz": {"get"},
    "/readyz": {"get"},
    "/metrics": {"get"},
    "/openapi.json": {"get"},
}
PUBLIC = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture
async def document(api: httpx.AsyncClient) -> Json:
    response = await api.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    doc: Json = response.json()
    return doc


class Checker:
    """Validates real responses against the schema the document gives for them."""

    def __init__(self, doc: Json) -> None:
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)
        self.checked: set[tuple[str, str, str]] = set()

    def schema_for(self, method: str, template: str, status: int) -> Json | None:
        responses = self.doc["paths"][template][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {template}: {status} is not documented"
        content = responses[str(status)].get("content")
        if content is None or "application/json" not in content:
            return None
        schema: Json = content["application/json"]["schema"]
        return schema

    def validate(self, instance: Any, schema: Json) -> None:
        # The schema's local $refs point into the whole document, found in the registry.
        validator = Draft202012Validator(self._rooted(schema), registry=self.registry,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)

    def _rooted(self, schema: Any) -> Any:
        if isinstance(schema, dict):
            return {k: (DOC_URI + v if k == "$ref" and v.startswith("#") else self._rooted(v))
                    for k, v in schema.items()}
        if isinstance(schema, list):
            return [self._rooted(v) for v in schema]
        return schema

    def component(self, name: str) -> Json:
        schema: Json = self.doc["components"]["schemas"][name]
        return schema

    def check(self, response: httpx.Response, template: str) -> Any:
        method = response.request.method
        schema = self.schema_for(method, template, response.status_code)
        self.checked.add((method.lower(), template, str(response.status_code)))
        if response.status_code == 204:
            assert response.content == b""
            return None
        if schema is None:
            return None
        body = response.json()
        self.validate(body, schema)
        return body

    def no_undocumented_fields(self, instance: Json, name: str) -> None:
        assert set(instance) <= set(self.component(name)["properties"]), (name, instance)


@pytest.fixture
def checker(document: Json) -> Checker:
    return Checker(document)


# --- the document ----------------------------------------------------------------------------


def test_document_is_openapi_3_1(document: Json) -> None:
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] and document["info"]["version"]


def test_document_passes_openapi_spec_validator(document: Json) -> None:
    validators = pytest.importorskip("openapi_spec_validator")
    validators.validate(document)


def test_every_contract_route_is_documented(document: Json) -> None:
    for path, methods in CONTRACT_ROUTES.items():
        assert path in document["paths"], path
        documented = set(document["paths"][path]) & HTTP_METHODS
        assert methods <= documented, (path, documented)


def test_document_has_no_route_the_app_lacks(document: Json, settings: Any) -> None:
    app = create_app(settings)
    served: dict[str, set[str]] = {}
    for route in app.routes:
        if isinstance(route, Mount):
            continue  # /ui, the dashboard: static files, not the API
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None) or set()
        if path:
            served.setdefault(path, set()).update(m.lower() for m in methods)
    for path, item in document["paths"].items():
        assert path in served, path
        assert set(item) & HTTP_METHODS <= served[path], path
    assert set(served) == set(document["paths"])


def test_v1_routes_need_bearer_and_operational_routes_none(document: Json) -> None:
    schemes = document["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    default = document.get("security")
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            security = op.get("security", default)
            if path in PUBLIC:
                assert security == [], (path, method)
            else:
                assert security and all(set(req) <= set(schemes) for req in security)
                assert "401" in op["responses"], (path, method)


def test_operation_ids_are_unique(document: Json) -> None:
    ids = [op["operationId"] for item in document["paths"].values()
           for method, op in item.items() if method in HTTP_METHODS]
    assert len(ids) == len(set(ids))


def test_event_type_enum_lists_every_event(document: Json) -> None:
    assert set(document["components"]["schemas"]["EventType"]["enum"]) == {
        "job.queued", "job.processing", "job.completed", "job.failed", "job.cancelled",
        "job.status_changed", "job.not_found", "job.watch_expired"}


def test_path_templates_match_contract_ids(document: Json) -> None:
    for path in document["paths"]:
        for name in re.findall(r"{(\w+)}", path):
            ops = [op for m, op in document["paths"][path].items() if m in HTTP_METHODS]
            for op in ops:
                declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
                assert name in declared, (path, name)


def test_new_subscription_schema_agrees_with_the_api(checker: Checker) -> None:
    """The request schema accepts what the API accepts and refuses what it refuses."""
    schema = checker.component("NewSubscription")
    checker.validate({"job_id": "job_1", "url": HOOK, "events": ["job.completed"],
                      "metadata": {"a": 1}}, schema)
    for bad in ({"url": HOOK}, {"job_id": "job_1"}, {"job_id": "a b", "url": HOOK},
                {"job_id": "job_1", "url": HOOK, "events": []},
                {"job_id": "job_1", "url": HOOK, "events": ["job.nope"]},
                {"job_id": "job_1", "url": HOOK, "extra": 1}):
        with pytest.raises(AssertionError):
            checker.validate(bad, schema)


URLS = [  # (url, whether the API takes it at registration, syntax only)
    ("https://hooks.example.com/varg?x=1#f", True), ("HTTP://a.b:8080", True),
    ("http://a_b.c-d.e.f.g/", True), ("http://1.2.3.4:65535/", True), ("http://[::1]/", True),
    ("http://a.b:/x", True), ("http://" + ("a" * 62 + ".") * 4 + "x/", True),
    ("ftp://a.b/", False), ("http://u:p@a.b/", False), ("http://a.b:0/", False),
    ("http://a.b:65536/", False), ("http://a b/", False), ("http://a.b/\u00a0", False),
    ("http://" + "a" * 64 + ".com/", False), ("http://" + ("a" * 62 + ".") * 4 + "xy/", False),
    ("http://-a.com/", False), ("http:///x", False), ("http://a.b\\x", False),
]


@pytest.mark.parametrize(("url", "taken"), URLS)
def test_the_url_schema_states_what_the_api_enforces(
    checker: Checker, url: str, taken: bool
) -> None:
    from relay.delivery.urls import UnsafeURL, validate_url_syntax

    try:
        validate_url_syntax(url)
        api_takes = True
    except UnsafeURL:
        api_takes = False
    assert api_takes == taken, url
    body = {"job_id": "job_1", "url": url}
    if taken:
        checker.validate(body, checker.component("NewSubscription"))
    else:
        with pytest.raises(AssertionError):
            checker.validate(body, checker.component("NewSubscription"))


@pytest.mark.parametrize(("job_id", "taken"), [
    ("job_1", True), ("a" * 128, True), ("a.b:c-d_e", True), ("..a", True),
    ("", False), ("a" * 129, False), ("..", False), ("â", False), ("a/b", False),
])  # (not "a\n": Python's `$` matches before a final newline, ECMA-262's, the schema's, does not)
def test_job_id_parameters_state_the_api_s_pattern(
    checker: Checker, document: Json, job_id: str, taken: bool
) -> None:
    from relay.api.validation import job_id as api_job_id
    from relay.errors import ValidationError

    try:
        api_job_id(job_id)
        assert taken
    except ValidationError:
        assert not taken
    path = document["paths"]["/v1/jobs/{job_id}"]["get"]["parameters"][0]["schema"]
    query = next(p["schema"] for p in document["paths"]["/v1/subscriptions"]["get"]["parameters"]
                 if p["name"] == "job_id")
    for schema in (path, query):
        if taken:
            checker.validate(job_id, schema)
        else:
            with pytest.raises(AssertionError):
                checker.validate(job_id, schema)


def test_webhooks_describe_every_event_and_its_headers(document: Json) -> None:
    webhooks = document["webhooks"]
    assert set(webhooks) == set(document["components"]["schemas"]["EventType"]["enum"])
    for name, item in webhooks.items():
        post = item["post"]
        headers = {p["name"] for p in post["parameters"] if p["in"] == "header"}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature", "user-agent"}
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body["allOf"][1]["properties"]["type"]["const"] == name
        assert {"2XX", "410", "default"} <= set(post["responses"])


# --- real responses against the schemas ------------------------------------------------------


async def test_subscription_responses_match_the_schemas(
    api: httpx.AsyncClient, checker: Checker, settings: Any
) -> None:
    created = await api.post("/v1/subscriptions", json={
        "job_id": "job_s", "url": HOOK, "metadata": {"k": ["v"]}})
    sub = checker.check(created, "/v1/subscriptions")
    checker.no_undocumented_fields(sub, "Subscription")
    again = await api.post("/v1/subscriptions", json={"job_id": "job_s", "url": HOOK})
    assert again.status_code == 200
    checker.check(again, "/v1/subscriptions")
    await api.post("/v1/subscriptions", json={"job_id": "job_s", "url": HOOK + "/2"})

    sid = sub["id"]
    checker.check(await api.get(f"/v1/subscriptions/{sid}"), "/v1/subscriptions/{sid}")
    page = checker.check(await api.get("/v1/subscriptions", params={"limit": 1}),
                         "/v1/subscriptions")
    assert page["next_cursor"] is not None
    checker.check(await api.get("/v1/subscriptions", params={"cursor": page["next_cursor"]}),
                  "/v1/subscriptions")
    checker.check(await api.get("/v1/subscriptions", params={"job_id": "job_s"}),
                  "/v1/subscriptions")
    checker.check(await api.get(f"/v1/subscriptions/{sid}/deliveries"),
                  "/v1/subscriptions/{sid}/deliveries")
    view = checker.check(await api.get("/v1/jobs/job_s"), "/v1/jobs/{job_id}")
    checker.no_undocumented_fields(view, "Job")
    checker.check(await api.delete(f"/v1/subscriptions/{sid}"), "/v1/subscriptions/{sid}")
    deleted = checker.check(await api.get(f"/v1/subscriptions/{sid}"), "/v1/subscriptions/{sid}")
    assert deleted["state"] == "deleted"


async def test_error_responses_match_the_schemas(
    api: httpx.AsyncClient, checker: Checker, settings: Any
) -> None:
    error = checker.component("Error")
    sid, mid = "sub_01JZZZZZZZZZZZZZZZZZZZZZZZ", "msg_01JZZZZZZZZZZZZZZZZZZZZZZZ"
    bad = await api.post("/v1/subscriptions", json={"job_id": "job_1", "url": "ftp://x"})
    assert checker.check(bad, "/v1/subscriptions")["field"] == "url"
    big = await api.post("/v1/subscriptions", content=b" " * (65 * 1024))
    checker.check(big, "/v1/subscriptions")
    checker.check(await api.get("/v1/subscriptions", params={"limit": "0"}),
                  "/v1/subscriptions")
    checker.check(await api.get(f"/v1/subscriptions/{sid}"), "/v1/subscriptions/{sid}")
    checker.check(await api.delete(f"/v1/subscriptions/{sid}"), "/v1/subscriptions/{sid}")
    checker.check(await api.get(f"/v1/subscriptions/{sid}/deliveries"),
                  "/v1/subscriptions/{sid}/deliveries")
    checker.check(await api.post(f"/v1/subscriptions/{sid}/deliveries/{mid}/retry"),
                  "/v1/subscriptions/{sid}/deliveries/{mid}/retry")
    checker.check(await api.get("/v1/jobs/job_none"), "/v1/jobs/{job_id}")
    checker.check(await api.get("/v1/jobs/a%20b"), "/v1/jobs/{job_id}")
    async with api_client(settings, "tok_wrong") as anonymous:
        for method, path, template in [
            ("POST", "/v1/subscriptions", "/v1/subscriptions"),
            ("GET", "/v1/subscriptions", "/v1/subscriptions"),
            ("GET", f"/v1/subscriptions/{sid}", "/v1/subscriptions/{sid}"),
            ("DELETE", f"/v1/subscriptions/{sid}", "/v1/subscriptions/{sid}"),
            ("GET", f"/v1/subscriptions/{sid}/deliveries", "/v1/subscriptions/{sid}/deliveries"),
            ("POST", f"/v1/subscriptions/{sid}/deliveries/{mid}/retry",
             "/v1/subscriptions/{sid}/deliveries/{mid}/retry"),
            ("GET", "/v1/jobs/job_1", "/v1/jobs/{job_id}"),
        ]:
            response = await anonymous.request(method, path)
            assert response.status_code == 401
            checker.check(response, template)
    unknown = await api.get("/nope")
    assert unknown.status_code == 404
    checker.validate(unknown.json(), error)


async def test_operational_responses_match_the_document(
    api: httpx.AsyncClient, checker: Checker
) -> None:
    checker.check(await api.get("/healthz"), "/healthz")
    checker.check(await api.get("/readyz"), "/readyz")
    checker.check(await api.get("/openapi.json"), "/openapi.json")
    metrics = await api.get("/metrics")
    checker.check(metrics, "/metrics")
    content = checker.doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert metrics.headers["content-type"].split(";")[0] in content


async def test_delivery_responses_match_the_schemas(
    api: httpx.AsyncClient, checker: Checker, worker: Worker, simulator: str,
    receiver: Receiver, settings: Any,
) -> None:
    receiver.plan["/o"] = [500]
    sim_job(simulator, "job_o", [("processing", 0)])
    created = await api.post("/v1/subscriptions",
                             json={"job_id": "job_o", "url": receiver.url("/o")})
    sid = checker.check(created, "/v1/subscriptions")["id"]
    await walk(simulator, "job_o", ["completed"], lambda: len(receiver.attempts))
    await eventually(lambda: receiver.types("/o") == ["job.processing", "job.completed"])

    async def listed() -> list[Json]:
        answer = await api.get(f"/v1/subscriptions/{sid}/deliveries")
        data: list[Json] = checker.check(answer, "/v1/subscriptions/{sid}/deliveries")["data"]
        return data

    found = await eventually(listed, until=lambda found: [d["status"] for d in found] == [
        "succeeded", "succeeded"])
    assert found[0]["attempts"][0]["status_code"] == 500
    for item in found:  # the webhooks as sent conform to the document's webhooks section
        webhook = checker.doc["webhooks"][item["event_type"]]["post"]
        checker.validate(item["payload"], webhook["requestBody"]["content"]["application/json"][
            "schema"])
    for item in found:
        checker.no_undocumented_fields(item, "Delivery")
        for attempt in item["attempts"]:
            checker.no_undocumented_fields(attempt, "Attempt")

    template = "/v1/subscriptions/{sid}/deliveries/{mid}/retry"
    retried = await api.post(f"/v1/subscriptions/{sid}/deliveries/{found[0]['id']}/retry")
    assert retried.status_code == 202
    checker.check(retried, template)
    view = checker.check(await api.get("/v1/jobs/job_o"), "/v1/jobs/{job_id}")
    assert view["status"] == "completed"
    checker.no_undocumented_fields(view, "Job")

    async with api_client(settings, OTHER_TOKEN) as bob:
        checker.check(await bob.post(f"/v1/subscriptions/{sid}/deliveries/{found[0]['id']}"
                                     "/retry"), template)
    await api.delete(f"/v1/subscriptions/{sid}")
    gone = await api.post(f"/v1/subscriptions/{sid}/deliveries/{found[1]['id']}/retry")
    assert gone.status_code == 400
    checker.check(gone, template)

