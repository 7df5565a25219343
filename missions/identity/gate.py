"""The vehicle-identity gate every telemetry path passes through (HTTP webhook, WebSocket, MQTT).

``forwarded_certificate`` reads the client certificate the TLS edge verified
and forwarded (nginx has no variable for a URI SAN, so the application parses
the certificate itself); ``telemetry_identity`` decides, for one message of a
carrier, whether it may go on and with which vehicle identity:

* a carrier with a trust domain and ``svid_required``: a valid SVID of that
  carrier is needed, and every event must name the SVID's vehicle;
* a carrier with a trust domain that does not (yet) require one: a presented
  certificate must be a valid SVID, no certificate is fine;
* a carrier without a trust domain: a certificate naming another carrier's
  trust domain is refused (``other-carrier``); any other certificate (an RFC 8705
  gateway certificate, say) is not a vehicle identity and is ignored.

Every refusal is counted (``tms_vehicle_svid_refused{reason, path}``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from django.conf import settings
from django.utils import timezone

from missions.identity.selectors import trust_registry
from missions.identity.svid import (
    SvidRefused,
    VehicleIdentity,
    events_of_vehicle,
    foreign_trust_domain,
    signature_verify,
    svid_verify,
)
from tms_console.client_address import from_trusted_proxy
from tms_console.problem import problem_body

# Parsed forwarded certificates, by their header value: a vehicle sends the same one every second.
_PARSED: dict[str, x509.Certificate] = {}
_PARSED_MAX = 20_000


def forwarded_certificate(*, peer: str, verify: str, escaped_pem: str, path: str) -> x509.Certificate | None:
    """The client certificate the edge verified and forwarded (URL-encoded PEM), else None.

    Believed only from a configured proxy address and only with the edge's ``SUCCESS``;
    from anyone else the headers are ignored, as if no certificate had been presented.
    """
    if not escaped_pem or verify != "SUCCESS" or not from_trusted_proxy(peer):
        return None
    certificate = _PARSED.get(escaped_pem)
    if certificate is not None:
        return certificate
    try:
        certificate = x509.load_pem_x509_certificate(unquote(escaped_pem).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        refused = SvidRefused("malformed", "The forwarded client certificate is not a PEM certificate.")
        refused.count(path)
        raise refused from None
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[escaped_pem] = certificate
    return certificate


def telemetry_identity(
    *,
    carrier_id: int,
    certificate: x509.Certificate | None,
    events: Sequence[object],
    path: str,
    now: dt.datetime | None = None,
    intermediates: Sequence[x509.Certificate] = (),
) -> VehicleIdentity | None:
    """The vehicle identity of one telemetry message, None when the carrier needs none; else ``SvidRefused``.

    ``path`` ("webhook", "ws", "mqtt") labels the refusal counter.
    """
    try:
        registry = trust_registry()
        if registry.domain_of(carrier_id) is None:
            if certificate is not None and foreign_trust_domain(certificate, carrier_id=carrier_id, registry=registry):
                raise SvidRefused("other-carrier", "The SVID belongs to another carrier's trust domain.")
            return None
        if certificate is None:
            if registry.required(carrier_id):
                raise SvidRefused("required", "This carrier's telemetry needs a vehicle SVID; none was presented.")
            return None
        identity = svid_verify(
            certificate,
            carrier_id=carrier_id,
            registry=registry,
            now=now or timezone.now(),
            intermediates=intermediates,
        )
        events_of_vehicle(identity, events)
        return identity
    except SvidRefused as refused:
        refused.count(path)
        raise


def meta_certificate(meta: Mapping[str, Any], *, path: str) -> x509.Certificate | None:
    """``forwarded_certificate`` from a WSGI environ or Django's ``request.META``."""
    return forwarded_certificate(
        peer=str(meta.get("REMOTE_ADDR", "")),
        verify=str(meta.get(settings.PARTNER_CLIENT_VERIFY_HEADER, "")),
        escaped_pem=str(meta.get(settings.PARTNER_CLIENT_CERT_HEADER, "") or ""),
        path=path,
    )


def _asgi_name(wsgi_name: str) -> bytes:
    # HTTP_X_SSL_CLIENT_CERT -> x-ssl-client-cert
    return wsgi_name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")


def scope_certificate(scope: Mapping[str, Any], *, path: str) -> x509.Certificate | None:
    """``forwarded_certificate`` from an ASGI scope (the WebSocket handshake's headers)."""
    wanted = {
        _asgi_name(settings.PARTNER_CLIENT_CERT_HEADER): "",
        _asgi_name(settings.PARTNER_CLIENT_VERIFY_HEADER): "",
    }
    for name, value in scope.get("headers", []):
        if name.lower() in wanted:
            wanted[name.lower()] = value.decode("latin-1")
    client = scope.get("client") or ("", 0)
    return forwarded_certificate(
        peer=str(client[0]),
        verify=wanted[_asgi_name(settings.PARTNER_CLIENT_VERIFY_HEADER)],
        escaped_pem=wanted[_asgi_name(settings.PARTNER_CLIENT_CERT_HEADER)],
        path=path,
    )


def refusal_problem(refused: SvidRefused, *, instance: str) -> tuple[int, dict[str, Any]]:
    """(status, RFC 9457 body) for a refused identity; ``reason`` is the machine-readable cause."""
    return refused.status, problem_body(
        status=refused.status, code=refused.code, detail=refused.detail, instance=instance, reason=refused.reason
    )


# MQTT 5 user properties of a vehicle's message (docs/identity.md, "MQTT").
MQTT_SVID_PROPERTY = "x509-svid"
MQTT_SIGNATURE_PROPERTY = "x509-svid-signature"


def mqtt_identity(
    *,
    carrier_id: int,
    topic_vehicle: str,
    svid_b64: str,
    signature_b64: str,
    payload: bytes,
    events: Sequence[object],
) -> VehicleIdentity | None:
    """The vehicle identity of one MQTT message, None when its carrier needs none; else ``SvidRefused``.

    The broker verified the connection's client certificate, but a subscriber is not told who
    published a message; so the message carries its SVID (DER, base64) and a signature over its
    payload made with the SVID's key. The SVID gets the same checks as on every path; the
    signature proves the publisher holds its key, and the topic must name the SVID's vehicle.
    """
    certificate = None
    if svid_b64:
        try:
            certificate = x509.load_der_x509_certificate(base64.b64decode(svid_b64, validate=True))
        except (ValueError, binascii.Error):
            refused = SvidRefused("malformed", f"The {MQTT_SVID_PROPERTY} property is not a base64 DER certificate.")
            refused.count("mqtt")
            raise refused from None
    identity = telemetry_identity(
        carrier_id=carrier_id, certificate=certificate, events=[*events, {"vehicle_id": topic_vehicle}], path="mqtt"
    )
    if identity is None or certificate is None:
        return identity
    try:
        signature = base64.b64decode(signature_b64, validate=True) if signature_b64 else b""
    except (ValueError, binascii.Error):
        signature = b""
    if not signature or not signature_verify(certificate, signature=signature, data=payload):
        refused = SvidRefused(
            "bad-signature", f"The {MQTT_SIGNATURE_PROPERTY} property is missing or does not verify over the payload."
        )
        refused.count("mqtt")
        raise refused
    return identity
