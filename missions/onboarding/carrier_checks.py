"""The certification checks beyond the carrier API's calls: the carrier's side, and mutual TLS.

The carrier's side: ``POST /sandbox/emit`` asks the sandbox to send signed
webhooks and telemetry to the run's receivers (``missions.onboarding.receivers``);
``carrier_webhooks`` and ``carrier_telemetry`` judge what arrived. Mutual TLS:
``tls_for`` gives a run its TLS settings; ``mtls_required`` and
``server_identity`` check that the sandbox demands the console's certificate
and presents the one the portal names.
"""

from __future__ import annotations

import ssl
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from cryptography import x509
from django.conf import settings
from django.utils import timezone

from missions.identity.svid import spiffe_uris
from missions.models import CarrierProfile, CertificationDelivery, CertificationRun
from missions.models.onboarding import CarrierAuthMethod
from missions.onboarding import receivers, selectors
from missions.onboarding.session import (
    CheckFailed,
    CheckSkipped,
    Session,
    expect_status,
    redact_headers,
    redact_text,
)
from tms_console.egress import EgressRefused, guarded_request

# How long beyond the telemetry window the sandbox's deliveries may take, the clock bounds of a sample
# against its arrival, and how far the measured rate may be from the declared one.
EMIT_GRACE_SECONDS = 10.0
CLOCK_AHEAD_SECONDS = 2.0
SAMPLE_MAX_AGE_SECONDS = 30.0
RATE_TOLERANCE = (0.8, 1.2)
POLL_SECONDS = 0.2


def _console_base() -> str:
    """Where the sandbox reaches the console's API."""
    return str(settings.PARTNER_BASE_URL or settings.PUBLIC_BASE_URL).rstrip("/")


def _receiver_url(s: Session, what: str) -> str:
    return f"{_console_base()}/api/v1/certification/runs/{s.run.run_key}/{what}"


def emitted_before(run: CertificationRun) -> datetime | None:
    for check in run.checks:
        if check.get("emitted_at"):
            return datetime.fromisoformat(check["emitted_at"])
    return None


def _emit(s: Session) -> datetime:
    """Ask the sandbox (once a run: the same key on a resumed run) to send its webhooks and telemetry."""
    s.emitted_at = s.emitted_at or emitted_before(s.run)
    if s.emitted_at is not None:
        return s.emitted_at
    body = {
        "run": str(s.run.run_key),
        "webhook_url": _receiver_url(s, "webhooks"),
        "token_url": f"{_console_base()}/oauth2/token",
        "telemetry_url": _receiver_url(s, "telemetry"),
        "telemetry_seconds": int(settings.CERTIFICATION_TELEMETRY_SECONDS),
        "mission_id": receivers.synthetic_mission_id(s.run),
        "vehicle_id": receivers.synthetic_vehicle_id(s.run),
    }
    answer = s.call("POST", "/sandbox/emit", json_body=body, headers={"Idempotency-Key": s.key("emit")})
    expect_status(
        answer,
        (202,),
        "Serve POST /sandbox/emit in the sandbox (docs/carrier-api.yaml 1.1.0): answer 202, then send the "
        "webhooks and telemetry it asks for.",
    )
    s.emitted_at = timezone.now()
    return s.emitted_at


def _sandbox_credentials_missing(s: Session) -> None:
    profile = CarrierProfile.objects.filter(carrier_id=s.run.carrier_id).first()
    if profile is None or not profile.sandbox_webhook_secret or profile.sandbox_partner_client_id is None:
        raise CheckFailed(
            "The sandbox has no credentials for the console's API yet.",
            "Issue the sandbox's credentials in the portal (Sandbox credentials for our API) and configure "
            "the sandbox with them.",
        )


def _delivery_evidence(deliveries: list[CertificationDelivery]) -> list[dict[str, Any]]:
    return [
        {
            "received": {
                "at": d.received_at.isoformat(),
                "channel": d.channel,
                "headers": d.headers,
                "body": d.body[:2048],
                "accepted": d.accepted,
                "reason": d.reason,
            }
        }
        for d in deliveries[:5]
    ]


def _wait_for(
    s: Session, channel: str, *, until: datetime, quiet_after: datetime | None = None
) -> list[CertificationDelivery]:
    """Deliveries on ``channel``: as soon as one came (or, with ``quiet_after``, once that time has passed
    and nothing new came for a second), and at the latest at ``until``."""
    seen, last_change = -1, time.monotonic()
    while True:
        deliveries = selectors.run_deliveries(s.run.pk, channel)
        if len(deliveries) != seen:
            seen, last_change = len(deliveries), time.monotonic()
        now = timezone.now()
        if now >= until:
            return deliveries
        if deliveries and quiet_after is None:
            return deliveries
        if deliveries and quiet_after is not None and now >= quiet_after and time.monotonic() - last_change >= 1.0:
            return deliveries
        time.sleep(POLL_SECONDS)


