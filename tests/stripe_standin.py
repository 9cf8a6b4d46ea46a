"""A small stand-in for the part of Stripe's API the app calls, on loopback.

The app talks to it through the stripe library's own HTTP client (STRIPE_API_BASE), so the
library's request encoding and response parsing are the real ones. Objects belong to the
secret key that made them, as in Stripe, where accounts never see each other's objects: a
request with another key gets Stripe's 404. Every request is recorded for the tests to
assert on (`requests`: method, path, params, key).
"""

import http.server
import itertools
import json
import threading
import time
from urllib.parse import parse_qsl, urlsplit

import stripe

from .servers import free_port


def _nest(pairs):
    """Stripe's form encoding (`a[b][0][c]=v`) back into dicts and lists."""
    root = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node = root
        for part, following in itertools.pairwise(parts):
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return _lists(root)


def _lists(node):
    if isinstance(node, dict):
        if node and all(key.isdigit() for key in node):
            return [_lists(node[key]) for key in sorted(node, key=int)]
        return {key: _lists(value) for key, value in node.items()}
    return node


class StripeStandIn:
    def __init__(self):
        self.requests = []
        self.objects = {}  # id -> (key, object)
        self._ids = itertools.count(1)
        self._server = None
        self.url = ""

    # --- what tests use ---------------------------------------------------------------------

    def calls(self, method, path_start):
        return [r for r in self.requests if r["method"] == method and r["path"].startswith(path_start)]

    def get(self, object_id):
        return self.objects[object_id][1]

    def put(self, key, obj):
        self.objects[obj["id"]] = (key, obj)
        return obj

    def subscription(self, key, *, status="active", price="price_x", customer=None, metadata=None,
                     period_end=None, cancel_at_period_end=False):
        """A Stripe subscription in the account of `key`, shaped as Stripe's 2025+ API versions give it
        (the period on its item)."""
        number = next(self._ids)
        return self.put(key, {
            "id": f"sub_{number}", "object": "subscription", "status": status,
            "customer": customer or f"cus_{number}", "metadata": metadata or {},
            "cancel_at_period_end": cancel_at_period_end, "ended_at": None,
            "items": {"object": "list", "data": [{
                "id": f"si_{number}", "object": "subscription_item", "price": {"id": price, "object": "price"},
                "current_period_end": period_end or int(time.time()) + 30 * 86400,
            }]},
        })

    def complete_checkout(self, session_id, *, status="active"):
        """What paying does: the session gets a customer and a subscription carrying its metadata."""
        key, session = self.objects[session_id]
        price = session["line_items"][0]["price"]
        subscription = self.subscription(
            key, status="trialing" if session.get("trial_period_days") else status, price=price,
            metadata=(session.get("subscription_data") or {}).get("metadata", {}),
        )
        session.update(status="complete", subscription=subscription["id"], customer=subscription["customer"])
        return session, subscription

    # --- the server ---------------------------------------------------------------------------

    def start(self):
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        standin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status, body, content_type="application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", f"req_{next(standin._ids)}")
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = _nest(parse_qsl(body or parts.query, keep_blank_values=True))
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                standin.requests.append({"method": method, "path": parts.path, "params": params, "key": key})
                status, answer = standin.route(method, parts.path, params, key)
                if isinstance(answer, str):
                    return self._answer(status, answer, "text/html; charset=utf-8")
                return self._answer(status, answer)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_DELETE(self):
                self._handle("DELETE")

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- Stripe's routes --------------------------------------------------------------------------

    def _mine(self, key, object_id):
        owner, obj = self.objects.get(object_id, (None, None))
        if obj is None or owner != key:
            return None
        return obj

    @staticmethod
    def _missing(object_id):
        return 404, {"error": {"type": "invalid_request_error", "code": "resource_missing",
                               "message": f"No such object: '{object_id}'", "param": "id"}}

    def route(self, method, path, params, key):
        segments = path.strip("/").split("/")
        if segments[0] == "checkout" and len(segments) == 2:  # the page a fan is sent to
            return 200, f"<!doctype html><title>Stripe Checkout</title><h1>Checkout {segments[1]}</h1>"
        if segments[0] == "portal" and len(segments) == 2:
            return 200, f"<!doctype html><title>Customer Portal</title><h1>Portal {segments[1]}</h1>"
        if not key.startswith("sk_"):
            return 401, {"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}
        number = next(self._ids)
        if method == "POST" and path == "/v1/products":
            return 200, self.put(key, {"id": f"prod_{number}", "object": "product", **params})
        if method == "POST" and path == "/v1/prices":
            recurring = params.get("recurring") or {}
            return 200, self.put(key, {
                "id": f"price_{number}", "object": "price", "active": True, "product": params["product"],
                "unit_amount": int(params["unit_amount"]), "currency": params["currency"],
                "nickname": params.get("nickname"), "metadata": params.get("metadata", {}),
                "recurring": {"interval": recurring.get("interval"), "interval_count": 1},
            })
        if method == "POST" and path == "/v1/checkout/sessions":
            session_id = f"cs_test_{number}"
            trial = (params.get("subscription_data") or {}).get("trial_period_days")
            return 200, self.put(key, {
                **params, "id": session_id, "object": "checkout.session", "status": "open",
                "url": f"{self.url}/checkout/{session_id}", "subscription": None, "customer": params.get("customer"),
                "trial_period_days": int(trial) if trial else None,
            })
        if method == "POST" and path == "/v1/billing_portal/sessions":
            return 200, self.put(key, {"id": f"bps_{number}", "object": "billing_portal.session", **params,
                                       "url": f"{self.url}/portal/bps_{number}"})
        if len(segments) == 3 and segments[1] in ("prices", "subscriptions", "checkout"):
            obj = self._mine(key, segments[2])
            if obj is None:
                return self._missing(segments[2])
            if method == "DELETE" and segments[1] == "subscriptions":
                obj.update(status="canceled", ended_at=int(time.time()))
            return 200, obj
        return 404, {"error": {"type": "invalid_request_error", "message": f"Unrecognized request URL ({path})"}}


def signed(event_type, obj, secret, *, event_id=None, timestamp=None, created=None):
    """(body, Stripe-Signature header) of a webhook event, signed as Stripe signs them (the stripe
    library's own helper computes the header)."""
    body = json.dumps({
        "id": event_id or f"evt_{time.time_ns()}", "object": "event", "type": event_type, "livemode": False,
        "created": created or int(time.time()), "api_version": stripe.api_version, "data": {"object": obj},
    })
    return body, stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
