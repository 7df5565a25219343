"""Celery tasks of the partner API: retention of idempotency records and webhook receipts."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from missions.models.partner import IdempotencyRecord, WebhookReceipt


@shared_task(name="missions.idempotency_purge")
def idempotency_purge() -> int:
    """Delete idempotency records past their retention (published in capabilities); returns the count."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lte=timezone.now()).delete()
    return deleted


@shared_task(name="missions.webhook_receipts_purge")
def webhook_receipts_purge() -> int:
    """Forget webhook ids long past the signature tolerance: such a redelivery cannot verify any more."""
    cutoff = timezone.now() - timedelta(days=int(settings.WEBHOOK_RECEIPT_RETENTION_DAYS))
    deleted, _ = WebhookReceipt.objects.filter(received_at__lt=cutoff).delete()
    return deleted
