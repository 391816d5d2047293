"""`varg-relay dev`: simulator, API, worker and a test inbox in one process, for a laptop."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections import deque
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config import load_settings
from config.settings import secrets_of
from relay.app import create_app
from relay.delivery.signing import new_secret
from relay.devtools.redis_server import ThrowawayRedis
from relay.devtools.servers import QuietServer, http_server, stop_event
from relay.devtools.simulator import create_simulator
from relay.logs import configure_logging
from relay.preflight import check_redis
from relay.store import keys
from relay.worker import ResilientWorker, stop_gracefully, worker_options

log = logging.getLogger("relay.dev")
SIM_KEY = "varg_sim_dev"


def inbox_routes(secret: str) -> list[Route]:
    """`POST /_dev/inbox` verifies and keeps webhooks; `GET /_dev/inbox` shows the last 100."""
    received: deque[dict[str, Any]] = deque(maxlen=100)
    hook = Webhook(secret)

    async def receive(request: Request) -> Response:
        body = await request.body()
        try:
            event = hook.verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            log.warning("inbox: signature check failed: %s", exc)
            return JSONResponse({"verified": False, "error": str(exc)}, 400)
        received.append({"webhook_id": request.headers["webhook-id"], "event": event})
        log.info("inbox: %s for %s (verified, %s)", event["type"], event["data"]["job_id"],
                 request.headers["webhook-id"])
        return JSONResponse({"verified": True})

    async def show(request: Request) -> Response:
        return JSONResponse({"data": list(received)})

    return [Route("/_dev/inbox", receive, methods=["POST"]),
            Route("/_dev/inbox", show, methods=["GET"])]


def inbox_app(secret: str) -> Starlette:
    """`varg-relay inbox`: the same inbox alone, for a compose stack's dev profile."""
    return Starlette(routes=inbox_routes(secret))


async def run_dev(
    api_socket: socket.socket, sim_socket: socket.socket, host: str, port: int, sim_port: int
) -> None:
    env = dict(os.environ)
    redis = None
    if env.get("REDIS_URL"):
        check_redis(env["REDIS_URL"])
        redis_note = f"from REDIS_URL; keys under {keys.PREFIX} and arq:"
    else:
        # Never the Redis a laptop already runs (db 0 of localhost): a server of its own.
        redis = ThrowawayRedis()
        env["REDIS_URL"] = redis.start()
        redis_note = "a throwaway redis-server of its own, gone when dev stops"
    if not env.get("VARG_API_KEY"):
        env |= {"VARG_API_KEY": SIM_KEY, "VARG_API_URL": f"http://127.0.0.1:{sim_port}/v1"}
    env.setdefault("RELAY_API_TOKENS", "dev_" + secrets.token_hex(12))
    env.setdefault("RELAY_SIGNING_SECRETS", new_secret())
    env.setdefault("RELAY_ALLOW_PRIVATE_CALLBACKS", "true")
    env.setdefault("RELAY_METRICS_PORT", "0")
    env.setdefault("VARG_WEBHOOK_SECRET", "vhook_" + secrets.token_hex(16))
    settings = load_settings(env)
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    app = create_app(settings)
    app.router.routes.extend(inbox_routes(settings.signing_secrets[0]))
    servers = [http_server(app, host, port),
               http_server(create_simulator(api_key=SIM_KEY,
                                            webhook_secret=settings.varg_webhook_secret),
                           "127.0.0.1", sim_port)]
    worker = ResilientWorker(**worker_options(settings), handle_signals=False)
    stop = stop_event()
    tasks = [asyncio.create_task(s.serve(sockets=[sock]))
             for s, sock in zip(servers, (api_socket, sim_socket), strict=True)]
    tasks.append(asyncio.create_task(worker.async_run()))
    await started(servers, tasks)
    print(banner(settings.api_tokens[0], settings.signing_secrets[0], host, port, sim_port,
                 f"{settings.redis_url}   ({redis_note})"), flush=True)
    await stop.wait()
    log.info("stopping")
    for server in servers:
        server.should_exit = True
    await stop_gracefully(worker, settings.delivery_timeout + 5)
    await asyncio.gather(*tasks, return_exceptions=True)
    if redis is not None:
        redis.stop()


async def started(servers: list[QuietServer], tasks: list[asyncio.Task[None]]) -> None:
    """Until every server answers (the banner's lines work when pasted at once)."""
    while not all(server.started for server in servers):
        if any(task.done() for task in tasks):
            return  # it failed; its error is logged and stop ends the rest
        await asyncio.sleep(0.02)


def banner(token: str, secret: str, host: str, port: int, sim_port: int, redis: str) -> str:
    api = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    return f"""
varg-relay dev is running
  API            {api}   (token: {token})
  dashboard      {api}/ui/   (sign in with the token)
  signing secret {secret}
  Varg simulator http://127.0.0.1:{sim_port}/v1
  Redis          {redis}
  inbox          {api}/_dev/inbox   (verifies signatures; GET it to see what arrived)

Try it (paste these lines into another terminal):
{try_it(token, api, sim_port)}"""


def try_it(token: str, api: str, sim_port: int) -> str:
    """The README shows these same lines for the default ports (a test keeps them in step)."""
    return f"""\
export TOKEN={token}
curl -s -X POST http://127.0.0.1:{sim_port}/_sim/jobs -H 'content-type: application/json' \\
     -d '{{"job_id": "job_demo1", "model": "fal:flux-schnell"}}'          # a simulated Varg job
curl -s -X POST {api}/v1/subscriptions -H "authorization: Bearer $TOKEN" \\
     -H 'content-type: application/json' \\
     -d '{{"job_id": "job_demo1", "url": "{api}/_dev/inbox"}}'
curl -s {api}/_dev/inbox     # the webhooks that arrived, signatures verified
"""
