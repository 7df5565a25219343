"""Dashboards, breach decisions over HTTP, ledger downloads, /metrics (promtool), tasks."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client, override_settings
from django.utils import timezone

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Carrier
from runbooks.models import Incident
from sla.choices import BreachStatus, SLIName
from sla.models import Breach, CreditEntry, SLIMeasurement
from sla.services import breach_record, sla_evaluate
from sla.sli import SLIResult
from sla.tasks import sla_evaluate_all
from tests.conftest import require_service, verified_client
from tests.factories import ContractFactory
from tests.sla.fixtures import mission
from tms_console import metrics

pytestmark = pytest.mark.django_db


@pytest.fixture
def evaluated(carrier_a: Carrier) -> Carrier:
    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1))
    now = timezone.now()
    mission(carrier_a, completed_at=now - timedelta(minutes=30), due=now)
    mission(carrier_a, status=MissionStatus.FAILED, completed_at=now - timedelta(minutes=20))
    sla_evaluate(carrier_id=carrier_a.pk, now=now)
    return carrier_a


@pytest.fixture
def breach(carrier_a: Carrier) -> Breach:
    contract = ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1), monthly_fee_usd=Decimal("20000"))
    now = timezone.now()
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    result = SLIResult(SLIName.ON_TIME, carrier_a.pk, "month", start, now, 80, 100, Decimal("80"), "pct", {})
    return breach_record(
        carrier_id=carrier_a.pk, contract_id=contract.pk, result=result, target=Decimal("95"), actor=Actor.system("t")
    )


def test_dashboards_render_for_viewers(evaluated: Carrier, readonly: User) -> None:
    client = verified_client(readonly)
    page = client.get("/sla/?window=24h")
    assert page.status_code == 200
    body = page.content.decode()
    assert 'id="sla-comparison"' in body and "vendor/plotly/plotly.min.js" in body
    assert "Carrier A" in body and "50.00 %" in body  # one of two missions on time
    carrier_page = client.get(f"/sla/dashboard/carriers/{evaluated.pk}/")
    assert carrier_page.status_code == 200 and 'id="sla-burndown"' in carrier_page.content.decode()
    series = client.get(f"/sla/dashboard/carriers/{evaluated.pk}/series.json?window=1h").json()
    assert series["series"][SLIName.MISSION_SUCCESS]["value"] == [50.0]
    assert series["series"][SLIName.MISSION_SUCCESS]["target"] == [98.0]
    assert SLIName.ON_TIME in series["burn_down"]
    comparison = client.get("/sla/dashboard/comparison.json?window=1h").json()
    # Two missions are fewer than SLA_BURN_MIN_EVENTS: measured, not judged (neither met nor missed).
    assert comparison["rows"][0]["slis"][SLIName.ON_TIME]["met"] is None
    assert comparison["rows"][0]["slis"][SLIName.ON_TIME]["state"] == "low_traffic"
    summary = client.get(f"/sla/dashboard/carriers/{evaluated.pk}/summary.json").json()
    assert summary["slis"][SLIName.ON_TIME]["1h"]["value"] == "50.0000"


def test_dashboard_needs_a_verified_session(evaluated: Carrier, outsider: User) -> None:
    assert Client().get("/sla/dashboard/").status_code == 302
    assert verified_client(outsider).get("/sla/dashboard/").status_code == 403


def test_breach_decisions_need_manage_sla(breach: Breach, readonly: User, dispatcher: User, sla_manager: User) -> None:
    for user in (readonly, dispatcher):
        response = verified_client(user).post(f"/sla/dashboard/breaches/{breach.pk}/decide", {"decision": "confirm"})
        assert response.status_code == 403
    breach.refresh_from_db()
    assert breach.status == BreachStatus.PROPOSED
    client = verified_client(sla_manager)
    assert client.get(f"/sla/dashboard/breaches/{breach.pk}/").status_code == 200
    refused = client.post(f"/sla/dashboard/breaches/{breach.pk}/decide", {"decision": "dispute", "reason": ""})
    assert refused.status_code == 302
    breach.refresh_from_db()
    assert breach.status == BreachStatus.PROPOSED  # a dispute needs a reason
    response = client.post(f"/sla/dashboard/breaches/{breach.pk}/decide", {"decision": "confirm"})
    assert response.status_code == 302
    breach.refresh_from_db()
    assert breach.status == BreachStatus.CONFIRMED
    assert CreditEntry.objects.get().amount_usd == Decimal("2000.00")  # 80 % is below 90: 10 % of 20,000
    listing = client.get("/sla/dashboard/breaches/?status=confirmed").content.decode()
    assert "Confirmed" in listing


def test_ledger_downloads(breach: Breach, sla_manager: User, readonly: User) -> None:
    client = verified_client(sla_manager)
    client.post(f"/sla/dashboard/breaches/{breach.pk}/decide", {"decision": "confirm"})
    assert "2000.00" in client.get("/sla/dashboard/credits/").content.decode()
    csv_response = client.get("/sla/dashboard/credits/ledger.csv")
    assert csv_response.status_code == 200 and csv_response["Content-Type"].startswith("text/csv")
    assert "attachment" in csv_response["Content-Disposition"]
    assert (
        csv_response.content.decode()
        .splitlines()[1]
        .endswith(",2000.00," + CreditEntry.objects.get().created_at.isoformat())
    )
    json_response = client.get(f"/sla/dashboard/credits/ledger.json?carrier={breach.carrier_id}")
    assert json_response.json()["entries"][0]["amount_usd"] == "2000.00"
    assert verified_client(readonly).get("/sla/dashboard/credits/ledger.csv").status_code == 403


def test_metrics_expose_slis_requests_ingest_and_queue(
    evaluated: Carrier, readonly: User, tmp_path: Path, settings: Any
) -> None:
    queue = tmp_path / "queue"
    queue.mkdir()
    (queue / "1_a.celery.msg").write_text("{}")
    (queue / "2_b.celery.msg").write_text("{}")
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(queue), "data_folder_out": str(queue)}
    verified_client(readonly).get("/sla/")
    metrics.telemetry_ingested(7)
    body = Client().get("/metrics").content.decode()
    assert 'tms_sla_sli_value{carrier="carrier-a",sli="on_time",unit="pct",window="1h"} 50.0' in body
    assert 'tms_sla_sli_target{carrier="carrier-a",sli="on_time"} 95.0' in body
    assert 'tms_celery_queue_depth{queue="celery"} 2.0' in body
    assert 'tms_http_requests_total{endpoint="/sla/",method="GET",status="2xx"}' in body
    assert "tms_http_request_duration_seconds_bucket" in body
    ingested = [line for line in body.splitlines() if line.startswith("tms_telemetry_events_ingested_total ")]
    assert ingested and float(ingested[0].split()[1]) >= 7


def test_metrics_output_passes_promtool(evaluated: Carrier, readonly: User, tmp_path: Path) -> None:
    require_service("promtool", shutil.which("promtool") is not None)
    verified_client(readonly).get("/sla/")
    body = Client().get("/metrics").content
    result = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_metrics_bearer_token(settings: Any) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    ok = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")


def test_beat_task_evaluates_every_carrier_with_a_contract(carrier_a: Carrier, carrier_b: Carrier) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1))
    assert sla_evaluate_all() == 1  # eager in tests
    assert set(SLIMeasurement.objects.values_list("carrier_id", flat=True)) == {carrier_a.pk}


def test_mission_completion_re_evaluates_through_the_event_registry(
    carrier_a: Carrier, django_capture_on_commit_callbacks: Any
) -> None:
    """The core publishes mission.status_changed; the SLA engine's subscriber evaluates after commit."""
    from missions.events import Actor
    from missions.services import mission_transition

    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1))
    finished = mission(carrier_a, status=MissionStatus.ARRIVING)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        mission_transition(mission_id=finished.pk, to_status=MissionStatus.COMPLETED, actor=Actor.system("test"))
    assert not SLIMeasurement.objects.exists()  # nothing before the commit
    for callback in callbacks:
        callback()
    assert SLIMeasurement.objects.filter(carrier=carrier_a).count() == 35


