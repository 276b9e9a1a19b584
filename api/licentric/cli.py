"""The `licentric` command: migrate, serve, worker, up, accounts (create, suspend, reactivate, login,
sign-in-link), usage import."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import secrets
import signal
import sys
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import psycopg
import uvicorn
from psycopg.conninfo import make_conninfo

from licentric import embedded
from licentric.db import WEB_ROLE, WORKER_ROLE, UnsafeRoleError, login_url, verify_login
from licentric.mail import mailer_for
from licentric.migrate import MigrationError, migrate, other_installations
from licentric.settings import ConfigurationError, Settings, parse_secret_key
from licentric.usage_import import import_usage
from licentric.web.security import digest, new_secret

PLANS = ("free", "starter", "growth", "enterprise")


def _database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    raise SystemExit("DATABASE_URL is not set (only `licentric up` starts an embedded server)")


def _admin_url(settings: Settings) -> str:
    """migrate and the operator commands log in with privileges: DATABASE_ADMIN_URL, else DATABASE_URL."""
    if settings.admin_database_url or settings.database_url:
        return settings.admin_database_url or settings.database_url
    raise SystemExit("DATABASE_URL is not set, nor DATABASE_ADMIN_URL (the privileged login of migrate)")


def _with_secret_key(settings: Settings) -> Settings:
    """`up` needs no configuration: without LICENTRIC_SECRET_KEY it makes a key once and keeps it in the
    user's data directory, so the Stripe credentials it encrypted still open on the next `up`."""
    if settings.secret_key is not None:
        return settings
    key_file = embedded.data_dir() / "secret-key"
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(base64.b64encode(os.urandom(32)).decode() + "\n")
    try:
        return replace(settings, secret_key=parse_secret_key(key_file.read_text()))
    except ConfigurationError as exc:
        raise SystemExit(f"{key_file}: {exc}") from exc


def _for_local_portal(settings: Settings) -> Settings:
    """`up` is a trial on this machine: without LICENTRIC_MAIL_URL the portal's mail goes to .eml files
    in the user's data directory, and over plain http the portal's cookies go without Secure (a
    browser would drop them) unless LICENTRIC_PORTAL_SECURE_COOKIES says otherwise."""
    if settings.mail_url is None:
        settings = replace(settings, mail_url=(embedded.data_dir() / "mail").as_uri())
    if "LICENTRIC_PORTAL_SECURE_COOKIES" not in os.environ and settings.base_url.startswith("http://"):
        settings = replace(settings, portal_secure_cookies=False)
    return settings


def _up(settings: Settings, admin_url: str, owner: str) -> None:
    """Migrate and seed with the privileged admin_url, then serve as lic_web and run the jobs as
    lic_worker on the same server and database (logging in without a password: the embedded server
    trusts its socket; elsewhere trust, peer or ~/.pgpass must let them in)."""
    settings = _for_local_portal(_with_secret_key(settings))
    try:
        mail = mailer_for(settings.mail_url).description
    except ConfigurationError as exc:
        raise SystemExit(f"configuration: {exc}") from exc
    _migrate(settings, admin_url)
    key = _demo_key(admin_url, owner)
    base_url = f"http://{settings.host}:{settings.port}"
    print(f"Licentric is up at {base_url}  (API docs: {base_url}/schema)", flush=True)
    print(f"secret key: {key}", flush=True)
    print(f'try: curl -H "Authorization: Bearer {key}" {base_url}/v1/account', flush=True)
    if key.startswith("lic_sk_"):
        print(f"console: open {_demo_sign_in(admin_url, base_url, key, owner)}", flush=True)
    print(f"portal mail (sign-in links) goes to: {mail}", flush=True)
    _serve(
        replace(settings, database_url=login_url(admin_url, WEB_ROLE)),
        worker_settings=replace(settings, database_url=login_url(admin_url, WORKER_ROLE)),
    )


