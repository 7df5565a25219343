"""The limiter: its sliding window, its three stores, concurrent bursts, and its fall-back when the store is away.

The concurrency tests run bursts of threads against each store the
configuration offers: the database (SQLite, or PostgreSQL when
``DATABASE_URL`` names it) always, Redis when ``REDIS_URL`` is set.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from tests.conftest import require_service
from tms_console import metrics
from tms_console.models import RateCounter
from tms_console.ratelimit import (
    LEASE_MAX_UNITS,
    LEASE_MIN_ROOM,
    LEASE_ROOM_DIVISOR,
    STORE_RETRY_SECONDS,
    DatabaseStore,
    Limiter,
    LocalStore,
    Policy,
    Rate,
    RedisStore,
    Store,
    Window,
    _bucket,
    ratelimit_headers,
)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _redis_store() -> RedisStore:
    require_service("redis", bool(settings.REDIS_URL))
    store = RedisStore(str(settings.REDIS_URL))
    store.clear()
    return store


def _dead_redis_url() -> str:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}/0"


# --- Rates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [("1200/min", 1200, 60), ("10/15min", 10, 900), ("30/10s", 30, 10), ("100/h", 100, 3600), ("5/day", 5, 86400)],
)
def test_rates_parse(text: str, limit: int, window: int) -> None:
    assert Rate.parse(text) == Rate(limit=limit, window_seconds=window)


def test_an_empty_rate_is_no_limit_and_nonsense_is_refused() -> None:
    assert Rate.parse("") is None and Rate.parse("off") is None
    for bad in ("1200", "ten/min", "5/fortnight", "/min"):
        with pytest.raises(ValueError, match="Not a rate"):
            Rate.parse(bad)


# --- The sliding window (process memory: the algorithm alone) --------------------------------


def test_the_limit_holds_and_the_retry_after_is_truthful() -> None:
    clock = Clock(1_800_000_000.0 + 17.0)  # 17 s into a minute window
    limiter = Limiter(shared=LocalStore(), clock=clock)
    policy = Policy("p", Rate(limit=5, window_seconds=60))
    decisions = [limiter.hit(policy, "client") for _ in range(7)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    # Not a second earlier than it says...
    clock.now += refused.retry_after - 1
    assert not limiter.hit(policy, "client").allowed
    # ...and then it does.
    clock.now += 1
    assert limiter.hit(policy, "client").allowed


def test_the_previous_window_fades_out_linearly() -> None:
    clock = Clock(1_800_000_040.0)  # 40 s into its minute
    limiter = Limiter(shared=LocalStore(), clock=clock)
    policy = Policy("p", Rate(limit=10, window_seconds=60))
    for _ in range(10):
        assert limiter.hit(policy, "c").allowed
    clock.now += 20 + 30  # half-way through the next window: 10 * 0.5 = 5 of the 10 still count
    assert [limiter.hit(policy, "c").allowed for _ in range(6)] == [True] * 5 + [False]


def test_partitions_and_policies_are_counted_apart() -> None:
    limiter = Limiter(shared=LocalStore(), clock=Clock())
    a, b = Policy("a", Rate(2, 60)), Policy("b", Rate(2, 60))
    assert all(limiter.hit(a, "x").allowed for _ in range(2))
    assert not limiter.hit(a, "x").allowed
    assert limiter.hit(a, "y").allowed
    assert limiter.hit(b, "x").allowed


def test_a_refund_gives_the_unit_back() -> None:
    limiter = Limiter(shared=LocalStore(), clock=Clock())
    policy = Policy("p", Rate(1, 60))
    first = limiter.hit(policy, "c")
    assert not limiter.hit(policy, "c").allowed
    limiter.refund(first)
    assert limiter.hit(policy, "c").allowed


def test_the_fields_follow_the_draft_syntax() -> None:
    limiter = Limiter(shared=LocalStore(), clock=Clock(1_800_000_000.0 + 15.5))
    decision = limiter.hit(Policy("partner", Rate(1200, 60)), "c")
    assert ratelimit_headers([decision]) == {
        "RateLimit-Policy": '"partner";q=1200;w=60',
        "RateLimit": '"partner";r=1199;t=45',
    }


# --- Every store: the same answers, and atomic under a burst of threads ----------------------


def _stores() -> list[Any]:
    return [
        pytest.param(LocalStore, id="memory"),
        pytest.param(DatabaseStore, id="database", marks=[pytest.mark.live, pytest.mark.django_db(transaction=True)]),
        pytest.param(_redis_store, id="redis", marks=pytest.mark.services),
    ]


@pytest.mark.parametrize("make", _stores())
def test_each_store_admits_exactly_the_limit_under_a_concurrent_burst(make: Callable[[], Store]) -> None:
    limiter = Limiter(shared=make())
    policy = Policy("burst", Rate(limit=25, window_seconds=3600))
    threads = 75
    barrier = threading.Barrier(threads)

    def one(_: int) -> bool:
        barrier.wait(timeout=30)
        try:
            return limiter.hit(policy, "one-client").allowed
        finally:
            connection.close()  # each thread's own database connection

    with ThreadPoolExecutor(max_workers=threads) as pool:
        admitted = sum(pool.map(one, range(threads)))
    assert admitted == 25
    assert not any(d.local for d in [limiter.peek(policy, "one-client")])  # the shared store answered throughout


@pytest.mark.parametrize("make", _stores())
def test_each_store_reads_refunds_and_clears(make: Callable[[], Store]) -> None:
    clock = Clock(1_800_000_000.0 + 5)
    limiter = Limiter(shared=make(), clock=clock)
    policy = Policy("rw", Rate(limit=3, window_seconds=60))
    taken = [limiter.hit(policy, "c") for _ in range(3)]
    assert limiter.peek(policy, "c").remaining == 0 and not limiter.peek(policy, "c").allowed
    limiter.refund(taken[0])
    assert limiter.peek(policy, "c").remaining == 1
    assert limiter.hit(policy, "c").allowed
    limiter.clear()
    assert limiter.peek(policy, "c").remaining == 3


@pytest.mark.django_db
def test_the_database_store_works_inside_a_callers_transaction_and_purges_dead_rows() -> None:
    store = DatabaseStore()
    clock = Clock(1_800_000_000.0)
    limiter = Limiter(shared=store, clock=clock)
    policy = Policy("tx", Rate(limit=2, window_seconds=60))
    assert limiter.hit(policy, "c").allowed  # the test runs inside a transaction: a savepoint is used
    assert RateCounter.objects.get().hits == 1
    RateCounter.objects.create(bucket="old", window_index=1, hits=5, expires_at=1)
    store._purged_at = 0.0
    assert limiter.hit(policy, "c").allowed
    assert not RateCounter.objects.filter(bucket="old").exists()


# --- Leases: a busy partition asks the store once in a while, and the limit still holds ------------


class CountingStore(LocalStore):
    """A shared store in memory that counts the round trips the limiter makes to it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def hit(self, bucket: str, window: Window, rate: Rate, cost: int, extra: int = 0) -> tuple[int, int, int]:
        self.calls += 1
        return super().hit(bucket, window, rate, cost, extra)


