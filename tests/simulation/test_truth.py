"""The ground truth's telemetry integrity, counted with its bucket index, against a plain count of every sample."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from missions.simulation import truth
from missions.simulation.record import MissionRecord, Record

START = datetime(2026, 1, 10, tzinfo=UTC)


def _plain(record: Record, carrier: str, w: truth.TruthWindow) -> tuple[int, int, list[int]]:
    """The definition, sample by sample: buckets of the mission's time in the window, those holding a sample."""
    g = record.gap_seconds
    judged = math.floor(w.end.timestamp() / g) * g
    lo_w = w.start.timestamp()
    expected = covered = 0
    short = []
    for m in record.missions.values():
        if m.carrier != carrier:
            continue
        started = m.started_at.timestamp()
        done = m.completed_at.timestamp() if m.completed_at else None
        if started >= judged or (done is not None and (done <= lo_w or done <= started)):
            continue
        lo, hi = max(started, lo_w), min(done if done is not None else judged, judged)
        if hi <= lo:
            continue
        n = math.ceil(hi / g) - math.floor(lo / g)
        buckets = {math.floor(s.timestamp() / g) for s in m.samples if lo <= s.timestamp() < hi}
        expected += n
        covered += len(buckets)
        if len(buckets) < n:
            short.append(m.mission_id)
    return min(covered, expected), expected, sorted(short)


def _record(rng: random.Random, g: int) -> Record:
    record = Record(start=START, end=START + timedelta(days=3), gap_seconds=g)
    for mission_id in range(1, 80):
        started = START + timedelta(seconds=rng.randrange(0, 2 * 86400))
        length = rng.randrange(60, 8 * 3600)
        done = started + timedelta(seconds=length) if rng.random() < 0.8 else None
        m = MissionRecord(
            mission_id=mission_id, carrier=rng.choice("ab"), truck="t1", fault="",
            delivery_window_end=started + timedelta(hours=9), started_at=started, completed_at=done,
        )  # fmt: skip
        t = started
        end = done or started + timedelta(seconds=length)
        while t < end:
            if rng.random() > 0.1:  # silences of every length, some longer than a bucket
                m.samples.append(t)
            step = rng.choice((1, g // 3, g // 2, g, 2 * g, 7 * g))
            t += timedelta(seconds=step, microseconds=rng.randrange(0, 10**6))
        record.missions[mission_id] = m
    return record


@pytest.mark.parametrize("seed", range(6))
def test_indexed_count_equals_the_sample_by_sample_count(seed: int) -> None:
    rng = random.Random(seed)
    g = rng.choice((60, 180, 600))
    record = _record(rng, g)
    try:
        for _ in range(40):
            end = START + timedelta(seconds=rng.randrange(0, 3 * 86400), microseconds=rng.randrange(0, 10**6))
            for w in truth.windows_ending(end):
                for carrier in "ab":
                    got = truth.telemetry_integrity(record, carrier, w)
                    assert (got.good, got.total, got.bad_ids) == _plain(record, carrier, w), (seed, w)
    finally:
        truth.coverage_forget()


def test_a_mission_that_gained_samples_is_counted_again() -> None:
    record = Record(start=START, end=START + timedelta(days=1), gap_seconds=60)
    m = MissionRecord(mission_id=1, carrier="a", truck="t1", fault="", delivery_window_end=START + timedelta(hours=5),
                      started_at=START)  # fmt: skip
    m.samples.extend(START + timedelta(seconds=s) for s in range(0, 600, 20))
    record.missions[1] = m
    w = truth.TruthWindow("1h", START, START + timedelta(hours=1))
    try:
        assert truth.telemetry_integrity(record, "a", w).good == 10
        m.samples.extend(START + timedelta(seconds=s) for s in range(600, 1200, 20))
        assert truth.telemetry_integrity(record, "a", w).good == 20
    finally:
        truth.coverage_forget()