def _migrate(settings: Settings, database_url: str) -> None:
    others = other_installations(database_url)
    if others and not settings.shared_roles:
        raise SystemExit(
            f"migrate: this server already holds Licentric in {', '.join(others)}; its roles (lic_web, "
            "lic_app, lic_worker and their passwords) are cluster-wide, so every such database would trust "
            "the others' logins. Use one Licentric database per server, or set LICENTRIC_SHARED_ROLES=true "
            "where that is meant (test servers)"
        )
    try:
        report = migrate(database_url)
    except MigrationError as exc:
        raise SystemExit(f"migrate: {exc}") from exc
    applied = ", ".join(report.applied) or "none"
    repeatable = "re-applied" if report.repeatable_applied else "unchanged"
    print(f"migrations applied: {applied}; functions and policies {repeatable}", file=sys.stderr)


def create_account(database_url: str, name: str, plan: str, owner: str | None = None) -> dict[str, str]:
    """An operator action: runs as DATABASE_URL's role, which may call private functions. With owner, that
    address is the account's first member, an owner, in the same transaction."""
    with psycopg.connect(database_url) as conn:
        try:
            account_id, secret_key = conn.execute(
                "select account_id, secret_key from private.create_account(name => %s, plan => %s)",
                (name, plan),
            ).fetchone()
            if owner is not None:
                owner = conn.execute(
                    "select email from private.create_account_owner(account_id => %s, email => %s)",
                    (account_id, owner),
                ).fetchone()[0]
        except psycopg.Error as exc:
            raise SystemExit(f"accounts create: {exc.diag.message_primary or exc}") from exc
    created = {"account_id": str(account_id), "secret_key": secret_key}
    return created | ({"owner": owner} if owner is not None else {})


def sign_in_link(database_url: str, base_url: str, account_id: str, email: str) -> dict[str, str]:
    """An operator action: a console sign-in link for a member of an account, made as the web makes one
    (a random token whose sha256 alone is stored), without the limits a visitor meets."""
    token = new_secret()
    with psycopg.connect(database_url) as conn:
        try:
            expires_at = conn.execute(
                "select private.console_operator_login(account_id => %s, email => %s, token_hash => %s)",
                (account_id, email, digest(token)),
            ).fetchone()[0]
        except psycopg.Error as exc:
            raise SystemExit(f"accounts sign-in-link: {exc.diag.message_primary or exc}") from exc
    url = f"{base_url}/console/login/confirm?{urlencode({'token': token})}"
    return {"account_id": account_id, "email": email, "url": url, "expires_at": expires_at.isoformat()}


def set_account_status(database_url: str, account_id: str, status: str, reason: str | None) -> dict[str, str]:
    """An operator action, as create_account is: suspend or reactivate a tenant account."""
    with psycopg.connect(database_url) as conn:
        try:
            before = conn.execute(
                "select private.set_account_status(account_id => %s, status => %s, reason => %s)",
                (account_id, status, reason),
            ).fetchone()[0]
        except psycopg.Error as exc:
            raise SystemExit(f"accounts: {exc.diag.message_primary or exc}") from exc
    return {"account_id": account_id, "status": status, "previous_status": before}


