"""A batch the database refuses for what one event holds is split: the good events are stored, the bad one reported.

The normalizer refuses what it knows the database cannot take (U+0000, lone
surrogates, out-of-range numbers); this is the net under it, for a value it
did not foresee. The refusal is simulated where the rows are written: the
real writes happen, then the database "refuses" any write that holds the
poison event, so a half that failed must leave nothing behind.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import DataError, OperationalError

from missions.choices import MissionStatus
from missions.models import Carrier, Mission, TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from missions.telemetry import ingest
from missions.telemetry.ingest import ingest_events
from tests.factories import MissionFactory
from tests.partner.conftest import api_client, fetch_token, issue_client
from tests.telemetry.conftest import make_event

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def mission(carrier_a: Carrier) -> Mission:
    return MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE)


def _events(mission: Mission, count: int) -> list[dict[str, Any]]:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=count + 5)
    return [make_event(mission, ts=start + timedelta(seconds=n)) for n in range(count)]


@pytest.fixture
def poison(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Event ids the database refuses: any write holding one fails after its rows went in."""
    refused: set[str] = set()
    real = ingest.persist

    def persist(accepted: list[Any], *, received_at: datetime) -> set[uuid.UUID]:
        stored = real(accepted, received_at=received_at)
        if any(str(a.event.event_id) in refused for a in accepted):
            raise DataError("value refused by the database")
        return stored

    monkeypatch.setattr(ingest, "persist", persist)
    return refused


def test_one_refused_event_does_not_take_the_others_with_it(
    carrier_a: Carrier, mission: Mission, poison: set[str]
) -> None:
    events = _events(mission, 11)
    poison.add(events[7]["event_id"])
    result = ingest_events(carrier=carrier_a, events=events, source="test")
    assert result.accepted == 10
    assert result.rejected == [{"index": 7, "reason": "could not be stored (DataError); not retried"}]
    assert result.stored_indexes == set(range(11)) - {7}
    stored = set(TelemetryWindowEvent.objects.values_list("event_id", flat=True))
    assert stored == {uuid.UUID(e["event_id"]) for i, e in enumerate(events) if i != 7}
    assert TelemetrySample.objects.filter(mission=mission).count() == 10
    mission.refresh_from_db()
    assert mission.last_seen_at is not None


def test_sent_again_the_good_events_are_duplicates_and_the_bad_one_still_refused(
    carrier_a: Carrier, mission: Mission, poison: set[str]
) -> None:
    events = _events(mission, 6)
    poison.update({events[0]["event_id"], events[5]["event_id"]})
    first = ingest_events(carrier=carrier_a, events=events, source="test")
    assert (first.accepted, [r["index"] for r in first.rejected]) == (4, [0, 5])
    again = ingest_events(carrier=carrier_a, events=events, source="test")
    assert (again.accepted, again.duplicates, [r["index"] for r in again.rejected]) == (0, 4, [0, 5])
    assert TelemetryWindowEvent.objects.count() == 4


def test_a_lost_database_is_not_split_but_raised(
    carrier_a: Carrier, mission: Mission, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def persist(accepted: list[Any], *, received_at: datetime) -> set[uuid.UUID]:
        calls.append(len(accepted))
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(ingest, "persist", persist)
    with pytest.raises(OperationalError):
        ingest_events(carrier=carrier_a, events=_events(mission, 8), source="test")
    assert calls == [8]  # one attempt: an outage is answered 503 by the caller, not worked around event by event
    assert not TelemetryWindowEvent.objects.exists()


def test_over_http_the_batch_is_answered_per_event(carrier_a: Carrier, mission: Mission, poison: set[str]) -> None:
    api = api_client(fetch_token(issue_client(carrier_a))["access_token"])
    events = _events(mission, 5)
    poison.add(events[2]["event_id"])
    answer = api.post(
        "/api/v1/telemetry/batch", {"events": events}, format="json", HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4())
    )
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert (body["accepted"], body["duplicates"]) == (4, 0)
    assert body["rejected"] == [{"index": 2, "reason": "could not be stored (DataError); not retried"}]
    assert TelemetryWindowEvent.objects.count() == 4
