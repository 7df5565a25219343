"""A fresh demo, as `make run` starts it, raises exactly its scripted incident, which runs its runbook.

Every process of `make run` runs for real (daphne, gunicorn for the partner API, the Celery worker and beat,
the carrier simulator, the fleet simulator, the local pager) on the embedded
defaults in a directory of its own. Time is shortened where the demo waits on
purpose: the truck loses comms 15 s after the fleet starts instead of 180 s,
and the Lonestar contract's gap threshold and recovery timeout are 30 s and
15 s instead of 60 s and 300 s. The run is watched for 3.5 minutes with the SLA
engine evaluating every 15 s: no other incident may appear.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

BASE_DIR = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the demo runs on the embedded defaults"),
]
OBSERVE_SECONDS = 210
SHORTEN = (
    "from sla.models import Contract; "
    "Contract.objects.filter(carrier__slug='lonestar-autonomous')"
    ".update(telemetry_gap_seconds=30, recovery_timeout_seconds=15)"
)


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL", "CELERY_", "MQTT_"))}
    env.pop("PAGERDUTY_EVENTS_URL", None)
    port, partner, sim, pager = free_port(), free_port(), free_port(), free_port()
    env.update(
        DEBUG="1",
        TMS_VAR_DIR=str(tmp_path / "var"),
        DEMO_PASSWORD="demo-run-password-2026",
        PORT=str(port),
        PARTNER_PORT=str(partner),
        CARRIER_SIM_PORT=str(sim),
        CARRIER_SIM_URL=f"http://127.0.0.1:{sim}",
        PAGER_SIM_PORT=str(pager),
        DEMO_SCENARIO="lost-comms",
        DEMO_INCIDENT_AFTER_SECONDS="15",
        SLA_EVALUATE_SECONDS="15",
        PYTHONUNBUFFERED="1",
    )
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    for argv in (
        ["migrate", "--noinput"],
        ["createcachetable"],
        ["seed_demo", "--quiet-logins"],
        ["shell", "-c", SHORTEN],
    ):
        subprocess.run([*manage, *argv], cwd=BASE_DIR, env=env, check=True, capture_output=True, timeout=300)
    return env


@pytest.fixture
def demo(demo_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    log = (tmp_path / "run.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "scripts" / "run_all.py")],
        cwd=BASE_DIR,
        env=demo_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield tmp_path
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
        log.close()
        assert code == 0, (tmp_path / "run.log").read_text()[-4000:]


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return list(conn.execute(sql))


def test_the_demo_raises_its_scripted_incident_and_nothing_else(demo: Path, demo_env: dict[str, str]) -> None:
    started = time.monotonic()
    db = demo / "var" / "tms.sqlite3"
    deadline = time.monotonic() + 240
    failover: list[tuple[object, ...]] = []
    while time.monotonic() < deadline and not failover:
        time.sleep(3)
        failover = _query(
            db,
            "SELECT s.status FROM runbooks_steprun s JOIN runbooks_runbookstep r ON r.id = s.step_id "
            "WHERE r.action = 'failover' AND s.status = 'done'",
        )
    assert failover, f"the failover step did not complete in time:\n{(demo / 'run.log').read_text()[-6000:]}"
    # Keep watching past the first three minutes, when carrier polls and SLA evaluations (every
    # 15 s here) would have raised false pages: none may appear.
    while time.monotonic() - started < OBSERVE_SECONDS:
        time.sleep(5)
    log = (demo / "run.log").read_text()

    incidents = _query(db, "SELECT kind, title FROM runbooks_incident ORDER BY id")
    assert len(incidents) == 1 and incidents[0][0] == "lost_comms", incidents
    mission = _query(
        db,
        "SELECT v.external_id FROM runbooks_incident i JOIN missions_mission m ON m.id = i.mission_id "
        "JOIN missions_vehicle v ON v.id = m.vehicle_id",
    )
    assert mission == [("LSA-101",)]
    steps = dict(
        _query(
            db,
            "SELECT r.action, s.status FROM runbooks_steprun s JOIN runbooks_runbookstep r ON r.id = s.step_id "
            "WHERE r.kind = 'automated'",
        )
    )
    for action in ("record_last_known", "ping_vehicle", "contain_lost_comms", "page_oncall", "await_recovery"):
        assert steps[action] == "done", steps
    fallback = _query(
        db,
        "SELECT c.slug FROM missions_tender t JOIN missions_carrier c ON c.id = t.carrier_id WHERE t.is_fallback",
    )
    assert fallback == [("red-river-freight",)]

    # The page reached the local pager, about this incident.
    pages = httpx.get(f"http://127.0.0.1:{demo_env['PAGER_SIM_PORT']}/pages", timeout=10).json()["pages"]
    triggers = [p for p in pages if p["event_action"] == "trigger"]
    assert len(triggers) == 1, pages
    assert triggers[0]["summary"].startswith("INC-") and triggers[0]["dedup_key"].startswith("tms-incident-")
    assert "PAGE tms-incident-" in log
    # The fleet's telemetry (which the incident needed) went to gunicorn on PARTNER_PORT.
    partner = httpx.get(f"http://127.0.0.1:{demo_env['PARTNER_PORT']}/api/v1/tenders", timeout=10)
    assert partner.status_code == 401 and partner.headers["server"] == "gunicorn"
    assert f"--console-url http://127.0.0.1:{demo_env['PARTNER_PORT']}" in log
