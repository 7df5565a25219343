"""Every SLI against values computed by hand over small fixtures (window edges, exclusions, no traffic).

The clock is frozen at T0 = 2026-03-15 12:00 UTC; times are written as minutes
from T0. Expected values are worked out in the comments.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from missions.choices import MissionStatus
from missions.models import Carrier, OutboundCall
from sla.choices import ExclusionKind, SLIName, WindowName
from sla.models import ContractExclusion
from sla.selectors import (
    api_slis,
    failover_time,
    mission_slis,
    mttr,
    on_time_rate,
    sli_compute,
    sli_evidence_ids,
    telemetry_integrity,
)
from sla.sli import Targets, Window, month_window, windows_at
from tests.factories import ContractFactory, IncidentFactory
from tests.sla.fixtures import T0, at, call, fallback_tender, mission, samples

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frozen() -> object:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def hour() -> Window:
    return Window("1h", at(-60), at(0))


def day() -> Window:
    return Window("24h", at(hours=-24), at(0))


def test_windows_are_half_open_and_month_is_calendar() -> None:
    names = {w.name: w for w in windows_at(T0)}
    assert names["1h"].start == T0 - timedelta(hours=1)
    assert names["30d"].start == T0 - timedelta(days=30)
    assert names["month"].start == datetime(2026, 3, 1, tzinfo=UTC)
    assert names["month"].end == T0
    closed = month_window(datetime(2026, 2, 10).date())
    assert (closed.start, closed.end) == (datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC))
    december = month_window(datetime(2026, 12, 31).date())
    assert december.end == datetime(2027, 1, 1, tzinfo=UTC)


def test_on_time_and_success_over_window_edges(carrier_a: Carrier, carrier_b: Carrier) -> None:
    C, F, H, X = MissionStatus.COMPLETED, MissionStatus.FAILED, MissionStatus.HANDED_OVER, MissionStatus.CANCELLED
    mission(carrier_a, status=C, completed_at=at(-50), due=at(-40))  # on time, success
    mission(carrier_a, status=C, completed_at=at(-30), due=at(-35))  # late, success
    mission(carrier_a, status=C, completed_at=at(-20), due=at(-10), human=True)  # on time, not a success
    mission(carrier_a, status=F, completed_at=at(-15))  # neither
    mission(carrier_a, status=H, completed_at=at(-5))  # neither (handed over)
    mission(carrier_a, status=X, completed_at=at(-25))  # cancelled: left out
    mission(carrier_a, status=C, completed_at=at(-60), due=at(-60))  # on the start edge (inclusive), due == done
    mission(carrier_a, status=C, completed_at=at(0))  # on the end edge (exclusive): not in the window
    mission(carrier_a, status=C, started_at=at(-120), completed_at=at(-61))  # finished before the 1 h window
    mission(carrier_a, status=MissionStatus.EN_ROUTE, started_at=at(-30))  # still running: not finished
    mission(carrier_b, status=F, completed_at=at(-10))  # another carrier

    results = mission_slis(carrier_a.pk, [hour(), day()])
    on_time, success = results["1h"]
    # 1 h: 6 finished (-60, -50, -30, -20, -15, -5); on time: -60, -50, -20 -> 3/6; success: -60, -50, -30 -> 3/6.
    assert (on_time.good, on_time.total, on_time.value) == (3, 6, Decimal("50.0000"))
    assert (success.good, success.total, success.value) == (3, 6, Decimal("50.0000"))
    assert on_time.inputs["cancelled_left_out"] == 1
    assert on_time.inputs["failed"] == 1 and on_time.inputs["handed_over"] == 1
    on_time_24h, success_24h = results["24h"]
    # 24 h adds the mission done at -61 (on time, success): 4/7 = 57.142857... -> 57.1429.
    assert (on_time_24h.good, on_time_24h.total, on_time_24h.value) == (4, 7, Decimal("57.1429"))
    assert (success_24h.good, success_24h.total) == (4, 7)


def test_no_traffic_is_none_not_one_hundred(carrier_a: Carrier) -> None:
    mission(carrier_a, status=MissionStatus.CANCELLED, completed_at=at(-10))
    for result in [
        on_time_rate(carrier_a.pk, at(-60), at(0)),
        telemetry_integrity(carrier_a.pk, hour(), gap_seconds=60),
        failover_time(carrier_a.pk, hour(), target_seconds=600),
        mttr(carrier_a.pk, hour(), target_seconds=600),
        *api_slis(carrier_a.pk, [hour()], latency_target_ms=500)["1h"],
    ]:
        assert result.total == 0
        assert result.value is None
        assert result.attainment_pct is None


def test_telemetry_integrity_counts_missing_telemetry_against(carrier_a: Carrier, carrier_b: Carrier) -> None:
    # A: active -90..-30, crosses the window start. Samples every 20 s, silent from -50 to -45.
    a = mission(carrier_a, status=MissionStatus.COMPLETED, started_at=at(-90), completed_at=at(-30))
    times = [at(-90) + timedelta(seconds=20 * k) for k in range(180)]  # -90:00 .. -30:20
    samples(a, [t for t in times if not (at(-50) <= t < at(-45)) and t < at(-30)])
    # B: still running since -20, never sent anything.
    mission(carrier_a, status=MissionStatus.EN_ROUTE, started_at=at(-20))
    # E: active -10:30 .. -5:15, samples at its first second and at -6:00.
    e = mission(
        carrier_a,
        status=MissionStatus.COMPLETED,
        started_at=at(-10.5),
        completed_at=at(-5.25),
    )
    samples(e, [at(-10.5), at(-6), at(-5.25)])  # the last one is at completion (exclusive): not counted
    # Cancelled and other carriers' missions do not count.
    mission(carrier_a, status=MissionStatus.CANCELLED, started_at=at(-40), completed_at=at(-35))
    other = mission(carrier_b, status=MissionStatus.EN_ROUTE, started_at=at(-60))
    samples(other, [at(-59)])

    result = telemetry_integrity(carrier_a.pk, hour(), gap_seconds=60)
    # Buckets of 60 s in the window: A -60..-31 -> 30 buckets, 25 covered (-50..-46 silent);
    # B -20..-1 -> 20 buckets, 0 covered; E: floor(-10:30) = minute -11 up to ceil(-5:15) = -5 -> 6 buckets
    # (-11, -10, -9, -8, -7, -6), covered -11 and -6 -> 2.  27 / 56 = 48.2142857 -> 48.2143.
    assert (result.good, result.total) == (27, 56)
    assert result.value == Decimal("48.2143")
    assert result.inputs["active_missions"] == 3


def test_telemetry_integrity_tolerates_rates_slower_than_one_hertz_within_the_gap(carrier_a: Carrier) -> None:
    m = mission(carrier_a, status=MissionStatus.EN_ROUTE, started_at=at(-10))
    samples(m, [at(-10) + timedelta(seconds=30 * k) for k in range(20)])  # every 30 s, gap threshold 60 s
    result = telemetry_integrity(carrier_a.pk, hour(), gap_seconds=60)
    assert (result.good, result.total, result.value) == (10, 10, Decimal("100.0000"))
    strict = telemetry_integrity(carrier_a.pk, hour(), gap_seconds=10)
    # With a 10 s threshold only one bucket in three holds a sample: 20 / 60.
    assert (strict.good, strict.total) == (20, 60)


def test_time_to_failover_median(carrier_a: Carrier) -> None:
    def lost(triggered: datetime, fallback_after_s: float | None, kind: str = "lost_comms") -> None:
        m = mission(carrier_a, status=MissionStatus.HANDED_OVER, completed_at=triggered + timedelta(minutes=1))
        IncidentFactory(carrier=carrier_a, mission=m, kind=kind, triggered_at=triggered)
        if fallback_after_s is not None:
            fallback_tender(m, created_at=triggered + timedelta(seconds=fallback_after_s))

    lost(at(hours=-10), 300)
    lost(at(hours=-8), 900)
    lost(at(hours=-6), 120)
    lost(at(hours=-4), None)  # never failed over
    lost(at(hours=-2), -3600)  # a fallback tender from before the incident does not count
    lost(at(hours=-25), 60)  # outside the window
    lost(at(hours=-3), 10, kind="degraded_autonomy")  # not lost comms
    result = failover_time(carrier_a.pk, day(), target_seconds=600)
    # In the window: 5 lost-comms incidents, 3 failed over in 300, 900, 120 s -> median 300; within 600 s: 2.
    assert result.value == Decimal("300.0000")
    assert (result.good, result.total) == (2, 5)
    assert result.inputs["not_failed_over"] == 2


def test_time_to_failover_median_of_an_even_count_is_the_mean_of_the_middle_two(carrier_a: Carrier) -> None:
    for hours, seconds in ((-3, 100), (-2, 200)):
        m = mission(carrier_a, status=MissionStatus.HANDED_OVER, completed_at=at(hours=hours, minutes=5))
        IncidentFactory(carrier=carrier_a, mission=m, kind="lost_comms", triggered_at=at(hours=hours))
        fallback_tender(m, created_at=at(hours=hours) + timedelta(seconds=seconds))
    assert failover_time(carrier_a.pk, day(), target_seconds=600).value == Decimal("150.0000")


def test_mttr_is_the_mean_of_resolved_incidents(carrier_a: Carrier) -> None:
    IncidentFactory(carrier=carrier_a, triggered_at=at(hours=-10), resolved_at=at(hours=-10, minutes=30))  # 1800 s
    IncidentFactory(carrier=carrier_a, triggered_at=at(hours=-5), resolved_at=at(hours=-3))  # 7200 s
    IncidentFactory(carrier=carrier_a, triggered_at=at(hours=-1))  # unresolved
    IncidentFactory(carrier=carrier_a, kind="sla_breach", triggered_at=at(hours=-2), resolved_at=at(hours=-1))
    IncidentFactory(carrier=carrier_a, triggered_at=at(hours=-30), resolved_at=at(hours=-29))  # outside
    result = mttr(carrier_a.pk, day(), target_seconds=3600)
    # (1800 + 7200) / 2 = 4500 s; within 3600 s: 1 of 2.
    assert result.value == Decimal("4500.0000")
    assert (result.good, result.total) == (1, 2)
    assert result.inputs["unresolved_incidents"] == 1


def test_api_latency_p99_nearest_rank_and_error_rate(carrier_a: Carrier, carrier_b: Carrier) -> None:
    OutboundCall.objects.bulk_create(
        [
            OutboundCall(
                carrier=carrier_a,
                operation="tender_submit",
                method="POST",
                url="https://carrier.example/tenders",
                latency_ms=10.0 * k,
                ok=k not in (7, 50, 99),
                status_code=200,
                started_at=at(-59) + timedelta(seconds=k),
            )
            for k in range(1, 101)
        ]
    )
    call(carrier_a, when=at(-61), latency_ms=5000, ok=False)  # before the window
    call(carrier_b, when=at(-10), latency_ms=9000, ok=False)  # another carrier
    latency, errors = api_slis(carrier_a.pk, [hour()], latency_target_ms=500)["1h"]
    # 100 calls at 10..1000 ms: nearest rank ceil(0.99 * 100) = 99 -> 990 ms; 50 calls <= 500 ms.
    assert latency.value == Decimal("990.0000")
    assert (latency.good, latency.total) == (50, 100)
    # 3 failed calls of 100 -> 3 %.
    assert errors.value == Decimal("3.0000")
    assert (errors.good, errors.total) == (97, 100)


@pytest.mark.parametrize(
    ("status", "ok", "error", "counted"),
    [
        (200, True, "", "good"),
        (201, True, "", "good"),
        (503, False, "HTTP 503", "bad"),
        (None, False, "timed out (ReadTimeout)", "bad"),  # no answer at all
        (None, False, "connection failed: ConnectError", "bad"),
        (429, False, "HTTP 429 (rate limited)", "bad"),  # the carrier refusing service
        (200, False, "contract violation: HTTP 200 with a body that is not JSON", "bad"),
        (404, False, "contract violation: HTTP 404 with a body that is not JSON", "bad"),  # an HTML error page
        (403, False, "contract violation: HTTP 403 is not in the contract for GET /tenders/{ref}", "bad"),
        (302, False, "contract violation: HTTP 302 is not in the contract for GET /health", "bad"),
        (404, False, "HTTP 404: No such tender.", "not counted"),  # a tender the carrier does not know
        (410, False, "HTTP 410: The carrier withdrew this tender", "not counted"),  # an answer, not an error
        (401, False, "401: token refused, refreshing", "not counted"),
        (422, False, "HTTP 422: key used with another body", "not counted"),  # the console's own mistake
        (409, False, "HTTP 409: still in progress", "not counted"),
        (400, False, "HTTP 400: A reason is required.", "not counted"),
    ],
)
def test_error_rate_counts_only_what_the_carrier_answers_for(
    carrier_a: Carrier, status: int | None, ok: bool, error: str, counted: str
) -> None:
    # 9 successful calls, then the one under test.
    for k in range(9):
        call(carrier_a, when=at(-50 + k), latency_ms=20)
    probe = call(carrier_a, when=at(-5), latency_ms=30, ok=ok, status_code=status, error=error)
    latency, errors = api_slis(carrier_a.pk, [hour()], latency_target_ms=500)["1h"]
    expected = {"good": (10, 10, 0), "bad": (9, 10, 1), "not counted": (9, 9, 0)}[counted]
    assert (errors.good, errors.total, errors.inputs["errors"]) == expected
    assert errors.inputs["not_counted"] == (1 if counted == "not counted" else 0)
    assert errors.value == (Decimal("10.0000") if counted == "bad" else Decimal("0.0000"))
    # Latency is the carrier's whatever the answer: every call is in it.
    assert latency.total == 10
    evidence = sli_evidence_ids(carrier_a.pk, SLIName.API_ERROR_RATE, at(-60), at(0))
    assert evidence["failing_call_ids"] == ([probe.pk] if counted == "bad" else [])


def test_p99_with_a_count_that_is_not_a_multiple_of_100(carrier_a: Carrier) -> None:
    for k in range(1, 151):
        call(carrier_a, when=at(-30), latency_ms=float(k))
    latency, _ = api_slis(carrier_a.pk, [hour()], latency_target_ms=1000)["1h"]
    # ceil(0.99 * 150) = ceil(148.5) = 149 -> the 149th smallest = 149 ms.
    assert latency.value == Decimal("149.0000")


def test_exclusions_remove_missions_incidents_and_calls(carrier_a: Carrier) -> None:
    contract = ContractFactory(carrier=carrier_a)
    ContractExclusion.objects.create(
        contract=contract, kind=ExclusionKind.FORCE_MAJEURE, reason="Ice storm", starts_at=at(-30), ends_at=at(-20)
    )
    mission(carrier_a, started_at=at(-40), completed_at=at(-25), due=at(-26))  # late, overlaps: excluded
    mission(carrier_a, started_at=at(-15), completed_at=at(-10), due=at(-5))  # on time
    mission(carrier_a, started_at=at(-70), completed_at=at(-35), due=at(-40))  # late, ends before the exclusion
    call(carrier_a, when=at(-25), latency_ms=50, ok=False)  # inside: excluded
    call(carrier_a, when=at(-5), latency_ms=50, ok=True)
    IncidentFactory(carrier=carrier_a, triggered_at=at(-25), resolved_at=at(-21))  # inside: excluded
    on_time = on_time_rate(carrier_a.pk, at(-60), at(0))
    # Without the exclusion 1/3; with it 1/2.
    assert (on_time.good, on_time.total, on_time.value) == (1, 2, Decimal("50.0000"))
    assert on_time.inputs["exclusions"] == 1
    _, errors = api_slis(carrier_a.pk, [hour()], latency_target_ms=500)["1h"]
    assert (errors.good, errors.total, errors.value) == (1, 1, Decimal("0.0000"))
    assert mttr(carrier_a.pk, hour(), target_seconds=600).value is None
    # Telemetry (no samples at all): -60..-35 -> 25 buckets and -15..-10 -> 5; the overlapping mission is out.
    integrity = sli_compute(carrier_a.pk, SLIName.TELEMETRY_INTEGRITY, at(-60), at(0))
    assert (integrity.good, integrity.total, integrity.value) == (0, 30, Decimal("0.0000"))


def test_targets_as_good_event_ratios() -> None:
    targets = Targets.of(None)
    assert targets.good_ratio_target(SLIName.API_ERROR_RATE) == Decimal("0.99")
    assert targets.good_ratio_target(SLIName.API_LATENCY) == Decimal("0.99")
    assert targets.good_ratio_target(SLIName.ON_TIME) == Decimal("0.95")
    assert WindowName.MONTH == "month"
