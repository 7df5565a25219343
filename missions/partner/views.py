"""Console pages for partner credentials: OAuth clients per carrier and webhook signing secrets.

A new or rotated secret is rendered once, in the response to the POST that
made it, with ``Cache-Control: no-store``; it is never put in the session,
a message or a log.
"""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.models import Carrier
from missions.models.partner import PARTNER_SCOPES, PartnerClient, WebhookSecret
from missions.partner import services as partner_services
from tms_console.domain import DomainError
from tms_console.permissions import console_permission_required
from tms_console.roles import MANAGE_PLATFORM


class PartnerClientForm(forms.Form):
    carrier = forms.ModelChoiceField(queryset=Carrier.objects.order_by("name"))
    name = forms.CharField(max_length=120)
    scopes = forms.MultipleChoiceField(
        choices=[(s, f"{s}: {label}") for s, label in PARTNER_SCOPES.items()],
        widget=forms.CheckboxSelectMultiple,
        initial=list(PARTNER_SCOPES),
    )


def _secret_page(request: HttpRequest, context: dict[str, object]) -> HttpResponse:
    response = render(request, "partners/secret_once.html", context)
    response["Cache-Control"] = "no-store"
    return response


@console_permission_required(MANAGE_PLATFORM)
def partner_list(request: HttpRequest) -> HttpResponse:
    clients = PartnerClient.objects.select_related("application", "carrier").order_by("carrier__name", "id")
    secrets = WebhookSecret.objects.select_related("carrier").order_by("carrier__name", "-valid_from")
    form = PartnerClientForm()
    return render(
        request,
        "partners/list.html",
        {
            "clients": clients,
            "webhook_secrets": secrets,
            "form": form,
            "carriers": Carrier.objects.order_by("name"),
            "nav": "carriers",
        },
    )


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def partner_client_create(request: HttpRequest) -> HttpResponse:
    form = PartnerClientForm(request.POST)
    if form.is_valid():
        try:
            issued = partner_services.partner_client_create(
                carrier_id=form.cleaned_data["carrier"].pk,
                name=form.cleaned_data["name"],
                scopes=list(form.cleaned_data["scopes"]),
                actor=Actor.for_user(request.user),
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            return _secret_page(request, {"what": "client", "issued": issued, "carrier": issued.client.carrier})
    clients = PartnerClient.objects.select_related("application", "carrier")
    return render(
        request,
        "partners/list.html",
        {"clients": clients, "form": form, "webhook_secrets": WebhookSecret.objects.none()},
        status=400,
    )


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def partner_client_rotate(request: HttpRequest, pk: int) -> HttpResponse:
    client = get_object_or_404(PartnerClient, pk=pk)
    issued = partner_services.partner_client_rotate_secret(client_id=client.pk, actor=Actor.for_user(request.user))
    return _secret_page(request, {"what": "client", "issued": issued, "carrier": client.carrier, "rotated": True})


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def webhook_secret_rotate(request: HttpRequest, carrier_pk: int) -> HttpResponse:
    carrier = get_object_or_404(Carrier, pk=carrier_pk)
    secret = partner_services.webhook_secret_rotate(carrier_id=carrier.pk, actor=Actor.for_user(request.user))
    return _secret_page(request, {"what": "webhook", "secret": secret, "carrier": carrier})
