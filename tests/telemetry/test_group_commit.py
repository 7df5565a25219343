"""Group commit: concurrent small requests share one transaction, and each gets its own answer."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from missions.choices import MissionStatus
from missions.models import Carrier, Mission, TelemetrySample
from missions.models.telemetry import TelemetryWindowEvent
from missions.telemetry import group_commit
from missions.telemetry.group_commit import GroupCommit, GroupCommitUnavailable
from missions.telemetry.ingest import IngestResult, MissionCache
from tests.factories import MissionFactory
from tests.telemetry.conftest import make_event, seconds_ago

# The writer is another thread with its own connection: it must see committed fixtures.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def fleet(carrier_a: Carrier) -> list[Mission]:
    return [MissionFactory(carrier=carrier_a, status=MissionStatus.EN_ROUTE) for _ in range(6)]


def test_concurrent_requests_each_get_their_own_outcome(carrier_a: Carrier, fleet: list[Mission]) -> None:
    group = GroupCommit(MissionCache())
    shared = make_event(fleet[0], ts=seconds_ago(3))  # sent by two requests: stored once
    requests: list[list[Any]] = [
        [make_event(m, ts=seconds_ago(2)) for m in fleet[:3]],
        [make_event(fleet[3], ts=seconds_ago(2)), make_event(fleet[3], position={"lat": 99, "lon": 0})],
        [shared],
        [dict(shared), make_event(fleet[4], ts=seconds_ago(2))],
        ["not an event"],
    ]
    results: dict[int, IngestResult] = {}
    barrier = threading.Barrier(len(requests))

    def send(n: int) -> None:
        barrier.wait()
        results[n] = group.ingest(carrier=carrier_a, events=requests[n])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert (results[0].accepted, results[0].duplicates, results[0].rejected) == (3, 0, [])
    assert results[1].accepted == 1
    assert results[1].rejected == [{"index": 1, "reason": "position.lat: 99 is out of range [-90, 90]"}]
    # Whichever of the two requests carrying the shared event was merged first stored it.
    assert results[2].accepted + results[3].accepted == 2
    assert results[2].duplicates + results[3].duplicates == 1
    assert results[4].rejected == [{"index": 0, "reason": "event: expected an object, got a string"}]
    assert TelemetryWindowEvent.objects.count() == 6
    assert TelemetrySample.objects.count() == 6


def test_events_that_change_more_than_telemetry_are_not_grouped(carrier_a: Carrier, fleet: list[Mission]) -> None:
    cache = MissionCache()
    group = GroupCommit(cache)
    mission = fleet[0]
    assert group.groupable([make_event(mission)], carrier_id=carrier_a.pk)  # loads the mission into the cache
    assert cache.peek(mission.pk) is not None
    assert not group.groupable([make_event(mission, safety_event="emergency_stop")], carrier_id=carrier_a.pk)
    assert not group.groupable([make_event(mission, autonomy_mode="supervised")], carrier_id=carrier_a.pk)
    assert not group.groupable(["junk"], carrier_id=carrier_a.pk)
    assert not group.groupable([make_event(mission, mission_id=True)], carrier_id=carrier_a.pk)


def test_a_failed_grouped_write_tells_the_caller_to_write_itself(
    carrier_a: Carrier, fleet: list[Mission], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(**kwargs: Any) -> IngestResult:
        raise RuntimeError("database went away")

    monkeypatch.setattr(group_commit, "ingest_events", broken)
    group = GroupCommit(MissionCache())
    with pytest.raises(GroupCommitUnavailable):
        group.ingest(carrier=carrier_a, events=[make_event(fleet[0])])
    assert not TelemetryWindowEvent.objects.exists()


def test_part_splits_a_batch_outcome_by_request() -> None:
    whole = IngestResult(
        accepted=3,
        duplicates=1,
        rejected=[{"index": 1, "reason": "bad"}, {"index": 5, "reason": "worse"}],
        stored_indexes={0, 2, 4},
    )
    first, second = whole.part(0, 3), whole.part(3, 6)
    assert (first.accepted, first.duplicates, first.rejected) == (2, 0, [{"index": 1, "reason": "bad"}])
    assert (second.accepted, second.duplicates, second.rejected) == (1, 1, [{"index": 2, "reason": "worse"}])
