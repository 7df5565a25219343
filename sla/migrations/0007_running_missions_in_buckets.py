"""Running missions' telemetry starts go on the buckets (docs/decisions/0026).

Buckets built before this held nothing for a running mission: a window read
every running mission's fact. Each running mission now adds its start gap
bucket ``sk`` to the family ``T`` rows (fine: n4 += 1; coarse: n5 += 1 and n6
+= its offset in the block; tier 3 key 0: n1 += 1). This puts the running
missions already counted on the buckets; a rollup that takes one off later
(the mission finished) expects it there.
"""

import math
from collections import defaultdict

from django.db import migrations
from django.db.models import F

BLOCK = 60
OPEN_TIER = 3


def running_missions_add(apps, schema_editor):  # type: ignore[no-untyped-def]
    MissionFact = apps.get_model("sla", "MissionFact")
    SLIBucket = apps.get_model("sla", "SLIBucket")
    adds: dict[tuple[int, int, int], list[int]] = defaultdict(lambda: [0, 0, 0])  # (carrier, tier, key): n
    running = MissionFact.objects.filter(tel_open=True, started_at__isnull=False)
    for carrier_id, started_at, gap in running.values_list("carrier_id", "started_at", "gap_seconds").iterator():
        sk = math.floor(started_at.timestamp() / gap)
        block = sk // BLOCK
        adds[(carrier_id, 0, sk)][0] += 1
        adds[(carrier_id, 1, block)][1] += 1
        adds[(carrier_id, 1, block)][2] += sk - block * BLOCK
        adds[(carrier_id, OPEN_TIER, 0)][0] += 1
    for (carrier_id, tier, key), (n, count, offsets) in sorted(adds.items()):
        SLIBucket.objects.get_or_create(carrier_id=carrier_id, family="T", tier=tier, key=key)
        rows = SLIBucket.objects.filter(carrier_id=carrier_id, family="T", tier=tier, key=key)
        if tier == 0:
            rows.update(n4=F("n4") + n)
        elif tier == 1:
            rows.update(n5=F("n5") + count, n6=F("n6") + offsets)
        else:
            rows.update(n1=F("n1") + n)


def running_missions_remove(apps, schema_editor):  # type: ignore[no-untyped-def]
    SLIBucket = apps.get_model("sla", "SLIBucket")
    SLIBucket.objects.filter(family="T", tier=0).update(n4=0)
    SLIBucket.objects.filter(family="T", tier=1).update(n5=0, n6=0)
    SLIBucket.objects.filter(family="T", tier=OPEN_TIER).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sla", "0006_sli_rollups"),
    ]

    operations = [
        migrations.RunPython(running_missions_add, running_missions_remove),
    ]
