"""/metrics in production: a bearer token from settings, open only on the embedded demo; the README's scrape config.

The same against live daphne and gunicorn servers is in ``tests/partner/test_limits_live.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from tests.conftest import require_service

pytestmark = pytest.mark.django_db


def test_metrics_are_absent_in_production_without_a_token(settings: Any) -> None:
    settings.DEBUG, settings.TESTING, settings.METRICS_TOKEN = False, False, ""
    assert Client().get("/metrics").status_code == 404
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer guess").status_code == 404
    settings.DEBUG = True  # the embedded demo
    assert Client().get("/metrics").status_code == 200


def test_metrics_in_production_answer_only_the_token(settings: Any) -> None:
    settings.DEBUG, settings.TESTING, settings.METRICS_TOKEN = False, False, "scrape-token-0123456789"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-01234567").status_code == 401
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-0123456789")
    assert response.status_code == 200
    assert "tms_auth_failures" in response.content.decode()


def test_the_readme_scrape_config_is_valid_prometheus(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    require_service("promtool", promtool is not None)
    assert promtool is not None
    readme = (Path(django_settings.BASE_DIR) / "README.md").read_text()
    block = re.search(r"```yaml\n(scrape_configs:.*?)```", readme, re.S)
    assert block, "README has no scrape_configs example"
    token_file = tmp_path / "token"
    token_file.write_text("scrape-token\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(block[1].replace("/etc/prometheus/tms-metrics-token", str(token_file)))
    result = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Bearer" in block[1] and "credentials_file" in block[1]
