"""Conformance certification: the console drives a carrier's sandbox through checks derived from docs/carrier-api.yaml.

Each check makes real calls to the sandbox (through ``tms_console.egress``: the
URL was checked, the calls are bounded in time and size), keeps what it sent and
what came back with secrets redacted, and passes or fails with a hint on what
to fix. The checks, in order:

``auth_token``         POST /oauth/token (client credentials) gives a Bearer token (TokenResponse).
``health``             GET /health answers 200 with the Health schema.
``auth_required``      a call without the token is refused with 401.
``invalid_token``      a call with a token the carrier never issued (as an expired or revoked one) gets 401.
``tender_submit``      POST /tenders (a synthetic tender, Idempotency-Key) answers 201 with a TenderState.
``idempotent_resend``  the same key and body again: the same tender (same ref), not a second one.
``key_conflict``       the same key with another body: 409 or 422 problem+json.
``tender_status``      GET /tenders/{ref} answers 200 with the same tender.
``tender_cancel``      POST /tenders/{ref}/cancel: 200, status cancelled; again: still cancelled (a tender
                       the carrier already accepted or rejected may be refused with 409 problem+json).
``unknown_tender``     GET /tenders/<unknown> answers 404 problem+json (RFC 9457).
``malformed_tender``   a body breaking TenderSubmit is refused with 400 or 422 problem+json.
``carrier_webhooks``   POST /sandbox/emit answers 202, and the sandbox then delivers Standard Webhooks to the
                       run's receiver that verify with the sandbox webhook secret the portal issued, within
                       the timestamp tolerance, with a conforming body.
``carrier_telemetry``  the telemetry the sandbox then sends to the run's receiver, with a token of its sandbox
                       client for our API: every request authenticated and every event a TelemetryEvent, at
                       the rate the carrier declared (within 20 %), each stamped no later than it arrived
                       (+2 s) nor more than 30 s before.
``latency_p95``        the 95th percentile of every answered call within ``CERTIFICATION_LATENCY_P95_MS``.

A carrier whose sandbox authenticates us by client certificate (``mtls``) or
SPIFFE SVID (``spiffe_svid``) is called over mutual TLS with the console's
certificate (``CERTIFICATION_CLIENT_CERT_FILE``), its server certificate
verified against the CA or trust bundle given in the portal, and has two
more checks after ``auth_token``:

``mtls_required``      a call without the console's client certificate is refused (handshake, 401 or 403).
``server_identity``    (SVID) the sandbox's server certificate carries the SPIFFE ID given in the portal.

A check whose prerequisite failed (no token, no tender) is marked skipped with
the reason. A run is saved after every check; a worker that dies mid-run hands
the task to another (acks late), which resumes at the first unfinished check
with the same Idempotency-Keys (derived from the run's key), so nothing is
tendered twice.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from missions.events import Actor, event_record
from missions.evidence import dsse
from missions.evidence import services as evidence_services
from missions.models import CarrierProfile, CertificationRun, CertificationStatus
from missions.models.evidence import Attestation, AttestationKind, AttestationSubjectType
from missions.models.onboarding import CarrierAuthMethod
from missions.onboarding import carrier_checks
from missions.onboarding.session import (
    CheckFailed,
    CheckSkipped,
    Session,
    expect_problem,
    expect_schema,
    expect_status,
    json_of,
)
from missions.tendering.carrier_contract import contract
from tms_console.domain import DomainError
from tms_console.egress import EgressRefused, egress_check

CHECKS: list[tuple[str, str]] = [
    ("auth_token", "OAuth client credentials token"),
    ("health", "Health endpoint"),
    ("auth_required", "Calls without a token are refused"),
    ("invalid_token", "An expired or forged token is refused"),
    ("tender_submit", "Tender delivery"),
    ("idempotent_resend", "Idempotent resend (same key, same answer)"),
    ("key_conflict", "Same key, different body is refused"),
    ("tender_status", "Status polling"),
    ("tender_cancel", "Cancel (and cancelling twice)"),
    ("unknown_tender", "Unknown tender is a 404 problem"),
    ("malformed_tender", "Malformed tender is a problem+json error"),
    ("carrier_webhooks", "Signed webhooks from the sandbox"),
    ("carrier_telemetry", "Telemetry from the sandbox: schema, rate, clocks"),
    ("latency_p95", "Latency (95th percentile)"),
]
TLS_CHECKS: list[tuple[str, str]] = [
    ("mtls_required", "Calls without the console's client certificate are refused"),
    ("server_identity", "The sandbox's server certificate is its declared SVID"),
]
log = logging.getLogger(__name__)
DECIDED = ("accepted", "rejected", "expired")


def contract_version() -> str:
    return str(contract()["info"]["version"])


def _synthetic_tender(run: CertificationRun) -> dict[str, Any]:
    # From the run's own creation time, not the clock: a resumed run resends the very same body.
    now = run.created_at.replace(microsecond=0)

    def stamp(at: datetime) -> str:
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    return {
        "tender_id": 900_000_000 + run.pk,
        "shipment": {
            "reference": f"CERT-{run.pk}",
            "origin": {"address": "Dallas, TX", "region": "TX", "lat": 32.7767, "lon": -96.797},
            "destination": {"address": "Houston, TX", "region": "TX", "lat": 29.7604, "lon": -95.3698},
            "pickup_window": {"start": stamp(now + timedelta(days=2)), "end": stamp(now + timedelta(days=2, hours=4))},
            "delivery_window": {
                "start": stamp(now + timedelta(days=3)),
                "end": stamp(now + timedelta(days=3, hours=4)),
            },
            "weight_kg": 12000,
            "hazmat": False,
            "max_autonomy_level": 4,
            "distance_km": 385.0,
        },
        "offered_price_usd": "1400.00",
        "expires_at": stamp(now + timedelta(hours=1)),
        "correlation_id": str(uuid.uuid5(run.run_key, "correlation")),
        "callback": {"offers_url": f"{settings.PUBLIC_BASE_URL.rstrip('/')}/api/v1/tenders/0/offers"},
    }


# --- The checks ------------------------------------------------------------------------------------


def check_health(s: Session) -> str:
    if not s.token:
        raise CheckSkipped("no token (auth_token failed)")
    answer = s.call("GET", "/health")
    expect_status(answer, (200,), "GET /health must answer 200 while the API is up.")
    expect_schema(json_of(answer, "The health answer"), "Health", 'Answer {"status": "ok"}.')
    return "200, status " + str(answer.json().get("status"))


def check_auth_token(s: Session) -> str:
    if not s.client_id or not s.client_secret:
        raise CheckFailed(
            "No sandbox client credentials were given.", "Enter the sandbox's client id and secret in the portal."
        )
    form = {"grant_type": "client_credentials", "client_id": s.client_id, "client_secret": s.client_secret}
    answer = s.call("POST", "/oauth/token", form=form, auth=False)
    expect_status(answer, (200,), "POST /oauth/token must grant client_credentials for the sandbox's test client.")
    body = json_of(answer, "The token answer")
    expect_schema(body, "TokenResponse", "Answer access_token, token_type Bearer and expires_in (RFC 6749 §5.1).")
    s.token = str(body["access_token"])
    return f"Bearer token, expires in {body['expires_in']} s"


def check_auth_required(s: Session) -> str:
    answer = s.call("GET", f"/tenders/cert-{s.run.run_key}", auth=False)
    expect_status(answer, (401,), "Refuse every tender call without a valid Bearer token with 401.")
    return "401 without a token"


def check_invalid_token(s: Session) -> str:
    forged = f"cert-not-a-token-{s.run.run_key}"
    answer = s.call("GET", f"/tenders/cert-{s.run.run_key}", headers={"Authorization": f"Bearer {forged}"}, auth=False)
    expect_status(
        answer,
        (401,),
        "Check every bearer token: refuse expired, revoked and unknown tokens with 401 so clients renew.",
    )
    return "401 with a token it never issued"


def check_tender_submit(s: Session) -> str:
    if not s.token:
        raise CheckSkipped("no token (auth_token failed)")
    s.body = _synthetic_tender(s.run)
    answer = s.call("POST", "/tenders", json_body=s.body, headers={"Idempotency-Key": s.key("submit")})
    # A resumed run resends under the same key: the carrier's replay (200) is the same tender.
    expect_status(answer, (201, 200), "Answer a new tender with 201 and its TenderState.")
    state = json_of(answer, "The tender answer")
    expect_schema(state, "TenderState", "Answer the TenderState of docs/carrier-api.yaml.")
    if state.get("tender_id") != s.body["tender_id"]:
        raise CheckFailed("The answer names another tender_id.", "Echo the tender_id you were sent.")
    s.ref, s.status = str(state["ref"]), str(state["status"])
    return f"{answer.status_code}, ref {s.ref}, status {state['status']}"


def check_idempotent_resend(s: Session) -> str:
    if not s.ref:
        raise CheckSkipped("no tender (tender_submit failed)")
    answer = s.call("POST", "/tenders", json_body=s.body, headers={"Idempotency-Key": s.key("submit")})
    expect_status(answer, (200, 201), "A resend with the same Idempotency-Key and body must be answered, not refused.")
    state = json_of(answer, "The replay")
    if state.get("ref") != s.ref:
        raise CheckFailed(
            f"The resend created another tender ({state.get('ref')!r}, first {s.ref!r}).",
            "Keep each Idempotency-Key with its answer and answer a resend with the same tender.",
        )
    return f"{answer.status_code}, same ref {s.ref}"


def check_key_conflict(s: Session) -> str:
    if not s.ref:
        raise CheckSkipped("no tender (tender_submit failed)")
    other = {**s.body, "offered_price_usd": "1500.00"}
    answer = s.call("POST", "/tenders", json_body=other, headers={"Idempotency-Key": s.key("submit")})
    hint = "Refuse a reused Idempotency-Key with a different body with 409 (or 422) problem+json."
    expect_status(answer, (409, 422), hint)
    expect_problem(answer, hint)
    return f"{answer.status_code} problem+json"


def check_tender_status(s: Session) -> str:
    if not s.ref:
        raise CheckSkipped("no tender (tender_submit failed)")
    answer = s.call("GET", f"/tenders/{s.ref}")
    expect_status(answer, (200,), "GET /tenders/{ref} must answer 200 with the tender's state.")
    state = json_of(answer, "The status answer")
    expect_schema(state, "TenderState", "Answer the TenderState of docs/carrier-api.yaml.")
    if state.get("ref") != s.ref:
        raise CheckFailed("The status answer names another tender.", "Answer the tender the ref names.")
    s.status = str(state["status"])
    return f"200, status {state['status']}"


def check_tender_cancel(s: Session) -> str:
    """Cancel, then cancel again: both 200 cancelled; a tender already decided may refuse with 409 instead."""
    if not s.ref:
        raise CheckSkipped("no tender (tender_submit failed)")
    body = {"reason": "certification run"}
    hint = "POST /tenders/{ref}/cancel must answer 200 with status cancelled, again when repeated."
    statuses: list[str] = []
    for attempt in ("cancel", "cancel-again"):
        answer = s.call("POST", f"/tenders/{s.ref}/cancel", json_body=body, headers={"Idempotency-Key": s.key(attempt)})
        if answer.status_code == 409 and s.status in DECIDED and not statuses:
            expect_problem(answer, "Refuse to cancel a decided tender with 409 application/problem+json.")
            return f"409 problem+json: the tender was already {s.status}"
        expect_status(answer, (200,), hint)
        state = json_of(answer, "The cancel answer")
        expect_schema(state, "TenderState", hint)
        statuses.append(state["status"])
    if statuses != ["cancelled", "cancelled"]:
        raise CheckFailed(f"The tender's status after cancelling was {statuses}.", hint)
    return "cancelled, and still cancelled when repeated"


def check_unknown_tender(s: Session) -> str:
    if not s.token:
        raise CheckSkipped("no token (auth_token failed)")
    answer = s.call("GET", f"/tenders/cert-unknown-{s.run.run_key}")
    hint = "Answer a tender you do not know with 404 application/problem+json (RFC 9457)."
    expect_status(answer, (404,), hint)
    expect_problem(answer, hint)
    return "404 problem+json"


def check_malformed_tender(s: Session) -> str:
    if not s.token:
        raise CheckSkipped("no token (auth_token failed)")
    broken = {"tender_id": "not-a-number", "shipment": {}}
    answer = s.call("POST", "/tenders", json_body=broken, headers={"Idempotency-Key": s.key("malformed")})
    hint = "Refuse a body that breaks TenderSubmit with 400 or 422 application/problem+json."
    expect_status(answer, (400, 422), hint)
    expect_problem(answer, hint)
    return f"{answer.status_code} problem+json"


def check_latency_p95(s: Session) -> str:
    if len(s.timings_ms) < 3:
        raise CheckSkipped("too few answered calls to measure")
    ordered = sorted(s.timings_ms)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    bound = float(settings.CERTIFICATION_LATENCY_P95_MS)
    if p95 > bound:
        raise CheckFailed(
            f"p95 {p95:.0f} ms over {len(ordered)} calls, above the {bound:.0f} ms bound.",
            "Answer the sandbox's calls as fast as production will (the contract's latency SLI).",
        )
    return f"p95 {p95:.0f} ms over {len(ordered)} calls (bound {bound:.0f} ms)"


RUNNERS: dict[str, Callable[[Session], str]] = {
    "health": check_health,
    "auth_token": check_auth_token,
    "auth_required": check_auth_required,
    "invalid_token": check_invalid_token,
    "tender_submit": check_tender_submit,
    "idempotent_resend": check_idempotent_resend,
    "key_conflict": check_key_conflict,
    "tender_status": check_tender_status,
    "tender_cancel": check_tender_cancel,
    "unknown_tender": check_unknown_tender,
    "malformed_tender": check_malformed_tender,
    "carrier_webhooks": carrier_checks.check_carrier_webhooks,
    "carrier_telemetry": carrier_checks.check_carrier_telemetry,
    "mtls_required": carrier_checks.check_mtls_required,
    "server_identity": carrier_checks.check_server_identity,
    "latency_p95": check_latency_p95,
}
# A resumed run redoes what these checks learned (a token, the tender's ref) before going on.
SETUP = ("auth_token", "tender_submit")


# --- Starting and running --------------------------------------------------------------------------


def checks_for(profile: CarrierProfile) -> list[tuple[str, str]]:
    """The checks of a full run: the TLS ones come right after the token for mTLS and SVID sandboxes."""
    if profile.auth_method == CarrierAuthMethod.OAUTH:
        return list(CHECKS)
    return [CHECKS[0], *TLS_CHECKS, *CHECKS[1:]]


@transaction.atomic
def certification_start(*, carrier_id: int, actor: Actor) -> CertificationRun:
    """Queue a run against the carrier's sandbox (the caller enqueues ``certification_run`` on commit)."""
    profile = CarrierProfile.objects.select_related("carrier").filter(carrier_id=carrier_id).first()
    if profile is None or not profile.sandbox_api_url:
        raise DomainError("Enter the sandbox API base URL in the profile first.", field="sandbox_api_url")
    if actor.user is None:
        raise DomainError("Only a signed-in user can start a certification run.")
    try:
        egress_check(profile.sandbox_api_url)
    except EgressRefused as exc:
        raise DomainError(str(exc), field="sandbox_api_url") from exc
    busy = CertificationRun.objects.filter(
        carrier_id=carrier_id, status__in=[CertificationStatus.QUEUED, CertificationStatus.RUNNING]
    ).exists()
    if busy:
        raise DomainError("A certification run is already under way for this carrier.")
    run = CertificationRun.objects.create(
        carrier=profile.carrier,
        run_key=uuid.uuid4(),
        contract_version=contract_version(),
        sandbox_url=profile.sandbox_api_url.rstrip("/"),
        checks=[{"name": n, "title": t, "status": "pending"} for n, t in checks_for(profile)],
        started_by=actor.user,
    )
    event_record(
        actor=actor,
        action="carrier.certification_started",
        subject_type="carrier",
        subject_id=carrier_id,
        after={"run_id": run.pk, "contract_version": run.contract_version, "sandbox_url": run.sandbox_url},
        carrier=profile.carrier,
    )
    return run


