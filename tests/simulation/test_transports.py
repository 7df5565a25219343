"""The program with its carriers talking to separate product processes on the run's clock (HTTP, WebSocket, MQTT)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection

from missions.simulation import profile as p
from missions.simulation.program import default_start
from missions.simulation.transport import TransportError, database_url
from missions.simulation.workers import tasks_for
from tests.conftest import require_service

needs_a_shared_database = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the run's server processes need a database they can open"
)


def _run(tmp_path: Path, transport: str, days: str, tasks: str = "eager") -> tuple[dict[str, Any], dict[str, Any]]:
    """A CI-sized run over ``transport``: it passes its comparison with every fault kind, and every carrier's
    answer went through the partner server (an acceptance and a departure per autonomous mission at least)."""
    call_command(
        "simulate_program", "--days", days, "--trucks", "6", "--seed", "11", "--profile", "ci",
        "--transport", transport, "--tasks", tasks, "--out", str(tmp_path),
    )  # fmt: skip
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["passed"] is True, summary["mismatches"][:5]
    assert set(summary["fleet"]["faults"]) == set(p.FAULT_KINDS)
    assert summary["fleet"]["refusals"] == []
    sent = summary["run"]["transport"]
    assert sent["name"] == transport
    assert sent["calls"] >= summary["fleet"]["missions"]
    assert sent["answered_401"] == 0  # tokens renewed before they expired in simulated time
    assert "Traceback" not in (tmp_path / "partner-server.log").read_text()
    return summary, sent


@pytest.mark.django_db(transaction=True)
@needs_a_shared_database
def test_a_run_over_http_passes_its_comparison_with_every_fault_kind(tmp_path: Path) -> None:
    _, sent = _run(tmp_path, "http", "1")
    # Every sample went as a batch over HTTP; the carriers fetched tokens again as they expired.
    assert sent["batches"] >= 24 * 3600 // p.PROFILES["ci"].sample_seconds
    assert sent["tokens_fetched"] > 3
    # The server ran on the simulated clock: its log lines carry the run's instants, not today's.
    assert '"ts": "2026-02-01T' in (tmp_path / "partner-server.log").read_text()


@pytest.mark.django_db(transaction=True)
@needs_a_shared_database
def test_a_run_with_its_telemetry_over_the_websocket_stream_passes_its_comparison(tmp_path: Path) -> None:
    _, sent = _run(tmp_path, "ws", "0.5")
    assert sent["batches"] >= 12 * 3600 // p.PROFILES["ci"].sample_seconds
    # A gateway opens its stream again with each renewed token.
    assert 2 < sent["connections"] <= sent["tokens_fetched"]
    assert "Traceback" not in (tmp_path / "console-server.log").read_text()


@pytest.mark.django_db(transaction=True)
@needs_a_shared_database
def test_a_run_with_its_telemetry_over_mqtt_passes_its_comparison(tmp_path: Path, settings: Any) -> None:
    from tests.telemetry.test_mqtt import MQTT_URL, broker_up

    require_service("Mosquitto", broker_up())
    settings.MQTT_URL = MQTT_URL
    summary, sent = _run(tmp_path, "mqtt", "0.5")
    # Every sample was published (duplicates twice) and stored by the bridge before the clock moved on.
    assert sent["published"] == summary["fleet"]["samples_sent"] + summary["fleet"]["duplicates_sent"]
    bridge_log = (tmp_path / "mqtt-bridge.log").read_text()
    assert f"'received': {sent['published']}" in bridge_log and "'rejected': 0" in bridge_log
    assert "Traceback" not in bridge_log


@pytest.mark.django_db(transaction=True)
@needs_a_shared_database
def test_a_run_with_a_worker_and_beat_of_its_own_passes_its_comparison(tmp_path: Path) -> None:
    """The product's tasks run in a Celery worker process and its periodic work comes from a beat process
    (the product's schedule), both on the run's clock, fed through the broker by the program's process, the
    partner server and beat; the clock waits until beat has looked at each instant and its tasks have run."""
    require_service("Redis", str(django_settings.CELERY_BROKER_URL).startswith("redis://"))
    _, sent = _run(tmp_path, "http", "0.5", tasks="worker")
    tasks = sent["tasks"]
    assert tasks["name"] == "worker" and tasks["queue"].startswith("sim-")
    assert tasks["tasks_sent"] > 0  # what the program's own process sent (its checkpoint, its services' subscribers)
    # Beat sent the product's periodic work, the partner server its subscribers: the worker ran much more.
    ran = tasks["tasks_run_by_name"]
    assert tasks["tasks_run"] > tasks["tasks_sent"]
    assert {"missions.telemetry.gaps_check", "runbooks.tasks.runbooks_tick", "sla.evaluate_all"} <= set(ran)
    assert not list((tmp_path / "tasks" / "pending").iterdir())
    assert not list((tmp_path / "tasks" / "failed").iterdir())
    worker_log = (tmp_path / "worker.log").read_text()
    assert '"ts": "2026-02-02T' in worker_log and "Traceback" not in worker_log
    assert "Traceback" not in (tmp_path / "beat.log").read_text()
    assert "Traceback" not in (tmp_path / "partner-server.log").read_text()


@pytest.mark.django_db
def test_a_worker_of_its_own_needs_a_broker_server(tmp_path: Path, settings: Any) -> None:
    settings.CELERY_BROKER_URL = "filesystem://"
    with pytest.raises(TransportError, match="needs a broker server"):
        tasks_for("worker", out=tmp_path, start=default_start(1), run="x")


@pytest.mark.django_db
def test_an_in_memory_database_is_refused_with_its_reason() -> None:
    if connection.vendor != "sqlite" or not connection.creation.is_in_memory_db(connection.settings_dict["NAME"]):  # type: ignore[attr-defined]
        pytest.skip("the refusal concerns an in-memory SQLite database")
    with pytest.raises(TransportError, match="in-memory"):
        database_url()
