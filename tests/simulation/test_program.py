"""The program simulator: a CI-sized run passes its ground-truth comparison, and a wrong SLI is caught.

Runs the real product in this process on the test database (SQLite, or PostgreSQL + Redis when
``DATABASE_URL`` / ``REDIS_URL`` are set), with the simulated clock. ``transaction=True``: the
product's subscribers (incidents, runbooks, SLA re-evaluations) run after commit.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Q

from missions.choices import CircuitState
from missions.models import CarrierCircuit, Mission, TelemetrySample
from missions.simulation import profile as p
from missions.simulation.compare import SLIS
from missions.simulation.program import run_program
from missions.simulation.report import reports_write
from sla import bucket_reads, rollup_build, rollups, selectors

pytestmark = [pytest.mark.django_db(transaction=True)]

CI_DAYS, CI_TRUCKS, CI_SEED = 2, 12, 7


def test_ci_run_passes_the_ground_truth_comparison(tmp_path: Path) -> None:
    result = run_program(days=CI_DAYS, trucks=CI_TRUCKS, seed=CI_SEED, profile=p.profile_get("ci"))
    print(f"\nCI run: {len(result.record.missions)} missions, {result.events} events, {result.wall_seconds:.1f} s wall")
    record, comparison = result.record, result.comparison
    assert comparison.passed, json.dumps(comparison.mismatches[:10], default=str, indent=1)
    assert not record.refusals
    # Every fault kind of the profile happened, and every runbook's incident kind was opened.
    assert {m.fault for m in record.missions.values()} >= set(p.FAULT_KINDS)
    assert {i.kind for i in record.incidents} == {
        "lost_comms", "degraded_autonomy", "emergency_stop", "ota_failure", "carrier_api_down"
    }  # fmt: skip
    # The push carrier's API went through every fault window with calls in each; the blackhole and the
    # reset each opened its circuit (one incident each, resolved by on-call once it closed again).
    assert {c.fault for c in record.api_calls} == {"", *p.API_FAULT_KINDS}
    api_down = [i for i in record.incidents if i.kind == "carrier_api_down"]
    assert len(api_down) == 2 and all(i.incident_id and i.resolved_at for i in api_down)
    assert CarrierCircuit.objects.get(carrier_id=record.carriers[record.api_carrier]).state == CircuitState.CLOSED
    # Loads whose tender never reached the carrier were booked again; none was carried twice.
    assert record.api_rebooked >= 2
    booked = Counter(Mission.objects.filter(replaces__isnull=True).values_list("shipment_id", flat=True))
    assert booked and max(booked.values()) == 1
    assert any(r.sli == "api_error_rate" and r.truth["good"] < r.truth["total"] for r in comparison.rows)
    assert any(r.sli == "api_latency_p99" and r.truth["value"] == "> 500" for r in comparison.rows)
    assert any(i.fails_over and i.failover_at for i in record.incidents)
    assert any(i.resolved_by == "recovery" and i.resolved_at for i in record.incidents)
    fallbacks = [m for m in record.missions.values() if m.replaces and m.outcome == "completed"]
    assert fallbacks
    # The fallback carrier named a tractor for each load it took over, and its samples were stored.
    for m in fallbacks:
        mission = Mission.objects.select_related("vehicle").get(pk=m.mission_id)
        assert mission.vehicle is not None and mission.vehicle.external_id == m.truck
        assert m.samples and TelemetrySample.objects.filter(mission_id=m.mission_id).count() == len(m.samples)
    assert record.duplicates_sent > 0
    # The comparison covered every SLI at every checkpoint (two midnights), and January's credits.
    assert len(record.checkpoints) == CI_DAYS
    assert {r.sli for r in comparison.rows} == set(SLIS)
    assert any(r.engine.get("total") for r in comparison.rows if r.sli == "mttr")
    assert comparison.credits and all(c["ok"] for c in comparison.credits)
    assert any(c["issued_usd"] != "0.00" for c in comparison.credits)

    json_path, html_path = reports_write(result, tmp_path)
    data = json.loads(json_path.read_text())
    assert {"run", "passed", "mismatches", "fleet", "fault_kinds", "slis_per_day", "comparison", "incidents",
            "credits"} <= set(data)  # fmt: skip
    assert data["passed"] is True and data["run"]["seed"] == CI_SEED and data["fleet"]["missions"] > 0
    page = html_path.read_text()
    assert "Plotly" in page and "Ground-truth comparison" in page
    assert not re.search(r"<script[^>]+src=[\"']?https?://", page, re.I)


def test_same_seed_same_run() -> None:
    short = replace(p.profile_get("ci"), forced=(p.LATE, p.FAILURE, p.DEGRADATION))
    first = run_program(days=0.25, trucks=4, seed=3, profile=short, prefix="a")
    second = run_program(days=0.25, trucks=4, seed=3, profile=short, prefix="b")

    def shape(result: Any) -> list[tuple[Any, ...]]:
        return [(m.truck[1:], m.fault, m.started_at, m.completed_at, m.outcome, len(m.samples))
                for m in result.record.missions.values()]  # fmt: skip

    assert shape(first) == shape(second)
    assert first.comparison.passed and second.comparison.passed


def test_handover_counted_as_success_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SLA engine's per-mission contribution made wrong: a handed-over mission counts as a success."""
    right = rollups.mission_fact

    def wrong(row: dict[str, Any], g: int, exclusions: Any) -> Any:
        fact = right(row, g, exclusions)
        if row["status"] == "handed_over" and fact.counts:
            fact.counts[2] = 1  # [finished, on_time, success, failed, handed_over, cancelled]
        return fact

    monkeypatch.setattr(rollups, "mission_fact", wrong)
    profile = replace(p.profile_get("ci"), forced=(p.LOST_COMMS_FAILOVER, p.LOST_COMMS_FAILOVER))
    result = run_program(days=0.5, trucks=4, seed=5, profile=profile)
    handed_over = sorted(m.mission_id for m in result.record.missions.values() if m.outcome == "handed_over")
    assert handed_over
    wrong_rows = [m for m in result.comparison.mismatches if m["what"] == "sli"]
    assert wrong_rows and {m["sli"] for m in wrong_rows} == {"mission_success"}
    for m in wrong_rows:
        assert m["engine"]["good"] > m["truth"]["good"]
        assert set(m["mission_ids"]) <= set(handed_over) and m["mission_ids"]


def test_unanswered_calls_left_out_of_the_error_rate_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SLA engine's API error rate made wrong: calls that got no answer (reset, timed out) are left out."""

    def answered_only() -> Q:
        return Q(status_code__isnull=False) & (Q(status_code__lt=400) | Q(status_code__gte=500))

    for module in (selectors, rollup_build, rollups, bucket_reads):
        monkeypatch.setattr(module, "api_call_counted", answered_only)
    profile = replace(p.profile_get("ci"), forced=(), api_forced=((p.API_RESET, 0, 60),))
    result = run_program(days=0.5, trucks=4, seed=5, profile=profile)
    assert any(c.fault == p.API_RESET for c in result.record.api_calls)
    wrong_rows = [m for m in result.comparison.mismatches if m["what"] == "sli"]
    assert wrong_rows and {m["sli"] for m in wrong_rows} == {"api_error_rate"}
    for m in wrong_rows:
        assert m["engine"]["total"] < m["truth"]["total"] and m["carrier"] == result.record.api_carrier
