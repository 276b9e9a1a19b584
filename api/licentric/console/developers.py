"""The console's Developers page (issue 13 page 6): API keys (create and show once, roll, revoke) and
outbound webhook endpoints (create, reveal and rotate the signing secret, ping, deliveries with their
attempts, retry, replay). Each is the api.* function the HTTP API calls; the secrets' encryption and
the URL check are the HTTP API's own (routes/webhooks.py WebhookContext)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath

from licentric.console.site import BASE, SCOPE, ConsoleController, ConsoleSite
from licentric.db import WebCalls
from licentric.routes.webhooks import WebhookContext, WebhookDeliveryDetail
from licentric.web.site import PAGE_ROWS, WebError, form_of, page_cut, uuid_or_404

PATH = f"{BASE}/developers"
DELIVERY_STATUSES = ("pending", "succeeded", "failed")
# How long a rolled key keeps working, as the roll form offers it (api.roll_api_key allows up to 7 days).
ROLL_OVERLAPS = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# How long a rotated signing secret keeps signing too (api.rotate_webhook_endpoint_secret: 0 to 7 days).
ROTATE_OVERLAPS = {"0": timedelta(0), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# Replay what was delivered since (the replay form's choices).
REPLAY_SINCE = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
# A confirmation page per action that deserves a second look: its question and its button.
CONFIRMATIONS = {
    "roll": ("Roll this key?", "Yes, roll it"),
    "revoke": ("Revoke this key? Requests made with it fail at once.", "Yes, revoke it"),
    "delete": ("Delete this endpoint with its deliveries?", "Yes, delete it"),
}


def _choice(choices: dict[str, timedelta], value: str | None) -> timedelta:
    if value not in choices:
        raise WebError(422, "That did not work", "Pick one of the choices offered.")
    return choices[value]


def _webhooks(request: Request[Any, Any, State]) -> WebhookContext:
    return WebhookContext(request.app.state.settings)


class ConsoleDevelopers(ConsoleController):
    path = PATH

    @get("/")
    async def developers(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """The account's API keys (newest first, ?after=) and webhook endpoints, and the API reference."""

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            keys, next_after = page_cut(
                await calls.rows(
                    "api.list_api_keys",
                    {
                        "page_limit": PAGE_ROWS,
                        "starting_after": uuid_or_404(request.query_params.get("after"), missing_ok=True),
                    },
                )
            )
            endpoints, more_endpoints = page_cut(
                await calls.rows("api.list_webhook_endpoints", {"page_limit": PAGE_ROWS})
            )
            return {
                "keys": keys,
                "next_after": next_after,
                "endpoints": endpoints,
                "more_endpoints": bool(more_endpoints),
                "now": datetime.now(UTC),
            }

        return await site.show(request, "developers.html", "developers", work)

    # API keys.

    @post("/keys")
    async def create_key(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """A new key, shown on this answer only."""

        async def work(calls: WebCalls, form: dict[str, str]) -> dict[str, Any]:
            key = await calls.one(
                "api.create_api_key",
                {"kind": form.get("kind", ""), "name": form.get("name", "").strip() or None},
            )
            return {"key": key, "rolled": False}

        return await site.answer(request, "key_secret.html", "developers", work)

    @get("/keys/{key_id:str}/roll")
    async def confirm_roll(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], key_id: FromPath[str]
    ) -> Response[Any]:
        return await _confirm(request, site, "keys", key_id, "roll")

    @get("/keys/{key_id:str}/revoke")
    async def confirm_revoke(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], key_id: FromPath[str]
    ) -> Response[Any]:
        return await _confirm(request, site, "keys", key_id, "revoke")

    @post("/keys/{key_id:str}/roll")
    async def roll_key(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], key_id: FromPath[str]
    ) -> Response[Any]:
        """A new key of the same kind, shown on this answer only; the old one works for the overlap chosen."""
        key = uuid_or_404(key_id)

        async def work(calls: WebCalls, form: dict[str, str]) -> dict[str, Any]:
            overlap = _choice(ROLL_OVERLAPS, form.get("overlap"))
            new_key = await calls.one(
                "api.roll_api_key", {"api_key_id": key, "expires_at": datetime.now(UTC) + overlap}
            )
            return {"key": new_key, "rolled": True}

        return await site.answer(request, "key_secret.html", "developers", work)

    @post("/keys/{key_id:str}/revoke")
    async def revoke_key(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite], key_id: FromPath[str]
    ) -> Response[Any]:
        key = uuid_or_404(key_id)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.revoke_api_key", {"api_key_id": key}),
            f"{PATH}?done=key_revoked",
        )

    # Webhook endpoints.

    @post("/webhooks")
    async def create_endpoint(
        self, request: Request[Any, Any, State], site: NamedDependency[ConsoleSite]
    ) -> Response[Any]:
        """A new endpoint; its page shows the signing secret once made (and again on request)."""
        form = await form_of(request)
        session_hash = site.check_session_csrf(request, SCOPE, form)
        call = site.caller(request, session_hash)
        event_types = [t.strip() for t in form.get("event_types", "").replace(",", " ").split() if t.strip()]
        args, secret = await _webhooks(request).create_args(
            call, form.get("url", "").strip(), event_types, form.get("description", "").strip() or None
        )
        [endpoint] = await call("api.create_webhook_endpoint", args)
        return await _secret_page(request, site, session_hash, endpoint, secret, None, "created")

    @get("/webhooks/{hook:str}")
    async def endpoint(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        hook: FromPath[str],
    ) -> Response[Any]:
        """An endpoint with its deliveries (newest first, by status, ?after=) and its actions."""
        endpoint_uuid = uuid_or_404(hook)
        status = request.query_params.get("status") or None
        if status is not None and status not in DELIVERY_STATUSES:
            raise WebError(404, "Not found", "There is no such status.")

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            endpoint = await calls.one("api.get_webhook_endpoint", {"endpoint_id": endpoint_uuid})
            deliveries, next_after = page_cut(
                await calls.rows(
                    "api.list_webhook_deliveries",
                    {
                        "endpoint_id": endpoint_uuid,
                        "status": status,
                        "page_limit": PAGE_ROWS,
                        "starting_after": uuid_or_404(request.query_params.get("after"), missing_ok=True),
                    },
                )
            )
            return {
                "endpoint": endpoint,
                "deliveries": deliveries,
                "next_after": next_after,
                "only": status or "",
                "statuses": DELIVERY_STATUSES,
                "rotate_overlaps": list(ROTATE_OVERLAPS),
                "replay_since": list(REPLAY_SINCE),
            }

        return await site.show(request, "webhook_endpoint.html", "developers", work)

    @post("/webhooks/{hook:str}/secret")
    async def reveal_secret(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        hook: FromPath[str],
    ) -> Response[Any]:
        """The endpoint's current signing secret (a POST: a reveal is asked for, and SQL may refuse it)."""
        endpoint_uuid = uuid_or_404(hook)
        form = await form_of(request)
        session_hash = site.check_session_csrf(request, SCOPE, form)
        call = site.caller(request, session_hash)
        revealed = await _webhooks(request).secrets(call, endpoint_uuid)
        [endpoint] = await call("api.get_webhook_endpoint", {"endpoint_id": endpoint_uuid})
        return await _secret_page(
            request, site, session_hash, endpoint, revealed.secret, revealed.previous_secret_expires_at, None
        )

    @post("/webhooks/{hook:str}/rotate")
    async def rotate_secret(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        hook: FromPath[str],
    ) -> Response[Any]:
        """A new signing secret, shown; the old one keeps signing too for the overlap chosen."""
        endpoint_uuid = uuid_or_404(hook)
        form = await form_of(request)
        session_hash = site.check_session_csrf(request, SCOPE, form)
        overlap = _choice(ROTATE_OVERLAPS, form.get("overlap"))
        call = site.caller(request, session_hash)
        args, secret = await _webhooks(request).rotate_args(call, endpoint_uuid, overlap)
        [endpoint] = await call("api.rotate_webhook_endpoint_secret", args)
        previous = endpoint["secret_rotated_at"] + overlap if overlap else None
        return await _secret_page(request, site, session_hash, endpoint, secret, previous, "rotated")

    @post("/webhooks/{hook:str}/test")
    async def ping(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        hook: FromPath[str],
    ) -> Response[Any]:
        """Send a ping event to this endpoint only; its delivery's page follows it."""
        endpoint_uuid = uuid_or_404(hook)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.send_test_webhook", {"endpoint_id": endpoint_uuid}),
            lambda delivery: f"{PATH}/deliveries/{delivery['id']}?done=pinged",
        )

    @post("/webhooks/{hook:str}/replay")
    async def replay(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        hook: FromPath[str],
    ) -> Response[Any]:
        """Send again what was delivered since then with that status (failed, succeeded or all)."""
        endpoint_uuid = uuid_or_404(hook)

        async def work(calls: WebCalls, form: dict[str, str]) -> Any:
            since = datetime.now(UTC) - _choice(REPLAY_SINCE, form.get("since"))
            return await calls.one(
                "api.replay_webhook_endpoint",
                {"endpoint_id": endpoint_uuid, "since": since, "status": form.get("status", "failed")},
            )

        return await site.act(request, work, f"{PATH}/webhooks/{endpoint_uuid}?done=replayed")

    @post("/webhooks/{hook:str}/enable")
    async def enable(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        hook: FromPath[str],
    ) -> Response[Any]:
        """Enable an endpoint again (its reason and failure streak are cleared)."""
        return await _switch(request, site, hook, enabled=True)

    @post("/webhooks/{hook:str}/disable")
    async def disable(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        hook: FromPath[str],
    ) -> Response[Any]:
        """Disable an endpoint: its pending deliveries fail."""
        return await _switch(request, site, hook, enabled=False)

    @get("/webhooks/{hook:str}/delete")
    async def confirm_delete(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        hook: FromPath[str],
    ) -> Response[Any]:
        return await _confirm(request, site, "webhooks", hook, "delete")

    @post("/webhooks/{hook:str}/delete")
    async def delete(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        hook: FromPath[str],
    ) -> Response[Any]:
        endpoint_uuid = uuid_or_404(hook)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.delete_webhook_endpoint", {"endpoint_id": endpoint_uuid}),
            f"{PATH}?done=endpoint_deleted",
        )

    # Deliveries.

    @get("/deliveries/{delivery:str}")
    async def delivery(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        delivery: FromPath[str],
    ) -> Response[Any]:
        """A delivery with every attempt: when, how long, the status code or error, the response's start."""
        delivery_uuid = uuid_or_404(delivery)

        async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
            row = await calls.one("api.get_webhook_delivery", {"delivery_id": delivery_uuid})
            # The HTTP API's shape reads the JSON's dates as dates.
            detail = msgspec.convert(row["get_webhook_delivery"], WebhookDeliveryDetail, strict=False)
            endpoint = await calls.one("api.get_webhook_endpoint", {"endpoint_id": detail.endpoint_id})
            return {"delivery": detail, "endpoint": endpoint}

        return await site.show(request, "webhook_delivery.html", "developers", work)

    @post("/deliveries/{delivery:str}/retry")
    async def retry(
        self,
        request: Request[Any, Any, State],
        site: NamedDependency[ConsoleSite],
        delivery: FromPath[str],
    ) -> Response[Any]:
        delivery_uuid = uuid_or_404(delivery)
        return await site.act(
            request,
            lambda calls, form: calls.one("api.retry_webhook_delivery", {"delivery_id": delivery_uuid}),
            f"{PATH}/deliveries/{delivery_uuid}?done=retried",
        )


