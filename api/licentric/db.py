"""The connection pool and the one way a request reaches the database.

Every connection logs in as the process's own role (lic_web for the API,
lic_worker for the worker) and is checked to be exactly that role, with no
superuser, RLS bypass or membership to climb back to (decision 51): there is
no SET ROLE that a RESET ROLE could undo. A request is one transaction:
api.authenticate sets the tenant context transaction-locally, then one api.*
function runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from uuid import UUID

import msgspec
import psycopg
from litestar import Response
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from licentric.errors import RETRYABLE
from licentric.pagination import Page

T = TypeVar("T")

# The login roles of Licentric's own processes (sql/0021, decision 51).
WEB_ROLE = "lic_web"
WORKER_ROLE = "lic_worker"

ATTEMPTS = 3  # serialization failures and deadlocks are retried this often

# One api function in one transaction of the caller's (TenantDb.call, or a console session's: the steps
# that call Stripe or encrypt between their database calls take one).
Call = Callable[[str, Mapping[str, Any]], Awaitable[list[dict[str, Any]]]]


async def account_id_of(call: Call) -> UUID:
    """The authenticated account (api.get_account: a secret key or a member; 403 for any other)."""
    return (await call("api.get_account", {}))[0]["id"]


# What the web layer does in a request's transaction around its api function, for work only it can do
# there (license files: make the account's first signing key, sign where the key is decrypted). Both
# get the authenticated account. Prepare runs before the function and answers extra arguments for it;
# finish turns the function's rows (as psycopg reads them) into the answer, which an Idempotency-Key
# then stores.
Prepare = Callable[[psycopg.AsyncConnection, UUID], Awaitable[dict[str, Any]]]
Finish = Callable[[UUID, list[Any]], list[Any]]


class UnsafeRoleError(RuntimeError):
    """A connection does not log in as the role the process must run as."""


# session_user is the login and cannot be changed without superuser; the role
# must be neither superuser nor able to bypass RLS nor a member of any role
# (a member could SET ROLE to it).
_LOGIN_CHECK = """
select session_user::text, current_user::text, r.rolsuper or r.rolbypassrls,
  exists (select from pg_catalog.pg_auth_members as m where m.member = r.oid)
