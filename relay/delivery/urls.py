"""Callback URL checks: syntax, forbidden (non-public) addresses, and DNS pinning.

Contract section 5: unless private callbacks are allowed, a callback whose host is or resolves to a
loopback, private, link-local, CGNAT, multicast or reserved address is refused at registration and
again at delivery, and the delivery connection goes to exactly the address that was checked.

``httpx.URL`` is the single URL parser used here, because it is also what sends the request: the
host we check is the host httpx would connect to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

__all__ = [
    "Pin",
    "UnsafeURL",
    "check_callback_url",
    "is_forbidden_host",
    "is_forbidden_ip",
    "parse_host_ip",
    "pin_target",
    "resolve_checked",
    "validate_url_syntax",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}


class UnsafeURL(ValueError):
    """The callback URL is malformed or points at an address the relay must not call."""


# --------------------------------------------------------------------------------------------
# Syntax
# --------------------------------------------------------------------------------------------

# Whitespace, control characters and backslashes are where URL parsers disagree; refuse them.
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f\\\s]")
_NAME_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")


def _authority(url: str) -> str:
    """The raw authority part (between ``//`` and the first ``/``, ``?`` or ``#``)."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def _raw_port(authority: str) -> str | None:
    if authority.startswith("["):
        after = authority.partition("]")[2]
        return after[1:] if after.startswith(":") else None
    if ":" in authority:
        return authority.rsplit(":", 1)[1]
    return None


def _check_port(authority: str) -> None:
    port = _raw_port(authority)
    if port is None or port == "":
        return
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UnsafeURL("The callback URL's port must be a number from 1 to 65535.")


def _check_host_spelling(raw_host: str) -> None:
    if not raw_host:
        raise UnsafeURL("The callback URL must include a host name.")
    if ":" in raw_host:  # bracketed IPv6 literal; httpx already checked the brackets
        try:
            ipaddress.IPv6Address(unquote(raw_host))
        except ValueError:
            raise UnsafeURL("The callback URL's IPv6 address is not valid.") from None
        return
    name = raw_host[:-1] if raw_host.endswith(".") else raw_host
    labels = name.split(".")
    if len(name) > 253 or not all(_NAME_LABEL.match(label) for label in labels):
        raise UnsafeURL("The callback URL's host is not a valid host name or IP address.")


def validate_url_syntax(url: str) -> str:
    """Check that ``url`` is an absolute http(s) URL the relay may store; return it unchanged."""
    if not isinstance(url, str) or not url:
        raise UnsafeURL("The callback URL must be a non-empty string.")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"The callback URL must be at most {MAX_URL_LENGTH} characters long.")
    if _BAD_CHARS.search(url):
        raise UnsafeURL(
            "The callback URL must not contain spaces, control characters or backslashes."
        )
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        raise UnsafeURL("The callback URL is not a valid URL.") from None
    if parsed.scheme not in _DEFAULT_PORTS or not url.lower().startswith(parsed.scheme + "://"):
        raise UnsafeURL("The callback URL must be an absolute http:// or https:// URL.")
    authority = _authority(url)
    if "@" in authority or parsed.userinfo:
        raise UnsafeURL("The callback URL must not contain a user name or password.")
    _check_port(authority)
    _check_host_spelling(parsed.raw_host.decode("ascii"))
    return url


# --------------------------------------------------------------------------------------------
# Host spellings
# --------------------------------------------------------------------------------------------

_IPV4_PART = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


def _normalize_host(host: str) -> str:
    """Fold the spelling variations a browser/resolver folds: case, %-escapes, full-width forms."""
    host = unquote(host.strip())
    host = unicodedata.normalize("NFKC", host).lower()
    return host.replace("\u3002", ".")  # ideographic full stop (NFKC already maps U+FF0E, U+FF61)