def account_login(admin_url: str, account_id: str, drop: bool = False) -> dict[str, Any]:
    """An operator action: create (or give a new password to) the database login bound to an account, for
    the tenant's backend to call the api functions over SQL without a key (decision 52); or drop it. The
    password is made here and only its SCRAM verifier reaches the server."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        try:
            if drop:
                dropped = conn.execute("select private.drop_account_login(account_id => %s)", (account_id,))
                return {"account_id": account_id, "dropped": dropped.fetchone()[0]}
            password = secrets.token_urlsafe(32)
            (role,) = conn.execute(
                "select private.account_login_role(account_id => %s)", (account_id,)
            ).fetchone()
            verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
            conn.execute(
                "select private.create_account_login(account_id => %s, password => %s)",
                (account_id, verifier.decode()),
            )
        except psycopg.Error as exc:
            raise SystemExit(f"accounts login: {exc.diag.message_primary or exc}") from exc
    # libpq's key=value form, which every libpq-based client takes as its connection string.
    conninfo = make_conninfo(admin_url, user=role, password=password)
    return {"account_id": account_id, "role": role, "password": password, "conninfo": conninfo}


def _demo_key(database_url: str, owner: str) -> str:
    """Seed a demo account, owned by owner, the first time `up` sees an empty database; its key is kept
    in the user's data directory (per database) so every later `up` can print it again."""
    key_file = embedded.data_dir() / f"demo-key-{hashlib.sha256(database_url.encode()).hexdigest()[:12]}"
    with psycopg.connect(database_url) as conn:
        empty = conn.execute("select not exists (select from lic.accounts)").fetchone()[0]
    if empty:
        key_file.write_text(create_account(database_url, "Demo", "free", owner)["secret_key"])
        key_file.chmod(0o600)
    if key_file.exists():
        return key_file.read_text().strip()
    return "(this database already had accounts; create one with `licentric accounts create NAME`)"


def _demo_sign_in(database_url: str, base_url: str, key: str, owner: str) -> str:
    """A fresh console sign-in link for the demo account's owner (the account is the one the key names;
    a demo made before members existed gets its owner now)."""
    account_id = str(UUID(key[7:39]))
    with psycopg.connect(database_url) as conn:
        unowned = conn.execute(
            "select not exists (select from private.member_emails where account_id = %s)", (account_id,)
        ).fetchone()[0]
        if unowned:
            conn.execute(
                "select private.create_account_owner(account_id => %s, email => %s)", (account_id, owner)
            )
    with psycopg.connect(database_url) as conn:
        member = conn.execute(
            "select exists (select from private.member_emails where account_id = %s and email = lower(%s))",
            (account_id, owner),
        ).fetchone()[0]
    if not member:
        return f"(no member {owner} in the demo account: licentric accounts sign-in-link {account_id} EMAIL)"
    return sign_in_link(database_url, base_url, account_id, owner)["url"]


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _serve(settings: Settings, worker_settings: Settings | None = None) -> None:
    from licentric.app import create_app

    # A wrong login is a configuration error, said before uvicorn starts (not a startup traceback).
    logins = [(settings, WEB_ROLE)] + ([(worker_settings, WORKER_ROLE)] if worker_settings else [])
    for checked, role in logins:
        try:
            asyncio.run(verify_login(_database_url(checked), role))
        except (psycopg.OperationalError, UnsafeRoleError) as exc:
            raise SystemExit(f"{'serve' if role == WEB_ROLE else 'worker'}: {exc}") from exc

    # uvicorn re-raises the signal that stopped it; make SIGTERM unwind like
    # Ctrl-C does, so exit handlers (the embedded server's stop) still run.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        app = create_app(settings, worker_settings=worker_settings)
    except ConfigurationError as exc:  # a setting only the app's parts can judge (LICENTRIC_MAIL_URL)
        raise SystemExit(f"configuration: {exc}") from exc
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
    )


