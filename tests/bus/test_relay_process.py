"""The relay as a real process (``manage.py events_relay``): SIGKILLed mid-way and restarted, and two at once.

Both must leave each event on the stream exactly once, in id order: the
cursor moves only after JetStream's acks, a batch published again after a
kill carries the same ``Nats-Msg-Id`` (dropped by the stream's duplicate
window) and the database lease lets one relay publish at a time. The waits
are bounded polls, never timings.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from missions.bus.relay import EVENTS, HEARTBEAT_NAME, LEASE_NAME, TELEMETRY, Gaps
from missions.choices import ActorKind
from missions.events import Actor, event_record
from missions.models import AuditEvent, Mission, TelemetrySample
from missions.models.bus import BusCursor
from tests.bus.conftest import NatsServer, relay_process, stream_events
from tests.factories import MissionFactory
from tests.faults import dependencies
from tms_console.models import Lease, ProcessHeartbeat

# Ids from 1 in each test: a cursor at 0 before a long run of ids that never existed (an earlier test's) would
# wait out the grace once per missing id (see test_a_run_of_missing_ids_is_waited_for_once).
pytestmark = [pytest.mark.django_db(transaction=True, reset_sequences=True), pytest.mark.shared_database]

ACTOR = Actor.system("bus-process-test")
CATCH_UP_TIMEOUT_S = 120.0  # an upper bound on a busy 2-core machine; never asserted as a timing
# Small rounds, so a kill lands between two of them or inside one (published, cursor not yet moved).
RELAY_ENV = {"BUS_BATCH_SIZE": "250", "BUS_POLL_SECONDS": "0.1"}


def wait_until(check: Callable[[], Any], what: str, *, seconds: float = CATCH_UP_TIMEOUT_S, every: float = 0.05) -> Any:
    """``tests.faults.dependencies.wait_until``, its failure saying how far the relay got."""
    try:
        return dependencies.wait_until(check, what, seconds=seconds, every=every)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {progress()}") from None


def position(name: str) -> int:
    return BusCursor.objects.filter(name=name).values_list("position", flat=True).first() or 0


def newest(model: type[AuditEvent] | type[TelemetrySample]) -> int:
    return model.objects.order_by("-pk").values_list("pk", flat=True).first() or 0


def caught_up() -> bool:
    return position(EVENTS) >= newest(AuditEvent) and position(TELEMETRY) >= newest(TelemetrySample)


def progress() -> str:
    beat = ProcessHeartbeat.objects.filter(name=HEARTBEAT_NAME).first()
    return (
        f"events cursor {position(EVENTS)} of {newest(AuditEvent)}, telemetry cursor {position(TELEMETRY)}"
        f" of {newest(TelemetrySample)}, heartbeat {beat.detail if beat else None}"
    )


def on_bus_ids() -> list[int]:
    """Every event the stream must hold, in id order (security events never go on the bus)."""
    return list(AuditEvent.objects.exclude(action__startswith="security.").order_by("pk").values_list("pk", flat=True))


def kill_group(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(20)


def relay_log(tmp_path: Path) -> Path:
    return tmp_path / "relay.log"


@pytest.fixture
def relays(nats_server: NatsServer, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    log = relay_log(tmp_path)

    def start() -> subprocess.Popen[bytes]:
        process = relay_process(nats_server, log, **RELAY_ENV)
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            kill_group(process)
        if log.exists():
            print(log.read_text()[-4000:])  # shown when the test fails


def record_events(missions: list[Mission], *, bulk: int, recorded: int) -> None:
    """``bulk`` events written as the batch paths write them, then ``recorded`` through ``event_record`` in a few
    transactions with a security event in each (recorded, never published)."""
    now = timezone.now()
    AuditEvent.objects.bulk_create(
        (
            AuditEvent(
                occurred_at=now,
                actor_kind=ActorKind.SYSTEM,
                actor_label="bus-process-test",
                action="mission.status_changed",
                subject_type="mission",
                subject_id=missions[n % len(missions)].pk,
                data={"n": n},
                mission=missions[n % len(missions)],
                carrier=missions[n % len(missions)].carrier,
                correlation_id=missions[n % len(missions)].correlation_id,
            )
            for n in range(bulk)
        ),
        batch_size=1000,
    )
    per_transaction = max(recorded // 4, 1)
    for start in range(0, recorded, per_transaction):
        with transaction.atomic():
            for n in range(start, min(start + per_transaction, recorded)):
                mission = missions[n % len(missions)]
                event_record(actor=ACTOR, action="incident.note", subject_type="incident", subject_id=n,
                             data={"note": f"note {n}"}, mission=mission, carrier=mission.carrier)  # fmt: skip
            event_record(actor=ACTOR, action="security.client_secret_failed", subject_type="partner_client",
                         subject_id=1, data={"client_address": "203.0.113.9"})  # fmt: skip


def record_samples(missions: list[Mission], *, per_mission: int) -> None:
    start = datetime.now(tz=UTC) - timedelta(seconds=per_mission)
    for mission in missions:
        TelemetrySample.objects.bulk_create(
            (
                TelemetrySample(
                    mission=mission,
                    vehicle=mission.vehicle,
                    recorded_at=start + timedelta(seconds=s),
                    lat=31.0 + s / 100_000,
                    lon=-96.0,
                    speed_kph=80.0,
                    bucket_s=int(start.timestamp()) + s,
                )
                for s in range(per_mission)
            ),
            batch_size=2000,
        )


def assert_each_event_once_in_order(server: NatsServer) -> list[int]:
    messages = stream_events(server)
    stream_ids = [int(m.event["id"]) for m in messages]
    duplicates = sorted(i for i, n in Counter(stream_ids).items() if n > 1)
    assert not duplicates, f"the stream holds these ids more than once: {duplicates[:20]}"
    expected = on_bus_ids()
    # What a consumer that dedupes on the CloudEvent id sees: every event once, no gap, in order.
    seen: set[str] = set()
    delivered = []
    for message in messages:
        if message.event["id"] not in seen:
            seen.add(message.event["id"])
            delivered.append(int(message.event["id"]))
    assert delivered == expected, f"missing: {sorted(set(expected) - set(delivered))[:20]}"
    assert stream_ids == expected
    return stream_ids


def assert_each_sample_once(server: NatsServer) -> None:
    messages = stream_events(server, stream=settings.BUS_TELEMETRY_STREAM)
    ids = [m.event["id"] for m in messages]
    assert len(ids) == len(set(ids)), "a telemetry batch id twice"
    samples = sorted((s["vehicle_id"], s["ts"]) for m in messages for s in m.event["data"]["samples"])
    assert len(samples) == len(set(samples)), "a sample twice"
    stored = TelemetrySample.objects.count()
    assert len(samples) == stored, f"{len(samples)} samples on the bus, {stored} stored"


def test_a_relay_killed_mid_way_resumes_without_gap_or_duplicate(
    nats_server: NatsServer, relays: Callable[[], subprocess.Popen[bytes]]
) -> None:
    missions = [MissionFactory(), MissionFactory(), MissionFactory()]
    record_events(missions, bulk=4800, recorded=200)
    record_samples(missions[:2], per_mission=15_000)  # three telemetry rounds of 10,000 rows
    last = newest(AuditEvent)
    assert AuditEvent.objects.count() >= 5000

    first = relays()
    # Poll fast: the kill must land while the relay is part-way through the events.
    wait_until(lambda: 0 < position(EVENTS) < last - 500, "the relay to be part-way", every=0.005)
    kill_group(first)
    assert first.returncode == -signal.SIGKILL

    killed_at = position(EVENTS)
    assert 0 < killed_at < last
    on_stream = {int(m.event["id"]) for m in stream_events(nats_server)}
    # The cursor never passes what the stream acknowledged: every event up to it is there.
    behind_cursor = [i for i in on_bus_ids() if i <= killed_at]
    assert set(behind_cursor) <= on_stream, "the cursor moved past an event the stream does not hold"

    second = relays()  # waits in standby until the killed relay's lease expires, then takes over
    wait_until(caught_up, "the restarted relay to catch up")
    assert second.poll() is None, "the restarted relay exited"
    assert_each_event_once_in_order(nats_server)
    assert_each_sample_once(nats_server)
    # Acks the relays counted, repeats (dropped by the stream) included: at least one per event.
    published = BusCursor.objects.get(name=EVENTS).published
    assert published >= len(on_bus_ids())


def test_two_relays_at_once_publish_each_event_once_and_one_stands_by(
    nats_server: NatsServer, relays: Callable[[], subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    missions = [MissionFactory(), MissionFactory()]
    record_events(missions, bulk=2500, recorded=100)
    record_samples(missions, per_mission=3000)
    processes = [relays(), relays()]
    holders = {f"{socket.gethostname()}:{p.pid}": p for p in processes}

    log = relay_log(tmp_path)

    def standby_seen() -> bool:
        return caught_up() and "bus relay in standby" in (log.read_text() if log.exists() else "")

    # The publishing relay writes the heartbeat; the other says in its log that it stands by.
    wait_until(standby_seen, "both relays to have run (one publishing, one in standby)", every=0.1)
    beat = ProcessHeartbeat.objects.get(name=HEARTBEAT_NAME)
    assert beat.detail.get("state") == "publishing", beat.detail
    assert all(p.poll() is None for p in processes)
    lease = Lease.objects.get(name=LEASE_NAME)
    assert lease.holder in holders, f"the lease names {lease.holder}, not one of {sorted(holders)}"
    assert_each_event_once_in_order(nats_server)
    assert_each_sample_once(nats_server)

    # The publishing one dies: the other takes over once the lease expires, and publishes what came since.
    kill_group(holders[lease.holder])
    record_events(missions, bulk=300, recorded=20)
    wait_until(caught_up, "the standby relay to take over")
    assert Lease.objects.get(name=LEASE_NAME).holder != lease.holder
    assert_each_event_once_in_order(nats_server)


def test_a_run_of_missing_ids_is_waited_for_once() -> None:
    """Ids 1-3 never committed (a rolled back batch): the cursor passes them all after one grace, not three.

    With the default 30 s grace, a rolled back ``bulk_create`` of 1,000 events would hold the relay for 1,000 x 30 s.
    """
    now = [100.0]
    gaps = Gaps(grace_seconds=5.0, clock=lambda: now[0])
    assert gaps.advance(0, {4, 5}) == 0
    now[0] += 5.1
    assert gaps.advance(0, {4, 5}) == 5
