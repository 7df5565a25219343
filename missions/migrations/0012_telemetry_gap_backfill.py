# Telemetry gaps can be backfilled by a store-and-forward upload (docs/decisions/0017-telemetry-backfill.md):
# the gap keeps where its silence ended on the vehicle's clock and when it was filled; the evidence log
# gets an attestation kind for it.

from datetime import datetime

from django.db import migrations, models


def resumed_seen_at_from_events(apps, schema_editor):
    """Gaps closed before this migration: the end of the silence is in their `mission.telemetry_resumed` event."""
    TelemetryGap = apps.get_model("missions", "TelemetryGap")
    AuditEvent = apps.get_model("missions", "AuditEvent")
    for gap in TelemetryGap.objects.filter(resumed_at__isnull=False, resumed_seen_at__isnull=True).iterator():
        events = AuditEvent.objects.filter(
            mission_id=gap.mission_id, action="mission.telemetry_resumed", occurred_at__gte=gap.detected_at
        ).order_by("id")
        for event in events:
            try:
                before = datetime.fromisoformat(str((event.before or {}).get("last_seen_at")))
                after = datetime.fromisoformat(str((event.after or {}).get("last_seen_at")))
            except ValueError:
                continue
            if before == gap.last_seen_at:
                TelemetryGap.objects.filter(pk=gap.pk).update(resumed_seen_at=after)
                break


class Migration(migrations.Migration):
    dependencies = [
        ("missions", "0011_dead_letters"),
    ]

    operations = [
        migrations.AddField(
            model_name="telemetrygap",
            name="backfilled_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="telemetrygap",
            name="resumed_seen_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AlterField(
            model_name="attestation",
            name="kind",
            field=models.CharField(
                choices=[
                    ("mission-assignment", "Mission assignment"),
                    ("autonomy-mode-change", "Autonomy mode change"),
                    ("mission-outcome", "Mission completion or failure"),
                    ("telemetry-snapshot", "Telemetry snapshot"),
                    ("incident-review", "Incident review"),
                    ("sla-breach-verdict", "SLA breach verdict"),
                    ("telemetry-backfill", "Telemetry gap backfilled"),
                ],
                max_length=40,
            ),
        ),
        migrations.RunPython(resumed_seen_at_from_events, migrations.RunPython.noop),
    ]
