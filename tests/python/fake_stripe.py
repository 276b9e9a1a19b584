"""A local fake of the parts of Stripe's API Licentric calls, served over real HTTP on 127.0.0.1 (a
threaded http.server), so the Stripe SDK, its retries and its error mapping run as against Stripe.

    fake = FakeStripe().start()        # the fake_stripe fixture does this and stop()
    fake.url                           # LICENTRIC_STRIPE_API_BASE
    fake.put({"id": "sub_…", "object": "subscription", ...})   # any object, by id
    fake.get("sub_…")
    fake.webhook_endpoints             # {we_…: endpoint, with its secret}
    fake.requests                      # [(method, path, params)], params parsed from form and query
    fake.fail("/v1/subscriptions", 500, times=3)   # the next 3 calls under that path fail

Served: POST /v1/webhook_endpoints (answers a new whsec_ secret), DELETE /v1/webhook_endpoints/{id},
GET /v1/subscriptions/{id} (ten items at most, has_more beyond, as Stripe), GET /v1/subscription_items,
GET /v1/checkout/sessions/{id} (line_items only with expand[]=line_items), GET
/v1/checkout/sessions/{id}/line_items, GET /v1/invoice_payments?payment[payment_intent]=…, POST
/v1/billing_portal/sessions (honours Idempotency-Key). An unknown id answers Stripe's 404
resource_missing. Keys: creating a webhook endpoint accepts any sk_/rk_ key not in `revoked` and
makes it known (`keys`); every other call must carry a known key, else 401 as Stripe answers.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

KEY = re.compile(r"^(?:sk|rk)_(?:test|live)_[A-Za-z0-9_]+$")
PAGE = 10  # Stripe embeds ten items of a list in its parent object


def parse_form(text: str) -> dict[str, Any]:
    """Stripe's form encoding (a[b]=1, a[0]=x, a[]=y) as nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        found = re.match(r"^([^\[]+)((?:\[[^\]]*\])*)$", key)
        if not found:
            continue
        path = [found.group(1), *re.findall(r"\[([^\]]*)\]", found.group(2))]
        node = root
        for part in path[:-1]:
            node = node.setdefault(part if part else str(len(node)), {})
        node[path[-1] if path[-1] else str(len(node))] = value
    return _listify(root)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        value = {k: _listify(v) for k, v in value.items()}
        if value and all(k.isdigit() for k in value):
            return [value[k] for k in sorted(value, key=int)]
    return value


def _error(status: int, message: str, type_: str = "invalid_request_error", **extra: Any) -> tuple[int, dict]:
    return status, {"error": {"type": type_, "message": message, **extra}}


