"""Console pages for partner credentials: OAuth clients per carrier, their certificates, webhook signing secrets.

A new or rotated secret is rendered once, in the response to the POST that
made it, with ``Cache-Control: no-store``; it is never put in the session,
a message or a log.

A client's certificate (RFC 8705 §2.1, ``tls_client_auth``) is registered
when the client is created or later from the list; the service checks and
normalizes the value and its errors are shown next to the field.
"""

from __future__ import annotations

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.models import Carrier
from missions.models.partner import PARTNER_SCOPES, CertificateKind, PartnerClient, WebhookSecret
from missions.partner import services as partner_services
from tms_console.domain import DomainError
from tms_console.permissions import console_permission_required
from tms_console.roles import MANAGE_PLATFORM

CERTIFICATE_HELP = (
    "RFC 8705 tls_client_auth: the subject DN in RFC 4514 form (CN=gateway-1,O=Carrier A,C=US), a SAN entry, "
    "or the SHA-256 thumbprint (hex or base64url; a PEM certificate may be pasted). Required when the carrier "
    "requires mTLS: only a certificate carrying this value gets this client a token."
)


class CertificateFields(forms.Form):
    """The certificate a client authenticates with; the service validates and normalizes the value."""

    certificate_kind = forms.ChoiceField(
        label="Certificate field",
        choices=[("", "No certificate registered"), *CertificateKind.choices],
        required=False,
    )
    certificate_value = forms.CharField(
        label="Expected value",
        required=False,
        max_length=8192,  # a pasted PEM certificate; the stored value is at most 1,024 characters
        widget=forms.Textarea(attrs={"rows": 2, "cols": 60}),
        help_text=CERTIFICATE_HELP,
    )


class PartnerClientForm(CertificateFields):
    carrier = forms.ModelChoiceField(queryset=Carrier.objects.order_by("name"))
    name = forms.CharField(max_length=120)
    scopes = forms.MultipleChoiceField(
        choices=[(s, f"{s}: {label}") for s, label in PARTNER_SCOPES.items()],
        widget=forms.CheckboxSelectMultiple,
        initial=list(PARTNER_SCOPES),
    )
    field_order = ["carrier", "name", "scopes", "certificate_kind", "certificate_value"]


def _list_page(
    request: HttpRequest,
    *,
    form: PartnerClientForm | None = None,
    certificate_form: tuple[int, CertificateFields] | None = None,
    status: int = 200,
) -> HttpResponse:
    clients = list(PartnerClient.objects.select_related("application", "carrier").order_by("carrier__name", "id"))
    for client in clients:
        # Each row carries its own certificate form: the failed one (bound, with its errors) or a fresh one.
        if certificate_form is not None and certificate_form[0] == client.pk:
            client.certificate_form = certificate_form[1]  # type: ignore[attr-defined]
        else:
            initial = {"certificate_kind": client.certificate_kind, "certificate_value": client.certificate_value}
            client.certificate_form = CertificateFields(initial=initial, prefix=f"c{client.pk}")  # type: ignore[attr-defined]
    secrets = WebhookSecret.objects.select_related("carrier").order_by("carrier__name", "-valid_from")
    return render(
        request,
        "partners/list.html",
        {
            "clients": clients,
            "webhook_secrets": secrets,
            "form": form or PartnerClientForm(),
            "carriers": Carrier.objects.order_by("name"),
            "nav": "carriers",
        },
        status=status,
    )


def _secret_page(request: HttpRequest, context: dict[str, object]) -> HttpResponse:
    response = render(request, "partners/secret_once.html", context)
    response["Cache-Control"] = "no-store"
    return response


@console_permission_required(MANAGE_PLATFORM)
def partner_list(request: HttpRequest) -> HttpResponse:
    return _list_page(request)


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
                certificate_kind=form.cleaned_data["certificate_kind"],
                certificate_value=form.cleaned_data["certificate_value"],
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            return _secret_page(request, {"what": "client", "issued": issued, "carrier": issued.client.carrier})
    return _list_page(request, form=form, status=400)


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def partner_client_certificate(request: HttpRequest, pk: int) -> HttpResponse:
    """Register, replace or clear the certificate of an existing client."""
    client = get_object_or_404(PartnerClient, pk=pk)
    form = CertificateFields(request.POST, prefix=f"c{client.pk}")
    if form.is_valid():
        try:
            partner_services.partner_client_certificate_set(
                client_id=client.pk,
                kind=form.cleaned_data["certificate_kind"],
                value=form.cleaned_data["certificate_value"],
                actor=Actor.for_user(request.user),
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            return redirect("partners:list")
    return _list_page(request, certificate_form=(client.pk, form), status=400)


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
