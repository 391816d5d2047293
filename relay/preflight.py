"""Start-up checks that turn the usual first-run faults into one line naming the cause.

A process that cannot reach Redis, or cannot bind its port, would otherwise die with a
traceback from deep inside arq or uvicorn (after arq's retries, inside JSON logs). Each check
raises `StartupError`, whose message the CLI prints as one line before exiting non-zero.
"""

from __future__ import annotations

import errno
import socket
from urllib.parse import urlsplit, urlunsplit

from redis import Redis

REDIS_TIMEOUT = 5.0  # seconds to connect and answer PING


class StartupError(Exception):
    """The process cannot start; the message names the cause and the setting to change."""


def check_redis(url: str) -> None:
    """Raise StartupError unless the Redis at `url` (REDIS_URL) answers PING."""
    try:
        client = Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT,
                                socket_timeout=REDIS_TIMEOUT)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        raise StartupError(f"REDIS_URL unreachable: {shown(url)} ({one_line(exc)})") from None


def listening_socket(host: str, port: int, option: str = "--port") -> socket.socket:
    """A socket bound to host:port, for uvicorn to serve on; StartupError if it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (socket.gaierror, UnicodeError) as exc:  # a host name that does not resolve
        sock.close()
        raise StartupError(f"cannot listen on {host}: {one_line(exc)} (--host)") from None
    except OSError as exc:
        sock.close()
        raise StartupError(bind_failure(host, port, option, exc)) from None
    sock.listen(2048)  # uvicorn's backlog; from here connections wait instead of being refused
    return sock


def bind_failure(host: str, port: int, option: str, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host}; stop what uses it or choose another ({option})"
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges on this system; choose one above 1023 ({option})"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: no such address on this machine (--host)"
    return f"cannot listen on {host}:{port}: {one_line(exc)}"


def shown(url: str) -> str:
    """The URL without its password, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
