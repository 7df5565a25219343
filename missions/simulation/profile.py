"""Scenario profiles: the fleet, the contracts and the faults a run schedules, as data.

A fault kind is drawn per mission with its probability; a profile's ``forced`` kinds are also
given, in order, to the first missions of the run, so a short run touches each of them at least
once (the ``ci`` profile forces every kind this simulator implements).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

# What each fault does to a mission (docs: README "Program simulation"):
LATE = "late"  # the truck arrives after the delivery window closes
FAILURE = "failure"  # the carrier reports the mission failed half-way
DEGRADATION = "degradation"  # autonomous -> supervised mid-mission: a human intervened, fleet paused
SHORT_GAP = "short_gap"  # one sample not sent: a silence shorter than the gap threshold, no incident
LOST_COMMS_RECOVERED = "lost_comms_recovered"  # silent past the threshold, back before the recovery timeout
LOST_COMMS_FAILOVER = "lost_comms_failover"  # silent for good: the runbook fails the load over
EMERGENCY_STOP = "emergency_stop"  # safety event in telemetry: mission suspended until on-call clears it
OTA_FAILURE = "ota_failure"  # the carrier reports a failed over-the-air deployment on the truck
DUPLICATES = "duplicates"  # every sample of the mission is sent twice (same event id)

FAULT_KINDS = (
    LATE,
    FAILURE,
    DEGRADATION,
    SHORT_GAP,
    LOST_COMMS_RECOVERED,
    LOST_COMMS_FAILOVER,
    EMERGENCY_STOP,
    OTA_FAILURE,
    DUPLICATES,
)
# What a carrier API fault window does to every connection the console opens to that carrier's API
# (through the run's fault proxy, ``carrier_api.py``):
API_SLOW = "slow"  # answered, but late: the proxy delays each direction (latency above the target, no error)
API_BLACKHOLE = "blackhole"  # accepted and never answered: every call waits out the client's timeout
API_RESET = "reset"  # reset as soon as accepted: every call fails at once
API_FAULT_KINDS = (API_SLOW, API_BLACKHOLE, API_RESET)

# Not simulated yet: it needs a TUF repository in the loop.
NOT_COVERED = (
    "OTA failure detected from a vehicle's software report against the carrier's TUF metadata "
    "(the carrier-reported OTA exception is simulated)",
)


@dataclass(frozen=True)
class Profile:
    """Everything a run needs besides its length, fleet size and seed."""

    name: str
    # Contract figures for every carrier (the fallback carrier's contract too).
    gap_seconds: int = 60
    recovery_timeout_seconds: int = 300
    monthly_fee_usd: Decimal = Decimal("40000")
    credit_schedule: tuple[tuple[int, int], ...] = ((99, 2), (95, 5), (90, 10))
    on_time_target_pct: Decimal = Decimal("95")
    mission_success_target_pct: Decimal = Decimal("98")
    telemetry_integrity_target_pct: Decimal = Decimal("99")
    failover_target_seconds: int = 900
    mttr_target_seconds: int = 3600
    # Fleet: autonomous carriers sharing the trucks, mission length and turnaround (minutes).
    carriers: int = 2
    mission_minutes: tuple[int, int] = (180, 420)
    turnaround_minutes: tuple[int, int] = (20, 60)
    window_slack_minutes: int = 45
    late_extra_minutes: tuple[int, int] = (60, 120)
    # How long the simulated on-call takes to handle what only a person can (resolve, clear, resume).
    oncall_minutes: int = 20
    emergency_stop_minutes: int = 15
    # Beat cadence in simulated seconds (the product's defaults are finer; one process cannot keep up
    # with a 1 s gap check over 30 days). The runbook tick runs every 2 s while an incident is open.
    gap_check_seconds: int = 30
    sla_evaluate_seconds: int = 900
    runbook_tick_seconds: int = 2
    # SLA_FINISH_EVALUATION_INTERVAL_SECONDS for the run: half the evaluation cadence, as the product's
    # defaults are (30 s against beat's 60 s).
    finish_evaluation_seconds: int = 450
    # Beat's telemetry housekeeping (partitions ahead, dedupe window pruned, retention): the product's
    # window prune runs every minute; hourly keeps a month's run from carrying every event's window row.
    housekeeping_seconds: int = 3600
    fault_rates: dict[str, float] = field(default_factory=dict)
    forced: tuple[str, ...] = ()
    # The carrier API in the loop: the first autonomous carrier takes its tenders over its REST API (the
    # carrier simulator, behind a fault proxy) and answers them through the partner API; the others
    # read theirs from the partner API. Client timeout, breaker and API targets of that carrier:
    carrier_api: bool = True
    api_timeout_seconds: float = 2.0
    breaker_failure_threshold: int = 3
    breaker_reset_seconds: int = 300
    api_latency_target_ms: int = 500
    api_error_rate_target_pct: Decimal = Decimal("1")
    # A slow window delays each direction this long (a call takes about twice that: over the target,
    # well under the timeout).
    api_slow_seconds: float = 0.3
    # Fault windows: each kind starts on a given day with this probability, lasting this many minutes;
    # ``api_forced`` windows are (kind, hours from the run's start, minutes) given whatever the draw.
    api_fault_rates: dict[str, float] = field(default_factory=dict)
    api_fault_minutes: tuple[int, int] = (20, 90)
    api_forced: tuple[tuple[str, float, int], ...] = ()

    @property
    def sample_seconds(self) -> int:
        """One sample per truck every third of the gap threshold (a healthy truck covers every bucket)."""
        return max(self.gap_seconds // 3, 1)

    def targets(self) -> dict[str, Decimal]:
        """The contract's objectives of the SLIs a breach can be recorded for."""
        return {
            "on_time": self.on_time_target_pct,
            "mission_success": self.mission_success_target_pct,
            "telemetry_integrity": self.telemetry_integrity_target_pct,
            "failover_time": Decimal(self.failover_target_seconds),
            "mttr": Decimal(self.mttr_target_seconds),
            "api_latency_p99": Decimal(self.api_latency_target_ms),
            "api_error_rate": self.api_error_rate_target_pct,
        }

    def credit_schedule_json(self) -> list[dict[str, int]]:
        return [{"below_pct": below, "credit_pct": pct} for below, pct in self.credit_schedule]