def test_a_leased_policy_asks_the_store_once_per_lease_and_an_unleased_one_every_time() -> None:
    store = CountingStore()
    limiter = Limiter(shared=store, clock=Clock(1_800_000_000.0))
    leased = Policy("partner", Rate(limit=100_000, window_seconds=60), leased=True)
    assert all(limiter.hit(leased, "c").allowed for _ in range(170))
    assert store.calls == 10  # each round trip takes the request's unit and LEASE_MAX_UNITS more
    assert store.counts(_bucket(leased, "c"), Window.at(1_800_000_000.0, 60))[1] == 10 * (1 + LEASE_MAX_UNITS)
    store.calls = 0
    plain = Policy("guard", Rate(limit=100_000, window_seconds=60))
    assert all(limiter.hit(plain, "c").allowed for _ in range(20))
    assert store.calls == 20


def test_leases_shrink_with_the_room_so_one_process_still_takes_exactly_the_limit() -> None:
    store = CountingStore()
    limiter = Limiter(shared=store, clock=Clock(1_800_000_000.0))
    policy = Policy("partner", Rate(limit=200, window_seconds=60), leased=True)
    answers = [limiter.hit(policy, "c") for _ in range(205)]
    assert [a.allowed for a in answers] == [True] * 200 + [False] * 5
    # The room left is told as this process knows it: its own lease is not spent.
    assert [a.remaining for a in answers[:200]] == list(range(199, -1, -1))
    # Leases while the room is large (200 leases 12 more units), none for the last LEASE_MIN_ROOM units.
    assert answers[1].leased and not any(a.leased for a in answers[-(LEASE_MIN_ROOM - LEASE_MAX_UNITS) - 5 :])
    assert store.calls < 205 - 50


