"""The SSRF guard of outbound webhooks (licentric/ssrf.py): the table of refused and allowed addresses,
odd spellings read as the C library reads them, URL forms, host names through a stubbed resolver, and
the connect-time resolver of the delivery client refusing what a name resolves to when it connects
(DNS rebinding included). No internet here: names resolve through stubs or /etc/hosts."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from licentric import ssrf

# (address, a word of the reason; None where Python versions name it differently)
REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.0.0.1", "private"),
    ("172.16.5.4", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("169.254.0.1", "link-local"),
    ("100.64.0.1", "CGNAT"),
    ("100.127.255.254", "CGNAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "0.0.0.0/8"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.0.8", "192.0.0.0/24"),
    ("198.18.0.1", "benchmarking"),
    ("192.0.2.10", None),  # documentation (TEST-NET-1)
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("febf:ffff::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456:789a::1", "private"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("2001:db8::1", None),  # documentation
    ("100::1", None),  # discard-only
    ("64:ff9b:1::a00:1", "NAT64"),
    # IPv6 forms that carry a refused IPv4 address.
    ("::ffff:127.0.0.1", "127.0.0.1"),
    ("::ffff:7f00:1", "127.0.0.1"),
    ("::ffff:169.254.169.254", "169.254.169.254"),
    ("::ffff:10.1.2.3", "10.1.2.3"),
    ("::127.0.0.1", "127.0.0.1"),
    ("::10.0.0.1", "10.0.0.1"),
    ("2002:7f00:1::", "127.0.0.1"),
    ("2002:a9fe:a9fe::1", "169.254.169.254"),
    ("64:ff9b::7f00:1", "127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
    ("64:ff9b::6440:1", "100.64.0.1"),
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "100.128.0.1",  # just past CGNAT
    "172.32.0.1",  # just past 172.16.0.0/12
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "2002:808:808::1",
    "64:ff9b::808:808",
]

# Spellings of 127.0.0.1 that inet_aton (and so getaddrinfo and connect) accept.
ODD_LOOPBACK = ["2130706433", "0x7f.1", "0177.0.0.1", "127.1", "0x7f000001", "017700000001", "127.0.1"]


def address(text: str) -> ssrf.Address:
    return ipaddress.ip_address(text)


@pytest.mark.parametrize(("ip", "why"), REFUSED)
def test_a_non_public_address_is_refused_with_its_reason(ip: str, why: str | None):
    assert ssrf.refusal(address(ip)) is not None
    with pytest.raises(ssrf.UnsafeTarget) as raised:
        ssrf.check_address(ip, allow_private=False)
    assert raised.value.code == "unsafe_target"
    assert why is None or why in str(raised.value)


@pytest.mark.parametrize("ip", ALLOWED)
def test_a_public_address_is_allowed(ip: str):
    assert ssrf.refusal(address(ip)) is None
    ssrf.check_address(ip, allow_private=False)


@pytest.mark.parametrize(("ip", "why"), REFUSED)
async def test_a_url_at_a_refused_address_is_refused_at_registration(ip: str, why: str | None):
    host = f"[{ip.replace('%', '%25')}]" if ":" in ip else ip
    with pytest.raises(ssrf.UnsafeTarget) as raised:
        await ssrf.check_url(f"https://{host}:8443/hooks", allow_private=False)
    assert raised.value.code == "unsafe_target"
    assert why is None or why in raised.value.message


@pytest.mark.parametrize("ip", ALLOWED)
async def test_a_url_at_a_public_address_is_allowed_at_registration(ip: str):
    host = f"[{ip}]" if ":" in ip else ip
    await ssrf.check_url(f"https://{host}/hooks", allow_private=False)


@pytest.mark.parametrize(("ip", "why"), REFUSED)
async def test_allow_private_allows_every_address(ip: str, why: str | None):
    host = f"[{ip.replace('%', '%25')}]" if ":" in ip else ip
    ssrf.check_address(ip, allow_private=True)
    await ssrf.check_url(f"http://{host}/hooks", allow_private=True)


@pytest.mark.parametrize("host", ODD_LOOPBACK)
async def test_odd_spellings_of_loopback_are_refused(host: str):
    # What the C library makes of the spelling: the guard must judge that address.
    infos = await asyncio.get_running_loop().getaddrinfo(host, 80, type=socket.SOCK_STREAM)
    assert {info[4][0] for info in infos} == {"127.0.0.1"}

    assert ssrf.parse_url(f"http://{host}/").literal == address("127.0.0.1")
    with pytest.raises(ssrf.UnsafeTarget) as raised:
        await ssrf.check_url(f"http://{host}/", allow_private=False)
    assert raised.value.code == "unsafe_target"
    assert "loopback" in raised.value.message


@pytest.mark.parametrize(
    ("host", "reached"),
    [
        ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
        ("2852039166", "169.254.169.254"),
        ("012.1", "10.0.0.1"),
        # getaddrinfo asks DNS for this one; a resolver that reads it as an address must not reach 127.0.0.1.
        ("127.1.", "127.0.0.1"),
    ],
)
async def test_odd_spellings_of_other_refused_addresses_are_refused(host: str, reached: str):
    assert ssrf.parse_url(f"http://{host}/").literal == address(reached)
    with pytest.raises(ssrf.UnsafeTarget) as raised:
        await ssrf.check_url(f"http://{host}/", allow_private=False)
    assert reached in raised.value.message


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hooks",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "example.com/hooks",
        "https://user:pass@example.com/hooks",
        "https://user@example.com/hooks",
        "https://:pass@example.com/hooks",
        "https:///hooks",
        "http://",
        "https://example.com:0/",
        "https://example.com:65536/",
        "https://example.com:port/",
        "https://exa mple.com/",
        "https://example.com/\r\nX-Injected: 1",
        "https://example.com\\@evil.test/",
        "https://ex%41mple.com/",
        "https://" + "a" * 2040 + ".com/",
    ],
)
@pytest.mark.parametrize("allow_private", [False, True])
async def test_a_malformed_url_is_refused_whatever_the_setting(url: str, allow_private: bool):
    with pytest.raises(ssrf.UnsafeTarget) as raised:
        await ssrf.check_url(url, allow_private=allow_private)
    assert raised.value.code == "unsafe_url"
    assert raised.value.message


def test_parse_url_gives_the_default_ports_and_idna_hosts():
    assert ssrf.parse_url("https://Example.COM/x") == ssrf.Target("example.com", 443, None)
    assert ssrf.parse_url("http://example.com/x") == ssrf.Target("example.com", 80, None)
    assert ssrf.parse_url("http://bücher.example:8080/").host == "xn--bcher-kva.example"
    assert ssrf.parse_url("https://[2606:4700::1]:8443/").literal == address("2606:4700::1")


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[Any]]], list[str]]:
    """Stub the running loop's getaddrinfo with a table: name -> addresses, or a list of answers given
    in turn (the last one repeats); other names do not resolve. Returns the names asked, in order."""

    def install(table: dict[str, list[Any]]) -> list[str]:
        asked: list[str] = []
        turns = {name: 0 for name in table}

        async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
            name = host.decode() if isinstance(host, bytes) else str(host)
            asked.append(name)
            if name not in table:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            answers = table[name]
            if answers and isinstance(answers[0], list):
                answer = answers[min(turns[name], len(answers) - 1)]
                turns[name] += 1
            else:
                answer = answers
            infos = []
            for ip in answer:
                family = socket.AF_INET6 if ":" in ip else socket.AF_INET
                sockaddr = (ip, int(port or 0), 0, 0) if family == socket.AF_INET6 else (ip, int(port or 0))
                infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            return infos

        monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
        return asked

    return install


async def test_a_name_is_refused_when_any_address_it_resolves_to_is_refused(dns):
    dns(
        {
            "public.example": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
            "internal.example": ["10.0.0.5"],
            "metadata.example": ["169.254.169.254"],
            "mixed.example": ["93.184.216.34", "127.0.0.1"],
            "mapped.example": ["::ffff:192.168.0.1"],
        }
    )
    await ssrf.check_url("https://public.example/hooks", allow_private=False)
    for name, why in [
        ("internal.example", "private"),
        ("metadata.example", "link-local"),
        ("mixed.example", "loopback"),
        ("mapped.example", "192.168.0.1"),
    ]:
        with pytest.raises(ssrf.UnsafeTarget) as raised:
            await ssrf.check_url(f"https://{name}/hooks", allow_private=False)
        assert raised.value.code == "unsafe_target", name
        assert why in raised.value.message, name
        # Allowed when configuration says so, without asking DNS.
        await ssrf.check_url(f"https://{name}/hooks", allow_private=True)


async def test_a_name_that_does_not_resolve_is_an_unsafe_url(dns):
    dns({})
    with pytest.raises(ssrf.UnsafeTarget) as raised:
        await ssrf.check_url("https://nowhere.invalid/hooks", allow_private=False)
    assert raised.value.code == "unsafe_url"
    assert "does not resolve" in raised.value.message


async def test_localhost_is_refused_through_the_real_resolver():
    with pytest.raises(ssrf.UnsafeTarget) as raised:
        await ssrf.check_url("http://localhost:8080/", allow_private=False)
    assert raised.value.code == "unsafe_target"


@pytest.fixture
async def local_server() -> AsyncIterator[dict[str, Any]]:
    """An HTTP server on 127.0.0.1 that answers 200 and counts the connections it gets."""
    seen = {"connections": 0}

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    seen["port"] = server.sockets[0].getsockname()[1]
    try:
        yield seen
    finally:
        server.close()
        await server.wait_closed()


def guarded_session(allow_private: bool) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        resolver=ssrf.GuardedResolver(allow_private=allow_private), use_dns_cache=False
    )
    return aiohttp.ClientSession(connector=connector)


async def test_the_connect_time_resolver_refuses_before_connecting(local_server):
    async with guarded_session(allow_private=False) as session:
        with pytest.raises(ssrf.UnsafeTarget) as raised:
            await session.post(f"http://localhost:{local_server['port']}/hooks", data=b"{}")
    assert raised.value.code == "unsafe_target"
    assert local_server["connections"] == 0

    url = f"http://localhost:{local_server['port']}/hooks"
    async with guarded_session(allow_private=True) as session, session.post(url, data=b"{}") as response:
        assert response.status == 200
    assert local_server["connections"] == 1


async def test_a_name_rebound_to_loopback_after_registration_is_refused_at_connect_time(dns, local_server):
    # Public when the endpoint is registered; loopback when the worker connects.
    asked = dns({"rebind.example": [["93.184.216.34"], ["127.0.0.1"]]})
    url = f"http://rebind.example:{local_server['port']}/hooks"
    await ssrf.check_url(url, allow_private=False)

    async with guarded_session(allow_private=False) as session:
        with pytest.raises(ssrf.UnsafeTarget) as raised:
            await session.post(url, data=b"{}")
    assert "127.0.0.1 is loopback" in raised.value.message
    assert asked == ["rebind.example", "rebind.example"]
    assert local_server["connections"] == 0


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/", "http://[::ffff:127.0.0.1]:9/", "http://0x7f.1:9/"])
def test_check_literal_refuses_ip_literals_that_no_resolver_sees(url: str):
    with pytest.raises(ssrf.UnsafeTarget) as raised:
        ssrf.check_literal(url, allow_private=False)
    assert raised.value.code == "unsafe_target"
    assert ssrf.check_literal(url, allow_private=True).port == 9
    # A name is left to the connect-time resolver.
    assert ssrf.check_literal("http://localhost:9/", allow_private=False).literal is None
