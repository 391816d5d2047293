"""`varg-relay api | worker | dev | simulate`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from config import Settings, SettingsError, load_settings
from config.settings import secrets_of
from relay.logs import configure_logging


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except SettingsError as exc:
        sys.exit(f"varg-relay: {exc}")
    except KeyboardInterrupt:
        pass


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="varg-relay", description=__doc__)
    sub = root.add_subparsers(required=True, metavar="command")
    api = sub.add_parser("api", help="the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(run=run_api)
    sub.add_parser("worker", help="an arq worker: polls Varg, delivers webhooks").set_defaults(
        run=run_worker
    )
    dev = sub.add_parser("dev", help="simulator, API and worker in one process")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--sim-port", type=int, default=8001)
    dev.set_defaults(run=run_dev)
    sim = sub.add_parser("simulate", help="a local Varg API simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8001)
    sim.add_argument("--rate-limit", type=int, default=None, help="requests/min, like Varg")
    sim.add_argument("--no-stream", action="store_true",
                     help="answer GET /v1/jobs/{id}/stream with 404 (an upstream without it)")
    sim.add_argument("--keepalive", type=float, default=15.0,
                     help="seconds between stream keepalives")
    sim.add_argument("--stream-limit", type=float, default=600.0,
                     help="seconds after which a stream is closed, like Varg's 10 minutes")
    sim.add_argument("--webhook-secret", default=os.environ.get("VARG_WEBHOOK_SECRET"),
                     help="signs v2 webhooks (default: VARG_WEBHOOK_SECRET)")
    sim.set_defaults(run=run_simulate)
    return root


def settings_for(*required: str) -> Settings:
    settings = load_settings(os.environ)
    settings.require(*required)
    configure_logging(settings.log_level, settings.log_format, secrets_of(settings))
    return settings


def run_api(args: argparse.Namespace) -> None:
    from relay.app import create_app
    from relay.devtools.servers import http_server

    settings = settings_for("api_tokens")
    asyncio.run(_serve_until_signal(http_server(create_app(settings), args.host, args.port)))


async def _serve_until_signal(server: object) -> None:
    from relay.devtools.servers import QuietServer, stop_event

    assert isinstance(server, QuietServer)
    stop = stop_event()
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True  # uvicorn finishes requests in flight, then stops
    await task


def run_worker(args: argparse.Namespace) -> None:
    from relay.worker import ResilientWorker, worker_options

    settings = settings_for("signing_secrets", "varg_api_key")
    ResilientWorker(**worker_options(settings)).run()


def run_dev(args: argparse.Namespace) -> None:
    from relay.devtools.dev import run_dev as dev

    try:
        asyncio.run(dev(args.host, args.port, args.sim_port))
    except RuntimeError as exc:
        sys.exit(f"varg-relay: {exc}")


def run_simulate(args: argparse.Namespace) -> None:
    from relay.devtools.servers import http_server
    from relay.devtools.simulator import create_simulator

    configure_logging("INFO", "auto")
    app = create_simulator(api_key=os.environ.get("VARG_API_KEY") or "varg_sim",
                           rate_limit=args.rate_limit, stream=not args.no_stream,
                           keepalive=args.keepalive, stream_limit=args.stream_limit,
                           webhook_secret=args.webhook_secret)
    print(f"Varg simulator on http://{args.host}:{args.port}/v1 (and /v2)", flush=True)
    asyncio.run(_serve_until_signal(http_server(app, args.host, args.port)))


if __name__ == "__main__":
    main()
