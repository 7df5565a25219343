"""Status polls of sent tenders, and what each answer leads to (docs/decisions/0018).

The beat task ``tenders_poll_sent`` polls every SENT tender at a push carrier
that has waited ``CARRIER_POLL_AFTER_SECONDS`` without an answer, until it is
answered, closed or expires. The carrier's answer decides what happens:

* 200: applied by ``dispatch.tender_apply_remote_state`` (an answer, still
  pending, or withdrawn / expired by the carrier).
* 404, the first time: the tender is resent, once, with the same body and
  Idempotency-Key. A carrier that holds the key replays its answer; one that
  never got the tender, or lost it, takes it now.
* 404 after that resend (or a resend the carrier refused): the tender is lost.
  It fails with the reason on the shipment's timeline and the waterfall moves
  on. If the carrier had confirmed the tender before, ``tender.lost`` asks for
  an on-call incident (``runbooks`` subscribes).
* 410: the carrier withdrew the tender: cancelled here, the waterfall moves on.
* An answer that breaks the contract: recorded on the timeline and polled again
  after a doubling back-off; the ``UNREADABLE_LIMIT``-th such answer gives the
  tender up (failed, waterfall, incident).
* Anything else (5xx, 429, timeouts, the breaker open): nothing changes here;
  the next poll tries again, and the tender's expiry bounds the polling.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from missions.choices import TenderStatus
from missions.events import Actor, event_record
from missions.models import AuditEvent, Tender
from missions.models.outbound import OutboundCall
from missions.services import tender_transition
from missions.tendering import dispatch
from missions.tendering.carrier_client import (
    CarrierClient,
    CarrierClientError,
    CarrierError,
    CarrierGone,
    CarrierMalformed,
    CarrierNotFound,
)

POLL = Actor.system("status-poll")

# A tender whose status answers broke the contract this many times is given up.
UNREADABLE_LIMIT = 4
# Calls whose success shows that the carrier held the tender.
CONFIRMING_OPERATIONS = ("tender_submit", "tender_resend", "tender_status")

RESENT = "tender.resent"
UNREADABLE = "tender.status_unreadable"


def _poll_after_seconds() -> int:
    return int(getattr(settings, "CARRIER_POLL_AFTER_SECONDS", 30))


def poll_backoff_seconds(unreadable_answers: int) -> int:
    """How long after its n-th unreadable answer a tender is polled again: 2, 4, 8 ... poll periods."""
    return int(_poll_after_seconds() * 2**unreadable_answers)


def tenders_due_for_poll(*, older_than_seconds: int | None = None) -> list[int]:
    """SENT tenders at push carriers with no answer for a while and not backing off (read-only)."""
    seconds = older_than_seconds or _poll_after_seconds()
    now = timezone.now()
    due = list(
        Tender.objects.filter(
            status=TenderStatus.SENT, updated_at__lte=now - timedelta(seconds=seconds), expires_at__gt=now
        )
        .exclude(carrier__api_base_url="")
        .exclude(external_ref="")
        .values_list("pk", flat=True)[:500]
    )
    if not due:
        return due
    backing_off = {
        row["subject_id"]
        for row in AuditEvent.objects.filter(subject_type="tender", subject_id__in=due, action=UNREADABLE)
        .values("subject_id")
        .annotate(answers=Count("id"), last=Max("occurred_at"))
        if row["last"] + timedelta(seconds=poll_backoff_seconds(row["answers"])) > now
    }
    return [pk for pk in due if pk not in backing_off]


def tender_status_sync(*, tender_id: int) -> str:
    """Poll the carrier for a SENT tender's state and act on the answer; returns what happened."""
    tender = Tender.objects.select_related("carrier").get(pk=tender_id)
    if tender.status != TenderStatus.SENT or not tender.external_ref or not tender.carrier.api_base_url:
        return f"skipped: tender is {tender.status}"
    polled_at = timezone.now()
    try:
        with CarrierClient(tender.carrier) as client:
            state = client.tender_status(tender)
    except CarrierNotFound:
        return _tender_unknown(tender_id=tender.pk, polled_at=polled_at)
    except CarrierGone as exc:
        return dispatch.tender_closed_by_carrier(
            tender_id=tender.pk,
            to_status=TenderStatus.CANCELLED,
            reason="withdrawn by the carrier (HTTP 410 Gone to a status poll)",
            data={"external_ref": tender.external_ref, "http_status": 410, "detail": str(exc)},
        )
    except CarrierMalformed as exc:
        return _tender_unreadable(tender_id=tender.pk, error=str(exc))
    except CarrierError as exc:
        return f"failed: {exc}"
    return dispatch.tender_apply_remote_state(tender_id=tender.pk, state=state, source="api-poll")


# --- 404: resend once, then lost ---------------------------------------------------------------


