"""Exact SLI buckets: random histories give the same SLIs from buckets as from a recount of raw rows.

Histories mix late telemetry (samples stored after a rollup), corrections (an
amended delivery time, a mission finished after its window closed, a status
changed), exclusions, retried rollups (a batch applied again, a recompute run
twice) and, on PostgreSQL, rollups run concurrently from threads.
"""

from __future__ import annotations

import io
import threading
from datetime import date, timedelta
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import connection, connections
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from missions.choices import MissionStatus
from missions.events import Actor, event_record
from missions.models import AuditEvent, Carrier, Mission
from runbooks.models import Incident
from sla import rollup_build, rollups
from sla.bucket_reads import incident_windows, sli_all_buckets, split
from sla.choices import SLIName
from sla.models import ContractExclusion, CoverageCell, MissionFact, RollupCarrier, RollupCursor, SLIBucket
from sla.recount import default_windows, drift_check_all, drift_find
from sla.selectors import contract_in_force, sli_all
from sla.sli import Targets, Window
from tests.factories import CarrierFactory, ContractFactory
from tests.sla.fixtures import T0, at, call, mission, samples

NOW = T0 + timedelta(hours=2, minutes=7, seconds=31)  # not on a minute: the loose seconds are read too
STATUSES = [MissionStatus.COMPLETED] * 4 + [MissionStatus.FAILED, MissionStatus.HANDED_OVER,
                                            MissionStatus.CANCELLED, MissionStatus.EN_ROUTE]  # fmt: skip

mission_st = st.fixed_dictionaries(
    {
        "status": st.sampled_from(STATUSES),
        "start": st.integers(-40 * 60, 110 * 60),  # seconds from T0 - 1 day .. (shifted below)
        "length": st.integers(1, 6 * 3600),
        "due_shift": st.integers(-3600, 3600),
        "human": st.booleans(),
        "samples": st.lists(st.integers(-120, 6 * 3600), max_size=12),
        "late_samples": st.lists(st.integers(0, 6 * 3600), max_size=4),
    }
)
history_st = st.fixed_dictionaries(
    {
        "missions": st.lists(mission_st, min_size=1, max_size=8),
        "calls": st.lists(st.tuples(st.integers(-3 * 86400, 7000), st.floats(1, 4000), st.booleans()), max_size=10),
        "corrections": st.lists(
            st.tuples(st.integers(0, 7), st.sampled_from(["due", "finish_late", "fail"])), max_size=3
        ),
        "exclusion": st.none() | st.tuples(st.integers(-86400, 7000), st.integers(60, 7200)),
        "gap": st.sampled_from([60, 45, 300]),
    }
)


def _windows() -> list[Window]:
    return [*default_windows(NOW), Window("custom", at(-30, hours=-20) + timedelta(seconds=17), NOW)]


def assert_exact(carrier: Carrier) -> None:
    """Every SLI and window, buckets against recount: counts and values equal (p99 within its 1 % bound)."""
    windows = _windows()
    targets = Targets.of(contract_in_force(carrier.pk, NOW.date()))
    from_buckets = sli_all_buckets(carrier.pk, windows, targets)
    assert from_buckets is not None
    recount = sli_all(carrier.pk, windows, targets)
    for key, expected in recount.items():
        got = from_buckets[key]
        assert (got.good, got.total) == (expected.good, expected.total), key
        if key[0] == SLIName.API_LATENCY and expected.value is not None:
            assert got.value is not None
            assert abs(got.value - expected.value) <= expected.value / 100 + 1, key
        else:
            assert got.value == expected.value, key
            assert got.inputs == expected.inputs, key


def _status_event(m: Mission) -> None:
    event_record(actor=Actor.system("test"), action="mission.status_changed", subject_type="mission",
                 subject_id=m.pk, carrier=m.carrier, after={"status": m.status})  # fmt: skip


