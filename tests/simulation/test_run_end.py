"""What the run's end cuts short is not a mismatch: an incident, a recovery or a failover due after the last instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from missions.simulation import profile as p
from missions.simulation.program import _incidents_reconcile
from missions.simulation.record import IncidentRecord, Record

END = datetime(2026, 2, 2, tzinfo=UTC)


def _lost_comms(silent_at: datetime) -> IncidentRecord:
    due = silent_at + timedelta(seconds=600)
    return IncidentRecord(
        kind="lost_comms", carrier="sim-av1", mission_id=26, caused_at=silent_at, trigger_earliest=due,
        trigger_latest=due + timedelta(seconds=200), resolved_by="recovery", comms_back_at=due + timedelta(seconds=400),
    )  # fmt: skip


@pytest.mark.django_db
def test_an_incident_due_after_the_end_is_not_missing_but_one_due_before_is() -> None:
    record = Record(start=END - timedelta(days=1), end=END, gap_seconds=600)
    record.carriers = {"sim-av1": 1}
    late, early = _lost_comms(END - timedelta(minutes=7)), _lost_comms(END - timedelta(hours=2))
    record.incidents = [late, early]
    _incidents_reconcile(record, p.profile_get("ci"))
    assert late.problems == []  # the gap check that would open it comes after the run's last instant
    assert early.problems == ["the product opened no incident"]


@pytest.mark.django_db(transaction=True)
def test_the_run_vacuums_its_database_where_autovacuum_is_off() -> None:
    from django.db import connection, transaction

    from missions.simulation.program import _needs_vacuum, _vacuum

    if connection.vendor != "postgresql":
        assert not _needs_vacuum()  # SQLite has no dead rows to reclaim between runs' days
        return
    with connection.cursor() as cursor:
        cursor.execute("SHOW autovacuum")
        assert _needs_vacuum() == (cursor.fetchone()[0] == "off")
        cursor.execute("SELECT max(last_vacuum) FROM pg_stat_user_tables")
        before = cursor.fetchone()[0]
    _vacuum()  # outside a transaction: a real VACUUM of the whole database
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT max(last_vacuum) FROM pg_stat_user_tables")
        after = cursor.fetchone()[0]
        assert after is not None and (before is None or after > before)
    with transaction.atomic():
        _vacuum()  # inside one it stands aside rather than fail
