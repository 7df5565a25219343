"""Contracts with carriers, exclusions, SLI measurements, breaches, the credit ledger, burn-rate alerts.

Models hold data and invariants only; every write goes through
``sla.services``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from missions.models import Carrier
from sla.choices import INCIDENT_SEVERITY_OF_ALERT, AlertSeverity, BreachStatus, ExclusionKind, SLIName, WindowName

PCT = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]


class Contract(models.Model):
    """One version of the agreement with a carrier, in force between its effective dates."""

    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="contracts")
    version = models.PositiveIntegerField(default=1)
    effective_from = models.DateField()
    effective_to = models.DateField(null=True, blank=True, help_text="Exclusive; empty means open-ended")
    monthly_fee_usd = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("0"))
    on_time_target_pct = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("95"), validators=PCT)
    mission_success_target_pct = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("98"), validators=PCT
    )
    telemetry_integrity_target_pct = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("99"), validators=PCT
    )
    failover_time_target_seconds = models.PositiveIntegerField(default=900)
    mttr_target_seconds = models.PositiveIntegerField(default=3600)
    api_latency_p99_target_ms = models.PositiveIntegerField(default=1000)
    api_error_rate_target_pct = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("1"), validators=PCT
    )
    # Used by the runbooks: silence longer than this is lost comms; recovery timeout before failover.
    telemetry_gap_seconds = models.PositiveIntegerField(default=60, validators=[MinValueValidator(5)])
    recovery_timeout_seconds = models.PositiveIntegerField(default=300, validators=[MinValueValidator(10)])
    # A mission of the carrier goes en route only with a verified, currently valid signed route plan
    # (missions.services.mission_transition; docs/decisions/0024-signed-route-plans.md).
    route_plan_required = models.BooleanField(
        default=False, help_text="Missions go en route only with a verified, currently valid signed route plan"
    )
    # [{"below_pct": 95, "credit_pct": 5}, ...]: under this attainment, this share of the fee
    # (rules in credit_schedule_validate).
    credit_schedule = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["carrier_id", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["carrier", "version"], name="contract_version_unique"),
            *(
                models.CheckConstraint(
                    condition=models.Q(**{f"{field}__gte": 0, f"{field}__lte": 100}), name=f"contract_{field}_range"
                )
                for field in (
                    "on_time_target_pct",
                    "mission_success_target_pct",
                    "telemetry_integrity_target_pct",
                    "api_error_rate_target_pct",
                )
            ),
        ]

    def __str__(self) -> str:
        return f"{self.carrier.name} v{self.version}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.effective_to and self.effective_from and self.effective_to <= self.effective_from:
            errors["effective_to"] = "The contract must end after it starts."
        if self.carrier_id and self.effective_from:
            # Few contracts per carrier: checking them here keeps the rule in one readable place.
            for other in Contract.objects.filter(carrier_id=self.carrier_id).exclude(pk=self.pk):
                other_end = other.effective_to
                mine_end = self.effective_to
                starts_before_other_ends = other_end is None or self.effective_from < other_end
                ends_after_other_starts = mine_end is None or mine_end > other.effective_from
                if starts_before_other_ends and ends_after_other_starts:
                    errors["effective_from"] = (
                        f"Overlaps {other} ({other.effective_from} to {other_end or 'open'}); "
                        "end the earlier version before this one starts."
                    )
                    break
        for field in PCT_TARGET_FIELDS:
            value = getattr(self, field)
            if value is None or not (Decimal("0") <= Decimal(value) <= Decimal("100")):
                errors[field] = "A target is a percentage between 0 and 100."
        try:
            credit_schedule_validate(self.credit_schedule)
        except ValidationError as exc:
            errors["credit_schedule"] = " ".join(exc.messages)
        if errors:
            raise ValidationError(errors)

    def credit_tiers(self) -> list[CreditTier]:
        """The credit schedule as normalised tiers, best attainment band first."""
        return credit_schedule_validate(self.credit_schedule)


PCT_TARGET_FIELDS = (
    "on_time_target_pct",
    "mission_success_target_pct",
    "telemetry_integrity_target_pct",
    "api_error_rate_target_pct",
)


class CreditTier:
    """One band of the credit schedule: attainment in [from_pct, below_pct) earns credit_pct of the fee."""

    __slots__ = ("below_pct", "credit_pct", "from_pct", "index")

    def __init__(self, *, index: int, from_pct: Decimal, below_pct: Decimal, credit_pct: Decimal) -> None:
        self.index = index
        self.from_pct = from_pct
        self.below_pct = below_pct
        self.credit_pct = credit_pct

    def __repr__(self) -> str:
        return f"CreditTier({self.from_pct} <= x < {self.below_pct}: {self.credit_pct}%)"

    def as_dict(self) -> dict[str, str | int]:
        return {
            "index": self.index,
            "from_pct": str(self.from_pct),
            "below_pct": str(self.below_pct),
            "credit_pct": str(self.credit_pct),
        }


def _pct(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValidationError(f"{what} must be a number.")
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(f"{what} must be a number.") from None
    if not number.is_finite() or not (Decimal("0") <= number <= Decimal("100")):
        raise ValidationError(f"{what} must be between 0 and 100.")
    return number


def credit_schedule_validate(schedule: Any) -> list[CreditTier]:
    """Validate a credit schedule and return its tiers, highest threshold first.

    A schedule is a list of tiers ``{"below_pct": X, "credit_pct": Y}`` with an
    optional ``"from_pct": Z``. A tier covers attainment in the half-open band
    ``[from_pct, below_pct)``; attainment at or above the highest ``below_pct``
    earns no credit. Rules:

    * thresholds are strictly ordered: listed from the highest ``below_pct``
      down, no two equal;
    * every number is a percentage in [0, 100];
    * no overlaps and no gaps. A *gap* is an attainment value below the highest
      threshold that no tier covers: it happens when a tier's ``from_pct`` is
      above the next tier's ``below_pct`` (e.g. ``[90, 95)`` then ``[0, 85)``
      leaves 85-90 uncovered), or when the last tier does not reach down to 0.
      An *overlap* is a ``from_pct`` below the next tier's ``below_pct``. An
      omitted ``from_pct`` means "down to the next tier's threshold" (0 for
      the last tier), so a schedule of thresholds alone never has a gap;
    * worse service never earns less: ``credit_pct`` does not decrease from
      one tier to the next, lower one.

    An empty schedule is valid (no credits).
    """
    if not isinstance(schedule, list):
        raise ValidationError('Use a list of {"below_pct": X, "credit_pct": Y} tiers.')
    raw: list[tuple[Decimal, Decimal | None, Decimal]] = []
    for n, tier in enumerate(schedule, start=1):
        if not isinstance(tier, dict) or not {"below_pct", "credit_pct"} <= set(tier):
            raise ValidationError(f'Tier {n}: use {{"below_pct": X, "credit_pct": Y}} (optionally "from_pct").')
        unknown = set(tier) - {"below_pct", "credit_pct", "from_pct"}
        if unknown:
            raise ValidationError(f"Tier {n}: unknown keys {sorted(unknown)}.")
        below = _pct(tier["below_pct"], f"Tier {n} below_pct")
        credit = _pct(tier["credit_pct"], f"Tier {n} credit_pct")
        start = _pct(tier["from_pct"], f"Tier {n} from_pct") if "from_pct" in tier else None
        if below <= 0:
            raise ValidationError(f"Tier {n}: below_pct must be above 0.")
        if start is not None and start >= below:
            raise ValidationError(f"Tier {n}: from_pct must be below below_pct.")
        raw.append((below, start, credit))
    tiers: list[CreditTier] = []
    for n, (below, start, credit) in enumerate(raw):
        if n + 1 < len(raw):
            next_below, _, next_credit = raw[n + 1]
            if next_below >= below:
                raise ValidationError(
                    f"Tier {n + 2}: thresholds must be strictly decreasing ({next_below} after {below})."
                )
            if next_credit < credit:
                raise ValidationError(f"Tier {n + 2}: a lower band cannot earn less credit than the one above it.")
            floor = next_below
        else:
            floor = Decimal("0")
        if start is None:
            start = floor
        elif start > floor:
            raise ValidationError(f"Gap: attainment from {floor}% to {start}% is covered by no tier.")
        elif start < floor:
            raise ValidationError(
                f"Overlap: tier {n + 1} reaches down to {start}% but tier {n + 2} starts at {floor}%."
            )
        tiers.append(CreditTier(index=n, from_pct=start, below_pct=below, credit_pct=credit))
    return tiers


def credit_tier_for(tiers: list[CreditTier], attainment_pct: Decimal) -> CreditTier | None:
    """The tier whose band holds the attainment, or None when no credit is due."""
    for tier in tiers:
        if tier.from_pct <= attainment_pct < tier.below_pct:
            return tier
    return None


class ContractExclusion(models.Model):
    """An agreed period that does not count against the carrier: maintenance or force majeure.

    Events that fall inside it (missions overlapping it, incidents triggered
    or calls made during it) are left out of every SLI.
    """

    contract = models.ForeignKey(Contract, on_delete=models.CASCADE, related_name="exclusions")
    kind = models.CharField(max_length=20, choices=ExclusionKind.choices)
    reason = models.CharField(max_length=300)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at", "id"]
        indexes = [models.Index(fields=["contract", "starts_at"])]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")), name="exclusion_ends_after_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.starts_at:%Y-%m-%d %H:%M} to {self.ends_at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "An exclusion must end after it starts."
        if not (self.reason or "").strip():
            errors["reason"] = "An exclusion needs a reason."
        if errors:
            raise ValidationError(errors)


class SLIMeasurement(models.Model):
    """One evaluated SLI for a carrier over one window, with the inputs it came from.

    ``good``/``total`` are event counts (missions, telemetry buckets,
    incidents, calls); ``value`` is in ``unit`` and is None when there was
    no traffic (never 100 %).
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="sli_measurements")
    contract = models.ForeignKey(Contract, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    sli = models.CharField(max_length=30, choices=SLIName.choices)
    window = models.CharField(max_length=10, choices=WindowName.choices)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    good = models.BigIntegerField(null=True, blank=True)
    total = models.BigIntegerField(default=0)
    value = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    unit = models.CharField(max_length=10)
    target = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    # Share of the window's error budget still unspent, in percent (negative when overspent).
    budget_remaining_pct = models.DecimalField(max_digits=16, decimal_places=4, null=True, blank=True)
    inputs = models.JSONField(default=dict, blank=True)
    computed_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [models.Index(fields=["carrier", "sli", "window", "-computed_at"])]

    def __str__(self) -> str:
        return f"{self.carrier_id} {self.sli}/{self.window} = {self.value}"


class Breach(models.Model):
    """An SLO missed over a billing period, with the evidence; a manager confirms or disputes it."""

    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="breaches")
    contract = models.ForeignKey(Contract, on_delete=models.PROTECT, related_name="breaches")
    sli = models.CharField(max_length=30, choices=SLIName.choices)
    period_start = models.DateField(help_text="First day of the billing month")
    period_end = models.DateField(help_text="Exclusive")
    measured = models.DecimalField(max_digits=16, decimal_places=4)
    target = models.DecimalField(max_digits=16, decimal_places=4)
    unit = models.CharField(max_length=10)
    # 100 * good / total: the share of events that met the objective; the credit tier is looked up on it.
    attainment_pct = models.DecimalField(max_digits=7, decimal_places=4)
    evidence = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=BreachStatus.choices, default=BreachStatus.PROPOSED)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["contract", "sli", "period_start"], name="breach_one_per_sli_period")
        ]

    def __str__(self) -> str:
        return f"Breach {self.pk}: {self.sli} {self.period_start:%Y-%m} ({self.status})"


