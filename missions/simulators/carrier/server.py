"""A simulated autonomous carrier: a real HTTP server implementing docs/carrier-api.yaml.

Run it with ``python manage.py run_carrier_sim --port 8100`` or, in tests,
``CarrierSimulator(SimConfig(...)).start()`` on a free port. It issues its own
OAuth2 client-credentials tokens, dedupes ``POST /tenders`` on the
Idempotency-Key, answers by policy (synchronously in the submit response or
later through the console's partner API or a signed Standard Webhook), and
takes injected faults at run time through ``POST /_faults`` or ``faults_set()``.
``POST /_tenders`` (or ``tenders_restore()``) puts tenders back in its books, so
the demo seed and a restarted simulator agree with the console (decision 0018).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
from opentelemetry.trace import SpanKind

from missions.simulators.carrier.emitter import emission_start
from missions.simulators.carrier.state import STATUS_FOR, Faults, SimConfig, SimState, SimTender, utc_now_iso
from missions.tendering.carrier_contract import contract_schema_errors
from tms_console import tracing

log = logging.getLogger(__name__)

TENDER_PATH = re.compile(r"^/tenders/(?P<ref>[^/]+)$")
CANCEL_PATH = re.compile(r"^/tenders/(?P<ref>[^/]+)/cancel$")
PING_PATH = re.compile(r"^/vehicles/(?P<id>[^/]+)/ping$")
TENANT_PATH = re.compile(r"^/carriers/(?P<slug>[a-z0-9][a-z0-9-]{0,59})(?P<rest>/.*)$")
MAX_BODY_BYTES = 256 * 1024


def _route_name(path: str) -> str:
    """A path with its ids replaced, for span names of bounded cardinality."""
    return re.sub(r"^/(tenders|vehicles)/[^/]+", r"/\1/{id}", path)


def _uuid_or(value: str | None, default: str) -> str:
    """``value`` when it is a UUID (the header's form), else ``default``: an answer echoes only a valid id."""
    try:
        return str(uuid.UUID(value or ""))
    except ValueError:
        return default


class _Drop(Exception):
    """Close the connection without answering (refused / timed-out fault)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    tenant: str = ""
    # This request's entry in the simulator's request log; the status it was answered with is added to it.
    logged: dict[str, Any] | None = None

    # -- plumbing ------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sim %s", format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        # The carrier's side of the trace: a server span continuing the caller's traceparent.
        path = self.path.split("?", 1)[0]
        tenant_match = TENANT_PATH.match(path)
        span = tracing.span_from(
            f"carrier-sim {method} {_route_name(tenant_match['rest'] if tenant_match else path)}",
            self.headers.get("traceparent"),
            kind=SpanKind.SERVER,
        )
        with self.server.handling(), span:
            self._dispatch_one(method)

    def _dispatch_one(self, method: str) -> None:
        sim = self.server.sim
        path = self.path.split("?", 1)[0]
        # /carriers/<slug>/... addresses one of several carriers served by this process.
        self.tenant = sim.state.config.client_id
        tenant_match = TENANT_PATH.match(path)
        if tenant_match:
            self.tenant, path = tenant_match["slug"], tenant_match["rest"]
        try:
            body = self._read_body()
            if path in ("/_faults", "/_stats", "/_tenders", "/_sandbox"):
                self._admin(method, path, body)
                return
            self.logged = sim.log_request(method=method, path=path, headers=self.headers, tenant=self.tenant)
            self._apply_transport_faults()
            if path == "/oauth/token" and method == "POST":
                self._token(body)
                return
            if not self._authorized():
                self._problem(
                    401,
                    "Unauthorized",
                    "A valid bearer token for this carrier is required.",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
                return
            if sim.state.fault_take_error(self.tenant):
                self._problem(503, "Service Unavailable", "Injected error burst.", headers={"Retry-After": "1"})
                return
            if sim.state.faults_for(self.tenant).malformed:
                self._send(200, {"ref": 42, "status": "maybe", "offer": "yes"})
                return
            if sim.state.faults_for(self.tenant).not_json:
                self._send(200, b"<html><body>502 Bad Gateway</body></html>", content_type="application/json")
                return
            self._route(method, path, body)
        except _Drop:
            self._drop()
        except Exception:  # a simulator bug must still answer, or the client waits for nothing
            log.exception("simulator error")
            self._problem(500, "Internal Server Error", "Simulator error.")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise _Drop
        return self.rfile.read(length) if length else b""

    def _apply_transport_faults(self) -> None:
        faults = self.server.sim.state.faults_for(self.tenant)
        if faults.refuse:
            raise _Drop
        if faults.latency_ms:
            self.server.stopping.wait(faults.latency_ms / 1000.0)
        if faults.timeout:
            self.server.stopping.wait(self.server.sim.state.config.timeout_hold_seconds)
            raise _Drop

    def _drop(self) -> None:
        self.close_connection = True
        try:
            # SO_LINGER 0: the close sends a reset, like a refused or killed peer.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _send(
        self, status: int, body: Any, *, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        if isinstance(body, dict) and "ref" in body and "tender_id" in body and self._faults().wrong_schema:
            body = {k: v for k, v in body.items() if k != "updated_at"}  # a TenderState without a required field
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        if self.logged is not None:
            self.logged["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        correlation = self.headers.get("X-Correlation-ID")
        if correlation:
            self.send_header("X-Correlation-ID", correlation)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(raw)

    def _faults(self) -> Faults:
        return self.server.sim.state.faults_for(getattr(self, "tenant", self.server.sim.state.config.client_id))

    def _problem(self, status: int, title: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        self._send(
            status,
            {"type": "about:blank", "title": title, "status": status, "detail": detail},
            content_type="application/problem+json",
            headers=headers,
        )

    def _json(self, body: bytes) -> Any:
        try:
            return json.loads(body or b"null")
        except ValueError:
            return None

    # -- auth ------------------------------------------------------------------

    def _token(self, body: bytes) -> None:
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                decoded = base64.b64decode(auth[6:]).decode()
            except ValueError:
                decoded = ""
            user, _, password = decoded.partition(":")
            client_id, client_secret = unquote(user), unquote(password)
        if form.get("grant_type") != "client_credentials":
            self._send(400, {"error": "unsupported_grant_type"})
            return
        if not self.server.sim.state.client_check(client_id, client_secret):
            self._send(
                401,
                {"error": "invalid_client", "error_description": "Unknown client or wrong secret."},
                headers={"WWW-Authenticate": 'Basic realm="carrier"'},
            )
            return
        token, ttl = self.server.sim.state.token_issue(client_id)
        self._send(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": "tenders vehicles"},
            headers={"Cache-Control": "no-store"},
        )

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return False
        if self._faults().tokens_unchecked:
            return True  # the broken mode: whatever follows "Bearer " passes
        # A token is good only for the carrier it was issued to.
        return self.server.sim.state.token_client(auth[7:].strip()) == self.tenant

    # -- API ---------------------------------------------------------------------

    def _route(self, method: str, path: str, body: bytes) -> None:
        if path == "/health" and method == "GET":
            self._send(200, {"status": "ok"})
            return
        if path == "/tenders" and method == "POST":
            self._tender_submit(body)
            return
        match = TENDER_PATH.match(path)
        if match and method == "GET":
            tender = self.server.sim.state.tenders.get(unquote(match["ref"]))
            if tender is None or tender.tenant != self.tenant:
                self._problem(404, "Not Found", "No such tender.")
            elif tender.gone:
                self._problem(410, "Gone", "The carrier withdrew this tender; it will not be answered.")
            else:
                self._send(200, tender.public())
            return
        match = CANCEL_PATH.match(path)
        if match and method == "POST":
            self._tender_cancel(unquote(match["ref"]), body)
            return
        match = PING_PATH.match(path)
        if match and method == "GET":
            self._vehicle_ping(unquote(match["id"]))
            return
        if path == "/sandbox/emit" and method == "POST":
            self._sandbox_emit(body)
            return
        self._problem(404, "Not Found", f"No route for {method} {path}.")

    def _keyed(self, raw: bytes, schema: str) -> tuple[str, Any] | None:
        """The Idempotency-Key and the body of a mutating call, or None after answering 400."""
        key = self.headers.get("Idempotency-Key", "").strip()
        if not key:
            self._problem(400, "Bad Request", "The Idempotency-Key header is required.")
            return None
        body = self._json(raw)
        errors = contract_schema_errors(schema=schema, body=body)
        if errors:
            self._problem(400, "Bad Request", "; ".join(errors)[:500])
            return None
        return key, body

    def _sandbox_emit(self, raw: bytes) -> None:
        state = self.server.sim.state
        keyed = self._keyed(raw, "SandboxEmit")
        if keyed is None:
            return
        key, body = keyed
        with state.lock:
            seen = state.emits.get((self.tenant, key))
            if seen is None:
                state.emits[(self.tenant, key)] = body["run"]
                credentials, faults = state.sandbox_for(self.tenant), state.faults_for(self.tenant)
        if seen is not None and seen != body["run"]:
            self._problem(422, "Unprocessable Content", "This Idempotency-Key was used for another run.")
            return
        if seen is None:  # a resend of the same emit starts nothing new
            emission_start(body, credentials=credentials, faults=faults, record=state.emissions)
        self._send(202, {"run": body["run"]})

    def _admin_sandbox(self, method: str, raw: bytes) -> None:
        """The sandbox's credentials for the console's API, as the carrier's staff set them from the portal."""
        state = self.server.sim.state
        credentials = state.sandbox_for(self.tenant)
        if method == "POST":
            body = self._json(raw)
            try:
                if not isinstance(body, dict):
                    raise ValueError("Send a JSON object: client_id, client_secret, webhook_secret, telemetry_rate_hz.")
                with state.lock:
                    credentials.update(body)
            except ValueError as exc:
                self._problem(400, "Bad Request", str(exc))
                return
        elif method != "GET":
            self._problem(405, "Method Not Allowed", "Use GET or POST.")
            return
        self._send(
            200,
            {
                "client_id": credentials.client_id,
                "client_secret_set": bool(credentials.client_secret),
                "webhook_secret_set": bool(credentials.webhook_secret),
                "telemetry_rate_hz": credentials.telemetry_rate_hz,
            },
        )

    def _tender_submit(self, raw: bytes) -> None:
        sim = self.server.sim
        state = sim.state
        keyed = self._keyed(raw, "TenderSubmit")
        if keyed is None:
            return
        key, body = keyed
        fingerprint = state.fingerprint(body)
        scope = (self.tenant, key)
        with state.lock:
            seen = state.keys.get(scope)
            if seen is not None and state.faults_for(self.tenant).non_idempotent and seen[0] == fingerprint:
                seen = None  # the broken mode: the resend becomes a second tender
            if seen is not None:
                seen_fingerprint, ref = seen
                if seen_fingerprint != fingerprint:
                    self._problem(
                        422, "Unprocessable Content", "This Idempotency-Key was used with a different request body."
                    )
                elif ref is None:
                    self._problem(409, "Conflict", "A request with this Idempotency-Key is still in progress.")
                else:
                    self._send(200, state.tenders[ref].public())
                return
            state.keys[scope] = (fingerprint, None)
            ref = f"SIM-{len(state.tenders) + 1:05d}-{uuid.uuid4().hex[:6]}"
            tender = SimTender(
                traceparent=tracing.current_traceparent(),
                ref=ref,
                tender_id=body["tender_id"],
                request=body,
                tenant=self.tenant,
                correlation_id=_uuid_or(self.headers.get("X-Correlation-ID"), body["correlation_id"]),
            )
            if state.config.answer == "sync":
                offer = state.decide(body, tenant=self.tenant)
                tender.status, tender.offer = STATUS_FOR[offer["kind"]], offer
            elif state.config.answer == "async":
                tender.decided = state.decide(body, tenant=self.tenant)
            public = tender.public()
            if state.faults_for(self.tenant).lose_tenders:
                # Acknowledged, then lost: neither the tender nor its key is kept.
                del state.keys[scope]
                self._send(201, public, headers={"Location": f"/tenders/{ref}"})
                return
            state.tenders[ref] = tender
            state.keys[scope] = (fingerprint, ref)
        if tender.decided is not None:
            sim.schedule_answer(ref)
        self._send(201, public, headers={"Location": f"/tenders/{ref}"})

    def _tender_cancel(self, ref: str, raw: bytes) -> None:
        state = self.server.sim.state
        key = self.headers.get("Idempotency-Key", "").strip()
        if not key:
            self._problem(400, "Bad Request", "The Idempotency-Key header is required.")
            return
        body = self._json(raw)
        if not isinstance(body, dict) or not isinstance(body.get("reason"), str) or not body["reason"].strip():
            self._problem(400, "Bad Request", "A reason is required.")
            return
        with state.lock:
            tender = state.tenders.get(ref)
            if tender is None or tender.tenant != self.tenant:
                self._problem(404, "Not Found", "No such tender.")
                return
            if tender.status in ("pending", "countered"):
                tender.status, tender.decided, tender.updated_at = "cancelled", None, utc_now_iso()
                state.cancel_keys[(self.tenant, key)] = ref
            elif tender.status != "cancelled":
                self._problem(409, "Conflict", f"The tender is already {tender.status}.")
                return
            public = tender.public()
        self._send(200, public)

    def _vehicle_ping(self, vehicle_id: str) -> None:
        if vehicle_id not in self.server.sim.state.vehicles_for(self.tenant):
            self._problem(404, "Not Found", "No such vehicle.")
            return
        self._send(
            200,
            {
                "vehicle_id": vehicle_id,
                "channel": "satellite",
                "autonomy_mode": "autonomous",
                "safe_hold": False,
                "position": {
                    "lat": 32.7767,
                    "lon": -96.797,
                    "recorded_at": utc_now_iso(),
                    "speed_kph": 0.0,
                    "heading_deg": None,
                },
            },
        )

    # -- admin -----------------------------------------------------------------

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        state = self.server.sim.state
        if path == "/_stats" and method == "GET":
            self._send(
                200,
                {
                    "tenders": state.tender_count(),
                    "faults": state.faults_public(self.tenant),
                    "deliveries": len(state.deliveries),
                },
            )
            return
        if path == "/_faults" and method == "GET":
            self._send(200, state.faults_public(self.tenant))
            return
        if path == "/_tenders" and method == "POST":
            # Restore the books (the demo seed hands over the tenders it marked sent).
            body = self._json(raw)
            entries = body.get("tenders") if isinstance(body, dict) else None
            try:
                if not isinstance(entries, list):
                    raise ValueError('Send {"tenders": [{"ref", "idempotency_key", "request"}, ...]}.')
                for entry in entries:
                    if not all(
                        isinstance(entry.get(k), str) and 0 < len(entry[k]) <= 120 for k in ("ref", "idempotency_key")
                    ):
                        raise ValueError("Each tender needs a ref and an idempotency_key (1 to 120 characters).")
                    errors = contract_schema_errors(schema="TenderSubmit", body=entry.get("request"))
                    if errors:
                        raise ValueError("; ".join(errors)[:500])
                restored = state.tenders_restore(entries, tenant=self.tenant)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                self._problem(400, "Bad Request", str(exc) or "Malformed tender entry.")
                return
            self._send(200, {"restored": restored, "tenders": state.tender_count()})
            return
        if path == "/_sandbox":
            self._admin_sandbox(method, raw)
            return
        if path == "/_faults" and method == "POST":
            body = self._json(raw)
            if not isinstance(body, dict):
                self._problem(400, "Bad Request", "Send a JSON object of faults.")
                return
            try:
                with state.lock:
                    state.faults_for(self.tenant).update(body)
            except (TypeError, ValueError) as exc:
                self._problem(400, "Bad Request", str(exc))
                return
            self._send(200, state.faults_public(self.tenant))
            return
        self._problem(405, "Method Not Allowed", "Use GET or POST.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: CarrierSimulator) -> None:
        self.sim = sim
        self.stopping = threading.Event()
        # Requests between their request line and their answer (an idle kept-alive connection is not one).
        self.busy = 0
        self.idle = threading.Condition()
        super().__init__(address, _Handler)

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        with self.idle:
            self.busy += 1
        try:
            yield
        finally:
            with self.idle:
                self.busy -= 1
                self.idle.notify_all()

    def wait_idle(self, seconds: float) -> int:
        """Wait up to ``seconds`` for the requests being handled to be answered; return how many are left."""
        with self.idle:
            self.idle.wait_for(lambda: self.busy == 0, timeout=seconds)
            return self.busy


class CarrierSimulator:
    """The simulated carrier; ``start()`` serves it on a background thread (port 0: any free port)."""

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = SimState(config or SimConfig())
        self._server = _Server((host, port), self)
        self.scheme = "http"
        config = self.state.config
        if config.tls_cert:
            tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            tls.load_cert_chain(config.tls_cert, config.tls_key or None)
            if config.client_ca:
                tls.load_verify_locations(config.client_ca)
                tls.verify_mode = ssl.CERT_REQUIRED
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []
        self._console_token: tuple[str, float] | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._server.server_address[0])
        return f"{self.scheme}://{host}:{self.port}"

    def start(self) -> CarrierSimulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="carrier-sim", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self, *, drain_seconds: float = 0.0) -> int:
        """Stop serving: no new connections, pending async answers cancelled, injected delays cut short.

        With ``drain_seconds`` the requests being handled get that long to be answered first;
        returns how many were still unanswered.
        """
        self._server.stopping.set()
        for timer in self._timers:
            timer.cancel()
        self._server.shutdown()
        self._server.socket.close()  # new connections are refused from here on
        left = self._server.wait_idle(drain_seconds) if drain_seconds > 0 else 0
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return left

    def __enter__(self) -> CarrierSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- in-process control (tests) ----------------------------------------------

    def faults_set(self, tenant: str | None = None, **faults: Any) -> None:
        with self.state.lock:
            self.state.faults_for(tenant or self.state.config.client_id).update(faults)

    def faults_clear(self, tenant: str | None = None) -> None:
        with self.state.lock:
            self.state.faults_for(tenant or self.state.config.client_id).update(
                {
                    "latency_ms": 0,
                    "timeout": False,
                    "error_burst": 0,
                    "malformed": False,
                    "not_json": False,
                    "refuse": False,
                    "lose_tenders": False,
                }
            )

    def sandbox_set(self, tenant: str | None = None, **credentials: Any) -> None:
        """Configure the sandbox with its credentials for the console's API (as its staff would from the portal)."""
        with self.state.lock:
            self.state.sandbox_for(tenant or self.state.config.client_id).update(credentials)

    def policy_set(self, policy: dict[str, float]) -> None:
        with self.state.lock:
            self.state.config.policy = dict(policy)

    def tender_count(self) -> int:
        return self.state.tender_count()

    def tender_by_id(self, tender_id: int) -> SimTender | None:
        return self.state.tender_by_id(tender_id)

    def tenders_restore(self, entries: list[dict[str, Any]], *, tenant: str | None = None) -> int:
        return self.state.tenders_restore(entries, tenant=tenant or self.state.config.client_id)

    def tenders_forget(self) -> None:
        self.state.tenders_forget()

    def tender_withdraw(self, ref: str) -> None:
        self.state.tender_withdraw(ref)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.requests)

    def requests_since(self, index: int) -> tuple[list[dict[str, Any]], int]:
        """The requests logged from position ``index`` on, and the position after the last of them."""
        with self.state.lock:
            return self.state.requests[index:], len(self.state.requests)

    def log_request(self, *, method: str, path: str, headers: Any, tenant: str) -> dict[str, Any]:
        """Log a request as it arrives; its answer's status is added to the entry when it is sent."""
        entry = {
            "method": method,
            "path": path,
            "tenant": tenant,
            "idempotency_key": headers.get("Idempotency-Key"),
            "correlation_id": headers.get("X-Correlation-ID"),
            "traceparent": headers.get("traceparent"),
            "at": time.time(),
            "status": None,
        }
        with self.state.lock:
            self.state.requests.append(entry)
        return entry

    # -- asynchronous answers ------------------------------------------------------

    def schedule_answer(self, ref: str) -> None:
        timer = threading.Timer(self.state.config.delay_ms / 1000.0, self.answer_now, args=(ref,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def answer_now(self, ref: str) -> dict[str, Any] | None:
        """Make a decided async answer visible and deliver it; returns the delivery record."""
        with self.state.lock:
            tender = self.state.tenders.get(ref)
            if tender is None or tender.decided is None:
                return None  # cancelled meanwhile
            offer, tender.decided = tender.decided, None
            tender.status, tender.offer, tender.updated_at = STATUS_FOR[offer["kind"]], offer, utc_now_iso()
        # Later, from a timer: the answer continues the trace the tender arrived in.
        with tracing.span_from(f"carrier-sim answer {offer['kind']}", tender.traceparent, kind=SpanKind.PRODUCER):
            record = self._deliver(tender, offer)
        with self.state.lock:
            self.state.deliveries.append(record)
        return record

    def _deliver(self, tender: SimTender, offer: dict[str, Any]) -> dict[str, Any]:
        config = self.state.config
        callback = tender.request.get("callback", {})
        record: dict[str, Any] = {"ref": tender.ref, "tender_id": tender.tender_id, "kind": offer["kind"]}
        try:
            if config.console_client_id:
                record.update(self._deliver_partner_api(tender, offer, callback.get("offers_url", "")))
            elif config.webhook_secret and callback.get("webhook_url"):
                record.update(self._deliver_webhook(tender, offer, callback["webhook_url"]))
            else:
                record["channel"] = "poll-only"
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        return record

    def _console_bearer(self, client: httpx.Client) -> str:
        config = self.state.config
        if self._console_token and self._console_token[1] > time.monotonic():
            return self._console_token[0]
        token_url = config.console_token_url or f"{config.console_url.rstrip('/')}/oauth2/token"
        response = client.post(
            token_url,
            data={"grant_type": "client_credentials"},
            auth=(config.console_client_id, config.console_client_secret),
        )
        response.raise_for_status()
        body = response.json()
        self._console_token = (body["access_token"], time.monotonic() + int(body.get("expires_in", 60)) - 10)
        return str(body["access_token"])

    @staticmethod
    def _offer_payload(tender: SimTender, offer: dict[str, Any]) -> dict[str, Any]:
        """The console's partner-API offer body (OfferRequest) for an answer."""
        payload = {
            "kind": offer["kind"],
            "price_usd": offer.get("price_usd"),
            "vehicle_external_id": offer.get("vehicle_id") or "",
            "route_id": offer.get("route_id") or "",
            "eta": offer.get("eta"),
            "autonomy_mode": offer.get("autonomy_mode"),
            "reason": offer.get("reason") or "",
            "metadata": {"carrier_ref": tender.ref},
        }
        return {k: v for k, v in payload.items() if v is not None}

    def _deliver_partner_api(self, tender: SimTender, offer: dict[str, Any], url: str) -> dict[str, Any]:
        payload = self._offer_payload(tender, offer)
        with httpx.Client(timeout=10.0) as client:
            last: httpx.Response | None = None
            for attempt in range(3):
                headers = {
                    "Authorization": f"Bearer {self._console_bearer(client)}",
                    # One key per answer: a redelivery is deduped by the console.
                    "Idempotency-Key": f"{tender.ref}-answer",
                    "X-Correlation-ID": tender.correlation_id,
                }
                last = client.post(url, json=payload, headers=headers)
                if last.status_code == 401:
                    self._console_token = None
                if last.status_code < 500 and last.status_code != 401:
                    break
                time.sleep(0.2 * (attempt + 1))
            assert last is not None
            return {"channel": "partner-api", "status_code": last.status_code}

    def _deliver_webhook(self, tender: SimTender, offer: dict[str, Any], url: str) -> dict[str, Any]:
        from datetime import UTC, datetime

        from standardwebhooks.webhooks import Webhook

        message_id = f"msg_{tender.ref}_answer"
        now = datetime.now(UTC)
        payload = json.dumps(
            {
                "type": "offer",
                "timestamp": now.isoformat(),
                "data": {"tender_id": tender.tender_id, **self._offer_payload(tender, offer)},
            }
        )
        secret = self.state.config.webhook_secret
        signature = Webhook(secret).sign(message_id, now, payload)
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            "Content-Type": "application/json",
        }
        with httpx.Client(timeout=10.0) as client:
            response = client.post(url, content=payload, headers=headers)
        return {"channel": "webhook", "status_code": response.status_code}
