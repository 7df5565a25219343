"""Console page of the carriers' TUF repositories: bootstrap a trusted root, refresh, see refusals (thin).

Administrators (``manage_platform``) configure a repository: the carrier, its
role (Uptane image or director repository), the metadata URL and the root
metadata they obtained from the carrier out of band. A bad URL, text that is
not JSON, JSON that is not TUF root metadata, or a root its own keys did not
sign is shown next to its field (status 400) and nothing changes.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from missions.events import Actor
from missions.models import Carrier, CarrierOtaRepository, OtaRepositoryRole
from missions.ota import services
from missions.ota.selectors import ota_recent_events, ota_repositories, refused_software
from missions.ota.tuf_client import FAILURES
from missions.ota.verify import REFUSALS
from tms_console.domain import DomainError
from tms_console.permissions import console_permission_required
from tms_console.roles import MANAGE_PLATFORM

ROOT_HELP = (
    "The carrier's root.json, obtained from the carrier out of band (not from the repository itself). It must be "
    "signed by a threshold of its own root keys; later roots are fetched and verified from it."
)


class OtaRepositoryForm(forms.Form):
    carrier = forms.ModelChoiceField(queryset=Carrier.objects.order_by("name"))
    role = forms.ChoiceField(choices=OtaRepositoryRole.choices, initial=OtaRepositoryRole.IMAGE)
    metadata_url = forms.CharField(
        label="Metadata URL",
        max_length=500,
        help_text="Base URL of the repository's metadata (https://tuf.carrier.example/metadata/ or file:///srv/...).",
    )
    trusted_root = forms.CharField(
        label="Trusted root metadata (JSON)",
        max_length=512_000,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "spellcheck": "false"}),
        help_text=ROOT_HELP,
    )


def _page(request: HttpRequest, *, form: OtaRepositoryForm | None = None, status: int = 200) -> HttpResponse:
    context = {
        "nav": "carriers",
        "repositories": ota_repositories(),
        "events": ota_recent_events(),
        "refused": refused_software().order_by("vehicle__carrier__name", "vehicle__external_id"),
        "failures": FAILURES,
        "refusals": REFUSALS,
        "form": form or OtaRepositoryForm(),
    }
    return render(request, "partners/ota.html", context, status=status)


@console_permission_required(MANAGE_PLATFORM)
def ota_repository_list(request: HttpRequest) -> HttpResponse:
    return _page(request)


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def ota_repository_configure(request: HttpRequest) -> HttpResponse:
    form = OtaRepositoryForm(request.POST)
    if form.is_valid():
        try:
            repo = services.ota_repository_configure(
                carrier_id=form.cleaned_data["carrier"].pk,
                role=form.cleaned_data["role"],
                metadata_url=form.cleaned_data["metadata_url"],
                trusted_root=form.cleaned_data["trusted_root"],
                actor=Actor.for_user(request.user),
            )
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(
                request,
                f"{repo.get_role_display()} of {repo.carrier.name} trusts root {repo.root_sha256[:12]}; "
                "refresh it to fetch its metadata.",
            )
            return redirect("partners:ota")
    return _page(request, form=form, status=400)


@console_permission_required(MANAGE_PLATFORM)
@require_POST
def ota_repository_refresh(request: HttpRequest, pk: int) -> HttpResponse:
    repo = get_object_or_404(CarrierOtaRepository.objects.select_related("carrier"), pk=pk)
    repo = services.ota_repository_refresh(repository_id=repo.pk, actor=Actor.for_user(request.user))
    label = f"{repo.get_role_display()} of {repo.carrier.name}"
    if repo.refresh_ok:
        messages.success(request, f"{label}: metadata verified (targets version {repo.versions.get('targets')}).")
    else:
        messages.error(request, f"{label}: {FAILURES.get(repo.failure_kind, repo.failure_kind)}: {repo.failure_reason}")
    return redirect("partners:ota")
