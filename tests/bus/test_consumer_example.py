"""``scripts/bus_consumer_example.py`` against a test-owned nats-server, after the relay published the events.

The script runs as a downstream team would run it: a separate process that
cannot import Django. It prints every event once; a second run with the same
durable name prints nothing (the server remembers the acks); events that the
stream holds twice under the same CloudEvent id (a range published again past
the duplicate window) are printed once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from missions.bus.publisher import NatsPublisher
from missions.bus.relay import EVENTS, Relay, cursor_get, stream_specs
from missions.events import Actor, event_record
from missions.models import AuditEvent, Mission
from tests.bus.conftest import NatsServer, stream_events
from tests.factories import MissionFactory

# Ids from 1: the relay's cursor starts at 0, and a run of ids an earlier test used and rolled back would be
# waited out one grace per id (see tests/bus/test_relay_process.py::test_a_run_of_missing_ids_is_waited_for_once).
pytestmark = pytest.mark.django_db(transaction=True, reset_sequences=True)
SCRIPT = Path(settings.BASE_DIR) / "scripts" / "bus_consumer_example.py"
ACTOR = Actor.system("consumer-test")
RUN_TIMEOUT_S = 60.0  # an upper bound for a run that ends on --idle-exit; never asserted as a timing
# The example runs with ``django`` made unimportable: it must need only nats-py and the standard library.
WITHOUT_DJANGO = "import runpy, sys; sys.modules['django'] = None; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"  # noqa: E501


def consumer_command(server: NatsServer, *args: str) -> list[str]:
    return [sys.executable, "-c", WITHOUT_DJANGO, str(SCRIPT), "--url", server.url, *args]


def run_consumer(server: NatsServer, *args: str) -> tuple[list[str], str]:
    done = subprocess.run(
        consumer_command(server, "--idle-exit", "1.5", *args),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.splitlines(), done.stderr


def printed_ids(lines: list[str]) -> list[int]:
    return [int(line.split()[1]) for line in lines]


def record(missions: list[Mission], count: int) -> list[int]:
    with transaction.atomic():
        return [
            event_record(actor=ACTOR, action="mission.status_changed", subject_type="mission",
                         subject_id=missions[n % len(missions)].pk, mission=missions[n % len(missions)],
                         carrier=missions[n % len(missions)].carrier, data={"n": n}).pk
            for n in range(count)
        ]  # fmt: skip


def relay_all(bus: NatsPublisher) -> None:
    relay = Relay(bus)
    bus.ensure_streams(stream_specs())
    newest = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    for _ in range(20):
        relay.events_round()
        if cursor_get(EVENTS).position >= newest:
            return
    raise AssertionError("the relay did not catch up")


def publish_again(server: NatsServer, count: int) -> list[int]:
    """The first ``count`` events of the stream published once more, as a replayed range would be."""
    messages = stream_events(server)[:count]

    async def publish() -> None:
        import nats

        nc = await nats.connect(server.url, allow_reconnect=False)
        try:
            js = nc.jetstream()
            for message in messages:
                await js.publish(message.subject, json.dumps(message.event).encode(), stream=settings.BUS_EVENTS_STREAM)
        finally:
            await nc.close()

    asyncio.run(publish())
    return [int(m.event["id"]) for m in messages]


def test_the_example_consumer_prints_each_event_once_and_remembers_what_it_acked(
    nats_server: NatsServer, bus: NatsPublisher, tmp_path: Path
) -> None:
    missions = [MissionFactory(), MissionFactory()]
    first = record(missions, 40)
    relay_all(bus)
    state = str(tmp_path / "billing-seen.sqlite3")

    lines, stderr = run_consumer(nats_server, "--durable", "billing", "--state", state)
    assert printed_ids(lines) == first, stderr
    assert "new=40 duplicates=0" in stderr
    assert all(line.split()[2] == "com.tms.mission.status_changed.v1" for line in lines)

    # Same durable, same state: the server resumes after the acknowledged messages.
    lines, stderr = run_consumer(nats_server, "--durable", "billing", "--state", state)
    assert lines == [] and "new=0 duplicates=0" in stderr

    # Ten events reach the stream a second time (the stream holds their ids twice), then a new one arrives.
    repeated = publish_again(nats_server, 10)
    assert len(stream_events(nats_server)) == 50
    later = record(missions, 1)
    relay_all(bus)
    lines, stderr = run_consumer(nats_server, "--durable", "billing", "--state", state)
    assert printed_ids(lines) == later, "a repeated id was handled again"
    assert "new=1 duplicates=10" in stderr
    assert all(f"duplicate {i} skipped" in stderr for i in repeated)


def test_a_new_durable_with_memory_dedupe_reads_everything_once_and_stops_on_sigterm(
    nats_server: NatsServer, bus: NatsPublisher, tmp_path: Path
) -> None:
    ids = record([MissionFactory()], 25)
    relay_all(bus)
    publish_again(nats_server, 25)  # every id twice in the stream
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            consumer_command(nats_server, "--durable", "analytics", "--batch", "7"), stdout=stdout, stderr=stderr
        )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        # Every original printed and every repeat skipped, then SIGTERM.
        while err.read_text().count("skipped") < len(ids) and time.monotonic() < deadline:
            assert process.poll() is None, err.read_text()[-3000:]
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        process.wait(RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.read_text()[-3000:]
    assert printed_ids(out.read_text().splitlines()) == ids
    assert "new=25 duplicates=25" in err.read_text()