def test_processes_sharing_a_store_never_pass_the_limit_and_spend_all_of_it_when_busy() -> None:
    store = LocalStore()  # the shared store; each Limiter is one process with its own leases
    processes = [Limiter(shared=store, clock=Clock(1_800_000_000.0)) for _ in range(4)]
    policy = Policy("partner", Rate(limit=1_000, window_seconds=60), leased=True)
    threads = 64
    barrier = threading.Barrier(threads)

    def one(n: int) -> int:
        barrier.wait(timeout=30)
        limiter = processes[n % len(processes)]
        return sum(limiter.hit(policy, "one-client").allowed for _ in range(40))  # 2,560 requests in all

    with ThreadPoolExecutor(max_workers=threads) as pool:
        admitted = sum(pool.map(one, range(threads)))
    assert admitted == 1_000


def test_a_refund_of_leased_units_goes_back_to_the_lease_and_a_new_window_drops_it() -> None:
    clock = Clock(1_800_000_000.0 + 5)
    store = CountingStore()
    limiter = Limiter(shared=store, clock=clock)
    policy = Policy("partner", Rate(limit=10_000, window_seconds=60), leased=True)
    first, second = limiter.hit(policy, "c"), limiter.hit(policy, "c")
    assert not first.leased and second.leased and store.calls == 1
    limiter.refund(second)
    assert [limiter.hit(policy, "c").leased for _ in range(LEASE_MAX_UNITS)] == [True] * LEASE_MAX_UNITS
    assert store.calls == 1 and not limiter.hit(policy, "c").leased  # the lease ran out: a round trip
    clock.now += 60  # the next window: what was left of the lease stays counted in the old one
    assert not limiter.hit(policy, "c").leased and store.calls == 3


class SlowLeaseStore(LocalStore):
    """The first question is granted five units but answered late; later ones find the room gone."""

    def __init__(self) -> None:
        super().__init__()
        self.first = threading.Event()

    def hit(self, bucket: str, window: Window, rate: Rate, cost: int, extra: int = 0) -> tuple[int, int, int]:
        if not self.first.is_set():
            self.first.set()
            time.sleep(0.2)  # granted in the store, still on its way back to the process
            return 5, 0, 5
        return 0, 0, 5


def test_a_refused_request_waits_for_its_process_grants_in_flight_and_takes_their_lease() -> None:
    limiter = Limiter(shared=SlowLeaseStore(), clock=Clock(1_800_000_000.0))
    policy = Policy("partner", Rate(limit=5, window_seconds=60), leased=True)
    with ThreadPoolExecutor(max_workers=5) as pool:
        first = pool.submit(limiter.hit, policy, "c")
        limiter.shared.first.wait(5)  # type: ignore[attr-defined]
        others = [pool.submit(limiter.hit, policy, "c") for _ in range(5)]
        answers = [first.result(5)] + [f.result(5) for f in others]
    # The five units the store counted are all spent: none left unused while a request was refused.
    assert [a.allowed for a in answers].count(True) == 5
    assert sum(a.leased for a in answers) == 4


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(DatabaseStore, id="database", marks=[pytest.mark.live, pytest.mark.django_db(transaction=True)]),
        pytest.param(_redis_store, id="redis", marks=pytest.mark.services),
    ],
)
def test_each_shared_store_grants_leases_by_the_same_rule(make: Callable[[], Store]) -> None:
    store = make()
    window = Window.at(1_800_000_000.0, 60)
    rate = Rate(limit=100, window_seconds=60)
    granted = [store.hit("lease-rule", window, rate, 1, LEASE_MAX_UNITS)[0] for _ in range(80)]
    # Room 100: 1 + min(16, 99 // 16) = 7; the lease shrinks with the room, and none below LEASE_MIN_ROOM.
    expected, rooms, room = [], [], 100
    for _ in range(80):
        rooms.append(room)
        grant = 0 if room < 1 else 1 if room - 1 < LEASE_MIN_ROOM else 1 + (room - 1) // LEASE_ROOM_DIVISOR
        expected.append(grant)
        room -= grant
    assert granted == expected
    assert granted[0] == 7 and sum(granted) == 100  # the whole room, never more
    assert all(g == 1 for g, r in zip(granted, rooms, strict=True) if 1 <= r <= LEASE_MIN_ROOM)  # one by one
    assert granted[-5:] == [0] * 5
    other = Window.at(1_800_000_000.0 + 3600, 60)
    assert store.hit("lease-rule", other, rate, 1, 0)[0] == 1  # no lease asked: one unit