async def _confirm(
    request: Request[Any, Any, State], site: ConsoleSite, kind: str, object_id: str, action: str
) -> Response[str]:
    """The confirmation page of rolling or revoking a key, or deleting an endpoint."""
    object_uuid = uuid_or_404(object_id)

    async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
        if kind == "keys":
            thing = await calls.one("api.get_api_key", {"api_key_id": object_uuid})
            label = f"The {thing['kind']} key {thing['redacted']}."
        else:
            thing = await calls.one("api.get_webhook_endpoint", {"endpoint_id": object_uuid})
            label = f"The endpoint {thing['url']}."
        question, button = CONFIRMATIONS[action]
        return {
            "question": question,
            "button": button,
            "label": label,
            "action_path": f"{PATH}/{kind}/{object_uuid}/{action}",
            "back": f"{PATH}/webhooks/{object_uuid}" if kind == "webhooks" else PATH,
            "overlaps": list(ROLL_OVERLAPS) if action == "roll" else [],
        }

    return await site.show(request, "confirm_action.html", "developers", work)


async def _switch(
    request: Request[Any, Any, State], site: ConsoleSite, hook: str, *, enabled: bool
) -> Response[Any]:
    endpoint_uuid = uuid_or_404(hook)
    return await site.act(
        request,
        lambda calls, form: calls.one(
            "api.update_webhook_endpoint", {"endpoint_id": endpoint_uuid, "enabled": enabled}
        ),
        f"{PATH}/webhooks/{endpoint_uuid}?done={'enabled' if enabled else 'disabled'}",
    )


async def _secret_page(
    request: Request[Any, Any, State],
    site: ConsoleSite,
    session_hash: bytes,
    endpoint: dict[str, Any],
    secret: str,
    previous_expires_at: datetime | None,
    done: str | None,
) -> Response[str]:
    """An endpoint's signing secret, on the answer to the POST that made or revealed it."""

    async def work(calls: WebCalls, member: dict[str, Any]) -> dict[str, Any]:
        return {
            "endpoint": endpoint,
            "secret": secret,
            "previous_expires_at": previous_expires_at,
            "done": done,
        }

    context = await site.signed_in(request, session_hash, work)
    return site.page("webhook_secret.html", section="developers", **context)
