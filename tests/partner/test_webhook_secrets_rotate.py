"""``manage.py webhook_secrets_rotate``: the scheduled rotation of webhook signing secrets."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from missions.models import AuditEvent, Carrier
from missions.models.partner import WebhookSecret
from tests.factories import CarrierFactory

pytestmark = pytest.mark.django_db


def _secret(carrier: Carrier, *, age_days: float, valid_for_hours: float | None = None) -> WebhookSecret:
    issued = timezone.now() - timedelta(days=age_days)
    until = None if valid_for_hours is None else timezone.now() + timedelta(hours=valid_for_hours)
    return WebhookSecret.objects.create(
        carrier=carrier, secret=f"whsec_{carrier.slug}", valid_from=issued, valid_until=until
    )


def _run(*args: str) -> str:
    out = io.StringIO()
    call_command("webhook_secrets_rotate", *args, stdout=out)
    return out.getvalue()


def test_rotates_only_the_carriers_whose_newest_valid_secret_is_old() -> None:
    old, fresh, never = CarrierFactory(slug="old"), CarrierFactory(slug="fresh"), CarrierFactory(slug="never")
    stale = _secret(old, age_days=100)
    _secret(fresh, age_days=100, valid_for_hours=5)  # lapsing after an earlier rotation
    _secret(fresh, age_days=3)
    output = _run("--older-than-days", "90", "--overlap-hours", "48")
    assert "rotated: old" in output and "fresh" not in output and "never" not in output
    assert stale.secret not in output  # the command never prints a secret
    newest = WebhookSecret.objects.filter(carrier=old).order_by("-valid_from").first()
    assert newest is not None and newest.pk != stale.pk and newest.valid_until is None
    assert newest.secret not in output
    stale.refresh_from_db()
    assert stale.valid_until is not None
    assert timedelta(hours=47) < stale.valid_until - timezone.now() <= timedelta(hours=48)
    assert WebhookSecret.objects.filter(carrier=fresh).count() == 2
    assert not WebhookSecret.objects.filter(carrier=never).exists()
    rotated = AuditEvent.objects.get(action="webhook_secret.rotated")
    assert rotated.actor_label == "webhook-secret-rotation" and rotated.carrier_id == old.pk


def test_a_second_run_finds_nothing_due() -> None:
    _secret(CarrierFactory(slug="old"), age_days=100)
    assert "1 carrier(s) rotated" in _run("--older-than-days", "90")
    assert "0 carrier(s) rotated" in _run("--older-than-days", "90")


def test_dry_run_lists_and_changes_nothing_and_carrier_narrows() -> None:
    a, b = CarrierFactory(slug="a"), CarrierFactory(slug="b")
    _secret(a, age_days=100)
    _secret(b, age_days=100)
    output = _run("--older-than-days", "90", "--dry-run")
    assert "due: a" in output and "due: b" in output and "nothing rotated" in output
    assert WebhookSecret.objects.count() == 2
    output = _run("--older-than-days", "90", "--carrier", "b")
    assert "rotated: b" in output and "rotated: a" not in output
    assert WebhookSecret.objects.filter(carrier=a).count() == 1
    assert WebhookSecret.objects.filter(carrier=b).count() == 2


def test_refuses_a_meaningless_age() -> None:
    with pytest.raises(CommandError):
        _run("--older-than-days", "0")
