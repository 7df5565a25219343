"""The demo's scripted incident: the fleet simulator's fault, and `make run` paging a local pager by default."""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest
from django.core.management.base import CommandError
from django.test import override_settings

from missions.management.commands.simulate_fleet import demo_fault
from missions.simulators.fleet import Fault

BASE_DIR = Path(__file__).resolve().parents[2]


def _run_all() -> ModuleType:
    sys.path.insert(0, str(BASE_DIR / "scripts"))
    try:
        import run_all
    finally:
        sys.path.remove(str(BASE_DIR / "scripts"))
    return run_all


def test_the_demo_cuts_one_trucks_comms_on_schedule_unless_turned_off() -> None:
    with override_settings(
        DEMO_SCENARIO="lost-comms", DEMO_INCIDENT_VEHICLE="LSA-101", DEMO_INCIDENT_AFTER_SECONDS=180
    ):
        assert demo_fault(enabled=True) == Fault(kind="comms_loss", vehicle="LSA-101", at_s=180.0)
        assert demo_fault(enabled=False) is None  # only the demo fleet (`simulate_fleet --demo`)
    with override_settings(DEMO_SCENARIO="off"):
        assert demo_fault(enabled=True) is None
    with override_settings(DEMO_SCENARIO="meteor-strike"), pytest.raises(CommandError, match="'lost-comms' or 'off'"):
        demo_fault(enabled=True)
    late = override_settings(DEMO_SCENARIO="lost-comms", DEMO_INCIDENT_AFTER_SECONDS=-1)
    with late, pytest.raises(CommandError, match="0 or more"):
        demo_fault(enabled=True)


def test_make_run_pages_a_local_pager_only_when_no_pagerduty_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    run_all = _run_all()
    everything = {"run_carrier_sim", "simulate_fleet", "run_pager_sim"}
    monkeypatch.delenv("PAGERDUTY_EVENTS_URL", raising=False)
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY", raising=False)
    monkeypatch.setenv("PAGER_SIM_PORT", "8199")
    assert run_all.demo_pager_default(everything) == "http://127.0.0.1:8199/pages"
    assert run_all.os.environ["PAGERDUTY_EVENTS_URL"] == "http://127.0.0.1:8199/v2/enqueue"
    assert run_all.os.environ["PAGERDUTY_ROUTING_KEY"] == "demo-routing-key"
    pager = next(s for s in run_all.build_specs(host="127.0.0.1", port=8000, commands=everything) if s.name == "pager")
    assert pager.argv[-2:] == ["--port", "8199"]

    # A real PagerDuty endpoint is kept, and no local pager runs.
    monkeypatch.setenv("PAGERDUTY_EVENTS_URL", "https://events.pagerduty.com/v2/enqueue")
    assert run_all.demo_pager_default(everything) is None
    names = {s.name for s in run_all.build_specs(host="127.0.0.1", port=8000, commands=everything)}
    assert "pager" not in names and run_all.os.environ["PAGERDUTY_EVENTS_URL"].startswith("https://events")
