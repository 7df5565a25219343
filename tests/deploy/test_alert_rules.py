"""The Prometheus rules in deploy/prometheus: generated from the SLA engine, valid, tested, fed by /metrics.

The committed SLO rules must be what ``manage.py alert_rules`` writes (so they cannot drift from
the engine's burn rules), promtool must accept and pass every rule file and its unit tests, every
``tms_`` series a rule reads must be on ``/metrics``, and Prometheus, fed the very scrape of an
evaluated database, must raise exactly the burn-rate alerts the console raised.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from missions.choices import CircuitState, MissionStatus
from missions.models import Carrier, CarrierCircuit, DeadLetter
from sla.alert_rules import ALERT_NAMES, rules_text
from sla.choices import AlertSeverity
from sla.models import BurnRateAlert
from sla.services import BURN_RULES, sla_evaluate
from tests.conftest import require_service
from tests.factories import ContractFactory
from tests.sla.fixtures import mission
from tms_console.health import heartbeat_record

PROMETHEUS = Path(settings.BASE_DIR) / "deploy" / "prometheus"
RULES = sorted((PROMETHEUS / "rules").glob("*.rules.yaml"))
TESTS = sorted((PROMETHEUS / "tests").glob("*.test.yaml"))
SLO_RULES = PROMETHEUS / "rules" / "slo.rules.yaml"
# A series name in an expression: not part of a recording rule's name (those hold colons).
SERIES = re.compile(r"(?<![\w:])(tms_[a-z0-9_]+)(?![\w:])")


def promtool() -> str:
    path = shutil.which("promtool")
    require_service("promtool", path is not None)
    assert path is not None
    return path


def rule_exprs(path: Path) -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def series_read_by_rules() -> set[str]:
    return {name for path in RULES for expr in rule_exprs(path) for name in SERIES.findall(expr)}


# --- The committed file is the command's output ----------------------------------------------------


def test_committed_slo_rules_are_what_the_command_writes(tmp_path: Path) -> None:
    assert SLO_RULES.read_text() == rules_text()
    out = io.StringIO()
    call_command("alert_rules", "--check", stdout=out)
    assert "up to date" in out.getvalue()
    written = tmp_path / "slo.rules.yaml"
    call_command("alert_rules", "--output", str(written), stdout=io.StringIO())
    assert written.read_text() == SLO_RULES.read_text()


def test_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "slo.rules.yaml"
    stale.write_text(rules_text().replace("> 14.4", "> 10"))
    with pytest.raises(Exception, match="out of date"):
        call_command("alert_rules", "--output", str(stale), "--check", stdout=io.StringIO())


def test_slo_rules_carry_the_engines_thresholds_and_windows() -> None:
    """Each of the engine's rules appears with its own windows and threshold, under its severity's alert."""
    alerts = {rule["alert"]: rule for group in yaml.safe_load(rules_text())["groups"] for rule in group["rules"]
              if "alert" in rule}  # fmt: skip
    for burn in BURN_RULES:
        alert = alerts[ALERT_NAMES[AlertSeverity(burn.severity)]]
        threshold = format(burn.threshold.normalize(), "f")
        assert f"carrier_sli:tms_sla_burn_rate:{burn.long_window} > {threshold}\n" in alert["expr"]
        assert f"carrier_sli:tms_sla_burn_rate:{burn.short_window} > {threshold}\n" in alert["expr"]
        assert (
            f"carrier_sli:tms_sla_burn_events:{burn.long_window} >= scalar(max(tms_sla_burn_min_events))"
            in (alert["expr"])
        )
        assert alert["labels"]["severity"] == burn.severity


# --- promtool ------------------------------------------------------------------------------------


def test_promtool_checks_every_rule_file() -> None:
    assert RULES, "no rule files"
    result = subprocess.run([promtool(), "check", "rules", *map(str, RULES)], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_promtool_unit_tests_pass() -> None:
    assert {p.name for p in TESTS} >= {"slo.test.yaml", "platform.test.yaml"}
    result = subprocess.run([promtool(), "test", "rules", *map(str, TESTS)], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_every_alert_has_a_unit_test() -> None:
    alerts = {rule["alert"] for path in RULES for group in yaml.safe_load(path.read_text())["groups"]
              for rule in group["rules"] if "alert" in rule}  # fmt: skip
    tested = {case["alertname"] for path in TESTS for group in yaml.safe_load(path.read_text())["tests"]
              for case in group.get("alert_rule_test", [])}  # fmt: skip
    assert alerts - tested == set()


# --- /metrics carries what the rules read ----------------------------------------------------------


@pytest.fixture
def seeded(carrier_a: Carrier, carrier_b: Carrier, tmp_path: Path, settings: Any) -> dict[str, Carrier]:
    """Two carriers with contracts: A has 12 failed missions in the last minutes, B only 9 (under the minimum).

    Plus what the platform series need: a queue, heartbeats, an open breaker, a dead letter, the bus on.
    """
    settings.SLA_BURN_MIN_EVENTS = 10
    queue = tmp_path / "queue"
    queue.mkdir()
    (queue / "1_a.celery.msg").write_text("{}")
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(queue), "data_folder_out": str(queue)}
    settings.NATS_URL = "nats://127.0.0.1:4222"
    now = timezone.now()
    for carrier, failed in ((carrier_a, 12), (carrier_b, 9)):
        ContractFactory(carrier=carrier, effective_from=date(2020, 1, 1))
        for k in range(failed):
            mission(carrier, status=MissionStatus.FAILED, completed_at=now - timedelta(minutes=3, seconds=k))
        sla_evaluate(carrier_id=carrier.pk, now=now)
    CarrierCircuit.objects.create(carrier=carrier_a, state=CircuitState.OPEN, opened_at=now)
    DeadLetter.objects.create(
        source="mqtt", kind="malformed", reason="not JSON", payload=b"x", payload_bytes=1, received_at=now
    )
    for process in ("beat", "worker", "mqtt-bridge"):
        heartbeat_record(name=process)
    return {"a": carrier_a, "b": carrier_b}


def scrape() -> list[tuple[str, dict[str, str], float]]:
    body = Client().get("/metrics").content.decode()
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    ]


def test_every_series_the_rules_read_is_on_metrics(seeded: dict[str, Carrier]) -> None:
    read = series_read_by_rules()
    assert {"tms_sla_burn_events", "tms_bus_lag_seconds", "tms_carrier_circuit_state"} <= read
    exported = {name for name, _, _ in scrape()}
    assert read - exported == set()


def test_prometheus_raises_exactly_the_alerts_the_console_raised(seeded: dict[str, Carrier], tmp_path: Path) -> None:
    """The scrape of an evaluated database, replayed through the generated rules with promtool."""
    raised = {
        (slug, sli, severity)
        for slug, sli, severity in BurnRateAlert.objects.filter(resolved_at__isnull=True).values_list(
            "carrier__slug", "sli", "severity"
        )
    }
    # Carrier A burns (12 of 12 failed): page and ticket; carrier B's 9 failures are under the minimum.
    assert ("carrier-a", "mission_success", "page") in raised and ("carrier-a", "mission_success", "ticket") in raised
    assert not any(slug == "carrier-b" for slug, _, _ in raised)
    series = [
        {"series": _series(name, labels), "values": f"{value!r}+0x5"}
        for name, labels, value in scrape()
        if name.startswith("tms_sla_")
    ]
    test = {
        "rule_files": [str(SLO_RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": 'count by (carrier, sli, severity) (ALERTS{alertstate="firing"})',
                        "eval_time": "2m",
                        "exp_samples": [
                            {"labels": _series("", {"carrier": c, "sli": s, "severity": v}), "value": 1}
                            for c, s, v in sorted(raised)
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "replay.test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = subprocess.run([promtool(), "test", "rules", str(path)], capture_output=True, timeout=120)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def _series(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}"
