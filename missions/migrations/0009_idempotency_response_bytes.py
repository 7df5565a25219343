"""Idempotency records keep the first answer's bytes instead of its parsed JSON.

Records completed before this migration still hold only the parsed body: it
is written back out as compact JSON (the API renderer's form), the closest
available to what was sent, so a retry within the retention window is still
answered from the record instead of running the request again.
"""

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import migrations, models


def body_to_bytes(apps, schema_editor):
    IdempotencyRecord = apps.get_model("missions", "IdempotencyRecord")
    for record in IdempotencyRecord.objects.exclude(response_body=None).iterator():
        text = json.dumps(record.response_body, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":"))
        record.response_content = text.encode("utf-8")
        record.save(update_fields=["response_content"])


class Migration(migrations.Migration):

    dependencies = [
        ("missions", "0008_event_delivery"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="response_content",
            field=models.BinaryField(blank=True, null=True),
        ),
        migrations.RunPython(body_to_bytes, migrations.RunPython.noop),
        migrations.RemoveField(
            model_name="idempotencyrecord",
            name="response_body",
        ),
    ]