def _ipv4_number(part: str) -> int | None:
    """One inet_aton/WHATWG IPv4 component: decimal, octal (leading 0) or hex (0x)."""
    if not _IPV4_PART.match(part):
        return None
    if part.startswith("0x"):
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part.startswith("0"):
        return int(part[1:], 8) if all(c in "01234567" for c in part) else None
    return int(part)


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":  # a single trailing dot is allowed
        parts.pop()
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_ipv4_number(part) for part in parts]
    value = 0
    for number in numbers[:-1]:
        if number is None or number > 255:
            return None
        value = value * 256 + number
    last = numbers[-1]
    remaining = 5 - len(parts)  # bytes the last component fills
    if last is None or last >= 256**remaining:
        return None
    return ipaddress.IPv4Address(value * 256**remaining + last)


def _parse_ipv6(host: str) -> ipaddress.IPv6Address | None:
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address, _, zone = host.partition("%")
    if ":" not in address:
        return None
    try:
        ip = ipaddress.IPv6Address(address)
    except ValueError:
        return None
    if not zone:
        return ip
    try:
        return ipaddress.IPv6Address(f"{ip}%{zone}")
    except ValueError:
        return ip  # an odd zone id does not change which address is meant


def parse_host_ip(host: str) -> IPAddress | None:
    """The IP address a host spelling denotes (in any spelling a resolver or browser accepts).

    Handles dotted, integer, octal, hex and short IPv4 forms, bracketed IPv6, IPv4-mapped IPv6
    and IPv6 zone ids. Returns ``None`` when the host is a name.
    """
    normalized = _normalize_host(host)
    if not normalized:
        return None
    if ":" in normalized:
        return _parse_ipv6(normalized)
    return _parse_ipv4(normalized)


# --------------------------------------------------------------------------------------------
# Forbidden addresses
# --------------------------------------------------------------------------------------------

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

_FORBIDDEN_V4 = tuple(
    _V4(net)
    for net in (
        "0.0.0.0/8",  # "this network", includes 0.0.0.0
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata 169.254.169.254
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes 255.255.255.255
    )
)

_FORBIDDEN_V6 = tuple(
    _V6(net)
    for net in (
        "::/128",  # unspecified
        "::1/128",  # loopback
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001:2::/48",  # benchmarking
        "2001:10::/28",  # ORCHID
        "2001:20::/28",  # ORCHIDv2
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)

# IPv6 ranges whose low 32 bits are an IPv4 address the traffic really goes to.
_EMBEDDING_V6 = tuple(
    _V6(net)
    for net in (
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # IPv4-translated (SIIT)
        "::/96",  # IPv4-compatible (deprecated); also covers :: and ::1
        "64:ff9b::/96",  # NAT64 well-known prefix
    )
)
_TEREDO = _V6("2001::/32")
_SIX_TO_FOUR = _V6("2002::/16")


def _is_forbidden_ipv4(ip: ipaddress.IPv4Address) -> bool:
    return any(ip in net for net in _FORBIDDEN_V4) or (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _is_forbidden_ipv6(ip: ipaddress.IPv6Address) -> bool:
    plain = ipaddress.IPv6Address(int(ip))  # drop any zone id
    for net in _EMBEDDING_V6:
        if plain in net:
            return _is_forbidden_ipv4(ipaddress.IPv4Address(int(plain) & 0xFFFFFFFF))
    if plain in _SIX_TO_FOUR:
        return _is_forbidden_ipv4(ipaddress.IPv4Address((int(plain) >> 80) & 0xFFFFFFFF))
    if plain in _TEREDO:
        teredo = plain.teredo  # (server, client); never None inside 2001::/32
        return teredo is None or any(_is_forbidden_ipv4(v4) for v4 in teredo)
    return any(plain in net for net in _FORBIDDEN_V6) or (
        plain.is_loopback
        or plain.is_private
        or plain.is_link_local
        or plain.is_site_local
        or plain.is_multicast
        or plain.is_reserved
        or plain.is_unspecified
    )


def is_forbidden_ip(ip: IPAddress) -> bool:
    """True for any address that is not a public unicast address the relay may call."""
    if isinstance(ip, ipaddress.IPv4Address):
        return _is_forbidden_ipv4(ip)
    return _is_forbidden_ipv6(ip)


def is_forbidden_host(host: str) -> bool:
    """True for ``localhost`` names and for any literal IP spelling of a forbidden address."""
    name = _normalize_host(host).strip("[]").rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    ip = parse_host_ip(host)
    return ip is not None and is_forbidden_ip(ip)


# --------------------------------------------------------------------------------------------
# Resolution and pinning
# --------------------------------------------------------------------------------------------


def _plain_str(ip: IPAddress) -> str:
    """The canonical text of an address, without an IPv6 zone id."""
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Address(int(ip)))
    return str(ip)


def _forbidden_message(host: str) -> str:
    return (
        f"The callback host {host!r} is or resolves to a loopback, private, link-local, "
        "CGNAT, multicast or reserved address; callbacks must go to a public address "
        "(RELAY_ALLOW_PRIVATE_CALLBACKS=true allows them, for development and tests)."
    )


async def resolve_checked(host: str, port: int, allow_private: bool = False) -> list[str]:
    """Resolve ``host`` and return its addresses, refusing if any of them is forbidden (unless
    ``allow_private``: then only resolved).

    Raises ``UnsafeURL`` for a forbidden host or address, and lets ``socket.gaierror`` through
    unchanged when the name does not resolve.
    """
    if not allow_private and is_forbidden_host(host):
        raise UnsafeURL(_forbidden_message(host))
    literal = parse_host_ip(host)
    if literal is not None:
        return [_plain_str(literal)]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = parse_host_ip(str(sockaddr[0]))
        if ip is None or (not allow_private and is_forbidden_ip(ip)):
            raise UnsafeURL(_forbidden_message(host))
        text = _plain_str(ip)
        if text not in addresses:
            addresses.append(text)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host!r} has no IPv4 or IPv6 address")
    return addresses