def _tender_unknown(*, tender_id: int, polled_at: datetime) -> str:
    """The carrier answered 404: claim the one resend, or, if it was spent, mark the tender lost."""
    with transaction.atomic():
        tender = Tender.objects.select_for_update().select_related("carrier", "shipment").get(pk=tender_id)
        if tender.status != TenderStatus.SENT:
            return f"skipped: tender is {tender.status}"
        resent = (
            AuditEvent.objects.filter(subject_type="tender", subject_id=tender.pk, action=RESENT)
            .order_by("-occurred_at")
            .values_list("occurred_at", flat=True)
            .first()
        )
        if resent is not None and resent >= polled_at:
            # Another poll claimed the resend after this one asked: this 404 may predate it.
            return "unknown: a resend is under way"
        if resent is None:
            # Claimed under the row lock, before the call: two polls racing resend once.
            _tender_event(
                tender,
                RESENT,
                {
                    "external_ref": tender.external_ref,
                    "idempotency_key": str(tender.idempotency_key),
                    "why": f"{tender.carrier.name} answered 404 to a status poll; "
                    "the tender is sent again under the same Idempotency-Key",
                },
            )
    if resent is not None:
        return _tender_lost(tender_id=tender_id, why="404 again after one resend under the same Idempotency-Key")
    return _tender_resend(tender_id=tender_id)


def _tender_resend(*, tender_id: int) -> str:
    tender = Tender.objects.select_related("carrier", "shipment").get(pk=tender_id)
    try:
        with CarrierClient(tender.carrier) as client:
            state = client.tender_resend(tender)
    except CarrierClientError as exc:
        # Refused (e.g. 422: the key was used with another body): the carrier will not take it back.
        _tender_event(tender, "tender.resend_failed", {"reason": str(exc)})
        return _tender_lost(tender_id=tender_id, why=f"the carrier refused the resend: {exc}")
    except CarrierError as exc:
        # No answer (or a garbled one): the resend is spent all the same; the next poll decides.
        _tender_event(tender, "tender.resend_failed", {"reason": str(exc)})
        return f"resend failed: {exc}"
    ref = str(state["ref"])
    with transaction.atomic():
        locked = Tender.objects.select_for_update().get(pk=tender_id)
        previous = locked.external_ref
        if locked.status == TenderStatus.SENT:
            # The carrier's ref may be new (it took the tender afresh); either way the next poll
            # waits a full poll period from now.
            locked.external_ref = ref[:120]
            locked.save(update_fields=["external_ref", "updated_at"])
        _tender_event(
            tender,
            "tender.resend_answered",
            {
                "external_ref": ref,
                "previous_ref": previous,
                "remote_status": state.get("status"),
                "why": f"{tender.carrier.name} holds the tender again as {ref}",
            },
        )
    return f"resent: {dispatch.tender_apply_remote_state(tender_id=tender_id, state=state, source='api-resend')}"


def _tender_lost(*, tender_id: int, why: str) -> str:
    with transaction.atomic():
        tender = Tender.objects.select_for_update().select_related("carrier", "shipment").get(pk=tender_id)
        if tender.status != TenderStatus.SENT:
            return f"skipped: tender is {tender.status}"
        confirmed = OutboundCall.objects.filter(
            tender_id=tender.pk, ok=True, operation__in=CONFIRMING_OPERATIONS
        ).exists()
        reason = f"lost: {tender.carrier.name} does not know tender {tender.external_ref} ({why})"
        tender_transition(tender_id=tender.pk, to_status=TenderStatus.FAILED, actor=POLL, reason=reason)
        _tender_event(
            tender,
            "tender.lost",
            {
                "reason": reason,
                "external_ref": tender.external_ref,
                "confirmed_by_carrier": confirmed,
                # The carrier had confirmed it, so the loss is the carrier's: on-call hears of it.
                "escalate": confirmed,
            },
        )
    dispatch.waterfall_advance(shipment_id=tender.shipment_id)
    return "lost"


# --- Contract violations: back off, then give up -----------------------------------------------


def _tender_unreadable(*, tender_id: int, error: str) -> str:
    with transaction.atomic():
        tender = Tender.objects.select_for_update().select_related("carrier", "shipment").get(pk=tender_id)
        if tender.status != TenderStatus.SENT:
            return f"skipped: tender is {tender.status}"
        count = AuditEvent.objects.filter(subject_type="tender", subject_id=tender.pk, action=UNREADABLE).count() + 1
        last = count >= UNREADABLE_LIMIT
        _tender_event(
            tender,
            UNREADABLE,
            {
                "reason": f"status answer {count} of at most {UNREADABLE_LIMIT} that breaks the contract: {error}",
                "count": count,
                "limit": UNREADABLE_LIMIT,
                "next_poll_after_seconds": None if last else poll_backoff_seconds(count),
            },
        )
        if not last:
            return f"unreadable ({count}/{UNREADABLE_LIMIT}): {error}"
        reason = f"given up: {count} status answers from {tender.carrier.name} broke the contract (last: {error})"
        tender_transition(tender_id=tender.pk, to_status=TenderStatus.FAILED, actor=POLL, reason=reason[:300])
        _tender_event(
            tender,
            "tender.given_up",
            {"reason": reason, "external_ref": tender.external_ref, "unreadable_answers": count, "escalate": True},
        )
    dispatch.waterfall_advance(shipment_id=tender.shipment_id)
    return "given up"


def _tender_event(tender: Tender, action: str, data: dict[str, Any]) -> None:
    with transaction.atomic():
        event_record(
            actor=POLL,
            action=action,
            subject_type="tender",
            subject_id=tender.pk,
            data=data,
            correlation_id=tender.correlation_id,
            shipment=tender.shipment,
            carrier=tender.carrier,
        )
