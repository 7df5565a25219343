"""Writes for partner credentials: OAuth clients bound to carriers, client secrets, webhook secrets.

Plain secrets are returned once to the caller and never stored in clear
(OAuth client secrets are hashed by django-oauth-toolkit) nor written to
events.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from oauth2_provider.generators import generate_client_secret
from oauth2_provider.models import AccessToken, Application

from missions.events import Actor, event_record
from missions.models import Carrier
from missions.models.partner import PARTNER_SCOPES, CertificateKind, PartnerClient, WebhookSecret
from missions.partner.certificates import certificate_value_normalize
from tms_console.domain import DomainError


@dataclass(frozen=True)
class IssuedClient:
    """A partner client with the plain secret that exists only in this value."""

    client: PartnerClient
    client_id: str
    client_secret: str


def _scopes_check(scopes: list[str]) -> str:
    unknown = set(scopes) - set(PARTNER_SCOPES)
    if unknown:
        raise DomainError(f"Unknown scopes: {', '.join(sorted(unknown))}.", field="scopes")
    if not scopes:
        raise DomainError("Grant at least one scope.", field="scopes")
    return " ".join(sorted(set(scopes)))


def _certificate_check(*, carrier: Carrier, kind: str, value: str) -> tuple[str, str]:
    """The (kind, normalized value) to store; both empty when no certificate is registered."""
    if not kind and not value.strip():
        if carrier.require_mtls:
            raise DomainError(
                f"{carrier.name} requires mutual TLS: register the certificate this client will present "
                "(its subject DN, a SAN entry or its SHA-256 thumbprint).",
                field="certificate_value",
            )
        return "", ""
    if kind not in CertificateKind.values:
        raise DomainError("Choose which field of the certificate identifies the client.", field="certificate_kind")
    try:
        return kind, certificate_value_normalize(kind, value)
    except ValueError as exc:
        raise DomainError(str(exc), field="certificate_value") from None


@transaction.atomic
def partner_client_create(
    *,
    carrier_id: int,
    name: str,
    scopes: list[str],
    actor: Actor,
    certificate_kind: str = "",
    certificate_value: str = "",
) -> IssuedClient:
    """Create a client-credentials application bound to one carrier (with its certificate, RFC 8705 §2.1)."""
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    allowed = _scopes_check(scopes)
    if not name.strip():
        raise DomainError("A client needs a name.", field="name")
    kind, value = _certificate_check(carrier=carrier, kind=certificate_kind, value=certificate_value)
    raw_secret = generate_client_secret()
    application = Application.objects.create(
        name=name.strip()[:255],
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=raw_secret,
        hash_client_secret=True,
        skip_authorization=True,
    )
    client = PartnerClient.objects.create(
        application=application,
        carrier=carrier,
        allowed_scopes=allowed,
        created_by=actor.user,
        certificate_kind=kind,
        certificate_value=value,
    )
    event_record(
        actor=actor,
        action="partner_client.created",
        subject_type="partner_client",
        subject_id=client.pk,
        after={"client_id": application.client_id, "scopes": allowed, "certificate": {kind: value} if kind else None},
        carrier=carrier,
    )
    return IssuedClient(client=client, client_id=application.client_id, client_secret=raw_secret)


@transaction.atomic
def partner_client_certificate_set(*, client_id: int, kind: str, value: str, actor: Actor) -> PartnerClient:
    """Register, replace, or (empty values) clear the certificate a client authenticates with.

    A change revokes the client's outstanding tokens: they were issued under the old registration
    (perhaps over the very certificate being replaced), and the client simply asks for new ones.
    """
    client = PartnerClient.objects.select_for_update().select_related("application", "carrier").get(pk=client_id)
    before = {client.certificate_kind: client.certificate_value} if client.certificate_kind else None
    registered = _certificate_check(carrier=client.carrier, kind=kind, value=value)
    if registered == (client.certificate_kind, client.certificate_value):
        return client
    client.certificate_kind, client.certificate_value = registered
    client.save(update_fields=["certificate_kind", "certificate_value"])
    revoked, _ = AccessToken.objects.filter(application=client.application).delete()
    event_record(
        actor=actor,
        action="partner_client.certificate_changed",
        subject_type="partner_client",
        subject_id=client.pk,
        before={"certificate": before},
        after={"certificate": {client.certificate_kind: client.certificate_value} if client.certificate_kind else None},
        data={"client_id": client.application.client_id, "tokens_revoked": revoked},
        carrier=client.carrier,
    )
    return client


@transaction.atomic
def partner_client_rotate_secret(*, client_id: int, actor: Actor) -> IssuedClient:
    """Replace a client's secret and revoke its outstanding tokens (the old secret stops working at once)."""
    client = PartnerClient.objects.select_for_update().select_related("application", "carrier").get(pk=client_id)
    raw_secret = generate_client_secret()
    application = client.application
    application.client_secret = raw_secret
    application.save(update_fields=["client_secret", "updated"])
    revoked, _ = AccessToken.objects.filter(application=application).delete()
    client.rotated_at = timezone.now()
    client.save(update_fields=["rotated_at"])
    event_record(
        actor=actor,
        action="partner_client.secret_rotated",
        subject_type="partner_client",
        subject_id=client.pk,
        data={"client_id": application.client_id, "tokens_revoked": revoked},
        carrier=client.carrier,
    )
    return IssuedClient(client=client, client_id=application.client_id, client_secret=raw_secret)


def new_webhook_secret() -> str:
    # 24 random bytes, the size the Standard Webhooks examples use; base64 keeps it header- and copy-safe.
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


@transaction.atomic
def webhook_secret_rotate(*, carrier_id: int, actor: Actor, overlap_hours: int | None = None) -> WebhookSecret:
    """Issue a new signing secret; secrets still valid now stay valid for the overlap, then lapse."""
    carrier = Carrier.objects.select_for_update().get(pk=carrier_id)
    now = timezone.now()
    hours = settings.WEBHOOK_ROTATION_OVERLAP_HOURS if overlap_hours is None else overlap_hours
    if hours < 0:
        raise DomainError("The overlap cannot be negative.", field="overlap_hours")
    overlap_end = now + timedelta(hours=hours)
    current = WebhookSecret.objects.filter(carrier=carrier, valid_from__lte=now).exclude(valid_until__lte=now)
    lapsing = 0
    for old in current:
        if old.valid_until is None or old.valid_until > overlap_end:
            old.valid_until = overlap_end
            old.save(update_fields=["valid_until"])
            lapsing += 1
    secret = WebhookSecret.objects.create(
        carrier=carrier, secret=new_webhook_secret(), valid_from=now, created_by=actor.user
    )
    event_record(
        actor=actor,
        action="webhook_secret.rotated",
        subject_type="carrier",
        subject_id=carrier.pk,
        data={"secret_id": secret.pk, "previous_valid_until": overlap_end if lapsing else None},
        carrier=carrier,
    )
    return secret
