"""Mail (licentric/mail.py): the LICENTRIC_MAIL_URL backends, SMTP with STARTTLS required (and
refused when the server does not offer it), the file and console backends, and headers that names
cannot break."""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import logging
import os
import smtplib
import ssl
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from licentric.mail import (
    ConsoleMailer,
    FileMailer,
    NoMailer,
    SmtpMailer,
    build_message,
    mailer_for,
    parse_address,
    send_quietly,
)
from licentric.settings import ConfigurationError, Settings

from processes import free_port

SENDER = parse_address("no-reply@licentric.test")


def message(to_name: str | None = "Alice", subject: str = "Your sign-in link"):
    return build_message(
        sender=SENDER,
        sender_name="Widgets Cloud",
        to="alice@example.com",
        to_name=to_name,
        subject=subject,
        text="Sign in: https://licentric.test/portal/x/login/confirm?token=abc",
        html="<p>Sign in</p>",
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (None, NoMailer()),
        ("console:", ConsoleMailer()),
        ("file:///var/tmp/licentric%20mail", FileMailer(Path("/var/tmp/licentric mail"))),
        ("smtp://mail.example.com", SmtpMailer("mail.example.com", 587, "starttls")),
        (
            "smtp://user%40example.com:p%40ss%3Aw@mail.example.com:2525",
            SmtpMailer("mail.example.com", 2525, "starttls", "user@example.com", "p@ss:w"),
        ),
        ("smtps://u:p@mail.example.com", SmtpMailer("mail.example.com", 465, "tls", "u", "p")),
        ("smtp+insecure://127.0.0.1:1025", SmtpMailer("127.0.0.1", 1025, "none")),
    ],
)
def test_the_mail_url_names_its_backend(url, expected):
    assert mailer_for(url) == expected


@pytest.mark.parametrize(
    "url", ["ftp://mail.example.com", "smtp://", "smtp://host:port", "file://elsewhere/dir", "file:"]
)
def test_a_mail_url_it_cannot_use_is_a_configuration_error(url):
    with pytest.raises(ConfigurationError):
        mailer_for(url)


def test_settings_refuse_an_unknown_mail_scheme(monkeypatch):
    monkeypatch.setenv("LICENTRIC_MAIL_URL", "sendmail:///usr/sbin/sendmail")
    with pytest.raises(ConfigurationError, match="LICENTRIC_MAIL_URL"):
        Settings.from_env()


def test_the_smtp_password_is_not_in_the_settings_repr(monkeypatch):
    monkeypatch.setenv("LICENTRIC_MAIL_URL", "smtp://user:hunter2@mail.example.com")
    assert "hunter2" not in repr(Settings.from_env())
    assert "hunter2" not in repr(mailer_for("smtp://user:hunter2@mail.example.com"))


def test_a_name_or_subject_with_a_line_break_adds_no_header():
    built = message(to_name="Eve\r\nBcc: victim@example.com", subject="Hi\nBcc: victim@example.com")
    parsed = email.message_from_bytes(built.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert parsed["To"].addresses[0].addr_spec == "alice@example.com"
    assert parsed["To"].addresses[0].display_name == "Eve Bcc: victim@example.com"
    assert parsed["Subject"] == "Hi Bcc: victim@example.com"
    assert parsed.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert str(parsed["From"]) == "Widgets Cloud <no-reply@licentric.test>"


def test_a_sender_that_is_not_one_address_is_refused():
    for text in ("", "not an address", "a@b.c, d@e.f"):
        with pytest.raises(ConfigurationError):
            parse_address(text)


async def test_the_file_backend_writes_whole_private_files(tmp_path):
    mailer = mailer_for(f"file://{tmp_path}/mail")
    await mailer.send(message())
    await mailer.send(message())
    files = sorted((tmp_path / "mail").iterdir())
    assert len(files) == 2 and all(f.suffix == ".eml" for f in files)
    assert all(os.stat(f).st_mode & 0o777 == 0o600 for f in files)
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert "token=abc" in parsed.get_body(("plain",)).get_content()


async def test_the_console_backend_prints_the_message(capsys):
    await ConsoleMailer().send(message())
    assert "Subject: Your sign-in link" in capsys.readouterr().out


async def test_without_a_mail_url_a_message_is_dropped_with_an_error(caplog):
    with caplog.at_level(logging.ERROR, logger="licentric.mail"):
        assert await send_quietly(NoMailer(), message(), "sign-in")
    assert "LICENTRIC_MAIL_URL is not set" in caplog.text


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's name
        self.messages.append((envelope.rcpt_tos, envelope.content))
        return "250 OK"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False)
    return AuthResult(success=(auth_data.login, auth_data.password) == (b"mailer", b"s3cret"))


async def test_smtp_sends_over_starttls_with_credentials(tmp_path, monkeypatch):
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox, port = Inbox(), free_port()
    server = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    server.start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # trust the test's own certificate
        await mailer_for(f"smtp://mailer:s3cret@127.0.0.1:{port}").send(message())
    finally:
        server.stop()
    [(recipients, content)] = inbox.messages
    assert recipients == ["alice@example.com"]
    assert b"Subject: Your sign-in link" in content


async def test_smtp_refuses_a_server_without_starttls(caplog):
    inbox, port = Inbox(), free_port()
    server = Controller(inbox, hostname="127.0.0.1", port=port)
    server.start()
    try:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            await mailer_for(f"smtp://127.0.0.1:{port}").send(message())
        with caplog.at_level(logging.ERROR, logger="licentric.mail"):
            assert not await send_quietly(mailer_for(f"smtp://127.0.0.1:{port}"), message(), "sign-in")
        assert "sending the sign-in email" in caplog.text and "token=" not in caplog.text
        # Spelled out as insecure, it goes in clear (a local mail catcher).
        await mailer_for(f"smtp+insecure://127.0.0.1:{port}").send(message())
    finally:
        server.stop()
    assert len(inbox.messages) == 1


async def test_an_unreachable_smtp_server_is_logged_not_raised(caplog):
    with caplog.at_level(logging.ERROR, logger="licentric.mail"):
        sent = await asyncio.wait_for(
            send_quietly(mailer_for(f"smtp+insecure://127.0.0.1:{free_port()}"), message(), "sign-in"), 30
        )
    assert not sent
    assert "failed" in caplog.text


def test_up_sends_portal_mail_to_files_and_drops_secure_over_plain_http(monkeypatch, tmp_path):
    from dataclasses import replace

    from licentric.cli import _for_local_portal

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("LICENTRIC_PORTAL_SECURE_COOKIES", raising=False)
    base = replace(Settings.from_env(), mail_url=None, public_url=None)
    local = _for_local_portal(base)
    assert local.mail_url == (tmp_path / "licentric" / "mail").as_uri()
    assert local.portal_secure_cookies is False
    assert mailer_for(local.mail_url).description == f"files in {tmp_path / 'licentric' / 'mail'}"
    # Said explicitly, or a mail URL given, or served over https: left as they are.
    monkeypatch.setenv("LICENTRIC_PORTAL_SECURE_COOKIES", "true")
    assert _for_local_portal(replace(base, mail_url="console:")).portal_secure_cookies is True
    assert _for_local_portal(replace(base, mail_url="console:")).mail_url == "console:"
    monkeypatch.delenv("LICENTRIC_PORTAL_SECURE_COOKIES")
    assert _for_local_portal(replace(base, public_url="https://portal.example.com")).portal_secure_cookies
