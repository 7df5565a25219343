"""``manage.py events_replay``: from a sequence or a time, with clear errors for bad input."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction

from missions.bus.publisher import NatsPublisher
from missions.bus.relay import Relay, stream_specs
from missions.events import Actor, event_record
from tests.bus.conftest import NatsServer

pytestmark = pytest.mark.django_db


def _replay(*args: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    call_command("events_replay", *args, stdout=out, stderr=io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_replay_from_a_sequence_and_from_a_time(nats_server: NatsServer, bus: NatsPublisher) -> None:
    with transaction.atomic():
        ids = [
            event_record(actor=Actor.system("t"), action="shipment.created", subject_type="shipment", subject_id=n).pk
            for n in range(5)
        ]
    relay = Relay(bus)
    bus.ensure_streams(stream_specs())
    relay.events_round()

    everything = _replay("--from-seq", "1")
    assert [int(e["id"]) for e in everything] == ids
    assert [e["sequence"] for e in everything] == [1, 2, 3, 4, 5]
    assert all(e["nats_subject"].startswith("tms.events._.shipment.created") for e in everything)
    assert [int(e["id"]) for e in _replay("--from-seq", "4")] == ids[3:]
    assert [int(e["id"]) for e in _replay("--from-seq", "1", "--limit", "2")] == ids[:2]
    since = (datetime.now(tz=UTC) - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert len(_replay("--since", since)) == 5
    assert _replay("--since", (datetime.now(tz=UTC) + timedelta(minutes=5)).isoformat()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "not an ISO 8601 time"),
        (["--since", "2026-12-06T08:00:00"], "needs a time zone"),
        (["--from-seq", "0"], "starts at 1"),
        (["--limit", "-1"], "cannot be negative"),
    ],
)
def test_bad_arguments_are_clear_errors(args: list[str], message: str, settings: Any) -> None:
    settings.NATS_URL = "nats://127.0.0.1:1"
    with pytest.raises(CommandError, match=message):
        call_command("events_replay", *args)


def test_without_a_bus_or_a_reachable_server_the_error_says_so(settings: Any) -> None:
    settings.NATS_URL = ""
    with pytest.raises(CommandError, match="NATS_URL is not set"):
        call_command("events_replay")
    with pytest.raises(CommandError, match=r"cannot replay TMS_EVENTS from nats://127\.0\.0\.1:1"):
        call_command("events_replay", "--url", "nats://user:pw@127.0.0.1:1")
