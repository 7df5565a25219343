"""Console pages for EDI: every interchange with its 997 status and errors; resend an outbound one."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from missions.edi import selectors, services
from missions.events import Actor
from missions.models.edi import EdiDirection, EdiInterchange, EdiPartner
from tms_console.pages import paginate, run_action
from tms_console.permissions import console_permission_required
from tms_console.roles import DISPATCH_LOADS, VIEW_CONSOLE


@console_permission_required(VIEW_CONSOLE)
def interchange_list(request: HttpRequest) -> HttpResponse:
    direction = request.GET.get("direction", "")
    if direction not in EdiDirection.values:
        direction = ""
    context = {
        "nav": "carriers",
        "page": paginate(request, selectors.interchanges(direction=direction)),
        "direction": direction,
        "directions": EdiDirection.choices,
        "partners": EdiPartner.objects.select_related("carrier").order_by("carrier__name"),
    }
    return render(request, "missions/edi_list.html", context)


@console_permission_required(VIEW_CONSOLE)
def interchange_detail(request: HttpRequest, pk: int) -> HttpResponse:
    record = get_object_or_404(EdiInterchange.objects.select_related("carrier", "ack", "acknowledges", "tender"), pk=pk)
    return render(request, "missions/edi_detail.html", {"nav": "carriers", "record": record})


@require_POST
@console_permission_required(DISPATCH_LOADS)
def interchange_resend(request: HttpRequest, pk: int) -> HttpResponse:
    record = get_object_or_404(EdiInterchange, pk=pk)
    run_action(
        request,
        lambda: services.interchange_resend(interchange_id=record.pk, actor=Actor.for_user(request.user)),
        f"Interchange {record.control_number} sent again.",
    )
    return HttpResponseRedirect(reverse("edi:detail", args=[record.pk]))
