"""`varg-relay api | worker | dev | simulate | inbox`, and `--version`."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any

from config import Settings, SettingsError, load_settings
from config.settings import secrets_of
from relay.logs import configure_logging
from relay.preflight import StartupError, check_redis, listening_socket
from relay.version import VERSION

DESCRIPTION = """\
Webhooks for Varg generation jobs. Register a Varg job id and a callback URL with the API;
workers poll Varg within your key's rate limit and POST a signed Standard Webhooks
notification to the URL on every status change of the job."""

EPILOG = """\
Configuration comes from environment variables: REDIS_URL, VARG_API_URL, VARG_API_KEY,
RELAY_API_TOKENS (comma-separated), RELAY_SIGNING_SECRETS (space-separated whsec_ secrets)
and the RELAY_* tuning variables; the README's Configuration table lists them all.
Run `varg-relay COMMAND --help` for a command's options."""


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except (SettingsError, StartupError) as exc:
        sys.exit(f"varg-relay: {exc}")
    except KeyboardInterrupt:
        pass


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="varg-relay", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--version", action="version", version=f"varg-relay {VERSION}",
                      help="print the version and exit")
    sub = root.add_subparsers(required=True, metavar="COMMAND", title="commands",
                              help="what to run")
    api = sub.add_parser(
        "api", help="the HTTP API (stateless; run several behind a load balancer)",
        description="Serve the relay API. Needs REDIS_URL and RELAY_API_TOKENS.",
    )
    listen_options(api, 8000)
    api.set_defaults(run=run_api)
    worker = sub.add_parser(
        "worker", help="a worker: polls Varg and delivers webhooks (run several)",
        description="Run one worker (same as `arq workers.WorkerSettings`). Needs REDIS_URL, "
                    "VARG_API_KEY and RELAY_SIGNING_SECRETS.",
    )
    worker.set_defaults(run=run_worker)
    dev = sub.add_parser(
        "dev", help="Varg simulator, API and worker in one process, for trying it out",
        description="Everything in one process, with a generated token and signing secret, "
                    "a Varg simulator and an inbox that verifies webhooks. Uses REDIS_URL "
                    "when set, else a throwaway redis-server of its own.",
    )
    listen_options(dev, 8000)
    dev.add_argument("--sim-port", type=int, default=8001, metavar="PORT",
                     help="port of the Varg simulator, on 127.0.0.1 (default: %(default)s)")
    dev.set_defaults(run=run_dev)
    sim = sub.add_parser(
        "simulate", help="a local Varg API simulator (no Varg key needed)",
        description="Serve a simulator of Varg's GET /v1/jobs/{job_id}, scripted through "
                    "/_sim (see relay/devtools/simulator.py). Accepts VARG_API_KEY, or "
                    "varg_sim when it is unset.",
    )
    listen_options(sim, 8001)
    sim.add_argument("--rate-limit", type=int, default=None, metavar="N",
                     help="answer 429 past N requests a minute, as Varg does (default: none)")
    sim.add_argument("--no-stream", action="store_true",
                     help="answer GET /v1/jobs/{id}/stream with 404 (an upstream without it)")
    sim.add_argument("--keepalive", type=float, default=15.0,
                     help="seconds between stream keepalives")
    sim.add_argument("--stream-limit", type=float, default=600.0,
                     help="seconds after which a stream is closed, like Varg's 10 minutes")
    sim.add_argument("--webhook-secret", default=os.environ.get("VARG_WEBHOOK_SECRET"),
                     help="signs v2 webhooks (default: VARG_WEBHOOK_SECRET)")
    sim.set_defaults(run=run_simulate)
    inbox = sub.add_parser(
        "inbox", help="a test receiver that verifies webhooks (dev)",
        description="A receiver for trying the relay out: POST /_dev/inbox verifies each "
                    "webhook with the first of RELAY_SIGNING_SECRETS, GET /_dev/inbox lists "
                    "what arrived. Not for production.",
    )
    inbox.add_argument("--host", default="127.0.0.1", help="address to listen on")
    inbox.add_argument("--port", type=int, default=8002, help="port to listen on")
    inbox.set_defaults(run=run_inbox)
    return root


def listen_options(command: argparse.ArgumentParser, port: int) -> None:
    command.add_argument("--host", default="127.0.0.1",
                         help="address to listen on; 0.0.0.0 for every interface "
                              "(default: %(default)s)")
    command.add_argument("--port", type=int, default=port,
                         help="port to listen on (default: %(default)s)")


def settings_for(*required: str) -> Settings:
    settings = load_settings(os.environ)
    settings.require(*required)
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    return settings


def run_api(args: argparse.Namespace) -> None:
    from relay.app import create_app
    from relay.devtools.servers import http_server

    settings = settings_for("api_tokens")
    sock = listening_socket(args.host, args.port)
    check_redis(settings.redis_url)
    server = http_server(create_app(settings), args.host, args.port)
    asyncio.run(_serve_until_signal(server, sock))


async def _serve_until_signal(server: Any, sock: socket.socket) -> None:
    from relay.devtools.servers import stop_event

    stop = stop_event()
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await asyncio.wait([task, asyncio.create_task(stop.wait())],
                       return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True  # uvicorn finishes requests in flight, then stops
    await task


def run_worker(args: argparse.Namespace) -> None:
    from relay.worker import ResilientWorker, worker_options

    settings = settings_for("signing_secrets", "varg_api_key")
    check_redis(settings.redis_url)
    ResilientWorker(**worker_options(settings)).run()


def run_dev(args: argparse.Namespace) -> None:
    from relay.devtools.dev import run_dev as dev

    sockets = (listening_socket(args.host, args.port),
               listening_socket("127.0.0.1", args.sim_port, "--sim-port"))
    try:
        asyncio.run(dev(*sockets, args.host, args.port, args.sim_port))
    except RuntimeError as exc:
        raise StartupError(str(exc)) from None


def run_simulate(args: argparse.Namespace) -> None:
    from relay.devtools.servers import http_server
    from relay.devtools.simulator import create_simulator

    sock = listening_socket(args.host, args.port)
    configure_logging("INFO", "auto")
    app = create_simulator(api_key=os.environ.get("VARG_API_KEY") or "varg_sim",
                           rate_limit=args.rate_limit, stream=not args.no_stream,
                           keepalive=args.keepalive, stream_limit=args.stream_limit,
                           webhook_secret=args.webhook_secret)
    print(f"Varg simulator on http://{args.host}:{args.port}/v1 (and /v2)", flush=True)
    asyncio.run(_serve_until_signal(http_server(app, args.host, args.port), sock))


def run_inbox(args: argparse.Namespace) -> None:
    from relay.devtools.dev import inbox_app
    from relay.devtools.servers import http_server

    settings = settings_for("signing_secrets")
    sock = listening_socket(args.host, args.port)
    print(f"inbox on http://{args.host}:{args.port}/_dev/inbox", flush=True)
    app = inbox_app(settings.signing_secrets[0])
    asyncio.run(_serve_until_signal(http_server(app, args.host, args.port), sock))


if __name__ == "__main__":
    main()
