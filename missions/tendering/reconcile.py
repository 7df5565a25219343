"""Tenders whose fate at the carrier is unknown: ask the carrier again, and settle what it holds.

A submit that timed out after sending (or got a 5xx, or an answer outside the contract) failed here and
its waterfall moved on, but the request may have reached the carrier, which may have booked a truck for
it. Left alone, the carrier would turn up for a load another carrier now carries. Once the carrier's
circuit is closed, the submit is sent again with the tender's own ``Idempotency-Key``: the contract says
the same key gets the same answer, so the carrier names the tender it holds (its ``ref``) and its state.

* pending or countered: the console withdraws it (``tender_cancel_remote``);
* accepted: the contract lets nobody withdraw an accepted tender through the API (409), so a person
  settles it with the carrier: the carrier's "tenders out of sync" incident (``runbooks``) is opened or
  joined, with the carrier's reference and truck;
* rejected, cancelled, expired, or a refusal (4xx): the carrier holds nothing.

Should the carrier never have received the first submit, the resend books it now and it is settled the
same way. A carrier that still does not answer is asked again at the next round; after ``GIVE_UP_AFTER``
the tender is left to a person, with an event saying so.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from missions.choices import CircuitState, TenderStatus
from missions.events import Actor, event_record
from missions.models import CarrierCircuit, Tender
from missions.tendering import dispatch
from missions.tendering.carrier_client import CarrierClient, CarrierClientError, CarrierError

RECONCILER = Actor.system("reconcile")
BATCH = 50
GIVE_UP_AFTER = timedelta(hours=24)
# The carrier's answer to the resend: it holds nothing / the console may withdraw it / only a person can.
NOTHING_HELD = ("rejected", "cancelled", "expired")
WITHDRAWABLE = ("pending", "countered")


def tenders_in_doubt() -> list[int]:
    """FAILED tenders of unknown outcome whose carrier answers calls again (circuit closed), oldest first."""
    open_circuits = CarrierCircuit.objects.exclude(state=CircuitState.CLOSED).values("carrier_id")
    return list(
        Tender.objects.filter(status=TenderStatus.FAILED, outcome_unknown_since__isnull=False)
        .exclude(carrier_id__in=open_circuits)
        .order_by("outcome_unknown_since")
        .values_list("pk", flat=True)[:BATCH]
    )


def tender_reconcile(*, tender_id: int) -> str:
    """Ask the carrier about one tender of unknown outcome; returns what happened."""
    tender = Tender.objects.select_related("carrier", "shipment").get(pk=tender_id)
    if tender.status != TenderStatus.FAILED or tender.outcome_unknown_since is None:
        return "skipped: nothing in doubt"
    try:
        with CarrierClient(tender.carrier) as client:
            state = client.tender_resend(tender)
    except CarrierClientError as exc:
        _settle(tender, action="tender.reconciled", data={"held": False, "answer": str(exc)[:300]})
        return "not held: the carrier refused the resend"
    except CarrierError as exc:
        if timezone.now() - tender.outcome_unknown_since < GIVE_UP_AFTER:
            return f"still unknown: {exc}"
        _settle(tender, action="tender.reconcile_gave_up", data={"error": str(exc)[:300]})
        return "gave up: ask the carrier"
    remote_status = str(state.get("status") or "")
    ref = str(state.get("ref") or "")
    if remote_status in NOTHING_HELD:
        data = {"held": False, "external_ref": ref, "remote_status": remote_status}
        _settle(tender, action="tender.reconciled", data=data)
        return f"not held ({remote_status})"
    if remote_status in WITHDRAWABLE:
        _settle(
            tender,
            action="tender.reconciled",
            data={"held": True, "external_ref": ref, "remote_status": remote_status, "settled": "withdrawn"},
            external_ref=ref,
            withdraw=True,
        )
        return f"held ({remote_status}): withdrawn"
    offer = state.get("offer") if isinstance(state.get("offer"), dict) else {}
    vehicle = str((offer or {}).get("vehicle_id") or "")
    reason = (
        f"The carrier {remote_status} this tender (truck {vehicle or 'not named'}) after the console had given up"
        f" on it ({tender.status_reason}); an {remote_status} tender cannot be withdrawn through its API."
    )
    _settle(
        tender,
        action="tender.reconciled",
        data={"held": True, "external_ref": ref, "remote_status": remote_status, "settled": "escalated",
              "vehicle_id": vehicle, "reason": reason, "escalate": True},
        external_ref=ref,
    )  # fmt: skip
    return f"held ({remote_status}): escalated to on-call"


def _settle(
    tender: Tender, *, action: str, data: dict[str, object], external_ref: str = "", withdraw: bool = False
) -> None:
    with transaction.atomic():
        locked = Tender.objects.select_for_update().select_related("carrier", "shipment").get(pk=tender.pk)
        if locked.outcome_unknown_since is None:
            return  # settled by a concurrent round
        locked.outcome_unknown_since = None
        fields = ["outcome_unknown_since", "updated_at"]
        if external_ref and not locked.external_ref:
            locked.external_ref = external_ref[:120]
            fields.append("external_ref")
        locked.save(update_fields=fields)
        event_record(
            actor=RECONCILER,
            action=action,
            subject_type="tender",
            subject_id=locked.pk,
            data=data,
            correlation_id=locked.correlation_id,
            shipment=locked.shipment,
            carrier=locked.carrier,
        )
        if withdraw:
            dispatch.remote_cancel_owed(locked)
