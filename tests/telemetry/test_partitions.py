"""Time partitions of the telemetry tables on a real PostgreSQL: created ahead, dropped and thinned by retention.

The clock is moved to a week in 2031, far from the partitions the migration
made for today, so each test creates and drops its own; the test's
transaction undoes the DDL with the rest.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import IntegrityError, connection, transaction

from missions.models import Carrier, Mission, TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from missions.telemetry import partitions
from missions.telemetry.ingest import ingest_events
from missions.telemetry.retention import telemetry_purge, telemetry_window_prune
from tests.telemetry.conftest import make_event

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="time partitions are PostgreSQL's"),
]

NOW = datetime(2031, 3, 10, 12, 30, tzinfo=UTC)


def _names(table: partitions.PartitionedTable) -> set[str]:
    return {name for name, _, _ in partitions.partitions(table)}


def _partition_of(table: str, **where: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE recorded_at = %s",  # noqa: S608  # nosec B608
            [where["at"]],
        )
        return cursor.fetchone()[0]


def test_the_migration_made_partitioned_tables_with_today_and_the_days_ahead(settings: Any) -> None:
    assert partitions.is_partitioned(partitions.SAMPLES) and partitions.is_partitioned(partitions.WINDOW)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = {lower for _, lower, _ in partitions.partitions(partitions.SAMPLES)}
    assert {today + timedelta(days=n) for n in range(settings.TELEMETRY_PARTITIONS_AHEAD_DAYS + 1)} <= days
    assert partitions.partitions_ensure() == 0  # nothing missing


def test_partitions_are_created_ahead_and_take_over_rows_the_default_partition_held(
    carrier_a: Carrier, mission: Mission, settings: Any
) -> None:
    settings.TELEMETRY_PARTITIONS_AHEAD_DAYS = 2
    settings.TELEMETRY_MAX_AGE_SECONDS = 86_400
    with time_machine.travel(NOW, tick=False):
        # Before the task ran: the events land in the DEFAULT partitions.
        early = make_event(mission, ts=NOW - timedelta(minutes=5))
        assert ingest_events(carrier=carrier_a, events=[early], source="test").accepted == 1
        assert _partition_of("missions_telemetrysample", at=NOW - timedelta(minutes=5)).endswith("_default")

        created = partitions.partitions_ensure()
        # Samples: yesterday (oldest accepted time), today and two days ahead; the window by the hour, from
        # the horizon and the late margin back (11:00) to two days ahead (12:00 on the 12th).
        assert created == 4 + 50
        assert {f"missions_telemetrysample_p203103{d:02}" for d in (9, 10, 11, 12)} <= _names(partitions.SAMPLES)
        assert {"missions_telemetrywindowevent_p2031031011", "missions_telemetrywindowevent_p2031031212"} <= _names(
            partitions.WINDOW
        )
        assert partitions.partitions_ensure() == 0
        # The rows moved out of the DEFAULT partitions into theirs, and dedupe still finds them there.
        assert _partition_of("missions_telemetrysample", at=NOW - timedelta(minutes=5)).endswith("_p20310310")
        assert _partition_of("missions_telemetrywindowevent", at=NOW - timedelta(minutes=5)).endswith("_p2031031012")
        assert ingest_events(carrier=carrier_a, events=[early], source="test").duplicates == 1
        later = make_event(mission, ts=NOW - timedelta(minutes=1))
        assert ingest_events(carrier=carrier_a, events=[later], source="test").accepted == 1
        assert _partition_of("missions_telemetrysample", at=NOW - timedelta(minutes=1)).endswith("_p20310310")


def test_one_sample_per_vehicle_second_and_one_window_row_per_event_across_partitions(
    carrier_a: Carrier, mission: Mission
) -> None:
    with time_machine.travel(NOW, tick=False):
        partitions.partitions_ensure()
        second = NOW.replace(minute=0) - timedelta(seconds=1)
        first = make_event(mission, ts=second + timedelta(milliseconds=100))
        other = make_event(mission, ts=second + timedelta(milliseconds=600))  # same vehicle, same second
        assert ingest_events(carrier=carrier_a, events=[first], source="test").accepted == 1
        result = ingest_events(carrier=carrier_a, events=[other, first], source="test")
        assert (result.accepted, result.duplicates) == (1, 1)
        assert TelemetrySample.objects.filter(mission=mission).count() == 1
        assert TelemetryWindowEvent.objects.filter(mission=mission).count() == 2
        # The unique index of each partition refuses a second sample of the second, whichever writer comes.
        with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO missions_telemetrysample (mission_id, vehicle_id, recorded_at, lat, lon,"
                " autonomy_mode, data, bucket_s) VALUES (%s, %s, %s, 0, 0, '', '{}', %s)",
                [mission.pk, mission.vehicle_id, second + timedelta(milliseconds=900), int(second.timestamp())],
            )


def test_retention_drops_whole_partitions_and_thins_a_day_by_rewriting_it(
    carrier_a: Carrier, mission: Mission, settings: Any
) -> None:
    settings.TELEMETRY_THIN_AFTER_DAYS = 7
    settings.TELEMETRY_THIN_SECONDS = 10
    table = partitions.SAMPLES
    old, middle, recent = (NOW - timedelta(days=d) for d in (31, 8, 1))
    for day in (old, middle, recent):
        partitions.partition_create(table, table.floor(day))
    rows = [
        TelemetrySample(
            mission=mission, vehicle=mission.vehicle, recorded_at=at, lat=0, lon=0, bucket_s=int(at.timestamp())
        )
        for day in (old, middle, recent)
        for at in (day.replace(hour=6, minute=0, second=0) + timedelta(seconds=s) for s in range(20))
    ]
    TelemetrySample.objects.bulk_create(rows)
    ids_before = set(TelemetrySample.objects.values_list("pk", flat=True))
    # Every partition wholly older than 30 days goes: this test's, and today's from the migration.
    expired = [name for name, _, upper in partitions.partitions(table) if upper <= NOW - timedelta(days=30)]
    with time_machine.travel(NOW, tick=False):
        result = telemetry_purge(days=30)
        assert result == {"purged": 0, "thinned": 18, "partitions_dropped": len(expired), "partitions_thinned": 1}
        assert telemetry_purge(days=30)["partitions_thinned"] == 0  # marked: done once
    assert table.partition_name(table.floor(old)) not in _names(table)
    assert table.partition_name(table.floor(middle)) in _names(table)
    kept = TelemetrySample.objects.filter(mission=mission)
    assert kept.count() == 22
    assert set(kept.values_list("pk", flat=True)) <= ids_before  # ids untouched: cursors by id go on
    thinned_day = kept.filter(recorded_at__lt=NOW - timedelta(days=7)).values_list("bucket_s", flat=True)
    assert sorted((second or 0) % 10 for second in thinned_day) == [0, 0]
    # The rewritten day is a partition like the others: its (vehicle, second) index is back.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s", [table.partition_name(table.floor(middle))]
        )
        definitions = " ".join(row[0] for row in cursor.fetchall())
    assert "UNIQUE INDEX" in definitions and "(vehicle_id, bucket_s)" in definitions


def test_window_hours_live_the_horizon_and_the_late_margin_and_later_events_go_by_arrival(
    carrier_a: Carrier, mission: Mission, settings: Any
) -> None:
    settings.TELEMETRY_DEDUPE_SECONDS = 900
    settings.TELEMETRY_MAX_AGE_SECONDS = 86_400
    settings.TELEMETRY_PARTITIONS_AHEAD_DAYS = 0
    with time_machine.travel(NOW, tick=False) as clock:
        partitions.partitions_ensure()
        # No hour of the window older than the horizon and the margin is made, though ingest takes a day.
        assert "missions_telemetrywindowevent_p2031031010" not in _names(partitions.WINDOW)
        event = make_event(mission, ts=NOW - timedelta(minutes=50))  # in the 11:00 hour
        late = make_event(mission, ts=NOW - timedelta(hours=5))  # no hour of its own: the DEFAULT partition
        assert ingest_events(carrier=carrier_a, events=[event, late], source="test").accepted == 2
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {partitions.WINDOW.default}")  # noqa: S608  # nosec B608
            assert cursor.fetchone()[0] == 1
        hour = "missions_telemetrywindowevent_p2031031011"
        # 11:00-12:00 keeps its dedupe records 900 s and the hour's margin past its end.
        clock.move_to(datetime(2031, 3, 10, 13, 14, 59, tzinfo=UTC))
        telemetry_window_prune()
        assert hour in _names(partitions.WINDOW)
        # The late event arrived at 12:30: its record goes 900 s after that, row by row.
        assert not TelemetryWindowEvent.objects.filter(event_id=late["event_id"]).exists()
        clock.move_to(datetime(2031, 3, 10, 13, 15, 0, tzinfo=UTC))
        telemetry_window_prune()
        assert hour not in _names(partitions.WINDOW)
        assert not TelemetryWindowEvent.objects.filter(event_id=event["event_id"]).exists()
        # A retry of either is still no second sample: one sample per vehicle and second.
        ingest_events(carrier=carrier_a, events=[event, late], source="test")
    assert TelemetrySample.objects.filter(mission=mission).count() == 2