def test_an_unfinished_mission_does_not_re_evaluate(
    carrier_a: Carrier, django_capture_on_commit_callbacks: Any
) -> None:
    from missions.events import Actor
    from missions.services import mission_transition

    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1))
    moving = mission(carrier_a, status=MissionStatus.ASSIGNED)
    with django_capture_on_commit_callbacks(execute=True):
        mission_transition(mission_id=moving.pk, to_status=MissionStatus.EN_ROUTE, actor=Actor.system("test"))
    assert not SLIMeasurement.objects.exists()


def test_time_frozen_month_close_from_beat(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1))
    moment = datetime(2026, 5, 1, 0, 10, tzinfo=UTC)
    with time_machine.travel(moment, tick=False):
        sla_evaluate_all()
    assert SLIMeasurement.objects.filter(window="month", window_end=datetime(2026, 5, 1, tzinfo=UTC)).count() == 7


def test_queue_depth_from_redis(settings: Any) -> None:
    import os

    url = os.environ.get("REDIS_URL", "")
    require_service("redis", bool(url))
    import redis

    client = redis.Redis.from_url(url)
    key = "celery"
    client.delete(key)
    try:
        client.rpush(key, "a", "b", "c")
        settings.CELERY_BROKER_URL = url
        assert metrics.queue_depth() == 3
        assert 'tms_celery_queue_depth{queue="celery"} 3.0' in Client().get("/metrics").content.decode()
    finally:
        client.delete(key)
        client.close()


def test_burn_rate_alerts_show_the_incident_severity_they_stand_for(carrier_a: Carrier, readonly: User) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2020, 1, 1))
    now = timezone.now()
    for k in range(12):
        mission(carrier_a, status=MissionStatus.FAILED, completed_at=now - timedelta(minutes=3, seconds=k))
    with override_settings(SLA_BURN_MIN_EVENTS=10):
        sla_evaluate(carrier_id=carrier_a.pk, now=now)
    incident = Incident.objects.get(kind="sla_breach", carrier=carrier_a)
    client = verified_client(readonly)
    for url in ("/sla/", f"/sla/dashboard/carriers/{carrier_a.pk}/"):
        body = client.get(url).content.decode()
        assert "Page · critical" in body and "Ticket · warning" in body, url
        assert f"/incidents/{incident.pk}/" in body
    assert incident.severity == "critical"
