"""Secrets never leave: not in logs, API responses, error messages, webhooks or Redis.

The flow tests run the API and an in-process worker against the simulator and a recording
receiver, with distinctive tokens and a distinctive extra signing secret (the simulator's key
is conftest's SIM_KEY, so that known value is what is looked for). Everything observable is
collected and searched: every log record at DEBUG (relay, arq, httpx, httpcore included, with
tracebacks and record attributes), every API response's status line, headers and body (bad
tokens, 401/404/405/413/500 paths too), every webhook's headers and body, every Redis value.
"""

from __future__ import annotations

import io
import json
import logging
import secrets as pysecrets
import threading
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from standardwebhooks.webhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config import Settings, load_settings
from config.settings import SettingsError
from relay.app import create_app
from relay.delivery.signing import new_secret
from relay.logs import JsonFormatter, Redact, configure_logging
from relay.store.store import Store
from tests.conftest import (
    REDIS_URL,
    SECRET,
    SIM_KEY,
    ServerThread,
    SettingsFactory,
    running_worker,
    sim_job,
)
from tests.support import eventually

TOKEN_A = "tok_" + pysecrets.token_hex(16)
TOKEN_B = "tok_" + pysecrets.token_hex(16)
EXTRA_SECRET = new_secret()  # signs too (rotation); the receiver only knows SECRET
LOGGERS = ("", "relay", "workers", "arq", "arq.worker", "arq.jobs", "arq.connections", "httpx",
           "httpcore", "uvicorn", "uvicorn.error")


def forms(secret: str) -> list[str]:
    """A secret and, for a signing secret, its key part alone (the base64 after whsec_)."""
    return [secret, secret.removeprefix("whsec_")] if secret.startswith("whsec_") else [secret]


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for secret in secrets for s in forms(secret) if s in text]


# ---- observation -------------------------------------------------------------------------


@dataclass
class Recorder:
    """A webhook receiver that keeps every request's raw headers and body."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_first: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)
    base_url: str = ""

    def app(self) -> Starlette:
        hook = Webhook(SECRET)

        async def receive(request: Request) -> Response:
            raw, headers = await request.body(), dict(request.headers)
            with self.lock:
                self.requests.append((headers, raw))
                failing = self.fail_first > 0
                self.fail_first -= 1
            hook.verify(raw, headers)
            # Echo the headers back: whatever the relay keeps of the answer is searched too.
            return JSONResponse({"seen": headers}, status_code=500 if failing else 200)

        return Starlette(routes=[Route("/{name:path}", receive, methods=["POST"])])

    def text(self) -> str:
        with self.lock:
            return "\n".join(json.dumps(h) + "\n" + b.decode() for h, b in self.requests)


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    with ServerThread(rec.app()) as server:
        rec.base_url = server.url
        yield rec


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record as any formatter would show it, tracebacks and attributes included."""
    text_format, json_format = logging.Formatter(), JsonFormatter()
    out = []
    for record in caplog.records:
        out += [text_format.format(record), json_format.format(record), repr(vars(record))]
    return "\n".join(out)


async def redis_text() -> str:
    """Every key and value in the test database, raw bytes decoded leniently."""
    client = Redis.from_url(REDIS_URL)
    parts: list[Any] = []
    try:
        async for key in client.scan_iter(count=500):
            kind = (await client.type(key)).decode()
            parts.append(key)
            if kind == "string":
                parts.append(await client.get(key))
            elif kind == "hash":
                parts.append(await client.hgetall(key))
            elif kind == "list":
                parts.append(await client.lrange(key, 0, -1))
            elif kind == "set":
                parts.append(await client.smembers(key))
            elif kind == "zset":
                parts.append(await client.zrange(key, 0, -1, withscores=True))
            elif kind == "stream":
                parts.append(await client.xrange(key))
    finally:
        await client.aclose()
    return "\n".join(repr(p) for p in parts)


@dataclass
class Responses:
    seen: list[str] = field(default_factory=list)

    async def hook(self, response: httpx.Response) -> None:
        await response.aread()
        self.seen.append(f"{response.status_code} {response.reason_phrase}\n"
                         f"{response.headers.multi_items()}\n{response.text}")

    def text(self) -> str:
        return "\n".join(self.seen)


@pytest.fixture
def distinct(make_settings: SettingsFactory) -> Settings:
    return make_settings(RELAY_API_TOKENS=f"{TOKEN_A},{TOKEN_B}",
                         RELAY_SIGNING_SECRETS=f"{SECRET} {EXTRA_SECRET}")


