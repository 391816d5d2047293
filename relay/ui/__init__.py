"""The dashboard at /ui: static files (plain HTML, one JS module, CSS; no build step) that call
the public API with the token the user signs in with, so they show only what it may see."""

from __future__ import annotations

from pathlib import Path

from starlette.datastructures import MutableHeaders
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
# Nothing is loaded from another host (deployments may be offline), and nothing may frame it.
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",  # revalidate (ETag), so an upgrade is picked up at once
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def ui_mount() -> Mount:
    """`/ui/` serves index.html; `/ui` redirects there (the router adds the slash)."""
    files = StaticFiles(directory=STATIC, html=True)
    return Mount("/ui", app=SecurityHeaders(GZipMiddleware(files, minimum_size=512)), name="ui")
