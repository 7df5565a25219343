"""SLI value types, windows and objectives (no queries here; those live in ``sla.selectors``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db.models import FloatField, Func

from sla.choices import SLIName, WindowName
from sla.models import Contract

FOUR_PLACES = Decimal("0.0001")

ROLLING: dict[str, timedelta] = {
    WindowName.H1: timedelta(hours=1),
    WindowName.H24: timedelta(hours=24),
    WindowName.D7: timedelta(days=7),
    WindowName.D30: timedelta(days=30),
}
# Windows used only by the burn-rate alerts (Google SRE workbook, multiwindow multi-burn-rate).
ALERT_WINDOWS: dict[str, timedelta] = {
    "5m": timedelta(minutes=5),
    "30m": timedelta(minutes=30),
    "6h": timedelta(hours=6),
    "3d": timedelta(days=3),
}
PCT_SLIS = (SLIName.ON_TIME, SLIName.MISSION_SUCCESS, SLIName.TELEMETRY_INTEGRITY, SLIName.API_ERROR_RATE)


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)`` with the name it is reported under."""

    name: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class SLIResult:
    """One SLI over one window: counts, value in ``unit`` (None = no traffic) and the inputs."""

    sli: str
    carrier_id: int
    window: str
    start: datetime
    end: datetime
    good: int
    total: int
    value: Decimal | None
    unit: str
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def attainment_pct(self) -> Decimal | None:
        """Share of events that met the objective, in percent (None without traffic)."""
        if not self.total:
            return None
        return (Decimal(self.good) * 100 / Decimal(self.total)).quantize(FOUR_PLACES, ROUND_HALF_UP)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["start"] = self.start.isoformat()
        data["end"] = self.end.isoformat()
        data["value"] = None if self.value is None else str(self.value)
        data["attainment_pct"] = None if self.attainment_pct is None else str(self.attainment_pct)
        return data


@dataclass(frozen=True)
class Targets:
    """The objectives the SLIs are measured against (from a contract, or the defaults of one)."""

    on_time_pct: Decimal
    mission_success_pct: Decimal
    telemetry_integrity_pct: Decimal
    failover_seconds: int
    mttr_seconds: int
    api_latency_p99_ms: int
    api_error_rate_pct: Decimal
    telemetry_gap_seconds: int

    @classmethod
    def of(cls, contract: Contract | None) -> Targets:
        c = contract or Contract(telemetry_gap_seconds=settings.TELEMETRY_GAP_SECONDS_DEFAULT)
        return cls(
            on_time_pct=Decimal(c.on_time_target_pct),
            mission_success_pct=Decimal(c.mission_success_target_pct),
            telemetry_integrity_pct=Decimal(c.telemetry_integrity_target_pct),
            failover_seconds=c.failover_time_target_seconds,
            mttr_seconds=c.mttr_target_seconds,
            api_latency_p99_ms=c.api_latency_p99_target_ms,
            api_error_rate_pct=Decimal(c.api_error_rate_target_pct),
            telemetry_gap_seconds=c.telemetry_gap_seconds,
        )

    def target_for(self, sli: str) -> Decimal:
        """The SLO as written in the contract, in the SLI's unit."""
        return {
            SLIName.ON_TIME: self.on_time_pct,
            SLIName.MISSION_SUCCESS: self.mission_success_pct,
            SLIName.TELEMETRY_INTEGRITY: self.telemetry_integrity_pct,
            SLIName.FAILOVER_TIME: Decimal(self.failover_seconds),
            SLIName.MTTR: Decimal(self.mttr_seconds),
            SLIName.API_LATENCY: Decimal(self.api_latency_p99_ms),
            SLIName.API_ERROR_RATE: self.api_error_rate_pct,
        }[SLIName(sli)]

    def good_ratio_target(self, sli: str) -> Decimal:
        """The SLO as a share of good events (0-1), used by error budgets and burn rates.

        Latency p99 under X ms means 99 % of calls under X; a median failover
        under X means half of them; an error rate under X % means 100 - X %
        good calls; MTTR (a mean) has no event-ratio form and uses 50 %.
        """
        pct = {
            SLIName.ON_TIME: self.on_time_pct,
            SLIName.MISSION_SUCCESS: self.mission_success_pct,
            SLIName.TELEMETRY_INTEGRITY: self.telemetry_integrity_pct,
            SLIName.FAILOVER_TIME: Decimal(50),
            SLIName.MTTR: Decimal(50),
            SLIName.API_LATENCY: Decimal(99),
            SLIName.API_ERROR_RATE: Decimal(100) - self.api_error_rate_pct,
        }[SLIName(sli)]
        return pct / 100


def sli_meets(sli: str, value: Decimal | None, target: Decimal) -> bool | None:
    """Whether a value meets its target: rates up to be high, durations and error rates low."""
    if value is None:
        return None
    if sli in (SLIName.ON_TIME, SLIName.MISSION_SUCCESS, SLIName.TELEMETRY_INTEGRITY):
        return value >= target
    return value <= target


# --- Windows --------------------------------------------------------------------------------


def month_start(day: date) -> date:
    return day.replace(day=1)


def month_next(day: date) -> date:
    first = day.replace(day=1)
    return (first + timedelta(days=32)).replace(day=1)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def month_window(month: date, *, now: datetime | None = None) -> Window:
    """The calendar month holding ``month`` in UTC, cut at ``now`` while it is still running."""
    start = _midnight(month_start(month))
    end = _midnight(month_next(month))
    if now is not None and now < end:
        end = max(now, start)
    return Window(WindowName.MONTH, start, end)


def windows_at(now: datetime) -> list[Window]:
    """The reporting windows ending at ``now``: rolling 1 h, 24 h, 7 d, 30 d and the month so far."""
    rolling = [Window(name, now - length, now) for name, length in ROLLING.items()]
    return [*rolling, month_window(now.astimezone(UTC).date(), now=now)]


def alert_windows_at(now: datetime) -> list[Window]:
    return [Window(name, now - length, now) for name, length in ALERT_WINDOWS.items()]


# --- Helpers --------------------------------------------------------------------------------


class Epoch(Func):
    """Seconds since the Unix epoch of a datetime, with the fraction (PostgreSQL and SQLite)."""

    output_field = FloatField()

    def as_sql(self, compiler: Any, connection: Any, **extra: Any) -> Any:  # type: ignore[override]  # PostgreSQL
        # date_part() is double precision; EXTRACT() is numeric since PostgreSQL 14 and several times slower
        # to divide and floor over hundreds of thousands of samples.
        return super().as_sql(compiler, connection, template="date_part('epoch', %(expressions)s)", **extra)

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:  # type: ignore[override]
        # julianday() is a double: about 50 microseconds of resolution today, so rounding to the
        # millisecond gives exact whole seconds at bucket edges.
        template = "ROUND((julianday(%(expressions)s) - 2440587.5) * 86400.0, 3)"
        return super().as_sql(compiler, connection, template=template, **extra)