@pytest.fixture
async def relay_api(
    distinct: Settings, redis: Redis, responses: Responses
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with no default credentials; every response is recorded."""
    app = create_app(distinct)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay",
                                     event_hooks={"response": [responses.hook]}) as client:
            yield client


@pytest.fixture
def responses() -> Responses:
    return Responses()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


# ---- the flow ---------------------------------------------------------------------------


async def exercise_error_paths(
    api: httpx.AsyncClient, sid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    near_misses = [
        {}, {"authorization": TOKEN_A}, {"authorization": f"Basic {TOKEN_A}"},
        bearer(TOKEN_A + "x"), bearer(TOKEN_A[:-1]), bearer(f"{TOKEN_A},{TOKEN_B}"),
        bearer(SIM_KEY), bearer(SECRET), {"authorization": f"Bearer  {TOKEN_A} {TOKEN_B}"},
    ]
    for headers in near_misses:
        answer = await api.get(f"/v1/subscriptions/{sid}", headers=headers)
        assert answer.status_code == 401, headers
    a, b = bearer(TOKEN_A), bearer(TOKEN_B)
    assert (await api.get(f"/v1/subscriptions/{sid}", headers=b)).status_code == 404
    assert (await api.get("/v1/subscriptions/sub_nope/deliveries", headers=a)).status_code == 404
    assert (await api.post("/v1/subscriptions", headers=a, json={"job_id": "j", "url": "ftp://x",
                                                                 "token": TOKEN_B})).status_code \
        == 400
    assert (await api.post("/v1/subscriptions", headers=a,
                           content=b"x" * 70_000)).status_code == 413
    assert (await api.put("/v1/subscriptions", headers=a)).status_code == 405
    assert (await api.get("/v1/nothing", headers=a)).status_code == 404

    async def broken(self: Store, *args: Any) -> Any:
        raise RuntimeError("the store broke")

    with monkeypatch.context() as patch:
        patch.setattr(Store, "subscription", broken)
        assert (await api.get(f"/v1/subscriptions/{sid}", headers=a)).status_code == 500
        assert (await api.delete(f"/v1/subscriptions/{sid}", headers=a)).status_code == 500
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert (await api.get(path)).status_code == 200


async def test_a_full_flow_leaks_no_secret(
    distinct: Settings, relay_api: httpx.AsyncClient, responses: Responses,
    recorder: Recorder, simulator: str, all_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim_job(simulator, "job_secret", [("queued", 0), ("processing", 0.3), ("completed", 0.6)])
    a = bearer(TOKEN_A)
    async with running_worker(distinct):
        created = await relay_api.post("/v1/subscriptions", headers=a, json={
            "job_id": "job_secret", "url": recorder.base_url + "/hook", "metadata": {"n": 1}})
        assert created.status_code == 201
        sid = created.json()["id"]

        async def deliveries() -> list[dict[str, Any]]:
            answer = await relay_api.get(f"/v1/subscriptions/{sid}/deliveries", headers=a)
            return list(answer.json()["data"])

        async def all_delivered() -> bool:
            found = await deliveries()
            done = [d["event_type"] for d in found if d["status"] == "succeeded"]
            return len(done) == len(found) and "job.completed" in done

        await eventually(all_delivered)
        first = (await deliveries())[0]
        assert first["attempts"][0]["status_code"] == 500  # the receiver's answer was kept
        before = len(recorder.requests)
        retried = await relay_api.post(
            f"/v1/subscriptions/{sid}/deliveries/{first['id']}/retry", headers=a)
        assert retried.status_code == 202
        await eventually(lambda: len(recorder.requests) > before)
        await relay_api.get("/v1/subscriptions?job_id=job_secret", headers=a)
        await relay_api.get("/v1/jobs/job_secret", headers=a)
        await exercise_error_paths(relay_api, sid, monkeypatch)
        assert (await relay_api.delete(f"/v1/subscriptions/{sid}", headers=a)).status_code == 204

    everything = [SIM_KEY, SECRET, EXTRA_SECRET, TOKEN_A, TOKEN_B]
    assert all_logs.records, "no logs were captured"
    assert any(r.name.startswith("relay") for r in all_logs.records)
    assert len(responses.seen) > 25
    assert leaks(log_text(all_logs), everything) == []
    assert leaks(responses.text(), everything) == []
    assert leaks(recorder.text(), everything) == []
    assert leaks(await redis_text(), everything) == []


async def test_a_refused_upstream_key_is_not_logged_or_reported(
    make_settings: SettingsFactory, redis: Redis, simulator: str, responses: Responses,
    all_logs: pytest.LogCaptureFixture,
) -> None:
    wrong_key = "varg_" + pysecrets.token_hex(16)
    settings = make_settings(VARG_API_KEY=wrong_key)
    sim_job(simulator, "job_refused", [("queued", 0)])
    app = create_app(settings)
    async with app.router.lifespan_context(app), running_worker(settings):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay",
                                     event_hooks={"response": [responses.hook]}) as api:
            created = await api.post("/v1/subscriptions", headers=bearer("tok_alice"), json={
                "job_id": "job_refused", "url": "http://127.0.0.1:9/hook"})
            assert created.status_code == 201

            async def unready() -> bool:
                return (await api.get("/readyz")).status_code == 503

            await eventually(unready)
            await api.get("/v1/jobs/job_refused", headers=bearer("tok_alice"))
    assert "unauthorized" in responses.text()
    assert any("unauthorized" in r.getMessage() for r in all_logs.records)
    assert leaks(log_text(all_logs), [wrong_key, SECRET]) == []
    assert leaks(responses.text(), [wrong_key, SECRET]) == []
    assert leaks(await redis_text(), [wrong_key, SECRET]) == []


# ---- relay.logs.Redact ----------------------------------------------------------------------


def make_record(msg: str, *args: Any, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("relay.test", logging.INFO, __file__, 1, msg, args, exc_info)


def test_redact_replaces_a_secret_in_the_message() -> None:
    record = make_record(f"key is {SIM_KEY}!")
    assert Redact((SIM_KEY,)).filter(record) is True
    assert record.getMessage() == "key is [redacted]!"


def test_redact_replaces_secrets_passed_as_arguments() -> None:
    record = make_record("tokens %s and %r, secret %s", TOKEN_A, TOKEN_B, SECRET)
    Redact((TOKEN_A, TOKEN_B, SECRET)).filter(record)
    message = record.getMessage()
    assert leaks(message, [TOKEN_A, TOKEN_B, SECRET]) == []
    assert message.count("[redacted]") == 3


def test_redact_leaves_other_messages_alone() -> None:
    record = make_record("job %s is %s", "job_1", "completed")
    Redact((SIM_KEY, SECRET)).filter(record)
    assert (record.msg, record.args) == ("job %s is %s", ("job_1", "completed"))


def test_redact_with_no_secrets_passes_everything() -> None:
    record = make_record("hello %s", "world")
    assert Redact(()).filter(record) is True
    assert record.getMessage() == "hello world"


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configured_logging_redacts_messages(
    fmt: str, root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", fmt, (SIM_KEY, SECRET, TOKEN_A))
    logging.getLogger("relay.test").warning("calling with %s / %s / %s", SIM_KEY, SECRET,
                                            TOKEN_A)
    out = capsys.readouterr().err
    assert "calling with [redacted]" in out
    assert leaks(out, [SIM_KEY, SECRET, TOKEN_A]) == []


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configured_logging_redacts_logged_exceptions(
    fmt: str, root_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", fmt, (SIM_KEY,))
    try:
        raise RuntimeError(f"upstream refused Bearer {SIM_KEY}")
    except RuntimeError:
        logging.getLogger("relay.test").exception("poll step failed; retrying")
    out = capsys.readouterr().err
    assert "poll step failed" in out
    assert SIM_KEY not in out


# ---- SettingsError messages -------------------------------------------------------------


BASE_ENV = {"REDIS_URL": REDIS_URL}
MALFORMED = [
    ("VARG_API_KEY", "varg_sup3r secret_key"),
    ("VARG_API_KEY", "varg_sup3r\tsecret_key"),
    ("VARG_API_KEY", "varg_sup3r_sécret_key"),
    ("RELAY_API_TOKENS", "tok_good_one_1234,tok bad_one_5678"),
    ("RELAY_API_TOKENS", "tok_good_one_1234,tok_bad_\x01_5678"),
    ("RELAY_SIGNING_SECRETS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw not_whsec_abcdefgh"),
    ("RELAY_SIGNING_SECRETS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_not*base64*!!"),
    ("RELAY_SIGNING_SECRETS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_c2hvcnRrZXk="),
    ("RELAY_SIGNING_SECRETS", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS"),
]


def fragments(value: str) -> list[str]:
    """The value, each of its separate parts, and each part's key (8+ characters)."""
    parts = {value, *value.replace(",", " ").replace("\t", " ").split()}
    parts |= {p.removeprefix("whsec_") for p in parts}
    return [p for p in parts if len(p) >= 8]


@pytest.mark.parametrize(("variable", "value"), MALFORMED)
def test_settings_errors_do_not_echo_the_secret(variable: str, value: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(BASE_ENV | {variable: value})
    message = str(caught.value)
    assert variable in message
    shown = message + "".join(traceback.format_exception(caught.value))
    assert [f for f in fragments(value) if f in shown] == []


def test_settings_error_through_the_cli_line_does_not_echo_the_secret() -> None:
    stream = io.StringIO()
    try:
        load_settings(BASE_ENV | {"RELAY_SIGNING_SECRETS": "whsec_" + "A" * 8})
    except SettingsError as exc:
        print(f"error: {exc}", file=stream)
    assert "RELAY_SIGNING_SECRETS" in stream.getvalue()
    assert "A" * 8 not in stream.getvalue()


def test_settings_repr_hides_secrets(distinct: Settings) -> None:
    assert leaks(repr(distinct), [SIM_KEY, SECRET, EXTRA_SECRET, TOKEN_A, TOKEN_B]) == []
