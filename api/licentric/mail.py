"""Sending email: the portal's sign-in links and invitations (licentric/portal/).

One setting, LICENTRIC_MAIL_URL, says where mail goes:

    smtp://user:password@host:587      SMTP with STARTTLS, required (a server without it is refused)
    smtps://user:password@host:465     SMTP over TLS from the first byte
    smtp+insecure://host:1025          SMTP without TLS: only for a mail catcher on this machine
    file:///var/tmp/licentric-mail     one .eml file per message in that directory (development)
    console:                           the message on standard output (development)

User and password are percent-decoded. SMTP runs the standard library's smtplib in a worker thread
(decision 48): a message is sent from a background task after the page has answered, one at a time
per request, so an asyncio client would buy nothing but a dependency.

Messages are built with the email library's EmailMessage and Address: a display name or subject with a
line break cannot add a header, and names are stripped of control characters first so such a message is
still sent, with the name on one line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import smtplib
import ssl
import sys
import time
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from licentric.settings import ConfigurationError

log = logging.getLogger("licentric.mail")

TIMEOUT_SECONDS = 30.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def one_line(text: str | None, limit: int = 200) -> str:
    """A display name or subject as one line of printable text."""
    return _CONTROL.sub(" ", text or "").strip()[:limit]


def parse_address(text: str) -> Address:
    """An address as the email library reads it ("Name <a@b.c>" or "a@b.c"); ConfigurationError if it
    is not exactly one address."""
    message = EmailMessage()
    try:
        message["From"] = text
        [address] = message["From"].addresses
    except (ValueError, IndexError, TypeError):
        raise ConfigurationError(f"not an email address: {text!r}") from None
    if "@" not in address.addr_spec:
        raise ConfigurationError(f"not an email address: {text!r}")
    return address


def build_message(
    *,
    sender: Address,
    sender_name: str | None,
    to: str,
    to_name: str | None,
    subject: str,
    text: str,
    html: str,
) -> EmailMessage:
    """A multipart/alternative message (plain text, then HTML) from sender_name <sender's address>."""
    message = EmailMessage()
    message["From"] = Address(
        display_name=one_line(sender_name) or sender.display_name,
        username=sender.username,
        domain=sender.domain,
    )
    local, _, domain = to.rpartition("@")
    message["To"] = Address(display_name=one_line(to_name), username=local, domain=domain)
    message["Subject"] = one_line(subject, 250)
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.domain or None)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


class Mailer(Protocol):
    """Somewhere messages go."""

    description: str

    async def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class SmtpMailer:
    host: str
    port: int
    security: str  # "starttls", "tls" or "none"
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        scheme = {"starttls": "smtp", "tls": "smtps", "none": "smtp+insecure"}[self.security]
        return f"{scheme}://{self.host}:{self.port}"

    def _send(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if self.security == "tls":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=TIMEOUT_SECONDS, context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=TIMEOUT_SECONDS)
        with smtp:
            if self.security == "starttls":
                # Raises SMTPNotSupportedError when the server does not offer it: never sent in clear.
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._send, message)


@dataclass(frozen=True)
class FileMailer:
    """Each message as <time>-<random>.eml in directory (made if missing), readable by its owner only:
    they hold sign-in links."""

    directory: Path

    @property
    def description(self) -> str:
        return f"files in {self.directory}"

    def _write(self, message: EmailMessage) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{secrets.token_hex(4)}.eml"
        partial = self.directory / f".{name}.tmp"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(message.as_bytes())
        # Whole or not at all: a reader never sees half a message.
        return partial.rename(self.directory / name)

    async def send(self, message: EmailMessage) -> None:
        await asyncio.to_thread(self._write, message)


@dataclass(frozen=True)
class ConsoleMailer:
    description: str = "standard output"

    async def send(self, message: EmailMessage) -> None:
        sys.stdout.write(f"----- mail -----\n{message.as_string()}\n----- end of mail -----\n")
        sys.stdout.flush()


@dataclass(frozen=True)
class NoMailer:
    """No LICENTRIC_MAIL_URL: every message is dropped with an error in the log."""

    description: str = "nowhere (LICENTRIC_MAIL_URL is not set)"

    async def send(self, message: EmailMessage) -> None:
        log.error("cannot send %r: LICENTRIC_MAIL_URL is not set", str(message["Subject"]))


def mailer_for(url: str | None) -> Mailer:
    """The backend LICENTRIC_MAIL_URL names; ConfigurationError for one it cannot be."""
    if not url:
        return NoMailer()
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "console":
        return ConsoleMailer()
    if scheme == "file":
        if not parts.path or parts.netloc not in ("", "localhost"):
            raise ConfigurationError("LICENTRIC_MAIL_URL file:///absolute/directory names a local directory")
        return FileMailer(Path(unquote(parts.path)))
    security = {"smtp": "starttls", "smtps": "tls", "smtp+insecure": "none"}.get(scheme)
    if security is None or not parts.hostname:
        raise ConfigurationError(
            "LICENTRIC_MAIL_URL must be smtp://[user:password@]host[:port], smtps://…, smtp+insecure://…, "
            "file:///directory or console:"
        )
    try:
        port = parts.port or (465 if security == "tls" else 587)
    except ValueError:
        raise ConfigurationError("LICENTRIC_MAIL_URL has an invalid port") from None
    return SmtpMailer(
        host=parts.hostname,
        port=port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


async def send_quietly(mailer: Mailer, message: EmailMessage, what: str) -> bool:
    """Send from a background task: a failure is logged (never the link itself), not raised, since
    nobody is left to answer."""
    try:
        await mailer.send(message)
    except Exception as exc:  # the page has answered already
        log.error("sending the %s email through %s failed: %s", what, mailer.description, exc)
        return False
    return True