def _host_and_port(url: httpx.URL) -> tuple[str, int]:
    return url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[url.scheme]


async def check_callback_url(url: str, allow_private: bool) -> None:
    """Registration check. A name that does not resolve is accepted (delivery checks again)."""
    validate_url_syntax(url)
    if allow_private:
        return
    host, port = _host_and_port(httpx.URL(url))
    if is_forbidden_host(host):
        raise UnsafeURL(_forbidden_message(host))
    try:
        await resolve_checked(host, port)
    except socket.gaierror:
        return


@dataclass(frozen=True)
class Pin:
    """Where one delivery connects: the callback's host and port as in its URL (what the
    connection pool, the Host header and TLS verification go by) and the addresses checked
    for them, in order (relay/delivery/transport.py connects to these and nothing else)."""

    host: str
    port: int
    addresses: tuple[str, ...]
    sni_hostname: str | None = None  # for an IP literal: its canonical form, which TLS checks

    @property
    def destination(self) -> str:
        """The address and port called, however the URL spelt them (an IPv4-mapped IPv6
        address is the IPv4 address it maps)."""
        ip = ipaddress.ip_address(self.addresses[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return f"[{ip}]:{self.port}" if ip.version == 6 else f"{ip}:{self.port}"

    def extensions(self) -> dict[str, object]:
        return {} if self.sni_hostname is None else {"sni_hostname": self.sni_hostname}


async def pin_target(url: str, allow_private: bool) -> Pin:
    """Check ``url`` for a delivery and resolve it: the addresses a connection may go to.

    The addresses are checked unless ``allow_private`` (then only resolved, so dev and tests
    take the same path). Raises ``UnsafeURL``, or ``socket.gaierror`` when the name does not
    resolve.
    """
    validate_url_syntax(url)
    parsed = httpx.URL(url)
    host, port = _host_and_port(parsed)
    addresses = await resolve_checked(host, port, allow_private)
    literal = parse_host_ip(host)
    sni = None if literal is None or parsed.scheme != "https" else _plain_str(literal)
    return Pin(host, port, tuple(addresses), sni)
