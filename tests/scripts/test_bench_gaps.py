"""The gap-alarm benchmark's verdict (benchmarks/bench_gaps.py): it fails on a missing, late, early or false alarm."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from benchmarks.bench_gaps import assess

T0 = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
CROSSINGS = {1: T0, 2: T0 + timedelta(seconds=10), 3: T0 + timedelta(seconds=20)}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_every_silent_truck_alarmed_in_time_and_nothing_else_is_met() -> None:
    verdict = assess(CROSSINGS, [(1, at(0.5)), (2, at(11.9)), (3, at(22.0))])
    assert verdict.met
    assert verdict.latencies == {1: 0.5, 2: 1.9, 3: 2.0}
    assert (verdict.within, verdict.expected, verdict.share_within, verdict.false_alarms) == (3, 3, 1.0, 0)


def test_a_missing_alarm_fails() -> None:
    verdict = assess(CROSSINGS, [(1, at(0.5)), (3, at(21))])
    assert not verdict.met
    assert verdict.missing == [2] and verdict.share_within == 2 / 3


def test_a_late_alarm_fails() -> None:
    verdict = assess(CROSSINGS, [(1, at(0.5)), (2, at(12.01)), (3, at(21))])
    assert not verdict.met
    assert verdict.within == 2 and verdict.latencies[2] > 2


def test_an_alarm_for_a_truck_that_never_went_silent_fails() -> None:
    verdict = assess(CROSSINGS, [(1, at(0.5)), (2, at(11)), (3, at(21)), (99, at(5))])
    assert not verdict.met
    assert verdict.false == [99] and verdict.false_alarms == 1


def test_an_alarm_before_the_threshold_was_crossed_is_false_too() -> None:
    verdict = assess(CROSSINGS, [(1, at(0.5)), (2, at(9.5)), (3, at(21))])
    assert not verdict.met
    assert verdict.early == [2] and verdict.false_alarms == 1


def test_a_truck_alarmed_twice_fails() -> None:
    verdict = assess(CROSSINGS, [(1, at(0.5)), (1, at(1.5)), (2, at(11)), (3, at(21))])
    assert not verdict.met
    assert verdict.duplicates == [1] and verdict.latencies[1] == 0.5


def test_no_silent_truck_at_all_is_not_a_pass() -> None:
    assert not assess({}, []).met