def check_carrier_webhooks(s: Session) -> str:
    if not s.token:
        raise CheckSkipped("no token (auth_token failed)")
    _sandbox_credentials_missing(s)
    emitted = _emit(s)
    deliveries = _wait_for(s, "webhook", until=emitted + timedelta(seconds=EMIT_GRACE_SECONDS))
    s.evidence.extend(_delivery_evidence(deliveries))
    hint = (
        "Sign every delivery with the sandbox webhook secret from the portal (Standard Webhooks: webhook-id, "
        "webhook-timestamp in Unix seconds, webhook-signature v1,<base64 HMAC-SHA256 of id.timestamp.body>)."
    )
    if not deliveries:
        raise CheckFailed(f"No webhook arrived within {EMIT_GRACE_SECONDS:g} s of the emit call.", hint)
    refused = [d for d in deliveries if not d.accepted]
    if refused:
        first = refused[0].reason
        if "does not verify" not in first:
            hint = (
                "Send the envelope of docs/openapi.yaml: type, timestamp and data (mission.status: mission_id, status)."
            )
        raise CheckFailed(f"{len(refused)} of {len(deliveries)} webhooks were refused; the first: {first}", hint)
    return f"{len(deliveries)} signed webhook(s) verified"


def _telemetry_judged(deliveries: list[CertificationDelivery], declared: float) -> str:
    refused = [d for d in deliveries if not d.accepted]
    if refused:
        reason = refused[0].reason
        hint = (
            "Take a token at token_url with the sandbox's client for our API (client credentials, scope "
            "certification:write) and send it as Authorization: Bearer."
            if reason.startswith(("401", "403"))
            else "Send each event as the TelemetryEvent of docs/openapi.yaml, for the emit's mission and vehicle."
        )
        raise CheckFailed(
            f"{len(refused)} of {len(deliveries)} telemetry requests were refused; the first: {reason}", hint
        )
    clock_hint = "Keep the vehicles' clocks on GNSS or NTP time and stamp each sample (UTC) with when it was taken."
    per_vehicle: dict[str, list[datetime]] = {}
    for delivery in deliveries:
        for sample in delivery.samples:
            taken = datetime.fromisoformat(sample["ts"])
            ahead = (taken - delivery.received_at).total_seconds()
            if ahead > CLOCK_AHEAD_SECONDS:
                raise CheckFailed(
                    f"A sample is stamped {ahead:.1f} s after it arrived: the clock runs ahead.", clock_hint
                )
            if -ahead > SAMPLE_MAX_AGE_SECONDS:
                raise CheckFailed(
                    f"A sample is stamped {-ahead:.1f} s before it arrived (at most {SAMPLE_MAX_AGE_SECONDS:g} s).",
                    clock_hint,
                )
            per_vehicle.setdefault(sample["vehicle_id"], []).append(taken)
    rate_hint = "Send samples at the telemetry rate declared in the portal, or declare the rate the vehicles send."
    rates = []
    for stamps in per_vehicle.values():
        stamps.sort()
        span = (stamps[-1] - stamps[0]).total_seconds()
        if len(stamps) < 2 or span <= 0:
            raise CheckFailed(f"{len(stamps)} sample(s) in the window: too few to measure a rate.", rate_hint)
        rates.append((len(stamps) - 1) / span)
    low, high = RATE_TOLERANCE
    for rate in rates:
        if not low * declared <= rate <= high * declared:
            raise CheckFailed(f"{rate:.2f} samples a second, declared {declared:g}.", rate_hint)
    samples = sum(len(v) for v in per_vehicle.values())
    return f"{samples} samples in {len(deliveries)} requests at {min(rates):.2f}/s (declared {declared:g}/s)"


def check_carrier_telemetry(s: Session) -> str:
    if not s.token:
        raise CheckSkipped("no token (auth_token failed)")
    _sandbox_credentials_missing(s)
    emitted = _emit(s)
    window = timedelta(seconds=int(settings.CERTIFICATION_TELEMETRY_SECONDS))
    deliveries = _wait_for(
        s,
        "telemetry",
        until=emitted + window + timedelta(seconds=EMIT_GRACE_SECONDS),
        quiet_after=emitted + window,
    )
    s.evidence.extend(_delivery_evidence(deliveries))
    if not deliveries:
        raise CheckFailed(
            f"No telemetry arrived within {window.seconds + EMIT_GRACE_SECONDS:g} s of the emit call.",
            "Take a token at token_url and POST telemetry batches to telemetry_url for telemetry_seconds.",
        )
    declared = CarrierProfile.objects.get(carrier_id=s.run.carrier_id).telemetry_rate_hz
    return _telemetry_judged(deliveries, declared)