def _build(carrier: Carrier, history: dict[str, Any], first_build: Any = rollups.rollup_run) -> None:
    ContractFactory(carrier=carrier, effective_from=date(2026, 1, 1), telemetry_gap_seconds=history["gap"])
    made: list[tuple[Mission, dict[str, Any]]] = []
    base = NOW - timedelta(hours=26)
    for spec in history["missions"]:
        started = base + timedelta(seconds=spec["start"] * 13)
        running = spec["status"] == MissionStatus.EN_ROUTE
        done = None if running else started + timedelta(seconds=spec["length"])
        if done is not None and done > NOW:
            done = NOW - timedelta(seconds=7)
        due = (done or NOW) + timedelta(seconds=spec["due_shift"])
        m = mission(carrier, status=spec["status"], started_at=started, completed_at=done, due=due, human=spec["human"])
        samples(m, [started + timedelta(seconds=s) for s in spec["samples"] if started + timedelta(seconds=s) < NOW])
        made.append((m, spec))
    for when, latency, ok in history["calls"]:
        call(carrier, when=NOW - timedelta(seconds=7000) + timedelta(seconds=when), latency_ms=latency, ok=ok)
    first_build()
    # Late telemetry: samples stored after the rollup ran (a store-and-forward upload).
    for m, spec in made:
        assert m.started_at is not None
        late = [m.started_at + timedelta(seconds=s) for s in spec["late_samples"]]
        samples(m, [t for t in late if t < NOW])
    # Corrections, recorded as the services record them.
    for index, kind in history["corrections"]:
        if index >= len(made):
            continue
        m = made[index][0]
        if kind == "due":
            type(m.shipment).objects.filter(pk=m.shipment_id).update(
                delivery_window_end=m.shipment.delivery_window_end - timedelta(hours=2)
            )
            event_record(actor=Actor.system("test"), action="shipment.status_changed", subject_type="shipment",
                         subject_id=m.shipment_id, carrier=carrier)  # fmt: skip
        elif kind == "finish_late" and m.completed_at is None:
            m.status, m.completed_at = MissionStatus.COMPLETED, NOW - timedelta(seconds=3)
            m.save(update_fields=["status", "completed_at"])
            _status_event(m)
        elif kind == "fail" and m.status != MissionStatus.CANCELLED:
            m.status = MissionStatus.FAILED
            m.completed_at = m.completed_at or NOW - timedelta(minutes=1)
            m.save(update_fields=["status", "completed_at"])
            _status_event(m)
    if history["exclusion"] is not None:
        offset, length = history["exclusion"]
        contract = carrier.contracts.get()
        begins = NOW - timedelta(seconds=7200 - offset)
        ContractExclusion.objects.create(
            contract=contract, kind="maintenance", reason="r", starts_at=begins,
            ends_at=begins + timedelta(seconds=length),
        )  # fmt: skip
    # A round that dies before it commits (its bucket changes and its cursor move roll back together)...
    call(carrier, when=NOW - timedelta(seconds=30), latency_ms=42.0)
    with (
        mock.patch.object(rollups, "_cursor_advance", side_effect=RuntimeError("worker lost")),
        pytest.raises(RuntimeError),
    ):
        rollups.rollup_run()
    # ...is retried; and the idempotent sources are replayed from the start (what an id gap leaves).
    rollups.rollup_run()
    RollupCursor.objects.exclude(name="calls").delete()
    rollups.rollup_run()
    rollups.missions_recompute(Mission.objects.values_list("pk", flat=True))


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=history_st)
def test_bucket_slis_equal_a_full_recount_over_random_histories(history: dict[str, Any]) -> None:
    carrier = CarrierFactory()
    _build(carrier, history)
    assert_exact(carrier)
    assert drift_find(carrier.pk, _windows()).clean


