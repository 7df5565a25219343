"""Console pages for carriers, shipments and missions (thin: parse, call a service, render).

Reads go through ``missions.selectors``; every change goes through
``missions.services`` or ``missions.tendering.dispatch`` (which also tells the carrier:
publishing a tender, remote cancels, stopping a waterfall). Domain refusals are shown as
a message and change nothing (the services are atomic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from missions import selectors, services
from missions.choices import MissionStatus, ShipmentStatus, TenderStatus
from missions.events import Actor
from missions.models import Carrier, CarrierCircuit, Mission, Offer, Shipment, Tender
from missions.tendering import dispatch
from missions.tendering.forms import (
    CounterDecisionForm,
    EligibilityForm,
    ReasonForm,
    ShipmentCreateForm,
    TenderCreateForm,
    WaterfallForm,
)
from missions.transitions import MISSION_ACTIVE, TENDER_OPEN
from tms_console.domain import DomainError
from tms_console.pages import form_errors_message, last_event_id, paginate, run_action
from tms_console.permissions import console_permission_required
from tms_console.roles import DISPATCH_LOADS, VIEW_CONSOLE, perm
from tms_console.trace_pages import trace_card

view_required = console_permission_required(VIEW_CONSOLE)
dispatch_required = console_permission_required(DISPATCH_LOADS)


def _cancel_with_reason(
    request: HttpRequest, *, what: str, back: str, call: Callable[[Actor, str], Any], done: str
) -> HttpResponse:
    """A cancel button: a reason is required; the service does it or refuses; back to the page."""
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"A reason is required to cancel a {what}.")
    else:
        reason = form.cleaned_data["reason"]
        run_action(request, lambda: call(Actor.for_user(request.user), reason), done)
    return HttpResponseRedirect(back)


# --- carriers -------------------------------------------------------------------------


@view_required
def carrier_list(request: HttpRequest) -> HttpResponse:
    carriers = (
        Carrier.objects.select_related("circuit")
        .annotate(vehicle_count=Count("vehicles", distinct=True))
        .order_by("name")
    )
    return render(request, "missions/carrier_list.html", {"nav": "carriers", "page": paginate(request, carriers)})


@view_required
def carrier_detail(request: HttpRequest, pk: int) -> HttpResponse:
    carrier = get_object_or_404(Carrier, pk=pk)
    try:
        circuit: CarrierCircuit | None = carrier.circuit
    except CarrierCircuit.DoesNotExist:
        circuit = None
    context = {
        "nav": "carriers",
        "carrier": carrier,
        "circuit": circuit,
        "vehicles": carrier.vehicles.all(),
        "recent_missions": carrier.missions.select_related("shipment", "vehicle").order_by("-id")[:20],
        "open_tenders": carrier.tenders.filter(status__in=TENDER_OPEN).select_related("shipment"),
        "contracts": carrier.contracts.all(),  # type: ignore[attr-defined]
        "flag_states": next((states for _c, states in selectors.carrier_flag_board(carrier_ids=[carrier.pk])), []),
    }
    return render(request, "missions/carrier_detail.html", context)


# --- shipments ------------------------------------------------------------------------


@view_required
def shipment_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status not in ShipmentStatus.values:
        status = ""
    search = request.GET.get("q", "").strip()[:100]
    shipments = selectors.shipment_list(status=status or None, search=search or None)
    context = {
        "nav": "shipments",
        "page": paginate(request, shipments),
        "status": status,
        "q": search,
        "statuses": ShipmentStatus.choices,
        "filtered": bool(status or search),
    }
    return render(request, "missions/shipment_list.html", context)


@dispatch_required
def shipment_create(request: HttpRequest) -> HttpResponse:
    form = ShipmentCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            shipment = services.shipment_create(actor=Actor.for_user(request.user), **form.service_fields())
        except ValidationError as exc:
            form.add_model_errors(exc)
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Shipment {shipment.reference} created.")
            return redirect("missions:shipment_detail", pk=shipment.pk)
    status = 400 if request.method == "POST" else 200
    context = {"nav": "shipments", "form": form, **_eligibility(request.POST or None)}
    return render(request, "missions/shipment_form.html", context, status=status)


def _eligibility(data: Any) -> dict[str, Any]:
    """Which carriers could take the load typed so far, and why the others cannot."""
    form = EligibilityForm(data)
    if form.is_bound:
        form.is_valid()  # keeps the valid fields in cleaned_data; the panel names the others
    asked = form.is_bound and form.asked()
    fits = selectors.carrier_ranking(shipment=form.draft()) if asked else []
    return {
        "eligibility_form": form,
        "eligibility_asked": asked,
        "eligibility_fits": fits,
        "eligibility_count": sum(1 for fit in fits if fit.eligible),
        "eligibility_invalid": form.invalid_labels() if form.is_bound else [],
    }


@dispatch_required
def shipment_eligibility(request: HttpRequest) -> HttpResponse:
    """The eligibility panel of the new-shipment form, for what is typed so far (GET, no change)."""
    return render(request, "missions/_eligibility.html", _eligibility(request.GET))


@view_required
def shipment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    shipment = get_object_or_404(Shipment, pk=pk)
    ranking = selectors.carrier_ranking(shipment=shipment)
    eligible = [fit.carrier for fit in ranking if fit.eligible]
    tenders = (
        shipment.tenders.select_related("carrier")
        .prefetch_related(Prefetch("offers", queryset=Offer.objects.order_by("id")))
        .order_by("-id")
    )
    missions_qs = shipment.missions.select_related("carrier", "vehicle").order_by("-id")
    timeline = list(selectors.shipment_timeline(shipment=shipment).select_related("actor_user"))
    has_active_mission = any(m.status in MISSION_ACTIVE for m in missions_qs)
    # Display only: the services refuse a second open tender to a carrier, and a waterfall while any
    # tender is open; the page says so up front instead of offering forms that would be refused.
    open_by_carrier = {t.carrier_id: t for t in tenders if t.status in TENDER_OPEN}
    tenderable = [c for c in eligible if c.pk not in open_by_carrier]
    context = {
        "nav": "shipments",
        "shipment": shipment,
        "ranking": ranking,
        "eligible_count": len(eligible),
        "tenders": tenders,
        "missions": missions_qs,
        "timeline": timeline,
        "last_event_id": last_event_id(timeline),
        "can_dispatch": request.user.has_perm(perm(DISPATCH_LOADS)),
        "can_tender": shipment.status in (ShipmentStatus.OPEN, ShipmentStatus.TENDERING) and not has_active_mission,
        "can_cancel": shipment.status
        not in (ShipmentStatus.DELIVERED, ShipmentStatus.CANCELLED, ShipmentStatus.FAILED),
        "tender_form": TenderCreateForm(carriers=tenderable),
        "tenderable_count": len(tenderable),
        "open_tenders": list(open_by_carrier.values()),
        "ranking_rows": [(fit, open_by_carrier.get(fit.carrier.pk)) for fit in ranking],
        "open_tender_statuses": sorted(TENDER_OPEN),
        "countered": TenderStatus.COUNTERED,
    }
    return render(request, "missions/shipment_detail.html", context)


def _shipment_url(pk: int) -> str:
    return reverse("missions:shipment_detail", kwargs={"pk": pk})


@require_POST
@dispatch_required
def shipment_tender(request: HttpRequest, pk: int) -> HttpResponse:
    shipment = get_object_or_404(Shipment, pk=pk)
    form = TenderCreateForm(request.POST)
    if not form.is_valid():
        form_errors_message(request, form)
        return HttpResponseRedirect(_shipment_url(shipment.pk))
    carrier: Carrier = form.cleaned_data["carrier"]

    def action() -> None:
        # One transaction: a tender that cannot be published is not left behind;
        # the outbound send is enqueued only once this commits.
        with transaction.atomic():
            tender = services.tender_create(
                actor=Actor.for_user(request.user),
                shipment_id=shipment.pk,
                carrier_id=carrier.pk,
                offered_price_usd=form.cleaned_data.get("offered_price_usd"),
                expiry_seconds=form.cleaned_data.get("expiry_seconds"),
            )
            dispatch.tender_publish(tender_id=tender.pk)

    run_action(request, action, f"Tendered {shipment.reference} to {carrier.name}.")
    return HttpResponseRedirect(_shipment_url(shipment.pk))


@require_POST
@dispatch_required
def shipment_waterfall(request: HttpRequest, pk: int) -> HttpResponse:
    shipment = get_object_or_404(Shipment, pk=pk)
    form = WaterfallForm(request.POST)
    if not form.is_valid():
        form_errors_message(request, form)
        return HttpResponseRedirect(_shipment_url(shipment.pk))
    started: list[Tender | None] = []

    def action() -> None:
        started.append(
            dispatch.waterfall_start(
                shipment_id=shipment.pk,
                actor=Actor.for_user(request.user),
                offered_price_usd=form.cleaned_data.get("offered_price_usd"),
            )
        )

    if run_action(request, action, f"Waterfall started for {shipment.reference}.") and started[0] is None:
        # The success message is already queued; add why nothing was tendered.
        messages.warning(request, "No eligible carrier is left to tender to.")
    return HttpResponseRedirect(_shipment_url(shipment.pk))


@require_POST
@dispatch_required
def shipment_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    shipment = get_object_or_404(Shipment, pk=pk)
    return _cancel_with_reason(
        request,
        what="shipment",
        back=_shipment_url(shipment.pk),
        call=lambda actor, reason: dispatch.shipment_cancel(shipment_id=shipment.pk, actor=actor, reason=reason),
        done=f"Shipment {shipment.reference} cancelled.",
    )


@require_POST
@dispatch_required
def tender_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    tender = get_object_or_404(Tender, pk=pk)
    return _cancel_with_reason(
        request,
        what="tender",
        back=_shipment_url(tender.shipment_id),
        call=lambda actor, reason: dispatch.tender_cancel(tender_id=tender.pk, actor=actor, reason=reason),
        done=f"Tender {tender.pk} cancelled.",
    )


@require_POST
@dispatch_required
def tender_counter_decide(request: HttpRequest, pk: int) -> HttpResponse:
    tender = get_object_or_404(Tender, pk=pk)
    form = CounterDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose to accept or decline the counter-offer.")
        return HttpResponseRedirect(_shipment_url(tender.shipment_id))
    accept = form.cleaned_data["decision"] == "accept"
    run_action(
        request,
        lambda: dispatch.counter_decide(
            tender_id=tender.pk,
            actor=Actor.for_user(request.user),
            accept=accept,
            reason=form.cleaned_data.get("reason", ""),
        ),
        "Counter-offer accepted; the mission is created." if accept else "Counter-offer declined.",
    )
    return HttpResponseRedirect(_shipment_url(tender.shipment_id))


# --- missions ----------------------------------------------------------------------------


@view_required
def mission_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    if status != "active" and status not in MissionStatus.values:
        status = ""
    carrier_id: int | None = None
    raw_carrier = request.GET.get("carrier", "")
    if raw_carrier.isdigit():
        carrier_id = int(raw_carrier)
    missions_qs = selectors.mission_list(status=status or None, carrier_id=carrier_id).order_by("-id")
    context = {
        "nav": "missions",
        "page": paginate(request, missions_qs),
        "status": status,
        "carrier_id": carrier_id,
        "statuses": MissionStatus.choices,
        "carriers": Carrier.objects.order_by("name").only("id", "name"),
        "filtered": bool(status or carrier_id),
    }
    return render(request, "missions/mission_list.html", context)


@view_required
def mission_detail(request: HttpRequest, pk: int) -> HttpResponse:
    mission = get_object_or_404(Mission.objects.select_related("shipment", "carrier", "vehicle", "tender"), pk=pk)
    timeline = list(selectors.mission_timeline(mission=mission).select_related("actor_user"))
    context = {
        "nav": "missions",
        "mission": mission,
        "exceptions": mission.exceptions.all(),
        "incidents": mission.incidents.order_by("-id")[:10],  # type: ignore[attr-defined]
        "timeline": timeline,
        "last_event_id": last_event_id(timeline),
        "can_dispatch": request.user.has_perm(perm(DISPATCH_LOADS)),
        "can_cancel": mission.status in MISSION_ACTIVE,
        # The load's trace: the dispatcher's tender through the carrier's answer to this mission.
        "trace": trace_card(mission.traceparent, began_at=mission.created_at),
    }
    return render(request, "missions/mission_detail.html", context)


@require_POST
@dispatch_required
def mission_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    mission = get_object_or_404(Mission, pk=pk)
    return _cancel_with_reason(
        request,
        what="mission",
        back=reverse("missions:mission_detail", kwargs={"pk": mission.pk}),
        call=lambda actor, reason: services.mission_transition(
            mission_id=mission.pk, to_status=MissionStatus.CANCELLED, actor=actor, reason=reason
        ),
        done=f"Mission {mission.pk} cancelled.",
    )