from pg_catalog.pg_roles as r where r.rolname = session_user
"""


async def check_login(conn: psycopg.AsyncConnection, role: str) -> None:
    """Raise UnsafeRoleError unless conn logged in as role itself, a role without any way up."""
    cur = conn.cursor(row_factory=tuple_row)
    await cur.execute(_LOGIN_CHECK)
    login, current, privileged, member = await cur.fetchone()
    if login != role or current != role or privileged or member:
        raise UnsafeRoleError(
            f"the database login is {login!r}, but this process must log in as {role!r} itself "
            f"(a role without superuser, RLS bypass or role memberships): set DATABASE_URL to "
            f"postgresql://{role}:PASSWORD@HOST/DB (see docs/operations.md, 'Database roles')"
        )


def login_url(url: str, role: str) -> str:
    """The same server and database as url, logging in as role without url's password: for `licentric
    up` and tests, where roles log in by trust, peer or ~/.pgpass rather than by a password in the URL."""
    params = conninfo_to_dict(url)
    params.pop("password", None)
    return make_conninfo(**{**params, "user": role})


async def verify_login(dsn: str, role: str) -> None:
    """Connect once and check_login: raises psycopg.OperationalError or UnsafeRoleError."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await check_login(conn, role)


async def open_pool(dsn: str, role: str, min_size: int = 2, max_size: int = 10) -> AsyncConnectionPool:
    """A pool of connections that log in as role (checked on each new connection)."""
    # Fail at once on an unreachable server or a wrong login; the pool itself
    # would only log each failed connection and time out after 30 s.
    await verify_login(dsn, role)
    pool = AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        configure=lambda conn: check_login(conn, role),
        open=False,
        timeout=10,
    )
    await pool.open(wait=True)
    return pool


def _adapt(value: Any) -> Any:
    """Objects go as jsonb and lists as arrays. Integers go untyped, so the
    function's own parameter type applies: a number too big for an integer
    parameter is then a 22003 (422), not a bigint that matches no function."""
    if isinstance(value, dict):
        return Jsonb(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _call(function: str, args: Mapping[str, Any]) -> sql.Composed:
    """select * from schema.function(name => %(name)s, ...); names come from code, never from input."""
    named = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in args
    )
    return sql.SQL("select * from {}({})").format(sql.Identifier(*function.split(".")), named)


async def _transaction(
    pool: AsyncConnectionPool, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]
) -> T:
    """Run work in one transaction, retried when it fails on a serialization failure or a deadlock."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with pool.connection() as conn, conn.transaction():
                return await work(conn)
        except psycopg.Error as exc:
            if exc.sqlstate not in RETRYABLE or attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Idempotency:
    """An Idempotency-Key header and the fingerprint of the request it came with."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: str, method: str, path: str, body: bytes) -> Idempotency:
        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
        except ValueError:
            canonical = body
        digest = hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()
        return cls(key, digest)


@dataclass(frozen=True)
class TenantDb:
    """The database as one authenticated request sees it: each method runs one
    api function in one transaction, after api.authenticate under the rate
    limits (service.authenticate_request: per client address before, per key
    after, per_minute each; decision 59).

    When the request carried an Idempotency-Key, the answer is stored with the
    key in the same transaction, and a repeat gets the stored answer (with
    Idempotent-Replayed: true) instead of running the function again.

    uncounted() is the same request's later calls (a long poll's re-queries):
    authenticated, but not counted against the rate limit again.
    """

    pool: AsyncConnectionPool
    secret: str
    client_hash: bytes
    per_minute: int
    idempotency: Idempotency | None = None
    counted: bool = True

    def uncounted(self) -> TenantDb:
        return replace(self, idempotency=None, counted=False)

    async def _rows(
        self,
        function: str,
        args: Mapping[str, Any],
        status: int,
        *,
        builtins: bool = True,
        prepare: Prepare | None = None,
        finish: Finish | None = None,
    ) -> tuple[list[Any], bool]:
        async def work(conn: psycopg.AsyncConnection) -> tuple[list[Any], bool]:
            # Later calls of one request (a long poll's re-queries) authenticate without counting again.
            if self.counted:
                authenticate = (
                    "select account_id from service.authenticate_request("
                    "secret => %s, client_hash => %s, per_minute => %s)",
                    (self.secret, self.client_hash, self.per_minute),
                )
            else:
                authenticate = ("select account_id from api.authenticate(secret => %s)", (self.secret,))
            context = await (await conn.execute(*authenticate)).fetchone()
            if self.idempotency is not None:
                stored = await (
                    await conn.execute(
                        "select * from api.claim_idempotency_key(key => %s, fingerprint => %s)",
                        (self.idempotency.key, self.idempotency.fingerprint),
                    )
                ).fetchone()
                if stored["status"] is not None:
                    return [stored["body"]], True
            call_args = {**args, **(await prepare(conn, context["account_id"]))} if prepare else args
            cur = await conn.execute(_call(function, call_args), {k: _adapt(v) for k, v in call_args.items()})
            rows = await cur.fetchall()
            if finish is not None:
                rows = finish(context["account_id"], rows)
            if builtins:
                rows = msgspec.to_builtins(rows)
            if self.idempotency is not None:
                await conn.execute(
                    "select api.save_idempotent_response(key => %s, fingerprint => %s,"
                    " status => %s, body => %s)",
                    (
                        self.idempotency.key,
                        self.idempotency.fingerprint,
                        status,
                        Jsonb(rows[0] if rows else None),
                    ),
                )
            return rows, False

        try:
            return await _transaction(self.pool, work)
        except psycopg.Error as exc:
            # The request's count rolled back with it; a refused one is not counted.
            if self.counted and exc.sqlstate and exc.sqlstate != "LRATE":
                async with self.pool.connection() as conn:
                    await conn.execute(
                        "select from service.count_failed_request(secret => %s, client_hash => %s)",
                        (self.secret, self.client_hash),
                    )
            raise

    async def rows(
        self, function: str, args: Mapping[str, Any] | None = None, *, status: int = 200
    ) -> tuple[list[Any], bool]:
        """The rows of an api function as JSON-ready data, and whether they are the stored answer of an
        Idempotency-Key seen before."""
        return await self._rows(function, args or {}, status)

    async def call(self, function: str, args: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rows of an api function as psycopg reads them (bytea stays bytes), ignoring any
        Idempotency-Key: for values the web layer works with rather than answers with."""
        rows, _ = await replace(self, idempotency=None)._rows(function, args or {}, 200, builtins=False)
        return rows

    async def one(
        self,
        shape: type[T],
        function: str,
        args: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
        prepare: Prepare | None = None,
        finish: Finish | None = None,
    ) -> Response[T]:
        """The single object an api function returns, as shape (a composite's columns, or the object a
        function returning jsonb answers: its one column is named after the function)."""
        rows, replayed = await self._rows(function, args or {}, status, prepare=prepare, finish=finish)
        row = rows[0]
        name = function.rsplit(".", 1)[-1]
        if isinstance(row, dict) and len(row) == 1 and isinstance(row.get(name), dict):
            row = row[name]
        headers = {"Idempotent-Replayed": "true"} if replayed else None
        return Response(msgspec.convert(row, shape, strict=False), status_code=status, headers=headers)

    async def all(self, shape: type[T], function: str, args: Mapping[str, Any] | None = None) -> T:
        """Every row of an api function with a short, bounded answer (no cursor), as a
        list Struct whose has_more is false."""
        rows, _ = await self._rows(function, args or {}, 200)
        return msgspec.convert({"data": rows, "has_more": False}, shape, strict=False)

    async def page(
        self,
        shape: type[T],
        function: str,
        page: Page,
        args: Mapping[str, Any] | None = None,
        *,
        prepare: Prepare | None = None,
    ) -> T:
        """A list page: shape is a Struct with data and has_more fields."""
        rows, _ = await self._rows(function, {**(args or {}), **page.args()}, 200, prepare=prepare)
        data, has_more = page.cut(rows)
        return msgspec.convert({"data": data, "has_more": has_more}, shape, strict=False)


@dataclass(frozen=True)
class StripeDb:
    """The database as Stripe's deliveries reach it: with no API key. Each function takes the account
    the webhook URL names (service.stripe_credentials, to verify the signature) or that a verified
    signature belongs to (api.apply_stripe_*), and sets that account's context itself."""

    pool: AsyncConnectionPool

    async def _fetch(self, statement: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        async def work(conn: psycopg.AsyncConnection) -> list[dict[str, Any]]:
            return await (await conn.execute(statement, params)).fetchall()

        return await _transaction(self.pool, work)

    async def limit_deliveries(self, account_id: UUID, per_minute: int) -> None:
        """Count a delivery to the account in a transaction of its own: LRATE past per_minute, LNTFD for
        no such account (decision 60)."""
        await self._fetch(
            "select from service.limit_stripe_deliveries(account_id => %s, per_minute => %s)",
            (account_id, per_minute),
        )

    async def credentials(self, account_id: UUID) -> list[dict[str, Any]]:
        """The account's encrypted API keys and valid signing secrets: {livemode, kind, ciphertext,
        webhook_endpoint_id}; none for an unknown account."""
        return await self._fetch("select * from service.stripe_credentials(account_id => %s)", (account_id,))

    async def apply_event(self, account_id: UUID, body: str, livemode: bool) -> dict[str, Any]:
        """Record and apply a delivery: body is the signed text itself, never re-serialised."""
        rows = await self._fetch(
            "select service.apply_stripe_event(account_id => %s, event => %s::jsonb, livemode => %s)"
            " as result",
            (account_id, body, livemode),
        )
        return rows[0]["result"]

    async def apply_refetch(
        self, account_id: UUID, stripe_event_id: str, obj: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply an object fetched from Stripe for the event that asked for it."""
        rows = await self._fetch(
            "select service.apply_stripe_refetch(account_id => %s, stripe_event_id => %s, object => %s)"
            " as result",
            (account_id, stripe_event_id, Jsonb(obj)),
        )
        return rows[0]["result"]


@dataclass(frozen=True)
class WebCalls:
    """The functions one page's transaction calls, in order, on its connection."""

    conn: psycopg.AsyncConnection

    async def rows(self, function: str, args: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        args = args or {}
        cur = await self.conn.execute(_call(function, args), {k: _adapt(v) for k, v in args.items()})
        return await cur.fetchall()

    async def one(self, function: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return (await self.rows(function, args))[0]


@dataclass(frozen=True)
class WebDb:
    """The database as a web page's visitor reaches it: with no API key. A signed-in page runs its
    site's authenticate function first and then its own calls, all in one transaction (the context the
    session proves lives only in it)."""

    pool: AsyncConnectionPool

    async def visitor(self, work: Callable[[WebCalls], Awaitable[T]]) -> T:
        """Signed-out functions (sign-in requests, peeks, confirms, logouts) in one transaction."""
        return await _transaction(self.pool, lambda conn: work(WebCalls(conn)))

    async def authenticated(
        self,
        function: str,
        args: Mapping[str, Any],
        work: Callable[[WebCalls, dict[str, Any]], Awaitable[T]],
    ) -> T:
        """work(calls, session) after function(**args) answered the session, in the same transaction."""

        async def run(conn: psycopg.AsyncConnection) -> T:
            calls = WebCalls(conn)
            return await work(calls, await calls.one(function, args))

        return await _transaction(self.pool, run)


@dataclass(frozen=True)
class PortalDb(WebDb):
    """A portal's pages: every function names the portal's slug."""

    slug: str

    async def signed_in(
        self, session_hash: bytes, work: Callable[[WebCalls, dict[str, Any]], Awaitable[T]]
    ) -> T:
        """work(calls, session) after service.authenticate_portal, in the same transaction."""
        args = {"slug": self.slug, "session_hash": session_hash}
        return await self.authenticated("service.authenticate_portal", args, work)


@dataclass(frozen=True)
class ConsoleDb(WebDb):
    """The tenant console's pages: a session is a member of one account (decision 76)."""

    async def signed_in(
        self, session_hash: bytes, work: Callable[[WebCalls, dict[str, Any]], Awaitable[T]]
    ) -> T:
        """work(calls, member) after service.authenticate_console (which sets the member's context), in
        the same transaction."""
        args = {"session_hash": session_hash}
        return await self.authenticated("service.authenticate_console", args, work)