SMOKE_CHECKS = ("auth_token", "health", "unknown_tender", "latency_p95")


def smoke_start(*, carrier_id: int) -> CertificationRun | None:
    """The drift watch's nightly subset against the sandbox (no tender is sent); None without a sandbox URL."""
    profile = CarrierProfile.objects.select_related("carrier").filter(carrier_id=carrier_id).first()
    if profile is None or not profile.sandbox_api_url:
        return None
    return CertificationRun.objects.create(
        carrier=profile.carrier,
        run_key=uuid.uuid4(),
        kind="smoke",
        contract_version=contract_version(),
        sandbox_url=profile.sandbox_api_url.rstrip("/"),
        checks=[{"name": n, "title": t, "status": "pending"} for n, t in CHECKS if n in SMOKE_CHECKS],
        started_by=None,  # the drift watch
    )


def certification_run(run_id: int) -> CertificationRun:
    """Run (or resume) every check of a run, saving after each; finish it as passed or failed."""
    run = CertificationRun.objects.select_related("carrier").get(pk=run_id)
    if run.status in (CertificationStatus.PASSED, CertificationStatus.FAILED):
        certificate_attest(run)  # a task retried after finishing: the certificate is still signed, once
        return run
    profile = CarrierProfile.objects.get(carrier_id=run.carrier_id)
    verify, cert = carrier_checks.tls_for(profile)
    session = Session(
        run=run,
        base=run.sandbox_url,
        client_id=profile.sandbox_client_id,
        client_secret=profile.sandbox_client_secret,
        verify=verify,
        cert=cert,
    )
    if run.status == CertificationStatus.QUEUED:
        run.status, run.started_at = CertificationStatus.RUNNING, timezone.now()
        run.save(update_fields=["status", "started_at"])
    for index, check in enumerate(run.checks):
        name = check["name"]
        if check["status"] != "pending":
            if name in SETUP and check["status"] == "passed":
                _replay(session, name)
            continue
        session.evidence = []
        started = time.monotonic()
        outcome: dict[str, Any]
        try:
            detail = RUNNERS[name](session)
        except CheckFailed as exc:
            outcome = {"status": "failed", "detail": exc.detail, "hint": exc.hint}
        except CheckSkipped as exc:
            outcome = {"status": "skipped", "detail": str(exc)}
        else:
            outcome = {"status": "passed", "detail": detail}
        outcome["evidence"] = session.evidence
        if session.emitted_at is not None and not carrier_checks.emitted_before(run):
            outcome["emitted_at"] = session.emitted_at.isoformat()
        outcome["seconds"] = round(time.monotonic() - started, 3)
        run.checks[index] = {**check, **outcome}
        run.save(update_fields=["checks"])
    run = _finish(run)
    certificate_attest(run)
    return run


