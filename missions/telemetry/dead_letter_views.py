"""Console pages for dead letters: on-call lists, inspects and discards what the telemetry inputs could not take."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.models import DeadLetter, DeadLetterStatus
from missions.telemetry.dead_letters import dead_letter_discard, dead_letters, payload_preview
from tms_console.pages import paginate, run_action
from tms_console.permissions import console_permission_required
from tms_console.roles import RESPOND_INCIDENTS, VIEW_CONSOLE, perm

STATUSES = {"open": DeadLetterStatus.OPEN, "discarded": DeadLetterStatus.DISCARDED, "all": None}


@console_permission_required(VIEW_CONSOLE)
def dead_letter_list(request: HttpRequest) -> HttpResponse:
    shown = request.GET.get("status", "open")
    if shown not in STATUSES:
        shown = "open"
    return render(
        request,
        "missions/dead_letters.html",
        {"nav": "incidents", "page": paginate(request, dead_letters(status=STATUSES[shown])), "shown": shown},
    )


@console_permission_required(VIEW_CONSOLE)
def dead_letter_detail(request: HttpRequest, pk: int) -> HttpResponse:
    letter = get_object_or_404(DeadLetter.objects.select_related("carrier"), pk=pk)
    return render(
        request,
        "missions/dead_letter_detail.html",
        {
            "nav": "incidents",
            "letter": letter,
            "preview": payload_preview(letter),
            "can_discard": request.user.has_perm(perm(RESPOND_INCIDENTS)),
        },
    )


@require_POST
@console_permission_required(RESPOND_INCIDENTS)
def dead_letter_discard_view(request: HttpRequest, pk: int) -> HttpResponse:
    letter = get_object_or_404(DeadLetter, pk=pk)
    note = str(request.POST.get("note", ""))[:500]
    run_action(
        request,
        lambda: dead_letter_discard(dead_letter_id=letter.pk, actor=Actor.for_user(request.user), note=note),
        f"Dead letter {letter.pk} discarded.",
    )
    return redirect("telemetry:dead_letter_detail", pk=letter.pk)
