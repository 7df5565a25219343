"""The partner API's page of a carrier's tenders in one status, newest first, read in order from an index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("missions", "0022_tender_outcome_unknown"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="tender",
            name="missions_te_carrier_7585a1_idx",
        ),
        migrations.AddIndex(
            model_name="tender",
            index=models.Index(fields=["carrier", "status", "created_at", "id"], name="missions_te_carrier_e818fa_idx"),
        ),
    ]
