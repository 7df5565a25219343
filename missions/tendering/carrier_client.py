"""Outbound HTTP client for carrier APIs (the contract in docs/carrier-api.yaml).

One ``CarrierClient`` per carrier and task run. Every attempt goes through the
carrier's circuit breaker and bulkhead (``missions.tendering.circuit``), is recorded as
an ``OutboundCall`` row, and its response is validated against the contract;
a response that does not match counts as a failure and is never returned.

Retries: only timeouts, connection errors, 5xx and 429, at most
``CARRIER_RETRY_ATTEMPTS`` attempts with exponential backoff and full jitter
(sleep uniformly in [0, min(cap, base * 2**n)]), always with the same
Idempotency-Key so the carrier can dedupe.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any
from urllib.parse import quote

import httpx
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from jsonschema.exceptions import ValidationError as SchemaError

from missions.models import Carrier, Tender
from missions.models.outbound import CONTRACT_VIOLATION, OutboundCall
from missions.tendering import circuit
from missions.tendering.carrier_contract import contract_response_pointer, contract_validate
from tms_console.logging import correlation_id_var

log = logging.getLogger(__name__)

# Refresh a cached token this long before the carrier says it expires.
TOKEN_EXPIRY_MARGIN_SECONDS = 30


# --- Errors -------------------------------------------------------------------


class CarrierError(Exception):
    """A call to a carrier failed; ``retryable`` says whether another attempt may help.

    ``may_have_landed``: an attempt of the call may have reached the carrier and been acted on although
    no usable answer came back (a read timeout, a connection lost after sending, a 5xx, an answer outside
    the contract). A submit that failed so leaves the tender's fate at the carrier unknown.
    """

    retryable = False

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.may_have_landed = False


class CarrierUnavailable(CarrierError):
    """The breaker or bulkhead refused the call; nothing was sent."""


class CarrierBusy(CarrierUnavailable):
    """The carrier's bulkhead is full: try again shortly (not a failure of the carrier)."""


class CarrierTimeout(CarrierError):
    retryable = True


class CarrierConnectError(CarrierError):
    retryable = True


class CarrierServerError(CarrierError):
    retryable = True


