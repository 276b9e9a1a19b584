"""The SSRF guard of outbound webhooks: which URLs a tenant may register, and which addresses the
delivery worker may connect to.

A tenant chooses the URL, so without this guard the worker would POST wherever the tenant points it:
the cloud metadata service (169.254.169.254), the database, an admin port on loopback. The check runs
twice (DESIGN §6, reliability-security.md §1.1):

- at registration, `check_url` parses the URL and resolves its host, refusing it if ANY address is
  not allowed (so a typo or a hostile DNS answer is seen by the tenant at once);
- at connect time, `GuardedResolver` is the resolver of the delivery client's connector (aiohttp's
  documented `TCPConnector(resolver=...)` hook): aiohttp connects only to the addresses it returns, so
  the address checked is the address connected to, however the name resolves by then (no DNS
  rebinding gap). IP literals never reach a resolver; `check_literal` refuses those before the request.

An address is allowed when it is globally routable. Python's `ipaddress` says which; the explicit
checks below give each refusal its reason and cover what some Python versions' `is_global` misses
(100.64.0.0/10, 192.0.0.0/24, multicast). IPv6 forms that carry an IPv4 address (IPv4-mapped
`::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, 6to4 `2002::/16`, NAT64 `64:ff9b::/96`) are judged by
that IPv4 address. Odd IPv4 spellings (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) are read the
way the C library reads them (inet_aton), so they are judged as the address they reach.

With allow_private (LICENTRIC_WEBHOOK_ALLOW_PRIVATE_TARGETS, tests and local development) every address
is allowed; the URL itself must still be http(s) without credentials.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Code = Literal["unsafe_url", "unsafe_target"]

MAX_URL_LENGTH = 2048
# What inet_aton reads as an IPv4 address: decimal, octal (leading 0) and hex (0x) parts, 1 to 4 of them.
_NUMERIC_HOST = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)
# An ASCII host name (after IDNA): letters, digits, hyphens, underscores, dots.
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?", re.IGNORECASE)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
# Explicit, whatever this Python's is_global says about them.
_REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (ipaddress.IPv4Network("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (ipaddress.IPv4Network("100.64.0.0/10"), "shared address space (CGNAT, 100.64.0.0/10)"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "IETF protocol assignments (192.0.0.0/24)"),
    (ipaddress.IPv4Network("198.18.0.0/15"), "benchmarking (198.18.0.0/15)"),
    (ipaddress.IPv4Network("255.255.255.255/32"), "broadcast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "reserved (240.0.0.0/4)"),
)
_REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (ipaddress.IPv6Network("fec0::/10"), "site-local (fec0::/10)"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64 (64:ff9b:1::/48)"),
)


class UnsafeTarget(Exception):
    """A webhook URL, or an address its host resolves to, that Licentric will not send to.

    code is stable: 'unsafe_url' for the URL itself (scheme, credentials, host, length, or a host that
    does not resolve), 'unsafe_target' for an address that is not allowed."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code: Code = code
        self.message = message


@dataclass(frozen=True)
class Target:
    """A parsed webhook URL: its host (IDNA-encoded), port, and the address when the host is one."""

    host: str
    port: int
    literal: Address | None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries, in the forms that route to it."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _IPV4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: Address) -> str | None:
    """Why connecting to this address is refused, or None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refusal(embedded)
            return f"an IPv6 form of {embedded}, which is {reason}" if reason else None
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        if address.version == 4:
            return "link-local (169.254.0.0/16, where cloud metadata services answer)"
        return "link-local (fe80::/10)"
    if address.is_multicast:
        return "multicast"
    for network, reason in _REFUSED_V4 if address.version == 4 else _REFUSED_V6:
        if address in network:
            return reason
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


def check_address(address: Address | str, *, allow_private: bool) -> None:
    """Raise UnsafeTarget('unsafe_target') unless the address may be connected to."""
    if allow_private:
        return
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    reason = refusal(ip)
    if reason is not None:
        raise UnsafeTarget("unsafe_target", f"{ip} is {reason}: webhooks go to public addresses only")


def _literal(host: str) -> Address | None:
    """The address a host is, when it is an IP literal, in any spelling the C library accepts."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(host.rstrip(".")):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host.rstrip(".")))
        except OSError:
            return None
    return None


def parse_url(url: str) -> Target:
    """The URL's target, or UnsafeTarget('unsafe_url'): http(s) only, no credentials, a valid host."""
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeTarget("unsafe_url", f"the URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise UnsafeTarget("unsafe_url", "the URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeTarget("unsafe_url", f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("unsafe_url", "the URL must start with http:// or https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeTarget("unsafe_url", "the URL must not carry credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("unsafe_url", "the URL has no host")
    if port == 0:
        raise UnsafeTarget("unsafe_url", "the URL's port must be between 1 and 65535")
    port = port or (443 if parts.scheme == "https" else 80)
    literal = _literal(host)
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise UnsafeTarget("unsafe_url", f"{parts.hostname!r} is not a valid host name") from None
        if not _HOST_NAME.fullmatch(host) or len(host) > 253:
            raise UnsafeTarget("unsafe_url", f"{parts.hostname!r} is not a valid host name")
    return Target(host, port, literal)


def check_literal(url: str, *, allow_private: bool) -> Target:
    """The URL's target, checked without resolving anything: the URL's form, and the address when the
    host is an IP literal (a connector's resolver never sees those). Host names are left to
    GuardedResolver. Raises UnsafeTarget."""
    target = parse_url(url)
    if target.literal is not None:
        check_address(target.literal, allow_private=allow_private)
    return target


async def check_url(url: str, *, allow_private: bool) -> None:
    """Registration's check: the URL's form, then every address its host resolves to (with the event
    loop's getaddrinfo). Raises UnsafeTarget: 'unsafe_url' for the URL (or a host that does not
    resolve), 'unsafe_target' when any address is not allowed."""
    target = check_literal(url, allow_private=allow_private)
    if target.literal is not None or allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError) as exc:
        raise UnsafeTarget("unsafe_url", f"the host {target.host!r} does not resolve: {exc}") from None
    if not infos:
        raise UnsafeTarget("unsafe_url", f"the host {target.host!r} does not resolve")
    for _family, _type, _proto, _name, sockaddr in infos:
        check_address(str(sockaddr[0]), allow_private=False)


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver hook: resolves with the event loop's getaddrinfo (aiohttp's ThreadedResolver)
    and raises UnsafeTarget('unsafe_target') when any address is not allowed, so the connector never
    gets one to connect to. Give it to `aiohttp.TCPConnector(resolver=...)`."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._resolver = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            check_address(result["host"], allow_private=self._allow_private)
        return results

    async def close(self) -> None:
        await self._resolver.close()