# --- The store away: fail open, say it once ----------------------------------------------------


@pytest.mark.django_db
def test_a_store_that_does_not_answer_falls_back_to_process_memory(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limiter = Limiter(shared=RedisStore(_dead_redis_url()), clock=clock)
    policy = Policy("fallback", Rate(limit=3, window_seconds=60))
    caplog.set_level(logging.WARNING, logger="tms_console.ratelimit")
    decisions = [limiter.hit(policy, "c") for _ in range(5)]
    # The limit still holds, per process; nothing raised.
    assert [d.allowed for d in decisions] == [True] * 3 + [False] * 2
    assert all(d.local for d in decisions)
    assert metrics.RATELIMIT_FALLBACK._value.get() == 1
    assert "tms_ratelimit_local_fallback 1.0" in Client().get("/metrics").content.decode()
    warnings = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(warnings) == 1  # once, not per request

    # The store comes back: after the retry delay it is used again, and that is said once too.
    limiter.shared = LocalStore()
    clock.now += STORE_RETRY_SECONDS + 1
    for _ in range(3):
        assert not limiter.hit(policy, "other").local
    assert metrics.RATELIMIT_FALLBACK._value.get() == 0
    assert len([r for r in caplog.records if "answers again" in r.getMessage()]) == 1


def test_a_store_that_is_away_is_not_asked_again_before_the_retry_delay() -> None:
    clock = Clock()
    dead = RedisStore(_dead_redis_url())
    limiter = Limiter(shared=dead, clock=clock)
    calls = 0
    original = dead.hit

    def counting(*args: Any) -> tuple[bool, int, int]:
        nonlocal calls
        calls += 1
        return original(*args)

    dead.hit = counting  # type: ignore[method-assign]
    for _ in range(10):
        limiter.hit(Policy("p", Rate(100, 60)), "c")
    assert calls == 1
    clock.now += STORE_RETRY_SECONDS + 0.1
    limiter.hit(Policy("p", Rate(100, 60)), "c")
    assert calls == 2
    limiter.clear(shared=False)
    metrics.RATELIMIT_FALLBACK.set(0)


REDIS_SERVER = shutil.which("redis-server")


@contextmanager
def redis_server(port: int) -> Iterator[None]:
    """A throw-away redis-server on ``port`` (no persistence), stopped afterwards."""
    require_service("redis-server", REDIS_SERVER is not None)
    assert REDIS_SERVER is not None
    process = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.services
def test_redis_going_away_and_coming_back_with_an_empty_script_cache(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    clock = Clock()
    limiter = Limiter(shared=RedisStore(f"redis://127.0.0.1:{port}/0"), clock=clock)
    policy = Policy("restart", Rate(limit=1000, window_seconds=60))
    caplog.set_level(logging.WARNING, logger="tms_console.ratelimit")
    with redis_server(port):
        # A fresh server has never seen the script: EVALSHA is refused, EVAL loads it.
        assert not limiter.hit(policy, "c").local
        assert not limiter.hit(policy, "c").local
    # Gone: every request is still decided, in process memory.
    assert all(limiter.hit(policy, "c").local for _ in range(5))
    with redis_server(port):
        clock.now += STORE_RETRY_SECONDS + 1
        back = limiter.hit(policy, "c")
        assert not back.local
        assert back.remaining == 1000 - 1  # a restarted Redis starts from nothing
    messages = [r.getMessage() for r in caplog.records]
    assert sum("does not answer" in m for m in messages) == 1
    assert sum("answers again" in m for m in messages) == 1
    metrics.RATELIMIT_FALLBACK.set(0)


def test_a_changed_limit_voids_the_lease_taken_under_the_old_one() -> None:
    limiter = Limiter(shared=LocalStore(), clock=Clock(1_800_000_000.0))
    assert limiter.hit(Policy("partner", Rate(1200, 60), leased=True), "c").allowed  # leases 16 more units
    lowered = Policy("partner", Rate(2, 60), leased=True)
    # The store already counts 17 units in this window: under the new limit of 2, nothing is left.
    assert not limiter.hit(lowered, "c").allowed