# --- Mutual TLS and SVIDs --------------------------------------------------------------------------


def _server_verification(profile: CarrierProfile) -> Any:
    """The sandbox's server certificate checked against the CA or trust bundle given, else the public CAs."""
    if not profile.sandbox_ca_pem.strip():
        return True
    context = ssl.create_default_context(cadata=profile.sandbox_ca_pem)
    # An SVID names its workload by a spiffe:// URI, not a DNS name: server_identity checks that instead.
    context.check_hostname = profile.auth_method != CarrierAuthMethod.SVID
    return context


def tls_for(profile: CarrierProfile) -> tuple[Any, tuple[str, str] | None]:
    """How a run verifies the sandbox (the CA or trust bundle given, else the public CAs) and the
    client certificate it presents (mTLS and SVID sandboxes: the console's own)."""
    verify = _server_verification(profile)
    if profile.auth_method == CarrierAuthMethod.OAUTH:
        return verify, None
    cert, key = settings.CERTIFICATION_CLIENT_CERT_FILE, settings.CERTIFICATION_CLIENT_KEY_FILE
    if isinstance(verify, ssl.SSLContext) and cert:
        verify.load_cert_chain(cert, key or None)
        return verify, None
    return verify, ((cert, key) if cert else None)


def check_mtls_required(s: Session) -> str:
    if not settings.CERTIFICATION_CLIENT_CERT_FILE:
        raise CheckFailed(
            "The console has no client certificate for certification runs.",
            "The console's operator sets CERTIFICATION_CLIENT_CERT_FILE and CERTIFICATION_CLIENT_KEY_FILE.",
        )
    profile = CarrierProfile.objects.get(carrier_id=s.run.carrier_id)
    bare = _server_verification(profile)  # the same verification, no client certificate
    if not s.token:
        raise CheckSkipped("no token (auth_token failed)")
    # A valid token and no certificate: only the missing certificate can make the sandbox refuse.
    headers = {"Accept": "application/json", "Authorization": f"Bearer {s.token}"}
    record: dict[str, Any] = {
        "request": {
            "method": "GET",
            "url": f"{s.base}/health",
            "headers": redact_headers(headers),
            "client_certificate": None,
        }
    }
    s.evidence.append(record)
    hint = "Require a client certificate in the TLS handshake (or answer 401/403 without one) on every call."
    try:
        answer = guarded_request(
            "GET",
            f"{s.base}/health",
            headers=headers,
            timeout=settings.CERTIFICATION_CALL_TIMEOUT_SECONDS,
            target=s.target,
            verify=bare,
        )
    except (httpx.HTTPError, OSError) as exc:
        record["error"] = f"{exc.__class__.__name__}: {exc}"
        if isinstance(exc, httpx.TimeoutException) or any(
            sign in str(exc) for sign in ("CERTIFICATE_VERIFY_FAILED", "Connection refused")
        ):
            raise CheckFailed(f"The call failed before any client certificate mattered ({exc}).", hint) from exc
        return "refused in the TLS handshake without a client certificate"
    except EgressRefused as exc:
        raise CheckFailed(str(exc), hint) from exc
    record["response"] = {"status": answer.status_code, "body": redact_text(answer.content)}
    if answer.status_code in (401, 403):
        return f"{answer.status_code} without a client certificate"
    raise CheckFailed(f"Without a client certificate the sandbox answered {answer.status_code}.", hint)


def check_server_identity(s: Session) -> str:
    profile = CarrierProfile.objects.get(carrier_id=s.run.carrier_id)
    hint = "Serve the sandbox over https with the server certificate (an X.509-SVID for SVID) the portal names."
    if not s.peer_certificate:
        raise CheckFailed("The sandbox presented no server certificate (is it served over https?).", hint)
    certificate = x509.load_der_x509_certificate(s.peer_certificate)
    if profile.auth_method != CarrierAuthMethod.SVID:
        return f"server certificate verified (issued by {certificate.issuer.rfc4514_string()})"
    uris = spiffe_uris(certificate)
    s.evidence.append({"server_certificate": {"subject": certificate.subject.rfc4514_string(), "uris": uris}})
    if uris != [profile.sandbox_spiffe_id]:
        raise CheckFailed(
            f"The server certificate names {uris or 'no SPIFFE ID'}, not {profile.sandbox_spiffe_id}.", hint
        )
    return f"SVID {profile.sandbox_spiffe_id}, verified against the trust bundle"