def _replay(session: Session, name: str) -> None:
    """Learn again what a finished setup check learned (a resumed run after a worker restart)."""
    with contextlib.suppress(CheckFailed, CheckSkipped):
        RUNNERS[name](session)


@transaction.atomic
def _finish(run: CertificationRun) -> CertificationRun:
    run = CertificationRun.objects.select_for_update().select_related("carrier").get(pk=run.pk)
    if run.status != CertificationStatus.RUNNING:
        return run
    failed = [c["name"] for c in run.checks if c["status"] != "passed"]
    run.status = CertificationStatus.FAILED if failed else CertificationStatus.PASSED
    run.finished_at = timezone.now()
    run.save(update_fields=["status", "finished_at"])
    event_record(
        actor=Actor.system("certification"),
        action="carrier.certification_finished",
        subject_type="carrier",
        subject_id=run.carrier_id,
        after={
            "run_id": run.pk,
            "kind": run.kind,
            "status": run.status,
            "contract_version": run.contract_version,
            "checks": {c["name"]: c["status"] for c in run.checks},
        },
        carrier=run.carrier,
    )
    return run


# --- The certificate -------------------------------------------------------------------------------


def certificate_record(run: CertificationRun) -> dict[str, Any]:
    """What the signed certificate states: the carrier, the contract version, every check and its result."""
    profile = CarrierProfile.objects.filter(carrier_id=run.carrier_id).first()
    return {
        "carrier": {
            "id": run.carrier_id,
            "slug": run.carrier.slug,
            "legalName": profile.legal_name if profile else run.carrier.name,
            "scac": profile.scac if profile else "",
            "usdotNumber": profile.usdot_number if profile else "",
        },
        "contract": {"name": "docs/carrier-api.yaml", "version": run.contract_version},
        "sandboxUrl": run.sandbox_url,
        "run": run.pk,
        "result": run.status,
        "startedAt": run.started_at.isoformat() if run.started_at else None,
        "finishedAt": run.finished_at.isoformat() if run.finished_at else None,
        "checks": [
            {k: c.get(k) for k in ("name", "title", "status", "detail", "hint") if c.get(k) is not None}
            for c in run.checks
        ],
    }


def certificate_attest(run: CertificationRun) -> Attestation | None:
    """Sign the finished run's certificate into the evidence log (once); None without a signing key."""
    if run.kind != "full" or run.status not in (CertificationStatus.PASSED, CertificationStatus.FAILED):
        return None  # smoke checks are not certificates
    statement = dsse.carrier_conformance_statement(
        run_ref=str(run.pk), result=str(run.status), record=certificate_record(run)
    )
    try:
        return evidence_services.attestation_create(
            kind=AttestationKind.CARRIER_CONFORMANCE,
            subject=evidence_services.AttestationSubject(AttestationSubjectType.CERTIFICATION, run.pk),
            statement=statement,
        )
    except evidence_services.EvidenceSigningUnavailable:
        log.error(
            "certificate not signed: no evidence signing key configured",
            extra={"event": "evidence.attestation_skipped", "kind": "carrier-conformance", "run": run.pk},
        )
        return None
