"""Tests for relay.delivery.urls: callback URL syntax, forbidden addresses, DNS checks and pinning.

No test sends traffic anywhere but loopback: an autouse fixture replaces the event loop's
``getaddrinfo`` so that only ``localhost`` reaches the real resolver (answered from /etc/hosts);
every other name fails with ``socket.gaierror`` unless a test installs its own fake answers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest

from relay.delivery import urls
from relay.delivery.urls import (
    Pin,
    UnsafeURL,
    check_callback_url,
    is_forbidden_host,
    is_forbidden_ip,
    parse_host_ip,
    pin_target,
    resolve_checked,
    validate_url_syntax,
)

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
GetAddrInfo = Callable[..., Coroutine[Any, Any, list[AddrInfo]]]

_REAL_GETADDRINFO = asyncio.BaseEventLoop.getaddrinfo


class Resolver:
    """Fake DNS: a name -> addresses table; records every lookup."""

    def __init__(self) -> None:
        self.answers: dict[str, list[str]] = {}
        self.lookups: list[str] = []

    async def getaddrinfo(
        self, loop: asyncio.AbstractEventLoop, host: str, port: int, *args: Any, **kwargs: Any
    ) -> list[AddrInfo]:
        self.lookups.append(host)
        if host == "localhost":  # answered from /etc/hosts, never leaves the machine
            real: list[Any] = await _REAL_GETADDRINFO(loop, host, port, *args, **kwargs)  # type: ignore[arg-type]
            return real
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        result: list[AddrInfo] = []
        for address in self.answers[host]:
            if ":" in address:
                sockaddr: tuple[Any, ...] = (address, port, 0, 0)
                family = socket.AF_INET6
            else:
                sockaddr, family = (address, port), socket.AF_INET
            result.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return result


@pytest.fixture(autouse=True)
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Resolver]:
    fake = Resolver()

    async def getaddrinfo(
        self: asyncio.AbstractEventLoop, host: str, port: int, *args: Any, **kwargs: Any
    ) -> list[AddrInfo]:
        return await fake.getaddrinfo(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)
    yield fake


def _message(exc: pytest.ExceptionInfo[UnsafeURL]) -> str:
    text = str(exc.value)
    assert text and text[0].isupper() and text.endswith("."), text
    return text


# ---------------------------------------------------------------------------------------------
# validate_url_syntax
# ---------------------------------------------------------------------------------------------

VALID_URLS = [
    "http://example.com",
    "https://example.com/hook",
    "https://example.com:8443/hook?x=1&y=%20z#frag",
    "HTTPS://Example.COM/hook",
    "http://example.com./",
    "http://my_host.example.com/",
    "http://[2606:4700:4700::1111]:8080/",
    "https://münchen.de/hook",
    "http://127.0.0.1/",  # syntax only: forbidden addresses are a separate check
    "http://example.com:65535/",
    "http://example.com:1/",
    "http://example.com:/",
    "https://example.com/" + "a" * (2048 - len("https://example.com/")),
]


@pytest.mark.parametrize("url", VALID_URLS)
def test_validate_url_syntax_accepts_and_returns_url_unchanged(url: str) -> None:
    assert validate_url_syntax(url) == url


INVALID_URLS = {
    "empty": "",
    "ftp scheme": "ftp://example.com/",
    "javascript scheme": "javascript:alert(1)",
    "no scheme": "example.com/hook",
    "relative": "/hook",
    "scheme without slashes": "http:example.com",
    "no host": "http:///hook",
    "user and password": "http://user:pass@example.com/",
    "user only": "http://user@example.com/",
    "empty userinfo": "http://@example.com/",
    "port zero": "http://example.com:0/",
    "port too large": "http://example.com:65536/",
    "signed port": "http://example.com:+80/",
    "port not a number": "http://example.com:8o/",
    "space in host": "http://exa mple.com/",
    "leading space": " http://example.com/",
    "newline": "http://example.com/\nX-Injected: 1",
    "tab": "http://example.com\t/",
    "backslash": "http://example.com\\@evil.com/",
    "empty label": "http://a..b/",
    "percent in host": "http://%31%32%37.0.0.1/",
    "unclosed bracket": "http://[::1/",
    "bad ipv6": "http://[::g]/",
    "ipv4 in brackets": "http://[1.2.3.4]/",
    "label too long": "http://" + "a" * 64 + ".com/",
    "too long": "https://example.com/" + "a" * (2049 - len("https://example.com/")),
}


@pytest.mark.parametrize("url", INVALID_URLS.values(), ids=INVALID_URLS.keys())
def test_validate_url_syntax_rejects_with_clear_message(url: str) -> None:
    with pytest.raises(UnsafeURL) as exc:
        validate_url_syntax(url)
    _message(exc)


def test_unsafe_url_is_a_value_error() -> None:
    assert issubclass(UnsafeURL, ValueError)


def test_userinfo_message_names_the_problem() -> None:
    with pytest.raises(UnsafeURL) as exc:
        validate_url_syntax("https://admin:secret@example.com/")
    assert "user name or password" in _message(exc)


def test_too_long_message_names_the_limit() -> None:
    with pytest.raises(UnsafeURL) as exc:
        validate_url_syntax("https://example.com/" + "a" * 3000)
    assert "2048" in _message(exc)


# ---------------------------------------------------------------------------------------------
# parse_host_ip
# ---------------------------------------------------------------------------------------------

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address

PARSED = [
    ("127.0.0.1", V4("127.0.0.1")),
    ("2130706433", V4("127.0.0.1")),
    ("0177.0.0.1", V4("127.0.0.1")),
    ("0x7f.0.0.1", V4("127.0.0.1")),
    ("0X7F.0.0.1", V4("127.0.0.1")),
    ("0x7f000001", V4("127.0.0.1")),
    ("017700000001", V4("127.0.0.1")),
    ("127.1", V4("127.0.0.1")),
    ("127.0.1", V4("127.0.0.1")),
    ("10.1.2", V4("10.1.0.2")),
    ("0", V4("0.0.0.0")),
    ("0x", V4("0.0.0.0")),
    ("1.2.3.4.", V4("1.2.3.4")),
    ("0251.0376.0251.0376", V4("169.254.169.254")),
    ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", V4("127.0.0.1")),  # full-width digits
    ("127。0。0。1", V4("127.0.0.1")),
    ("%31%32%37.0.0.1", V4("127.0.0.1")),
    ("8.8.8.8", V4("8.8.8.8")),
    ("::1", V6("::1")),
    ("[::1]", V6("::1")),
    ("[0:0:0:0:0:0:0:1]", V6("::1")),
    ("::ffff:127.0.0.1", V6("::ffff:7f00:1")),
    ("::ffff:7f00:1", V6("::ffff:7f00:1")),
    ("[2606:4700:4700::1111]", V6("2606:4700:4700::1111")),
    ("FE80::1", V6("fe80::1")),
]


@pytest.mark.parametrize(("host", "expected"), PARSED)
def test_parse_host_ip(host: str, expected: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert parse_host_ip(host) == expected


@pytest.mark.parametrize("host", ["fe80::1%eth0", "[fe80::1%25eth0]", "[fe80::1%eth0]"])
def test_parse_host_ip_keeps_ipv6_zone_id(host: str) -> None:
    ip = parse_host_ip(host)
    assert isinstance(ip, ipaddress.IPv6Address)
    assert ip.scope_id == "eth0"
    assert int(ip) == int(V6("fe80::1"))


NOT_IPS = [
    "example.com",
    "localhost",
    "",
    "1.2.3.4.5",
    "256.1.1.1",
    "1.2.3.256",
    "1.2.65536",
    "4294967296",
    "08.0.0.1",
    "0x7g.0.0.1",
    "1..1",
    "-1.0.0.1",
    "::g",
    "0x7f.example",
]


@pytest.mark.parametrize("host", NOT_IPS)
def test_parse_host_ip_returns_none_for_names_and_invalid_numbers(host: str) -> None:
    assert parse_host_ip(host) is None


# ---------------------------------------------------------------------------------------------
# is_forbidden_host / is_forbidden_ip
# ---------------------------------------------------------------------------------------------

FORBIDDEN_HOSTS = [
    # names
    "localhost",
    "LOCALHOST.",
    "foo.localhost",
    "Foo.LocalHost.",
    # IPv4 loopback in every spelling
    "127.0.0.1",
    "127.255.255.254",
    "127.1",
    "127.0.1",
    "2130706433",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "0x7f000001",
    "0x7F.0x0.0x0.0x1",
    "017700000001",
    "127.0.0.1.",
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width digits
    "127。0。0。1",
    # unspecified / this network
    "0",
    "0x0",
    "0.0.0.0",
    "0.1.2.3",
    # private
    "10.0.0.1",
    "10.1",
    "167772161",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "3232235777",
    # link-local and cloud metadata
    "169.254.169.254",
    "0xa9fea9fe",
    "2852039166",
    "0251.0376.0251.0376",
    "169.254.0.1",
    # CGNAT
    "100.64.0.1",
    "100.127.255.254",
    # multicast, reserved, broadcast
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "4294967295",
    # documentation, benchmarking, IETF
    "192.0.2.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.9",
    "192.0.0.8",
    # IPv6 loopback and unspecified
    "::1",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "::",
    "[::]",
    # IPv4-mapped / compatible / translated
    "::ffff:127.0.0.1",
    "[::ffff:7f00:1]",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::ffff:0.0.0.0",
    "::127.0.0.1",
    "::ffff:0:7f00:1",
    # IPv6 link-local (with and without zone), unique local, site-local, multicast, documentation
    "fe80::1",
    "[fe80::1%25eth0]",
    "fe80::1%eth0",
    "febf::1",
    "fc00::1",
    "fd12:3456::1",
    "fec0::1",
    "ff02::1",
    "ff05::2",
    "2001:db8::1",
    "100::1",
    # NAT64 / 6to4 / Teredo embedding a forbidden IPv4
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::10.0.0.1",
    "64:ff9b:1::1",
    "2002:7f00:1::1",
    "2002:a9fe:a9fe::",
    "2002:c0a8:101::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo client 192.0.2.45
    "2001:0:7f00:1::1",  # Teredo server 127.0.0.1
]


@pytest.mark.parametrize("host", FORBIDDEN_HOSTS)
def test_is_forbidden_host_true(host: str) -> None:
    assert is_forbidden_host(host) is True


ALLOWED_HOSTS = [
    "8.8.8.8",
    "1.1.1.1",
    "134744072",  # 8.8.8.8
    "0x08080808",
    "010.010.010.010",  # octal 8.8.8.8
    "93.184.215.14",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.1",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.1",
    "11.0.0.1",
    "192.169.0.1",
    "169.255.0.1",
    "223.255.255.254",
    "2606:4700:4700::1111",
    "[2606:4700:4700::1111]",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
    "example.com",
    "EXAMPLE.COM.",
    "localhost.example.com",
    "notlocalhost",
    "my-localhost",
]


@pytest.mark.parametrize("host", ALLOWED_HOSTS)
def test_is_forbidden_host_false(host: str) -> None:
    assert is_forbidden_host(host) is False


@pytest.mark.parametrize(
    "ip",
    [
        V4("127.0.0.1"),
        V4("169.254.169.254"),
        V4("100.64.0.0"),
        V6("::1"),
        V6("fe80::1"),
        V6("::ffff:192.168.0.1"),
        V6("64:ff9b::c0a8:1"),
    ],
)
def test_is_forbidden_ip_true(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert is_forbidden_ip(ip) is True


@pytest.mark.parametrize(
    "ip", [V4("8.8.8.8"), V4("1.1.1.1"), V6("2606:4700:4700::1111"), V6("::ffff:1.1.1.1")]
)
def test_is_forbidden_ip_false(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert is_forbidden_ip(ip) is False


def test_forbidden_host_count_covers_the_brief() -> None:
    assert len(FORBIDDEN_HOSTS) >= 30


# ---------------------------------------------------------------------------------------------
# resolve_checked
# ---------------------------------------------------------------------------------------------


async def test_resolve_checked_refuses_localhost_name(resolver: Resolver) -> None:
    with pytest.raises(UnsafeURL) as exc:
        await resolve_checked("localhost", 80)
    assert "public address" in _message(exc)
    assert resolver.lookups == []


async def test_resolve_checked_refuses_real_resolution_to_loopback(
    resolver: Resolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Skip the name check so the real resolver answers "localhost" (127.0.0.1 via /etc/hosts)
    # and the resolved-address check is what refuses it.
    monkeypatch.setattr(urls, "is_forbidden_host", lambda host: False)
    with pytest.raises(UnsafeURL):
        await resolve_checked("localhost", 80)
    assert resolver.lookups == ["localhost"]


async def test_resolve_checked_name_resolving_to_forbidden_address(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def fake(host: str, port: int, **kwargs: Any) -> list[AddrInfo]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", fake)
    with pytest.raises(UnsafeURL):
        await resolve_checked("metadata.example", 80)


async def test_resolve_checked_refuses_if_any_address_is_forbidden(resolver: Resolver) -> None:
    resolver.answers["mixed.example"] = ["93.184.215.14", "10.0.0.5"]
    with pytest.raises(UnsafeURL):
        await resolve_checked("mixed.example", 443)


async def test_resolve_checked_refuses_scoped_link_local_ipv6(resolver: Resolver) -> None:
    resolver.answers["ll.example"] = ["2606:4700:4700::1111", "fe80::1%eth0"]
    with pytest.raises(UnsafeURL):
        await resolve_checked("ll.example", 443)


async def test_resolve_checked_returns_all_public_addresses_deduplicated(
    resolver: Resolver,
) -> None:
    resolver.answers["good.example"] = [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:3c50",
        "93.184.215.14",
    ]
    assert await resolve_checked("good.example", 443) == [
        "93.184.215.14",
        "2606:2800:21f:cb07:6820:80da:af6b:3c50",
    ]


async def test_resolve_checked_unresolvable_raises_gaierror(resolver: Resolver) -> None:
    with pytest.raises(socket.gaierror):
        await resolve_checked("nonexistent.invalid", 80)
    assert resolver.lookups == ["nonexistent.invalid"]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("8.8.8.8", "8.8.8.8"),
        ("0x08080808", "8.8.8.8"),
        ("[2606:4700:4700::1111]", "2606:4700:4700::1111"),
    ],
)
async def test_resolve_checked_ip_literal_needs_no_lookup(
    resolver: Resolver, host: str, expected: str
) -> None:
    assert await resolve_checked(host, 80) == [expected]
    assert resolver.lookups == []


@pytest.mark.parametrize("host", ["127.1", "[::ffff:7f00:1]", "0xa9fea9fe"])
async def test_resolve_checked_refuses_forbidden_literals(resolver: Resolver, host: str) -> None:
    with pytest.raises(UnsafeURL):
        await resolve_checked(host, 80)
    assert resolver.lookups == []


# ---------------------------------------------------------------------------------------------
# check_callback_url
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8000/hook",
        "http://LOCALHOST./hook",
        "http://api.localhost/hook",
        "http://127.0.0.1/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://[::1]:9000/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/hook",
        "http://[fe80::1%25eth0]/hook",
    ],
)
async def test_check_callback_url_refuses_private(url: str) -> None:
    with pytest.raises(UnsafeURL):
        await check_callback_url(url, allow_private=False)


async def test_check_callback_url_refuses_name_resolving_to_private(resolver: Resolver) -> None:
    resolver.answers["internal.example.com"] = ["192.168.0.10"]
    with pytest.raises(UnsafeURL):
        await check_callback_url("https://internal.example.com/hook", allow_private=False)


async def test_check_callback_url_accepts_public(resolver: Resolver) -> None:
    resolver.answers["example.com"] = ["93.184.215.14"]
    await check_callback_url("https://example.com/hook", allow_private=False)
    await check_callback_url("https://8.8.8.8/hook", allow_private=False)
    await check_callback_url("https://[2606:4700:4700::1111]/hook", allow_private=False)
    assert resolver.lookups == ["example.com"]


async def test_check_callback_url_accepts_unresolvable_name(resolver: Resolver) -> None:
    await check_callback_url("https://nonexistent.invalid/hook", allow_private=False)
    assert resolver.lookups == ["nonexistent.invalid"]


async def test_check_callback_url_allow_private_skips_address_checks(resolver: Resolver) -> None:
    await check_callback_url("http://localhost:8000/hook", allow_private=True)
    await check_callback_url("http://10.0.0.1/hook", allow_private=True)
    assert resolver.lookups == []


async def test_check_callback_url_syntax_is_checked_even_when_private_allowed() -> None:
    with pytest.raises(UnsafeURL):
        await check_callback_url("http://user:pw@localhost/hook", allow_private=True)
    with pytest.raises(UnsafeURL):
        await check_callback_url("ftp://localhost/", allow_private=True)


# ---------------------------------------------------------------------------------------------
# pinned_request_target
# ---------------------------------------------------------------------------------------------


async def test_pinned_target_allow_private_resolves_without_checking(resolver: Resolver) -> None:
    resolver.answers["hooks.internal"] = ["10.0.0.7"]
    pin = await pin_target("http://hooks.internal:8000/hook", allow_private=True)
    assert pin == Pin("hooks.internal", 8000, ("10.0.0.7",))
    assert resolver.lookups == ["hooks.internal"]


async def test_pinned_target_http_keeps_the_name_and_pins_every_checked_ip(
    resolver: Resolver,
) -> None:
    resolver.answers["good.example"] = ["93.184.215.14", "93.184.215.15"]
    pin = await pin_target("http://good.example:8080/hook?a=%20b", allow_private=False)
    assert pin == Pin("good.example", 8080, ("93.184.215.14", "93.184.215.15"))
    assert pin.destination == "93.184.215.14:8080"
    assert pin.extensions() == {}


async def test_pinned_target_https_ipv6(resolver: Resolver) -> None:
    resolver.answers["good.example"] = ["2606:2800:21f:cb07:6820:80da:af6b:3c50"]
    pin = await pin_target("https://good.example/hook", allow_private=False)
    assert pin == Pin("good.example", 443, ("2606:2800:21f:cb07:6820:80da:af6b:3c50",))
    assert pin.destination == "[2606:2800:21f:cb07:6820:80da:af6b:3c50]:443"
    assert pin.extensions() == {}  # TLS checks the name in the URL, which it keeps


async def test_pinned_target_https_idn_uses_punycode(resolver: Resolver) -> None:
    resolver.answers["xn--mnchen-3ya.de"] = ["93.184.215.14"]
    pin = await pin_target("https://münchen.de/hook", allow_private=False)
    assert pin == Pin("xn--mnchen-3ya.de", 443, ("93.184.215.14",))


async def test_pinned_target_odd_ip_literal_uses_canonical_sni(resolver: Resolver) -> None:
    pin = await pin_target("https://0x08080808/hook", allow_private=False)
    assert pin == Pin("0x08080808", 443, ("8.8.8.8",), sni_hostname="8.8.8.8")
    assert pin.extensions() == {"sni_hostname": "8.8.8.8"}
    assert resolver.lookups == []


async def test_pinned_target_refuses_forbidden_resolution(resolver: Resolver) -> None:
    resolver.answers["rebind.example"] = ["127.0.0.1"]
    with pytest.raises(UnsafeURL):
        await pin_target("https://rebind.example/hook", allow_private=False)


async def test_pinned_target_refuses_forbidden_literal() -> None:
    with pytest.raises(UnsafeURL):
        await pin_target("http://[::1]:8000/hook", allow_private=False)


async def test_pinned_target_unresolvable_raises_gaierror() -> None:
    with pytest.raises(socket.gaierror):
        await pin_target("https://nonexistent.invalid/hook", allow_private=False)


async def test_pinned_target_refuses_bad_syntax() -> None:
    with pytest.raises(UnsafeURL):
        await pin_target("https://u:p@good.example/", allow_private=False)
