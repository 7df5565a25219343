"""The operating terms a carrier's contract sets for the core's safety loops.

Gap detection needs each carrier's telemetry-gap threshold, the lost-comms
runbook its recovery timeout, the en-route gate whether a signed route plan is
required. All are contract terms, and contracts belong to
the SLA engine, which sits above the core: it registers a ``TermsSource`` from
its ``AppConfig.ready``. Without one (or for a carrier without a contract in
force) the defaults from settings apply.
"""

from __future__ import annotations

from datetime import date
from typing import Protocol

from django.conf import settings
from django.db.models import Expression, IntegerField, Value
from django.db.models.expressions import BaseExpression
from django.db.models.functions import Coalesce


class TermsSource(Protocol):
    def gap_seconds_sql(self, *, today: date) -> BaseExpression:
        """Per-mission SQL for the threshold in force ``today`` (NULL without a contract), over ``carrier_id``."""
        ...

    def recovery_timeout_seconds(self, *, carrier_id: int, today: date) -> int | None:
        """The recovery timeout of the contract in force, or None without one."""
        ...

    def route_plan_required(self, *, carrier_id: int, today: date) -> bool | None:
        """Whether the contract in force requires signed route plans, or None without one."""
        ...


_source: TermsSource | None = None


def terms_source_register(source: TermsSource) -> None:
    global _source
    _source = source


def gap_threshold(*, today: date) -> Expression:
    """Per-mission SQL expression: the carrier's contract threshold in force today, else the default."""
    default = Value(settings.TELEMETRY_GAP_SECONDS_DEFAULT, output_field=IntegerField())
    if _source is None:
        return default
    return Coalesce(_source.gap_seconds_sql(today=today), default, output_field=IntegerField())


def recovery_timeout_seconds(*, carrier_id: int | None, today: date, default: int = 300) -> int:
    """How long the lost-comms runbook waits for a vehicle before failing over."""
    if _source is None or carrier_id is None:
        return default
    found = _source.recovery_timeout_seconds(carrier_id=carrier_id, today=today)
    return default if found is None else found


def route_plan_required(*, carrier_id: int, today: date) -> bool:
    """Whether the carrier's contract in force requires a verified signed route plan before en route."""
    if _source is None:
        return False
    return bool(_source.route_plan_required(carrier_id=carrier_id, today=today))