def _worker(settings: Settings) -> None:
    from licentric import worker
    from licentric.observability import configure_logging

    configure_logging(settings.log_level)
    try:
        asyncio.run(worker.serve(settings))
    except (psycopg.OperationalError, UnsafeRoleError) as exc:
        raise SystemExit(f"worker: {exc}") from exc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="licentric", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply pending migrations (DATABASE_ADMIN_URL, else DATABASE_URL)")
    for name, text in (
        ("serve", "serve the HTTP API (DATABASE_URL, logging in as lic_web)"),
        ("up", "migrate, serve and run the worker; starts an embedded PostgreSQL when DATABASE_URL is unset"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--host", help="address to listen on (default 127.0.0.1, LICENTRIC_HOST)")
        command.add_argument("--port", type=int, help="port to listen on (default 8000, LICENTRIC_PORT)")
        if name == "up":
            command.add_argument(
                "--owner", default="owner@example.com", help="the demo account's owner (owner@example.com)"
            )
    commands.add_parser("worker", help="run the background jobs until stopped (DATABASE_URL, as lic_worker)")
    accounts = commands.add_parser("accounts", help="manage tenant accounts").add_subparsers(
        dest="accounts_command", required=True
    )
    create = accounts.add_parser(
        "create", help="create an account; prints its id and first secret key as JSON"
    )
    create.add_argument("name")
    create.add_argument("--plan", choices=PLANS, default="free")
    create.add_argument("--owner", metavar="EMAIL", help="the account's first member, a console owner")
    link = accounts.add_parser(
        "sign-in-link", help="print a new console sign-in link (15 minutes, single use) for a member, as JSON"
    )
    link.add_argument("account_id", type=UUID)
    link.add_argument("email")
    suspend = accounts.add_parser(
        "suspend", help="suspend an account: it keeps reading and validating but records no usage"
    )
    suspend.add_argument("account_id", type=UUID)
    suspend.add_argument("--reason", help="why, shown to the account (GET /v1/account)")
    reactivate = accounts.add_parser("reactivate", help="make a suspended account active again")
    reactivate.add_argument("account_id", type=UUID)
    login = accounts.add_parser(
        "login",
        help="create the database login bound to an account (its backend then calls the api functions over "
        "SQL without a key); prints its role, a new password and a DATABASE_URL as JSON",
    )
    login.add_argument("account_id", type=UUID)
    login.add_argument("--drop", action="store_true", help="drop the account's login instead")
    usage = commands.add_parser("usage", help="usage metering").add_subparsers(
        dest="usage_command", required=True
    )
    backfill = usage.add_parser(
        "import",
        help="record usage events from a file of JSON lines (- for stdin) for the account of "
        "LICENTRIC_API_KEY; prints the totals and the rejected lines as JSON",
    )
    backfill.add_argument("file", type=argparse.FileType("r", encoding="utf-8"))
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        raise SystemExit(f"configuration: {exc}") from exc
    if getattr(args, "host", None):
        settings = replace(settings, host=args.host)
    if getattr(args, "port", None):
        settings = replace(settings, port=args.port)

    if args.command == "migrate":
        _migrate(settings, _admin_url(settings))
    elif args.command == "serve":
        _serve(replace(settings, database_url=_database_url(settings)))
    elif args.command == "worker":
        _worker(replace(settings, database_url=_database_url(settings)))
    elif args.command == "accounts" and args.accounts_command == "create":
        print(json.dumps(create_account(_admin_url(settings), args.name, args.plan, args.owner)))
    elif args.command == "accounts" and args.accounts_command == "sign-in-link":
        url = _admin_url(settings)
        print(json.dumps(sign_in_link(url, settings.base_url, str(args.account_id), args.email)))
    elif args.command == "accounts" and args.accounts_command == "login":
        print(json.dumps(account_login(_admin_url(settings), str(args.account_id), args.drop)))
    elif args.command == "accounts":
        status = "suspended" if args.accounts_command == "suspend" else "active"
        reason = getattr(args, "reason", None)
        print(json.dumps(set_account_status(_admin_url(settings), str(args.account_id), status, reason)))
    elif args.command == "usage":
        api_key = os.environ.get("LICENTRIC_API_KEY")
        if not api_key:
            raise SystemExit("LICENTRIC_API_KEY is not set: the secret key of the account to record for")
        with args.file:
            print(json.dumps(import_usage(_database_url(settings), api_key, args.file)))
    elif args.command == "up" and (settings.admin_database_url or settings.database_url):
        _up(settings, _admin_url(settings), args.owner)
    elif args.command == "up":
        with embedded.server() as database_url:
            _up(settings, database_url, args.owner)


if __name__ == "__main__":
    main()
