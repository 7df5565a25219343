"""``manage.py check``: limits that parse, and a /metrics that production can scrape."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Tags
from django.core.checks import Error as CheckError
from django.core.checks import Warning as CheckWarning

from tms_console.metrics import metrics_open_without_token
from tms_console.ratelimit import Rate

# Settings read as rates ("1200/min", "10/15min"); an empty value turns the limit off.
RATE_SETTINGS = (
    "API_RATE_LIMIT",
    "AUTH_GUARD_BEARER_PER_ADDRESS",
    "AUTH_GUARD_SECRET_PER_CLIENT",
    "AUTH_GUARD_PASSWORD_PER_USER",
    "AUTH_GUARD_PER_ADDRESS",
)


def register() -> None:
    """Called from ``TmsConsoleConfig.ready``."""
    checks.register(rate_settings_check, Tags.security)
    checks.register(metrics_token_check, Tags.security, deploy=True)
    checks.register(simulated_clock_check, Tags.security, deploy=True)


def rate_settings_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    problems: list[CheckMessage] = []
    for name in RATE_SETTINGS:
        try:
            Rate.parse(str(getattr(settings, name, "") or ""))
        except ValueError as exc:
            problems.append(CheckError(f"{name}: {exc}", id="tms_console.E001"))
    return problems


def metrics_token_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if getattr(settings, "METRICS_TOKEN", "") or metrics_open_without_token():
        return []
    return [
        CheckWarning(
            "METRICS_TOKEN is not set: /metrics answers 404 and Prometheus cannot scrape it.",
            hint="Set METRICS_TOKEN and give Prometheus the same value (scrape_config `authorization`).",
            id="tms_console.W001",
        )
    ]


def simulated_clock_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """A simulated clock (``tms_console.simclock``) is for simulation runs only: refused by ``check --deploy``."""
    import os

    from tms_console.simclock import ENV_FILE

    if not os.environ.get(ENV_FILE, "").strip():
        return []
    return [
        CheckError(
            f"{ENV_FILE} is set: this process reads its wall time from a simulation's clock file.",
            hint=f"Unset {ENV_FILE}; it belongs to `manage.py simulate_program` runs, never to a deployment.",
            id="tms_console.E002",
        )
    ]
