"""Console page of the carriers' feature flags: every console user sees them; a platform manager switches them.

Thin: ``missions.selectors.carrier_flag_board`` reads, ``missions.services.carrier_flag_set``
writes (with the audit event). A refused change re-renders the page with the
form's errors next to the flag, status 400, and changes nothing.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from missions import selectors, services
from missions.choices import CarrierKind
from missions.events import Actor
from missions.flags import CARRIER_FLAGS
from missions.models import Carrier
from missions.tendering.forms import CarrierFlagForm
from tms_console.domain import DomainError
from tms_console.permissions import console_permission_required
from tms_console.roles import MANAGE_PLATFORM, VIEW_CONSOLE, perm


def _ids(carrier_pk: int, key: str) -> str:
    """Element ids unique on the page: one form per carrier and flag."""
    return f"id_{carrier_pk}_{key}_%s"


def _page(
    request: HttpRequest, *, failed: tuple[int, str, CarrierFlagForm] | None = None, status: int = 200
) -> HttpResponse:
    can_manage = request.user.has_perm(perm(MANAGE_PLATFORM))
    board = []
    for carrier, states in selectors.carrier_flag_board():
        rows = []
        for state in states:
            if failed is not None and failed[:2] == (carrier.pk, state.spec.key):
                form = failed[2]
            else:
                initial = {"flag": state.spec.key, "enabled": "off" if state.enabled else "on"}
                form = CarrierFlagForm(initial=initial, auto_id=_ids(carrier.pk, state.spec.key))
            rows.append({"state": state, "form": form, "asks_confirmation": state.spec.risky and not state.enabled})
        board.append({"carrier": carrier, "rows": rows})
    context = {
        "nav": "carriers",
        "board": board,
        "catalogue": list(CARRIER_FLAGS.values()),
        "human_driven": Carrier.objects.filter(kind=CarrierKind.HUMAN_DRIVEN).order_by("name"),
        "can_manage": can_manage,
    }
    return render(request, "missions/carrier_flags.html", context, status=status)


@console_permission_required(VIEW_CONSOLE)
def carrier_flags(request: HttpRequest) -> HttpResponse:
    return _page(request)


@require_POST
@console_permission_required(MANAGE_PLATFORM)
def carrier_flag_set(request: HttpRequest, pk: int) -> HttpResponse:
    carrier = get_object_or_404(Carrier, pk=pk)
    key = request.POST.get("flag", "")[:60]
    form = CarrierFlagForm(request.POST, auto_id=_ids(carrier.pk, key))
    if not form.is_valid():
        return _refused(request, carrier, key, form)
    data = form.cleaned_data
    try:
        services.carrier_flag_set(
            carrier_id=carrier.pk,
            key=data["flag"],
            enabled=data["enabled"],
            actor=Actor.for_user(request.user),
            reason=data["reason"],
            confirmed=data["confirm"],
        )
    except DomainError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _refused(request, carrier, key, form)
    spec = CARRIER_FLAGS[data["flag"]]
    messages.success(request, f"{spec.label} is {'on' if data['enabled'] else 'off'} for {carrier.name}.")
    return HttpResponseRedirect(reverse("missions:carrier_flags") + f"#carrier-{carrier.pk}")


def _refused(request: HttpRequest, carrier: Carrier, key: str, form: CarrierFlagForm) -> HttpResponse:
    if key in CARRIER_FLAGS and carrier.kind == CarrierKind.AUTONOMOUS:
        return _page(request, failed=(carrier.pk, key, form), status=400)
    # No row to show the errors next to (an unknown flag, a human-driven carrier): say it at the top.
    for errors in form.errors.values():
        for error in errors:
            messages.error(request, str(error))
    return _page(request, status=400)