# Carrier API faults of the default and month profiles: about one window every other day.
DEFAULT_API_RATES = {API_SLOW: 0.2, API_BLACKHOLE: 0.15, API_RESET: 0.15}

# The default profile's fault mix: about one mission in five meets a fault.
DEFAULT_RATES = {
    LATE: 0.05,
    FAILURE: 0.01,
    DEGRADATION: 0.02,
    SHORT_GAP: 0.05,
    LOST_COMMS_RECOVERED: 0.015,
    LOST_COMMS_FAILOVER: 0.01,
    EMERGENCY_STOP: 0.005,
    OTA_FAILURE: 0.005,
    DUPLICATES: 0.05,
}

PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        # A 10-minute gap threshold: a sample every 200 s keeps a 2-day, 12-truck run under a minute.
        gap_seconds=600,
        recovery_timeout_seconds=600,
        mission_minutes=(240, 420),
        gap_check_seconds=200,
        sla_evaluate_seconds=3600,
        finish_evaluation_seconds=1800,
        fault_rates={
            LATE: 0.12,
            FAILURE: 0.04,
            DEGRADATION: 0.05,
            SHORT_GAP: 0.08,
            LOST_COMMS_RECOVERED: 0.04,
            LOST_COMMS_FAILOVER: 0.03,
            EMERGENCY_STOP: 0.03,
            OTA_FAILURE: 0.03,
            DUPLICATES: 0.10,
        },
        forced=FAULT_KINDS,
        # Each carrier API fault once, while the first carrier's trucks are booking loads; a 1.5 s client
        # timeout keeps the blackhole's real waits short and stays well above a slow call's 0.6 s.
        api_timeout_seconds=1.5,
        api_forced=((API_SLOW, 0, 30), (API_BLACKHOLE, 6, 120), (API_RESET, 30, 180)),
    ),
    "default": Profile(
        name="default",
        fault_rates=DEFAULT_RATES,
        api_fault_rates=DEFAULT_API_RATES,
    ),
    # A month of 200 trucks on one machine: the default's faults with contracts that put the lost-comms
    # threshold at 3 minutes, so each truck sends a sample a minute (a third of the events) and the gap
    # check runs every minute; SLAs are evaluated hourly (as the ci profile does); the rest as the default.
    "month": Profile(
        name="month",
        gap_seconds=180,
        gap_check_seconds=60,
        sla_evaluate_seconds=3600,
        finish_evaluation_seconds=1800,
        fault_rates=DEFAULT_RATES,
        api_fault_rates=DEFAULT_API_RATES,
    ),
}


def profile_get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"Unknown profile '{name}'; choose one of {', '.join(sorted(PROFILES))}.") from None