class CarrierMalformed(CarrierError):
    """The carrier answered something the contract does not allow (its message starts with CONTRACT_VIOLATION)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(f"{CONTRACT_VIOLATION}: {message}", status_code=status_code)


class CarrierClientError(CarrierError):
    """The carrier refused our request (4xx): the carrier is up, the request is wrong."""


class CarrierNotFound(CarrierClientError):
    """404: the carrier does not know what we asked about (a tender it never received, or lost)."""


class CarrierGone(CarrierClientError):
    """410: the carrier withdrew the tender and will not answer it."""


# --- Client -------------------------------------------------------------------


def _backoff_seconds(attempt: int) -> float:
    base = float(getattr(settings, "CARRIER_RETRY_BASE_SECONDS", 0.2))
    cap = float(getattr(settings, "CARRIER_RETRY_CAP_SECONDS", 5.0))
    return random.uniform(0, min(cap, base * (2 ** (attempt - 1))))


# A TLS context loads the system's CA store, tens of milliseconds a time: one is kept per configuration
# and made again when a file it was built from changes (a rotated client certificate, a new CA bundle).
_TLS_CONTEXTS: dict[tuple[tuple[str, int, int] | None, ...], ssl.SSLContext] = {}
_TLS_LOCK = threading.Lock()
_TLS_KEPT = 64


def _file_stamp(path: str) -> tuple[str, int, int] | None:
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return (path, -1, -1)  # the load below raises, and nothing is kept
    return (path, stat.st_mtime_ns, stat.st_size)


def tls_context(*, ca_bundle: str, cert: str, key: str) -> ssl.SSLContext:
    """The client TLS context for a configuration: the system store, plus ``ca_bundle`` (carriers on a private
    PKI), presenting ``cert``/``key`` when set (mutual TLS; RFC 8705 certificate-bound tokens need it too)."""
    stamp = (_file_stamp(ca_bundle), _file_stamp(cert), _file_stamp(key))
    with _TLS_LOCK:
        kept = _TLS_CONTEXTS.get(stamp)
    if kept is not None:
        return kept
    tls = ssl.create_default_context()
    if ca_bundle:
        tls.load_verify_locations(ca_bundle)
    if cert:
        tls.load_cert_chain(cert, key or None)
    with _TLS_LOCK:
        if len(_TLS_CONTEXTS) >= _TLS_KEPT:
            _TLS_CONTEXTS.clear()
        _TLS_CONTEXTS[stamp] = tls
    return tls


class CarrierClient:
    """Calls one carrier's API; see the module docstring for the guarantees."""

    def __init__(
        self,
        carrier: Carrier,
        *,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not carrier.api_base_url:
            raise ValueError(f"{carrier.slug} has no API base URL (it is a pull carrier).")
        self.carrier = carrier
        self.base_url = carrier.api_base_url.rstrip("/")
        self.token_url = carrier.api_token_url or f"{self.base_url}/oauth/token"
        self.attempts = max(1, int(getattr(settings, "CARRIER_RETRY_ATTEMPTS", 3)))
        self._sleep = sleep
        timeout = float(carrier.api_timeout_seconds)
        tls = tls_context(
            ca_bundle=str(getattr(settings, "CARRIER_CA_BUNDLE", "") or ""),
            cert=carrier.api_client_cert_path,
            key=carrier.api_client_key_path,
        )
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=timeout),
            verify=tls,
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "tms-console/1.0", "Accept": "application/json"},
        )

    # -- Operations of the contract ------------------------------------------

    def tender_submit(self, tender: Tender) -> dict[str, Any]:
        body = tender_submit_body(tender)
        return self._call(
            "tender_submit", "POST", "/tenders", json_body=body, tender=tender, mutating=True, ok_status=(200, 201)
        )

    def tender_resend(self, tender: Tender) -> dict[str, Any]:
        """Submit the tender again, same body and Idempotency-Key, after the carrier said it does not know it."""
        body = tender_submit_body(tender)
        return self._call(
            "tender_resend", "POST", "/tenders", json_body=body, tender=tender, mutating=True, ok_status=(200, 201)
        )

    def tender_status(self, tender: Tender) -> dict[str, Any]:
        return self._call(
            "tender_status", "GET", "/tenders/{ref}", ref=tender.external_ref, tender=tender, ok_status=(200,)
        )

    def tender_cancel(self, tender: Tender, *, reason: str) -> dict[str, Any]:
        return self._call(
            "tender_cancel",
            "POST",
            "/tenders/{ref}/cancel",
            ref=tender.external_ref,
            json_body={"reason": (reason or "cancelled")[:300]},
            tender=tender,
            mutating=True,
            ok_status=(200,),
        )

    def vehicle_ping(self, vehicle_external_id: str) -> dict[str, Any]:
        return self._call("vehicle_ping", "GET", "/vehicles/{id}/ping", ref=vehicle_external_id, ok_status=(200,))

    def health(self) -> dict[str, Any]:
        return self._call("health", "GET", "/health", ok_status=(200,))

    # -- Machinery -------------------------------------------------------------

    def _call(
        self,
        operation: str,
        method: str,
        template: str,
        *,
        ok_status: tuple[int, ...],
        ref: str = "",
        json_body: dict[str, Any] | None = None,
        tender: Tender | None = None,
        mutating: bool = False,
    ) -> dict[str, Any]:
        quoted = quote(ref, safe="")
        path = template.replace("{ref}", quoted).replace("{id}", quoted)
        correlation = str(tender.correlation_id) if tender is not None else (correlation_id_var.get() or "")
        headers: dict[str, str] = {}
        if correlation:
            headers["X-Correlation-ID"] = correlation
        if mutating:
            if tender is None:
                raise ValueError("A mutating call needs the tender whose Idempotency-Key it carries.")
            headers["Idempotency-Key"] = str(tender.idempotency_key)
        last_error: CarrierError | None = None
        landed = False  # an earlier attempt may have reached the carrier
        for attempt in range(1, self.attempts + 1):
            try:
                permit = circuit.call_acquire(carrier_id=self.carrier.pk)
            except circuit.CallRefused as exc:
                busy = isinstance(exc, circuit.BulkheadFullError)
                refused = CarrierBusy(str(exc)) if busy else CarrierUnavailable(str(exc))
                refused.may_have_landed = landed
                raise refused from exc
            ok_for_breaker = False
            reason = ""
            try:
                body = self._attempt(
                    operation,
                    method,
                    template,
                    path,
                    ok_status=ok_status,
                    headers=headers,
                    json_body=json_body,
                    tender=tender,
                    attempt=attempt,
                    correlation=correlation,
                )
                ok_for_breaker = True
                return body
            except CarrierClientError:
                ok_for_breaker = True  # the carrier answered; the request was the problem
                raise
            except CarrierError as exc:
                reason = f"{operation}: {exc}"
                last_error = exc
                landed = exc.may_have_landed = landed or exc.may_have_landed
                if not exc.retryable or attempt == self.attempts:
                    raise
            finally:
                circuit.call_release(permit=permit, ok=ok_for_breaker, reason=reason)
            self._sleep(_backoff_seconds(attempt))
        raise last_error or CarrierError("no attempt made")  # pragma: no cover - the loop returns or raises

    def _attempt(
        self,
        operation: str,
        method: str,
        template: str,
        path: str,
        *,
        ok_status: tuple[int, ...],
        headers: dict[str, str],
        json_body: dict[str, Any] | None,
        tender: Tender | None,
        attempt: int,
        correlation: str,
    ) -> dict[str, Any]:
        """One attempt (with one token refresh on 401); records itself as an OutboundCall."""
        url = f"{self.base_url}{path}"
        for refreshed in (False, True):
            token = self._token(force=refreshed, correlation=correlation)
            started, t0 = timezone.now(), time.perf_counter()
            status: int | None = None

            def record(status: int | None, error: str | None = None, *, started: Any = started, t0: float = t0) -> None:
                # One OutboundCall per attempt: a success (no error) or the reason it failed.
                self._record(
                    operation, method, url, started, t0, attempt, status,
                    ok=error is None, error=error or "", tender=tender, headers=headers,
                )  # fmt: skip

            try:
                response = self._http.request(
                    method, url, json=json_body, headers={**headers, "Authorization": f"Bearer {token}"}
                )
                status = response.status_code
                if status == 401 and not refreshed:
                    record(status, "401: token refused, refreshing")
                    continue
                body = self._checked(response, template=template, method=method, ok_status=ok_status)
            except CarrierError as exc:
                record(status, str(exc))
                # An answer came back that was not a usable one; a refusal (4xx) booked nothing.
                exc.may_have_landed = status is not None and not isinstance(exc, CarrierClientError)
                raise
            except httpx.TimeoutException as exc:
                error: CarrierError = CarrierTimeout(f"timed out ({type(exc).__name__})")
                record(None, str(error))
                # Timed out connecting or waiting for a pooled connection: nothing was sent.
                error.may_have_landed = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                raise error from exc
            except httpx.HTTPError as exc:
                error = CarrierConnectError(f"connection failed: {type(exc).__name__}: {exc}"[:300])
                record(None, str(error))
                error.may_have_landed = not isinstance(exc, httpx.ConnectError)  # refused: nothing was sent
                raise error from exc
            record(status)
            return body
        raise CarrierClientError("token refused twice", status_code=401)  # pragma: no cover

    def _checked(
        self, response: httpx.Response, *, template: str, method: str, ok_status: tuple[int, ...]
    ) -> dict[str, Any]:
        status = response.status_code
        if status >= 500:
            raise CarrierServerError(f"HTTP {status}", status_code=status)
        if status == 429:
            raise CarrierServerError("HTTP 429 (rate limited)", status_code=status)
        pointer = contract_response_pointer(path=template, method=method, status=status)
        if pointer is None:
            raise CarrierMalformed(f"HTTP {status} is not in the contract for {method} {template}", status_code=status)
        try:
            body = response.json()
        except ValueError as exc:
            raise CarrierMalformed(f"HTTP {status} with a body that is not JSON", status_code=status) from exc
        try:
            contract_validate(pointer=pointer, body=body)
        except SchemaError as exc:
            where = "/".join(map(str, exc.absolute_path)) or "(root)"
            raise CarrierMalformed(
                f"response breaks the contract at {where}: {exc.message}"[:300], status_code=status
            ) from exc
        if status not in ok_status:
            detail = body.get("detail") or body.get("title") if isinstance(body, dict) else ""
            refusal = {404: CarrierNotFound, 410: CarrierGone}.get(status, CarrierClientError)
            raise refusal(f"HTTP {status}: {detail}"[:300], status_code=status)
        if not isinstance(body, dict):  # pragma: no cover - every documented 2xx schema is an object
            raise CarrierMalformed("response is not an object", status_code=status)
        return body

    def _token_cache_key(self) -> str:
        # Keyed per carrier and credentials, so rotating the secret drops the old token.
        digest = hashlib.sha256(f"{self.token_url}|{self.carrier.api_client_id}".encode()).hexdigest()[:16]
        return f"carrier-token:{self.carrier.pk}:{digest}"

    def _token(self, *, force: bool, correlation: str) -> str:
        key = self._token_cache_key()
        if not force:
            cached = cache.get(key)
            if isinstance(cached, str) and cached:
                return cached
        started, t0 = timezone.now(), time.perf_counter()
        status: int | None = None
        try:
            response = self._http.post(
                self.token_url,
                data={"grant_type": "client_credentials"},
                auth=(self.carrier.api_client_id, self.carrier.api_client_secret),
                headers={"X-Correlation-ID": correlation} if correlation else None,
            )
            status = response.status_code
            if status >= 500 or status == 429:
                raise CarrierServerError(f"token endpoint HTTP {status}", status_code=status)
            pointer = contract_response_pointer(path="/oauth/token", method="post", status=status)
            if pointer is None:
                raise CarrierMalformed(f"token endpoint HTTP {status} is not in the contract", status_code=status)
            try:
                body = response.json()
                contract_validate(pointer=pointer, body=body)
            except (ValueError, SchemaError) as exc:
                raise CarrierMalformed(f"token endpoint answered garbage (HTTP {status})", status_code=status) from exc
            if status != 200:
                raise CarrierClientError(f"token refused: {body.get('error')}", status_code=status)
        except CarrierError as exc:
            self._record("token", "POST", self.token_url, started, t0, 1, status, ok=False, error=str(exc))
            raise
        except httpx.TimeoutException as exc:
            self._record("token", "POST", self.token_url, started, t0, 1, None, ok=False, error="timed out")
            raise CarrierTimeout("token endpoint timed out") from exc
        except httpx.HTTPError as exc:
            self._record("token", "POST", self.token_url, started, t0, 1, None, ok=False, error=str(exc)[:300])
            raise CarrierConnectError(f"token endpoint unreachable: {type(exc).__name__}") from exc
        self._record("token", "POST", self.token_url, started, t0, 1, status, ok=True, error="")
        token = str(body["access_token"])
        ttl = max(1, int(body["expires_in"]) - TOKEN_EXPIRY_MARGIN_SECONDS)
        cache.set(key, token, timeout=ttl)
        return token

    def _record(
        self,
        operation: str,
        method: str,
        url: str,
        started: Any,
        t0: float,
        attempt: int,
        status: int | None,
        *,
        ok: bool,
        error: str,
        tender: Tender | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        latency_ms = (time.perf_counter() - t0) * 1000.0
        correlation = (headers or {}).get("X-Correlation-ID") or None
        OutboundCall.objects.create(
            carrier=self.carrier,
            tender=tender,
            operation=operation,
            method=method,
            url=url[:500],
            attempt=attempt,
            status_code=status,
            latency_ms=round(latency_ms, 3),
            ok=ok,
            error=error[:500],
            idempotency_key=(headers or {}).get("Idempotency-Key", ""),
            correlation_id=correlation,
            started_at=started,
        )
        log.info(
            "carrier call",
            extra={
                "carrier": self.carrier.slug,
                "operation": operation,
                "status_code": status,
                "latency_ms": round(latency_ms, 1),
                "ok": ok,
                "attempt": attempt,
                "error": error or None,
            },
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CarrierClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tender_submit_body(tender: Tender) -> dict[str, Any]:
    """The POST /tenders body for a tender (TenderSubmit in the contract)."""
    shipment = tender.shipment
    public = str(settings.PARTNER_BASE_URL or settings.PUBLIC_BASE_URL).rstrip("/")

    def iso(value: Any) -> str:
        return str(value.astimezone(UTC).isoformat().replace("+00:00", "Z"))

    return {
        "tender_id": tender.pk,
        "shipment": {
            "reference": shipment.reference,
            "origin": {
                "address": shipment.origin_address,
                "region": shipment.origin_region,
                "lat": shipment.origin_lat,
                "lon": shipment.origin_lon,
            },
            "destination": {
                "address": shipment.destination_address,
                "region": shipment.destination_region,
                "lat": shipment.destination_lat,
                "lon": shipment.destination_lon,
            },
            "pickup_window": {"start": iso(shipment.pickup_window_start), "end": iso(shipment.pickup_window_end)},
            "delivery_window": {"start": iso(shipment.delivery_window_start), "end": iso(shipment.delivery_window_end)},
            "weight_kg": shipment.weight_kg,
            "hazmat": shipment.hazmat,
            "max_autonomy_level": shipment.max_autonomy_level,
            "preferred_route": shipment.preferred_route,
            "distance_km": round(shipment.distance_km, 1),
        },
        "offered_price_usd": f"{tender.offered_price_usd:.2f}" if tender.offered_price_usd is not None else None,
        "expires_at": iso(tender.expires_at),
        "correlation_id": str(tender.correlation_id),
        "callback": {
            "offers_url": f"{public}/api/v1/tenders/{tender.pk}/offers",
            "webhook_url": f"{public}/api/v1/webhooks/{tender.carrier.slug}",
        },
    }


def circuits_probe() -> int:
    """Run the half-open probe (a health call) for every circuit due; returns how many were probed.

    Tendering to an open carrier is paused, so without this no call would
    ever come to test whether it recovered.
    """
    probed = 0
    for carrier in Carrier.objects.filter(pk__in=circuit.circuits_due_for_probe()).exclude(api_base_url=""):
        probed += 1
        try:
            with CarrierClient(carrier) as client:
                client.health()
        except CarrierError as exc:
            log.info("half-open probe failed", extra={"carrier": carrier.slug, "error": str(exc)})
    return probed