def _page(items: list[dict[str, Any]], params: dict[str, Any], url: str) -> dict[str, Any]:
    start = 0
    after = params.get("starting_after")
    if after:
        ids = [item.get("id") for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    limit = int(params.get("limit") or PAGE)
    chunk = items[start : start + limit]
    return {"object": "list", "data": chunk, "has_more": start + limit < len(items), "url": url}


def _embedded(items: Any, url: str) -> dict[str, Any]:
    """A list as Stripe embeds it in its parent: the first ten, has_more beyond."""
    data = items.get("data", []) if isinstance(items, dict) else list(items or [])
    return {"object": "list", "data": data[:PAGE], "has_more": len(data) > PAGE, "url": url}


class FakeStripe:
    running: ClassVar[list[FakeStripe]] = []

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.webhook_endpoints: dict[str, dict[str, Any]] = {}
        self.keys: set[str] = set()
        self.revoked: set[str] = set()
        # Per request: the Stripe-Version and Idempotency-Key headers (None when absent).
        self.stripe_versions: list[str | None] = []
        self._objects: dict[str, dict[str, Any]] = {}
        self._failures: list[list[Any]] = []
        self._portal_sessions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # The test's side.

    def start(self) -> FakeStripe:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = {**parse_form(parts.query), **parse_form(body)}
                status, answer = fake._answer(self.command, parts.path, params, dict(self.headers))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_" + secrets.token_hex(8))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        FakeStripe.running.append(self)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self in FakeStripe.running:
            FakeStripe.running.remove(self)

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._objects[obj["id"]] = copy.deepcopy(obj)
        return obj

    def get(self, id_: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._objects.get(id_)
            return copy.deepcopy(found) if found is not None else None

    def fail(self, path_prefix: str, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.append([path_prefix, status, times])

    def calls(self, method: str, path_prefix: str) -> list[dict[str, Any]]:
        """The params of the requests made so far with this method under this path."""
        return [p for m, path, p in self.requests if m == method and path.startswith(path_prefix)]

    # Stripe's side.

    def _answer(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append((method, path, params))
            self.stripe_versions.append(headers.get("Stripe-Version"))
            for failure in self._failures:
                if failure[2] > 0 and path.startswith(failure[0]):
                    failure[2] -= 1
                    return _error(failure[1], "a failure the test asked for", "api_error")
            scheme, _, key = headers.get("Authorization", "").partition(" ")
            creating = method == "POST" and path == "/v1/webhook_endpoints"
            if scheme != "Bearer" or key in self.revoked or not KEY.match(key):
                return _error(401, f"Invalid API Key provided: {key[:8]}****")
            if not creating and key not in self.keys:
                return _error(401, f"Invalid API Key provided: {key[:8]}****")
            return self._route(method, path, params, headers, key)

    def _list(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        """Products (a list, or a search by name~"term") and a product's prices, newest first."""
        kind = "price" if path == "/v1/prices" else "product"
        items = [
            copy.deepcopy(obj)
            for obj in reversed(self._objects.values())
            if obj.get("object") == kind
            and obj.get("active", True)
            and (kind == "product" or obj.get("product") == params.get("product"))
        ]
        if path.endswith("/search"):
            term = re.search(r'name~"((?:[^"\\]|\\.)*)"', str(params.get("query", "")))
            needle = re.sub(r"\\(.)", r"\1", term.group(1)).lower() if term else ""
            found = [item for item in items if needle in str(item.get("name", "")).lower()]
            start = int(params.get("page") or 0)
            limit = int(params.get("limit") or PAGE)
            more = start + limit < len(found)
            return {
                "object": "search_result",
                "data": found[start : start + limit],
                "has_more": more,
                "next_page": str(start + limit) if more else None,
                "url": path,
            }
        return _page(items, params, path)

    def _missing(self, kind: str, id_: str, param: str = "id") -> tuple[int, dict[str, Any]]:
        return _error(404, f"No such {kind}: '{id_}'", code="resource_missing", param=param)

    def _route(
        self, method: str, path: str, params: dict[str, Any], headers: dict[str, str], key: str
    ) -> tuple[int, dict[str, Any]]:
        livemode = "_live_" in key
        segments = path.strip("/").split("/")
        if method == "POST" and path == "/v1/webhook_endpoints":
            self.keys.add(key)
            endpoint = {
                "id": "we_" + secrets.token_hex(12),
                "object": "webhook_endpoint",
                "url": params.get("url"),
                "enabled_events": params.get("enabled_events") or [],
                "api_version": params.get("api_version"),
                "description": params.get("description"),
                "livemode": livemode,
                "status": "enabled",
                "secret": "whsec_" + secrets.token_hex(16),
            }
            self.webhook_endpoints[endpoint["id"]] = endpoint
            return 200, endpoint
        if method == "DELETE" and segments[:2] == ["v1", "webhook_endpoints"] and len(segments) == 3:
            if self.webhook_endpoints.pop(segments[2], None) is None:
                return self._missing("webhook endpoint", segments[2])
            return 200, {"id": segments[2], "object": "webhook_endpoint", "deleted": True}
        if method == "GET" and segments[:2] == ["v1", "subscriptions"] and len(segments) == 3:
            sub = self._objects.get(segments[2])
            if sub is None or not segments[2].startswith("sub_"):
                return self._missing("subscription", segments[2])
            sub = copy.deepcopy(sub)
            sub["items"] = _embedded(sub.get("items"), f"/v1/subscription_items?subscription={sub['id']}")
            return 200, sub
        if method == "GET" and path == "/v1/subscription_items":
            sub = self._objects.get(str(params.get("subscription")))
            if sub is None:
                return self._missing("subscription", str(params.get("subscription")), "subscription")
            items = sub.get("items")
            data = items.get("data", []) if isinstance(items, dict) else list(items or [])
            return 200, _page(copy.deepcopy(data), params, path)
        if method == "GET" and segments[:3] == ["v1", "checkout", "sessions"] and len(segments) in (4, 5):
            session = self._objects.get(segments[3])
            if session is None or not segments[3].startswith("cs_"):
                return self._missing("checkout.session", segments[3])
            session = copy.deepcopy(session)
            items = session.pop("line_items", None)
            data = items.get("data", []) if isinstance(items, dict) else list(items or [])
            if len(segments) == 5 and segments[4] == "line_items":
                return 200, _page(data, params, path)
            if len(segments) == 5:
                return _error(404, f"Unrecognized request URL (GET: {path})")
            if "line_items" in (params.get("expand") or []):
                session["line_items"] = _embedded(data, f"/v1/checkout/sessions/{session['id']}/line_items")
            return 200, session
        if method == "GET" and path in ("/v1/products", "/v1/products/search", "/v1/prices"):
            return 200, self._list(path, params)
        if method == "GET" and path == "/v1/invoice_payments":
            payment = params.get("payment") or {}
            intent = payment.get("payment_intent") if isinstance(payment, dict) else None
            found = [
                copy.deepcopy(obj)
                for obj in self._objects.values()
                if obj.get("object") == "invoice_payment"
                and (obj.get("payment") or {}).get("payment_intent") == intent
            ]
            return 200, _page(found, params, path)
        if method == "POST" and path == "/v1/billing_portal/sessions":
            customer = str(params.get("customer"))
            if customer not in self._objects:
                return self._missing("customer", customer, "customer")
            idempotency_key = headers.get("Idempotency-Key")
            if idempotency_key and idempotency_key in self._portal_sessions:
                return 200, self._portal_sessions[idempotency_key]
            session_id = "bps_" + secrets.token_hex(12)
            session = {
                "id": session_id,
                "object": "billing_portal.session",
                "customer": customer,
                "livemode": livemode,
                "return_url": params.get("return_url"),
                "url": f"https://billing.stripe.test/p/session/{session_id}",
            }
            if idempotency_key:
                self._portal_sessions[idempotency_key] = session
            return 200, session
        return _error(404, f"Unrecognized request URL ({method}: {path})")


def endpoint_secret(url_suffix: str) -> str | None:
    """The signing secret of the newest webhook endpoint any running fake made for a URL ending so."""
    for fake in reversed(FakeStripe.running):
        for endpoint in reversed(list(fake.webhook_endpoints.values())):
            if str(endpoint.get("url", "")).endswith(url_suffix):
                return endpoint["secret"]
    return None