class CreditEntryQuerySet(models.QuerySet["CreditEntry"]):
    def update(self, **kwargs: Any) -> int:
        raise PermissionError("The credit ledger is append-only.")

    def delete(self) -> tuple[int, dict[str, int]]:  # type: ignore[override]
        raise PermissionError("The credit ledger is append-only.")


class CreditEntry(models.Model):
    """One line of the append-only credit ledger: a confirmed breach turned into money owed.

    A correction is a new line (negative amount), never an edit.
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.PROTECT, related_name="credit_entries")
    month = models.DateField(help_text="First day of the billed month")
    breach = models.ForeignKey(Breach, on_delete=models.PROTECT, related_name="credit_entries")
    amount_usd = models.DecimalField(max_digits=12, decimal_places=2)
    pct = models.DecimalField(max_digits=5, decimal_places=2)
    tier = models.PositiveSmallIntegerField(help_text="Index of the tier in the contract's credit schedule")
    tier_band = models.JSONField(default=dict)
    monthly_fee_usd = models.DecimalField(max_digits=12, decimal_places=2)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = CreditEntryQuerySet.as_manager()

    class Meta:
        ordering = ["month", "id"]
        indexes = [models.Index(fields=["carrier", "month"])]
        constraints = [models.UniqueConstraint(fields=["breach"], name="credit_one_per_breach")]

    def __str__(self) -> str:
        return f"Credit {self.pk}: {self.carrier_id} {self.month:%Y-%m} ${self.amount_usd}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionError("The credit ledger is append-only.")
        if self.month and self.month.day != 1:
            raise ValidationError({"month": "A ledger month is the first day of the month."})
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise PermissionError("The credit ledger is append-only.")


class BurnRateAlert(models.Model):
    """A multi-window burn-rate alert (Google SRE workbook): both windows burn faster than the threshold.

    Open while ``resolved_at`` is empty; a page links the incident it opened.
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="burn_rate_alerts")
    contract = models.ForeignKey(Contract, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    sli = models.CharField(max_length=30, choices=SLIName.choices)
    severity = models.CharField(max_length=10, choices=AlertSeverity.choices)
    long_window_seconds = models.PositiveIntegerField()
    short_window_seconds = models.PositiveIntegerField()
    threshold = models.DecimalField(max_digits=8, decimal_places=2)
    long_burn_rate = models.DecimalField(max_digits=12, decimal_places=4)
    short_burn_rate = models.DecimalField(max_digits=12, decimal_places=4)
    long_total = models.BigIntegerField()
    long_good = models.BigIntegerField()
    fired_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    incident_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-fired_at", "-id"]
        indexes = [models.Index(fields=["carrier", "sli", "severity", "resolved_at"])]
        constraints = [
            # Concurrent evaluations (the minute tick meeting a mission-finished one, two workers)
            # must never leave two open alerts for the same carrier, SLI and severity.
            models.UniqueConstraint(
                fields=["carrier", "sli", "severity"],
                condition=models.Q(resolved_at__isnull=True),
                name="burn_alert_one_open",
            )
        ]

    def __str__(self) -> str:
        return f"{self.severity} {self.sli} carrier {self.carrier_id} x{self.long_burn_rate}"

    @property
    def severity_label(self) -> str:
        """The alert's severity and the incident severity it stands for: "Page · critical"."""
        return f"{self.get_severity_display()} · {INCIDENT_SEVERITY_OF_ALERT[AlertSeverity(self.severity)]}"

    @staticmethod
    def _label(seconds: int) -> str:
        if seconds % 86400 == 0:
            return f"{seconds // 86400} d"
        if seconds % 3600 == 0:
            return f"{seconds // 3600} h"
        return f"{seconds // 60} min"

    @property
    def windows_label(self) -> str:
        """The rule's windows as people say them, e.g. "6 h / 30 min"."""
        return f"{self._label(self.long_window_seconds)} / {self._label(self.short_window_seconds)}"


class BurnWindowCount(models.Model):
    """The latest good/total counts of one SLI over one burn-rate window, per carrier.

    Rewritten in place by every evaluation (one row per carrier, SLI and
    window of ``sla.services.BURN_RULES``), so ``/metrics`` can export the very
    counts the engine's burn-rate alerts were decided on, and the Prometheus
    rules (``manage.py alert_rules``) reach the same decision.
    """

    carrier = models.ForeignKey(Carrier, on_delete=models.CASCADE, related_name="burn_window_counts")
    sli = models.CharField(max_length=30, choices=SLIName.choices)
    window = models.CharField(max_length=10)
    good = models.BigIntegerField()
    total = models.BigIntegerField()
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["carrier_id", "sli", "window"]
        constraints = [
            models.UniqueConstraint(fields=["carrier", "sli", "window"], name="burn_window_count_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.carrier_id} {self.sli}/{self.window}: {self.good}/{self.total}"


# --- Exact SLI rollups (docs/decisions/0026) --------------------------------------------------------


class RollupCursor(models.Model):
    """How far a rollup has read an append-only table (id order), with the ids it applied past a gap.

    ``position``: every id up to it is applied (or was a gap older than the grace).
    ``done_above``: ids past ``position`` already applied while an earlier id was still
    missing (an open transaction); ``gaps_seen``: first id of a gap -> Unix time first met.
    """

    name = models.CharField(max_length=40, unique=True)
    position = models.BigIntegerField(default=0)
    done_above = models.JSONField(default=list, blank=True)
    gaps_seen = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.position}"


class RollupCarrier(models.Model):
    """The contract figures a carrier's buckets were built with; a change means a rebuild."""

    carrier = models.OneToOneField(Carrier, on_delete=models.CASCADE, primary_key=True, related_name="+")
    gap_seconds = models.PositiveIntegerField()
    latency_target_ms = models.PositiveIntegerField()
    built_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"rollup of {self.carrier_id} (g={self.gap_seconds}s)"


class MissionFact(models.Model):
    """What one mission adds to its carrier's buckets, as last applied (the delta base of a recompute)."""

    mission_id = models.BigIntegerField(primary_key=True)
    carrier_id = models.BigIntegerField()
    completed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Mission SLIs at the minute of completed_at: finished, on time, success, failed, handed over, cancelled.
    counts = models.JSONField(default=list, blank=True)
    # Telemetry: counted at all; [tel_start_k, tel_end_k) in gap buckets once finished; open while running.
    tel_counted = models.BooleanField(default=False)
    tel_open = models.BooleanField(default=False)
    tel_start_k = models.BigIntegerField(null=True, blank=True)
    tel_end_k = models.BigIntegerField(null=True, blank=True)
    gap_seconds = models.PositiveIntegerField(default=60)

    class Meta:
        indexes = [
            models.Index(fields=["carrier_id", "completed_at"], name="sla_fact_completed"),
            models.Index(fields=["carrier_id"], name="sla_fact_open", condition=models.Q(tel_open=True)),
        ]

    def __str__(self) -> str:
        return f"fact of mission {self.mission_id}"


class CoverageCell(models.Model):
    """One gap bucket of one mission holding a counted telemetry sample, with the latest one in it."""

    mission_id = models.BigIntegerField()
    k = models.BigIntegerField()
    carrier_id = models.BigIntegerField()
    last_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["mission_id", "k"], name="sla_coverage_once")]
        # last_at in the index: a window starting inside a gap bucket counts the cells sampled before it
        # from the index alone (index-only scan), not a heap row per mission on the road.
        indexes = [models.Index(fields=["carrier_id", "k", "last_at"], name="sla_coverage_carrier_k_at")]

    def __str__(self) -> str:
        return f"mission {self.mission_id} bucket {self.k}"