@pytest.mark.django_db
def test_a_window_splits_into_hours_minutes_and_loose_seconds() -> None:
    start, end = at(-61, hours=-3) + timedelta(seconds=5), at(7) + timedelta(seconds=9)  # 07:59:05 to 12:07:09
    hours, minutes, loose = split(start, end)
    assert hours == [(int(at(hours=-4).timestamp()) // 3600, int(at().timestamp()) // 3600)]  # 08:00 to 12:00
    minute = int(at().timestamp()) // 60
    assert minutes == [(minute, minute + 7)]  # 12:00 to 12:07
    assert loose == [(start, at(-60, hours=-3)), (at(7), end)]
    assert split(at(0), at(0)) == ([], [], [])


@pytest.mark.django_db
def test_retried_and_repeated_rollups_count_once(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    m = mission(carrier_a, started_at=at(-90), completed_at=at(-10))
    samples(m, [at(-80), at(-79.5), at(-50)])
    call(carrier_a, when=at(-20), latency_ms=120)
    rollups.rollup_run()
    before = list(SLIBucket.objects.order_by("pk").values_list("family", "tier", "key", "n1", "n2", "n3"))
    rollups.rollup_run()
    rollups.missions_recompute([m.pk, m.pk])
    RollupCursor.objects.filter(name="missions").update(position=0)
    rollups.rollup_run()
    after = list(SLIBucket.objects.order_by("pk").values_list("family", "tier", "key", "n1", "n2", "n3"))
    assert after == before
    m_rows = [r for r in after if r[0] == "M" and r[1] == 0]
    assert [r[3] for r in m_rows] == [1]  # one finished mission, once
    assert sum(r[5] for r in after if r[0] == "T" and r[1] == 0) == 2  # two covered minutes (-80, -50)


@pytest.mark.django_db
def test_a_gap_in_ids_is_waited_for_then_passed(carrier_a: Carrier, settings: Any) -> None:
    settings.SLA_ROLLUP_GAP_GRACE_SECONDS = 60
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    first = call(carrier_a, when=at(-20), latency_ms=100)
    hole = call(carrier_a, when=at(-19), latency_ms=100)
    last = call(carrier_a, when=at(-18), latency_ms=100)
    hole_row = {f.attname: getattr(hole, f.attname) for f in type(hole)._meta.concrete_fields}
    hole.delete()  # an id taken by a transaction not committed yet
    clock = [1000.0]
    rollups.rollup_run(clock=lambda: clock[0])
    cursor = RollupCursor.objects.get(name="calls")
    assert cursor.position == first.pk and cursor.done_above == [[last.pk, last.pk]]
    type(hole).objects.create(**hole_row)  # it commits within the grace: applied once, nothing twice
    rollups.rollup_run(clock=lambda: clock[0] + 10)
    cursor.refresh_from_db()
    assert cursor.position == last.pk and cursor.done_above == []
    assert sum(SLIBucket.objects.filter(family="A", tier=0).values_list("n1", flat=True)) == 3


@pytest.mark.django_db
def test_late_and_corrected_data_move_their_bucket(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    m = mission(carrier_a, status=MissionStatus.EN_ROUTE, started_at=at(-200))
    rollups.rollup_run()
    window = Window("w", at(-300), at(0))
    targets = Targets.of(contract_in_force(carrier_a.pk, T0.date()))
    assert sli_all_buckets(carrier_a.pk, [window], targets)[(SLIName.ON_TIME, "w")].total == 0  # type: ignore[index]
    # Finished after its window closed, then its delivery time amended: both move the buckets.
    m.status, m.completed_at = MissionStatus.COMPLETED, at(-5)
    m.save(update_fields=["status", "completed_at"])
    _status_event(m)
    rollups.rollup_run()
    on_time = sli_all_buckets(carrier_a.pk, [window], targets)[(SLIName.ON_TIME, "w")]  # type: ignore[index]
    assert (on_time.good, on_time.total) == (1, 1)
    type(m.shipment).objects.filter(pk=m.shipment_id).update(delivery_window_end=at(-60))
    event_record(actor=Actor.system("test"), action="shipment.status_changed", subject_type="shipment",
                 subject_id=m.shipment_id, carrier=carrier_a)  # fmt: skip
    rollups.rollup_run()
    on_time = sli_all_buckets(carrier_a.pk, [window], targets)[(SLIName.ON_TIME, "w")]  # type: ignore[index]
    assert (on_time.good, on_time.total) == (0, 1)
    # A backfilled telemetry upload covers the silence: integrity rises to what a recount says.
    samples(m, [at(-200 + n) for n in range(0, 195, 1)])
    rollups.rollup_run()
    integrity = sli_all_buckets(carrier_a.pk, [window], targets)[(SLIName.TELEMETRY_INTEGRITY, "w")]  # type: ignore[index]
    assert integrity.good == integrity.total == 195
    assert_exact_window(carrier_a, window)


def assert_exact_window(carrier: Carrier, window: Window) -> None:
    targets = Targets.of(contract_in_force(carrier.pk, window.end.date()))
    got = sli_all_buckets(carrier.pk, [window], targets)
    assert got is not None
    for key, expected in sli_all(carrier.pk, [window], targets).items():
        assert (got[key].good, got[key].total) == (expected.good, expected.total), key


@pytest.mark.django_db
def test_drift_opens_an_incident_and_the_repair_ends_it(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    m = mission(carrier_a, started_at=at(-90), completed_at=at(-10))
    rollups.rollup_run()
    assert drift_find(carrier_a.pk, default_windows(NOW)).clean
    Mission.objects.filter(pk=m.pk).update(status=MissionStatus.FAILED)  # an edit no service recorded
    found = drift_check_all(now=NOW)
    assert [d.carrier_id for d in found] == [carrier_a.pk]
    incident = Incident.objects.get(kind="sla_rollup_drift")
    assert incident.carrier_id == carrier_a.pk and "differ from the raw recount" in incident.summary
    assert drift_find(carrier_a.pk, default_windows(NOW)).clean  # rebuilt
    assert MissionFact.objects.get(pk=m.pk).counts[3] == 1  # counted as failed now


@pytest.mark.django_db
def test_recount_command_reports_drift_zero(carrier_a: Carrier, capsys: Any) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    mission(carrier_a, started_at=at(-90), completed_at=at(-10))
    call_command("sla_rollup_backfill")
    out = capsys.readouterr().out
    assert "caught up" in out and "missions at" in out
    call_command("sla_recount", "--carrier", carrier_a.slug, "--now", NOW.isoformat())
    assert "drift 0" in capsys.readouterr().out
    Mission.objects.update(human_intervened=True)
    with pytest.raises(SystemExit):
        call_command("sla_recount", "--carrier", carrier_a.slug, "--now", NOW.isoformat())
    call_command("sla_recount", "--carrier", carrier_a.slug, "--now", NOW.isoformat(), "--repair")
    assert "drift now 0" in capsys.readouterr().out


@pytest.mark.django_db
def test_backfill_resumes_where_it_stopped(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    for n in range(3):
        mission(carrier_a, started_at=at(-90 - n), completed_at=at(-10 - n))
    rollups._source_round("missions", clock=lambda: 0.0)  # one batch, then "killed"
    assert RollupCursor.objects.get(name="missions").position == Mission.objects.order_by("-pk").first().pk  # type: ignore[union-attr]
    call_command("sla_rollup_backfill")
    assert MissionFact.objects.count() == 3
    assert sum(SLIBucket.objects.filter(family="M", tier=1).values_list("n1", flat=True)) == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_rollups_on_postgresql_count_once() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrent transactions need PostgreSQL")
    carrier = CarrierFactory()
    ContractFactory(carrier=carrier, effective_from=date(2026, 1, 1))
    made = []
    for n in range(30):
        m = mission(carrier, started_at=at(-300 + n), completed_at=at(-100 + n), due=at(-150))
        samples(m, [at(-290 + n + s / 2) for s in range(0, 120, 7)])
        call(carrier, when=at(-50 + n / 3), latency_ms=50 + n * 10, ok=n % 4 != 0)
        made.append(m)
    errors: list[BaseException] = []

    def worker(kind: str) -> None:
        try:
            for _ in range(3):
                if kind == "rollup":
                    rollups.rollup_run()
                else:
                    from django.db import transaction

                    with transaction.atomic():
                        rollups.missions_recompute([m.pk for m in made])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(k,)) for k in ("rollup", "rollup", "recompute", "recompute")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rollups.rollup_run()
    window = Window("w", at(-400), at(0))
    assert_exact_window(carrier, window)
    assert sum(SLIBucket.objects.filter(carrier_id=carrier.pk, family="M", tier=0).values_list("n1", flat=True)) == 30
    assert AuditEvent.objects.count() >= 0


# --- The set-based first build -------------------------------------------------------------------------


def _state() -> tuple[dict[Any, Any], set[Any], set[Any]]:
    """Every bucket with something in it, every fact and every cell: what two builds must agree on."""
    buckets = {}
    for b in SLIBucket.objects.all():
        hist = {k: n for k, n in (b.hist or {}).items() if n}
        counts = (b.n1, b.n2, b.n3, b.n4, b.n5, b.n6)
        if any(counts) or hist:
            buckets[(b.carrier_id, b.family, b.tier, b.key)] = (counts, hist)
    facts = {
        (f.mission_id, f.carrier_id, f.completed_at, f.started_at, tuple(f.counts), f.tel_counted, f.tel_open,
         f.tel_start_k, f.tel_end_k, f.gap_seconds)
        for f in MissionFact.objects.all()
    }  # fmt: skip
    cells = set(CoverageCell.objects.values_list("mission_id", "k", "carrier_id", "last_at"))
    return buckets, facts, cells


def _wipe() -> None:
    for model in (SLIBucket, MissionFact, CoverageCell, RollupCursor, RollupCarrier):
        model.objects.all().delete()


@pytest.mark.django_db
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=history_st)
def test_the_bulk_first_build_equals_the_incremental_build_and_a_recount(history: dict[str, Any]) -> None:
    _wipe()
    carrier = CarrierFactory()
    # First build set-based; late samples, corrections, an exclusion and retries then go through the rollup.
    _build(carrier, history, first_build=lambda: call_command("sla_rollup_backfill", stdout=io.StringIO()))
    assert not rollup_build.in_progress()
    assert_exact(carrier)
    assert drift_find(carrier.pk, _windows()).clean
    bulk = _state()
    _wipe()
    rollups.rollup_run()  # the same rows, every one through the incremental rollup
    assert _state() == bulk
    assert bulk[0], "the history put something in the buckets"


@pytest.mark.django_db
def test_the_bulk_build_resumes_and_holds_the_rollup_back_until_done(carrier_a: Carrier) -> None:
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    made = []
    for n in range(5):
        m = mission(carrier_a, started_at=at(-300 + n), completed_at=at(-100 + n), due=at(-150))
        samples(m, [at(-290 + n + s / 2) for s in range(0, 120, 7)])
        call(carrier_a, when=at(-50 + n), latency_ms=50 + n * 10, ok=n != 2)
        made.append(m)
    assert rollup_build.start()
    target = RollupCursor.objects.get(name=rollup_build.BUILD).position
    with mock.patch.object(rollup_build, "CHUNK", 2):
        assert rollup_build.missions_chunk(target) == (2, made[1].pk)  # then the process is "killed"
    assert rollup_build.left() == {"missions": 3}
    late = mission(carrier_a, started_at=at(-60), completed_at=at(-5), due=at(-1))  # after the build began
    samples(made[0], [at(-200)])  # a late sample of a mission already built
    assert not any(rollups.rollup_run().values())  # the rollup waits for the build
    out = io.StringIO()
    call_command("sla_rollup_backfill", stdout=out)
    assert "first build finished" in out.getvalue() and "caught up" in out.getvalue()
    assert MissionFact.objects.count() == 6 and MissionFact.objects.filter(pk=late.pk).exists()
    assert sum(SLIBucket.objects.filter(family="M", tier=0).values_list("n1", flat=True)) == 6
    assert sum(SLIBucket.objects.filter(family="A", tier=0).values_list("n1", flat=True)) == 5
    assert_exact_window(carrier_a, Window("w", at(-400), at(0)))
    built = _state()
    _wipe()
    rollups.rollup_run()
    assert _state() == built


@pytest.mark.django_db
def test_failover_time_and_mttr_of_every_window_equal_the_per_window_queries(carrier_a: Carrier) -> None:
    contract = ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1))
    m = mission(carrier_a, started_at=at(-3000), completed_at=at(-10))
    for n, (minutes, took, repaired) in enumerate([(-20, 300, 900), (-95, 1200, None), (-700, None, 4000),
                                                    (-2500, 60, 120), (-50, 500, 700), (-30, None, None)]):  # fmt: skip
        triggered = NOW + timedelta(minutes=minutes)
        Incident.objects.create(
            title="Lost comms", kind="lost_comms", severity="error", carrier=carrier_a, mission=m if n != 4 else None,
            dedupe_key=f"t:{n}", triggered_at=triggered,
            failover_at=triggered + timedelta(seconds=took) if took is not None else None,
            resolved_at=triggered + timedelta(seconds=repaired) if repaired is not None else None,
        )  # fmt: skip
    Incident.objects.create(title="Breach", kind="sla_breach", severity="warning", carrier=carrier_a,
                            dedupe_key="b", triggered_at=NOW - timedelta(minutes=5),
                            resolved_at=NOW - timedelta(minutes=4))  # fmt: skip
    ContractExclusion.objects.create(contract=contract, kind="maintenance", reason="r", starts_at=NOW - timedelta(
        minutes=51), ends_at=NOW - timedelta(minutes=49))  # fmt: skip
    windows = _windows()
    targets = Targets.of(contract_in_force(carrier_a.pk, NOW.date()))
    got = incident_windows(carrier_a.pk, windows, targets)
    expected = sli_all(carrier_a.pk, windows, targets)
    for key, result in got.items():
        want = expected[key]
        assert (result.good, result.total, result.value, result.inputs) == (
            want.good, want.total, want.value, want.inputs), key  # fmt: skip
    assert got[(SLIName.MTTR, "30d")].total == 3  # the breach, the excluded one and the unresolved ones left out


@pytest.mark.django_db
def test_a_new_contract_with_another_gap_rebuilds_the_buckets_once(carrier_a: Carrier) -> None:
    """Buckets built for one gap threshold cannot answer for another: the evaluation recounts raw rows and
    asks for one rebuild (a task), after which the buckets serve it again; it is asked once, not each time."""
    from django.core.cache import cache

    from sla import tasks

    ContractFactory(carrier=carrier_a, effective_from=date(2026, 1, 1), telemetry_gap_seconds=60)
    m = mission(carrier_a, started_at=at(-90), completed_at=at(-10))
    samples(m, [at(-80), at(-50), at(-20)])
    rollups.rollup_run()
    assert RollupCarrier.objects.get(carrier_id=carrier_a.pk).gap_seconds == 60
    # The contract in force from now on watches a 120 s gap.
    ContractFactory(carrier=carrier_a, effective_from=date(2026, 2, 1), telemetry_gap_seconds=120, version=2)
    targets = Targets.of(contract_in_force(carrier_a.pk, NOW.date()))
    windows = default_windows(NOW)
    assert sli_all_buckets(carrier_a.pk, windows, targets) is None  # built for 60 s
    cache.delete(f"sla:rebuild-requested:{carrier_a.pk}")
    with mock.patch.object(rollups, "carrier_rebuild", wraps=rollups.carrier_rebuild) as rebuild:
        tasks.sla_evaluate_carrier.delay(carrier_a.pk).get()  # recounts, then the rebuild runs (eager)
        assert rebuild.call_count == 1
        assert RollupCarrier.objects.get(carrier_id=carrier_a.pk).gap_seconds == 120
        assert sli_all_buckets(carrier_a.pk, windows, targets) == sli_all(carrier_a.pk, windows, targets)
        tasks.sla_evaluate_carrier.delay(carrier_a.pk).get()  # from the rebuilt buckets: nothing to ask
        assert rebuild.call_count == 1
