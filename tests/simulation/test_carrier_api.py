"""The program's carrier API: fault windows drawn from the seed, and the fleet's own record of the calls.

Calls go through the run's real fault proxy to the real carrier simulator, as the console's client makes
them; what the fleet records (instant, status, window) and when it expects the breaker to trip come from
the simulator's request log and the proxy's connections, never from the product's tables.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine

from missions.simulation import profile as p
from missions.simulation.carrier_api import WINDOW_GAP, ApiWindow, CarrierApi, windows_draw
from missions.tendering.carrier_client import CarrierClient
from tests.factories import CarrierFactory, TenderFactory

START = datetime(2026, 1, 3, tzinfo=UTC)


def test_windows_are_the_forced_ones_then_drawn_apart_and_inside_the_run() -> None:
    profile = replace(p.profile_get("month"), api_forced=((p.API_SLOW, 2, 30),))
    end = START + timedelta(days=30)
    windows = windows_draw(profile, START, end, random.Random("30:carrier-api"))
    assert windows[0] == ApiWindow(p.API_SLOW, START + timedelta(hours=2), START + timedelta(hours=2, minutes=30))
    assert {w.kind for w in windows} == set(p.API_FAULT_KINDS)
    lo, hi = profile.api_fault_minutes
    for before, after in itertools.pairwise(windows):
        assert before.end + WINDOW_GAP <= after.start
    for w in windows[1:]:
        assert w.start >= START and w.end <= end and lo <= (w.end - w.start).total_seconds() / 60 <= hi
    assert windows == windows_draw(profile, START, end, random.Random("30:carrier-api"))
    assert windows_draw(replace(profile, api_fault_rates={}, api_forced=()), START, end, random.Random(1)) == []


@pytest.fixture
def api(db: None) -> Iterator[CarrierApi]:
    profile = replace(p.profile_get("ci"), api_timeout_seconds=0.5, api_slow_seconds=0.2)
    windows = [
        ApiWindow(p.API_SLOW, START + timedelta(hours=1), START + timedelta(hours=2)),
        ApiWindow(p.API_RESET, START + timedelta(hours=3), START + timedelta(hours=4)),
    ]
    carrier_api = CarrierApi(profile=profile, windows=windows, seed=1)
    carrier_api.attach(CarrierFactory(slug="push-1"))
    try:
        yield carrier_api
    finally:
        carrier_api.close()


def _token(api: CarrierApi) -> int | None:
    carrier = api.carrier
    assert carrier is not None
    try:
        return httpx.post(
            carrier.api_token_url,
            data={"grant_type": "client_credentials"},
            auth=(carrier.api_client_id, carrier.api_client_secret),
            timeout=1.0,
        ).status_code
    except httpx.HTTPError:
        return None


def test_calls_are_recorded_with_their_window_and_a_streak_of_failures_trips_the_breaker(api: CarrierApi) -> None:
    with time_machine.travel(START, tick=False) as clock:
        assert api.next_switch(START) == START + timedelta(hours=1)
        api.apply(START)
        assert _token(api) == 200  # the carrier's credentials, configured by attach()
        calls, tripped = api.observe(START)
        assert [(c.what, c.status, c.fault, c.ok, c.slow) for c in calls] == [
            ("POST /oauth/token", 200, "", True, False)
        ]
        assert tripped is None

        slow_at = START + timedelta(hours=1)
        clock.move_to(slow_at)
        api.apply(slow_at)
        assert _token(api) == 200
        calls, tripped = api.observe(slow_at)
        assert [(c.at, c.status, c.fault, c.slow) for c in calls] == [(slow_at, 200, p.API_SLOW, True)]

        reset_at = START + timedelta(hours=3)
        clock.move_to(reset_at)
        api.apply(reset_at)
        threshold = api.profile.breaker_failure_threshold
        assert [_token(api) for _ in range(threshold - 1)] == [None] * (threshold - 1)
        calls, tripped = api.observe(reset_at)
        assert [(c.status, c.fault, c.counted, c.breaker_failure) for c in calls] == [
            (None, p.API_RESET, True, True)
        ] * (threshold - 1)
        assert tripped is None  # one failure short of the threshold
        later = reset_at + timedelta(minutes=5)
        clock.move_to(later)
        api.apply(later)
        assert _token(api) is None
        calls, tripped = api.observe(later)
        assert len(calls) == 1 and tripped == later
        assert _token(api) is None  # still open: a failed probe trips nothing new
        assert api.observe(later)[1] is None

        healed = START + timedelta(hours=4)
        clock.move_to(healed)
        api.apply(healed)
        assert api.active is None and _token(api) == 200
        calls, tripped = api.observe(healed)
        assert [(c.status, c.fault) for c in calls] == [(200, "")] and tripped is None


def test_the_carrier_holds_tenders_it_received_for_its_dispatcher_to_answer(api: CarrierApi) -> None:
    carrier = api.carrier
    assert carrier is not None and api.circuit_closed()
    tender = TenderFactory(carrier=carrier)
    assert not api.holds(tender.pk)
    with CarrierClient(carrier) as client:
        state = client.tender_submit(tender)
        assert state["status"] == "pending" and state["offer"] is None  # the simulator answers nothing itself
        assert api.holds(tender.pk)
        tender.external_ref = state["ref"]
        client.tender_cancel(tender, reason="load rebooked")
    assert not api.holds(tender.pk)  # withdrawn: nothing left for the carrier's dispatcher to answer
    assert api.sim.tender_by_id(tender.pk) is not None