class SLIBucket(models.Model):
    """Exact counts of one SLI family for one carrier over one time bucket (fine or coarse tier).

    Families: ``M`` missions by minute of completion (n1 finished, n2 on time, n3
    success, n4 failed, n5 handed over, n6 cancelled), ``A`` carrier API calls by
    minute started (n1 calls, n2 counted, n3 ok, n4 within the latency target,
    ``hist`` latency bins), ``T`` telemetry by gap bucket ``k`` (fine: n1 missions
    starting, n2 ending, n3 covered, n4 running missions starting; coarse, 60 gap
    buckets: n1 expected, n2 active at its start, n3 covered, n4 missions starting,
    n5 running missions starting, n6 their offsets in the block; tier 3 key 0: n1
    the running missions). Tier 0 is the fine key (minute or k), tier 1 the
    coarse one (hour, or k // 60).
    """

    carrier_id = models.BigIntegerField()
    family = models.CharField(max_length=1)
    tier = models.PositiveSmallIntegerField()
    key = models.BigIntegerField()
    n1 = models.BigIntegerField(default=0)
    n2 = models.BigIntegerField(default=0)
    n3 = models.BigIntegerField(default=0)
    n4 = models.BigIntegerField(default=0)
    n5 = models.BigIntegerField(default=0)
    n6 = models.BigIntegerField(default=0)
    hist = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["carrier_id", "family", "tier", "key"], name="sla_bucket_unique")
        ]

    def __str__(self) -> str:
        return f"{self.carrier_id} {self.family}{self.tier}:{self.key}"
