"""``manage.py simulate_program`` as a user runs it: in a database of its own, never in the configured one."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from missions.models import Carrier, Mission

BASE_DIR = Path(__file__).resolve().parents[2]
RUN = ["--days", "0.25", "--trucks", "3", "--seed", "3", "--profile", "ci"]


def _summary(out: Path) -> dict[str, object]:
    summary: dict[str, object] = json.loads((out / "summary.json").read_text())
    assert summary["passed"] is True
    assert (out / "report.html").stat().st_size > 0
    return summary


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQLite case runs as its own process below")
def test_on_postgresql_a_run_has_a_database_of_its_own_and_drops_it(tmp_path: Path) -> None:
    def databases() -> set[str]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT datname FROM pg_database")
            return {row[0] for row in cursor.fetchall()}

    counts = (Carrier.objects.count(), Mission.objects.count())
    before = databases()
    configured = connection.settings_dict["NAME"]
    call_command("simulate_program", *RUN, "--out", str(tmp_path))
    assert connection.settings_dict["NAME"] == configured
    assert (Carrier.objects.count(), Mission.objects.count()) == counts
    assert _summary(tmp_path)
    assert databases() == before


def test_on_sqlite_the_configured_file_is_left_alone(tmp_path: Path) -> None:
    """As ``make run`` has it: the embedded database file, migrated; the run must not write into it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(DEBUG="1", TMS_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="tms_console.settings")
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, cwd=BASE_DIR, check=True, timeout=300)
    files = sorted((tmp_path / "var").rglob("*.sqlite3"))
    assert len(files) == 1
    out = tmp_path / "run"
    done = subprocess.run(
        [*manage, "simulate_program", *RUN, "--out", str(out)], env=env, cwd=BASE_DIR, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "simulating in its own database" in done.stdout and "ground-truth comparison passed" in done.stdout
    assert _summary(out)
    with sqlite3.connect(files[0]) as db:
        assert db.execute("SELECT COUNT(*) FROM missions_carrier").fetchone() == (0,)
    assert not (out / "simulation.sqlite3").exists()  # dropped
