"""Real HTTP servers on 127.0.0.1, each in its own thread: the Varg simulator and a receiver.

Like tests/conftest.py, but without pytest: uvicorn on a free loopback port.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import relay.devtools.simulator
from relay.devtools.redis_server import free_port
from relay.devtools.simulator import create_simulator

SIM_KEY = "varg_bench_key"


class ServerProcess:
    """uvicorn serving a simulator or a receiver on a free loopback port, in a child process
    (servers in threads would share this interpreter's GIL with the code being measured)."""

    def __init__(self, kind: str, rate_limit: int | None = None,
                 ms_timestamps: bool | None = None) -> None:
        self.port = free_port()
        ctx = multiprocessing.get_context("spawn")
        ms = _SCALED_TIMESTAMPS[0] if ms_timestamps is None else ms_timestamps
        self.process = ctx.Process(target=serve, args=(kind, self.port, rate_limit, ms),
                                   daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        self.process.start()
        deadline = time.monotonic() + 20
        while not port_open(self.port):
            if time.monotonic() > deadline or not self.process.is_alive():
                raise RuntimeError("bench server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.join(timeout=10)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def serve(kind: str, port: int, rate_limit: int | None, scaled_timestamps: bool) -> None:
    """Child-process entry point."""
    use_scaled_timestamps(scaled_timestamps)
    app = create_simulator(SIM_KEY, rate_limit) if kind == "simulator" else Receiver().app()
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                lifespan="off", backlog=4096)


def millisecond_iso(ts: float) -> str:
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_SCALED_TIMESTAMPS = [True]


def use_scaled_timestamps(enabled: bool) -> None:
    """Varg reports `created_at`/`completed_at` to the second. Time scaled x0.1 makes that
    a 10 s error in unscaled terms, so by default the simulator reports milliseconds instead
    (the scaled equivalent of Varg's resolution). `--second-timestamps` turns this off."""
    _SCALED_TIMESTAMPS[0] = enabled
    if enabled:
        relay.devtools.simulator.iso = millisecond_iso


def simulator(rate_limit: int | None, ms_timestamps: bool | None = None) -> ServerProcess:
    """A simulator process; its times to the millisecond, or Varg's second (None: as
    `use_scaled_timestamps` said)."""
    return ServerProcess("simulator", rate_limit, ms_timestamps)


def receiver() -> ServerProcess:
    return ServerProcess("receiver")


@dataclass
class Arrival:
    at: float  # unix time the webhook arrived
    observed: float  # unix time the relay saw the change (the event's `timestamp`)


@dataclass
class Receiver:
    """Answers every POST 200 and records when each (job, status) webhook first arrived.

    Signatures are not verified here (the test suite does that); this only times arrivals.
    """

    first: dict[tuple[str, str], Arrival] = field(default_factory=dict)
    times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def receive(request: Request) -> Response:
            raw = await request.body()
            self.record(raw, time.time())
            return Response(b'{"ok":true}', media_type="application/json")

        async def arrivals(request: Request) -> Response:
            with self.lock:
                first = [[*key, a.at, a.observed] for key, a in self.first.items()]
                body = {"first": first, "times": list(self.times)}
            return JSONResponse(body)

        async def reset(request: Request) -> Response:
            self.reset()
            return JSONResponse({"reset": True})

        return Starlette(routes=[
            Route("/_bench/arrivals", arrivals, methods=["GET"]),
            Route("/_bench/reset", reset, methods=["POST"]),
            Route("/{name:path}", receive, methods=["POST"]),
        ])

    def record(self, raw: bytes, now: float) -> None:
        key, observed = event_key(raw, now)
        with self.lock:
            self.times.append(now)
            self.first.setdefault(key, Arrival(now, observed))

    def count(self) -> int:
        with self.lock:
            return len(self.times)

    def reset(self) -> None:
        with self.lock:
            self.first.clear()
            self.times.clear()


def event_key(raw: bytes, now: float) -> tuple[tuple[str, str], float]:
    """((job_id, status), when the relay observed it) from a webhook body."""
    try:
        event = json.loads(raw)
        key = (str(event["data"]["job_id"]), str(event["data"]["status"]))
        return key, parse_iso(event["timestamp"])
    except (ValueError, KeyError, TypeError):
        return ("", ""), now


def parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Arrivals:
    """What a receiver process recorded: first arrival per (job, status), every arrival time."""

    first: dict[tuple[str, str], Arrival]
    times: list[float]

    def rate(self) -> float:
        """Arrivals per second between the first and the last."""
        times = sorted(self.times)
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def receiver_client(receiver_url: str) -> httpx.AsyncClient:
    """A client for a receiver's control routes. Plain http: no certificates are loaded (that
    takes 20-140 ms of CPU, every time, in the process that runs the relay under test)."""
    return httpx.AsyncClient(base_url=receiver_url, timeout=30, verify=False)


async def arrivals(receiver_url: str, client: httpx.AsyncClient | None = None) -> Arrivals:
    """What the receiver recorded; `client` (from `receiver_client`) when asked often."""
    if client is None:
        async with receiver_client(receiver_url) as own:
            return await arrivals(receiver_url, own)
    body = (await client.get(receiver_url + "/_bench/arrivals")).json()
    first = {(job, status): Arrival(at, observed) for job, status, at, observed in body["first"]}
    return Arrivals(first, body["times"])


async def reset_receiver(receiver_url: str) -> None:
    async with receiver_client(receiver_url) as client:
        (await client.post("/_bench/reset")).raise_for_status()
