"""Rate limits that hold under concurrency: atomic sliding-window counters in the shared store.

Each limit (a *policy*: ``limit`` units per ``window_seconds``) is counted per
*partition* (a client, a carrier, an address) with the sliding-window counter
that Cloudflare and the ``limits`` library use: a counter per fixed window,
and the estimate ``previous * (share of the previous window still inside the
sliding window) + current``. A request is admitted when that estimate plus
its cost stays within the limit, and the test and the increment are one
atomic step in the shared store, so concurrent requests in any thread or
process cannot both take the last unit (DRF's throttle reads, edits and
writes a list, and concurrent requests overwrite each other):

* with ``RATELIMIT_REDIS_URL`` (default ``REDIS_URL``): one Lua script per
  decision (one round trip);
* without Redis: one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` statement
  on ``tms_console.RateCounter`` (PostgreSQL and SQLite alike), after reading
  the previous window's count, which no longer changes.

A busy partition need not ask the shared store every time: for a policy
that allows it (``Policy.leased``: the high-volume partner, address and
webhook limits, never the guard's small budgets), an admitted request may
take a few units more than it needs, at most ``LEASE_MAX_UNITS`` and at most
one ``LEASE_ROOM_DIVISOR``-th of the room left, and the process spends them
on its next requests without a round trip (a *lease*). Leased units are
counted in the store when they are taken, so the limit is never exceeded;
no lease is granted once fewer than ``LEASE_MIN_ROOM`` units are left, so
the last units of a window are taken one by one, and a request the store
refuses first waits for the grants its own process has in flight and takes
a unit they leased, if any. The price: units a process leased and never got
to spend (it received no further request of that partition in the window)
are lost to the others, at most ``LEASE_MAX_UNITS`` per process and window,
and the ``RateLimit`` field a process reports does not see the other
processes' spending until its next round trip.

When the shared store does not answer, decisions fall back to the same
counters in process memory (each process then allows the full limit: the
limit fails open rather than failing the request), the
``tms_ratelimit_local_fallback`` gauge is 1 and one warning is logged; the
store is tried again every ``STORE_RETRY_SECONDS``.

Answers carry the IETF ``RateLimit-Policy`` and ``RateLimit`` fields
(draft-ietf-httpapi-ratelimit-headers-11): ``"partner";q=1200;w=60`` and
``"partner";r=<units left>;t=<seconds>``, ``t`` being the seconds until the
current window closes, or until a refused request may be retried.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Protocol

import redis
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.http import HttpRequest
from redis.backoff import NoBackoff
from redis.retry import Retry

from tms_console.metrics import RATELIMIT_FALLBACK, RATELIMIT_LIMITED
from tms_console.models import RateCounter

log = logging.getLogger(__name__)

STORE_RETRY_SECONDS = 5.0
LEASE_MAX_UNITS = 16
LEASE_ROOM_DIVISOR = 16
LEASE_MIN_ROOM = 64
LEASE_SETTLE_SECONDS = 0.5
KEY_PREFIX = "tms:rl:"
_UNITS = {
    **dict.fromkeys(("s", "sec", "second"), 1),
    **dict.fromkeys(("m", "min", "minute"), 60),
    **dict.fromkeys(("h", "hour"), 3600),
    **dict.fromkeys(("d", "day"), 86400),
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class Rate:
    """``limit`` units per ``window_seconds``."""

    limit: int
    window_seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate | None:
        """``"1200/min"``, ``"10/15min"``, ``"30/10s"``, ``"100/h"``, ``"5000/day"``; empty or ``"off"``: None."""
        return _parse_rate(str(text or ""))

    def __str__(self) -> str:
        return f"{self.limit}/{self.window_seconds}s"


@lru_cache(maxsize=64)
def _parse_rate(text: str) -> Rate | None:
    # Cached: the settings are read at every request (tests change them), parsed once per value.
    text = text.strip().lower()
    if text in ("", "off", "none"):
        return None
    match = _RATE.match(text)
    unit = match and (_UNITS.get(match[3]) or _UNITS.get(match[3].rstrip("s")))
    if not match or not unit:
        raise ValueError(f"Not a rate: {text!r} (expected e.g. '1200/min' or '10/15min').")
    return Rate(limit=int(match[1]), window_seconds=int(match[2] or 1) * unit)


@dataclass(frozen=True)
class Policy:
    """A named limit, as published in ``RateLimit-Policy`` (the name is the field's item)."""

    name: str
    rate: Rate
    leased: bool = False  # a process may take a few units ahead (see the module's docstring)

    def field(self) -> str:
        return f'"{self.name}";q={self.rate.limit};w={self.rate.window_seconds}'


@dataclass(frozen=True)
class Decision:
    """The outcome of one request against one policy and partition."""

    policy: Policy
    allowed: bool
    remaining: int
    reset_seconds: int  # ``t``: until the window closes, or until a retry can succeed
    retry_after: int  # whole seconds; 0 when allowed
    bucket: str = ""
    window_index: int = 0
    cost: int = 1
    local: bool = False  # decided in process memory (shared store unreachable)
    leased: bool = False  # spent from this process's lease, not asked of the store

    def ratelimit_field(self) -> str:
        return f'"{self.policy.name}";r={self.remaining};t={self.reset_seconds}'


def ratelimit_headers(decisions: Iterable[Decision]) -> dict[str, str]:
    """``RateLimit-Policy`` and ``RateLimit`` for the decisions taken on one request (one item each)."""
    seen: dict[str, Decision] = {}
    for decision in decisions:
        seen[decision.policy.name] = decision  # the last decision on a policy is the current one
    if not seen:
        return {}
    return {
        "RateLimit-Policy": ", ".join(d.policy.field() for d in seen.values()),
        "RateLimit": ", ".join(d.ratelimit_field() for d in seen.values()),
    }


# --- The sliding window ----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Where ``now`` falls: the fixed window's index, seconds into it, and the previous window's weight."""

    index: int
    elapsed: float
    weight: float  # share of the previous window still inside the sliding window, (0, 1]

    @classmethod
    def at(cls, now: float, window_seconds: int) -> Window:
        index = int(now // window_seconds)
        elapsed = now - index * window_seconds
        return cls(index=index, elapsed=elapsed, weight=(window_seconds - elapsed) / window_seconds)


def _admits(*, limit: int, previous: int, current: int, weight: float, cost: int) -> bool:
    # The tiny margin keeps float rounding from refusing a request that exactly fits.
    return previous * weight + current + cost <= limit + 1e-9


def _retry_seconds(*, rate: Rate, previous: int, current: int, window: Window, cost: int) -> float:
    """Seconds until ``cost`` more units fit, if nobody else spends any meanwhile."""
    size, limit = rate.window_seconds, rate.limit
    if cost > limit:
        return float(size)
    if current + cost <= limit and previous > 0:
        # The previous window's share falls linearly: find when it leaves room for us.
        elapsed_needed = size * (1 - (limit - current - cost) / previous)
        return max(elapsed_needed - window.elapsed, 0.0)
    # Not before the next window, where this window's count becomes the falling share.
    until_next = size - window.elapsed
    if current <= limit - cost:
        return until_next
    return until_next + size * (1 - (limit - cost) / current)


def _decide(
    policy: Policy, bucket: str, window: Window, *, allowed: bool, previous: int, current: int, cost: int
) -> Decision:
    rate = policy.rate
    used = previous * window.weight + current
    remaining = max(0, math.floor(rate.limit - used + 1e-9))
    if allowed:
        reset = max(1, math.ceil(rate.window_seconds - window.elapsed))
        retry = 0
    else:
        seconds = _retry_seconds(rate=rate, previous=previous, current=current, window=window, cost=cost)
        retry = max(1, math.ceil(seconds))
        reset = retry
    return Decision(
        policy=policy,
        allowed=allowed,
        remaining=remaining,
        reset_seconds=reset,
        retry_after=retry,
        bucket=bucket,
        window_index=window.index,
        cost=cost,
    )


# --- Stores ----------------------------------------------------------------------------------


class Store(Protocol):
    def hit(self, bucket: str, window: Window, rate: Rate, cost: int, extra: int = 0) -> tuple[int, int, int]:
        """Atomically admit ``cost`` units if they fit, and up to ``extra`` more within the lease rule.

        Returns (units granted, 0 when refused; previous count; current count after the grant).
        """

    def counts(self, bucket: str, window: Window) -> tuple[int, int]:
        """(previous, current) counts, read without changing them."""

    def refund(self, bucket: str, window_index: int, cost: int) -> None:
        """Give back units admitted earlier in that window (never below zero)."""

    def clear(self) -> None:
        """Forget every count (tests and benchmarks only)."""


def _key(bucket: str, index: int) -> str:
    return f"{KEY_PREFIX}{bucket}:{index}"


def _grant(room: int, cost: int, extra: int) -> int:
    """Units to take when ``room`` whole units fit: ``cost``, plus a lease that shrinks with the room."""
    if room < cost:
        return 0
    if room - cost < LEASE_MIN_ROOM:
        return cost
    return cost + max(0, min(extra, (room - cost) // LEASE_ROOM_DIVISOR))


# KEYS: this window's counter, the previous window's.
# ARGV: limit, previous weight, cost, TTL seconds, extra units wanted, lease divisor, lease minimum room.
# The same rule as ``_grant``; the tiny margin keeps float rounding from refusing what exactly fits.
_HIT_LUA = """
local counts = redis.call('MGET', KEYS[1], KEYS[2])
local current = tonumber(counts[1] or '0')
local previous = tonumber(counts[2] or '0')
local cost = tonumber(ARGV[3])
local room = math.floor(tonumber(ARGV[1]) - previous * tonumber(ARGV[2]) - current + 1e-9)
if room < cost then
  return {0, previous, current}
end
local grant = cost
if room - cost >= tonumber(ARGV[7]) then
  grant = cost + math.max(0, math.min(tonumber(ARGV[5]), math.floor((room - cost) / tonumber(ARGV[6]))))
end
current = redis.call('INCRBY', KEYS[1], grant)
if current == grant then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
end
return {grant, previous, current}
"""
_REFUND_LUA = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current <= 0 then return 0 end
return redis.call('DECRBY', KEYS[1], math.min(current, tonumber(ARGV[1])))
"""


class RedisStore:
    """Counters as Redis keys, admitted by one Lua script (atomic on the server, one round trip)."""

    def __init__(self, url: str) -> None:
        # Short timeouts and one immediate retry (a pooled connection that a restart broke), not
        # redis-py's ten with back-off: a Redis that does not answer must cost a request little.
        # A blocking pool: under a burst a request waits (briefly) for a connection instead of
        # opening ever more of them or, past redis-py's 100, failing over to process memory.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=64,
            timeout=0.5,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 1),
        )
        self.client = redis.Redis(connection_pool=pool)
        # Redis names a script by its SHA-1 (a name, not a safeguard).
        self._hit_sha = hashlib.sha1(_HIT_LUA.encode(), usedforsecurity=False).hexdigest()
        self._refund_sha = hashlib.sha1(_REFUND_LUA.encode(), usedforsecurity=False).hexdigest()

    def _script(self, sha: str, source: str, keys: list[str], args: list[Any]) -> Any:
        # EVALSHA straight away (the script object of redis-py costs a request more); a Redis that
        # restarted or never saw the script answers NOSCRIPT, and EVAL loads it for next time.
        try:
            return self.client.evalsha(sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return self.client.eval(source, len(keys), *keys, *args)

    def hit(self, bucket: str, window: Window, rate: Rate, cost: int, extra: int = 0) -> tuple[int, int, int]:
        keys = [_key(bucket, window.index), _key(bucket, window.index - 1)]
        args = [
            rate.limit,
            repr(window.weight),
            cost,
            2 * rate.window_seconds + 1,
            extra,
            LEASE_ROOM_DIVISOR,
            LEASE_MIN_ROOM,
        ]
        granted, previous, current = self._script(self._hit_sha, _HIT_LUA, keys, args)
        return int(granted), int(previous), int(current)

    def counts(self, bucket: str, window: Window) -> tuple[int, int]:
        current, previous = self.client.mget(_key(bucket, window.index), _key(bucket, window.index - 1))
        return int(previous or 0), int(current or 0)

    def refund(self, bucket: str, window_index: int, cost: int) -> None:
        self._script(self._refund_sha, _REFUND_LUA, [_key(bucket, window_index)], [cost])

    def clear(self) -> None:
        for key in self.client.scan_iter(f"{KEY_PREFIX}*", count=1000):
            self.client.delete(key)


# A literal statement (the table is tms_console.RateCounter's): the ORM has no conditional upsert.
_UPSERT = (
    "INSERT INTO tms_console_ratecounter (bucket, window_index, hits, expires_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (bucket, window_index) DO UPDATE SET hits = tms_console_ratecounter.hits + %s "
    "WHERE tms_console_ratecounter.hits + %s <= %s RETURNING hits"
)
_PURGE_SECONDS = 60.0


class DatabaseStore:
    """Counters as ``RateCounter`` rows, admitted by one conditional upsert.

    PostgreSQL evaluates the ``WHERE`` of ``ON CONFLICT DO UPDATE`` on the
    locked, latest version of the row, and SQLite runs one writer at a time,
    so two concurrent requests can never both take the last unit. The insert
    of a window's first request is admitted only when ``cost`` fits at all.
    """

    def __init__(self) -> None:
        self._purged_at = 0.0

    @contextmanager
    def _statement(self) -> Iterator[None]:
        # Inside a caller's transaction, a savepoint keeps a failure here from breaking it.
        if connection.in_atomic_block:
            with transaction.atomic():
                yield
        else:
            yield

    def hit(self, bucket: str, window: Window, rate: Rate, cost: int, extra: int = 0) -> tuple[int, int, int]:
        previous, current = self.counts(bucket, window)
        # Whole units this window may still hold given the previous window's falling share.
        cap = math.floor(rate.limit - previous * window.weight + 1e-9)
        grant = _grant(cap - current, cost, extra)
        if not grant:
            return 0, previous, current
        expires_at = (window.index + 2) * rate.window_seconds + 1
        with self._statement(), connection.cursor() as cursor:
            cursor.execute(_UPSERT, [bucket, window.index, grant, expires_at, grant, grant, cap])
            row = cursor.fetchone()
            if row is None and grant > cost:  # others took room meanwhile: the lease goes first
                grant = cost
                cursor.execute(_UPSERT, [bucket, window.index, grant, expires_at, grant, grant, cap])
                row = cursor.fetchone()
        self._purge_now_and_then()
        if row is None:  # another request took the room between our read and our write
            return 0, previous, cap
        return grant, previous, int(row[0])

    def counts(self, bucket: str, window: Window) -> tuple[int, int]:
        with self._statement():
            rows = RateCounter.objects.filter(bucket=bucket, window_index__in=(window.index - 1, window.index))
            found = dict(rows.values_list("window_index", "hits"))
        return int(found.get(window.index - 1, 0)), int(found.get(window.index, 0))

    def refund(self, bucket: str, window_index: int, cost: int) -> None:
        with self._statement():
            RateCounter.objects.filter(bucket=bucket, window_index=window_index).update(
                hits=Greatest(F("hits") - cost, Value(0))
            )

    def _purge_now_and_then(self) -> None:
        now = time.time()
        if now - self._purged_at < _PURGE_SECONDS:
            return
        self._purged_at = now
        with self._statement():
            RateCounter.objects.filter(expires_at__lt=int(now)).delete()

    def clear(self) -> None:
        with self._statement():
            RateCounter.objects.all().delete()


class LocalStore:
    """The same counters in this process's memory: the fallback while the shared store is away."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def hit(self, bucket: str, window: Window, rate: Rate, cost: int, extra: int = 0) -> tuple[int, int, int]:
        # The limiter asks for no lease here while it falls back (no round trip to save), but a
        # store built on this class for tests is asked like any shared store.
        with self._lock:
            if len(self._counts) > 100_000:
                self._forget_before(window.index - 1)
            previous = self._counts.get((bucket, window.index - 1), 0)
            current = self._counts.get((bucket, window.index), 0)
            grant = _grant(math.floor(rate.limit - previous * window.weight - current + 1e-9), cost, extra)
            if grant:
                current = self._counts[(bucket, window.index)] = current + grant
            return grant, previous, current

    def counts(self, bucket: str, window: Window) -> tuple[int, int]:
        with self._lock:
            return self._counts.get((bucket, window.index - 1), 0), self._counts.get((bucket, window.index), 0)

    def refund(self, bucket: str, window_index: int, cost: int) -> None:
        with self._lock:
            key = (bucket, window_index)
            if key in self._counts:
                self._counts[key] = max(0, self._counts[key] - cost)

    def _forget_before(self, index: int) -> None:
        for key in [k for k in self._counts if k[1] < index]:
            del self._counts[key]

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


# --- Leases ---------------------------------------------------------------------------------


@dataclass
class _Lease:
    window_index: int
    limit: int  # the policy's limit when granted: a changed limit voids the lease
    left: int  # units taken from the store and not yet spent
    previous: int  # the store's counts at the last grant (``current`` includes the lease)
    current: int


class Leases:
    """Units this process took ahead from the shared store, per bucket, for the window they count in.

    It also knows which of its threads are asking the store about a bucket
    right now: a request the store refused waits for those answers (one round
    trip at most), since one of them may bring a lease that has room for it.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._held: dict[str, _Lease] = {}
        self._asking: dict[str, set[int]] = {}
        self._asks = itertools.count()

    def take(self, bucket: str, window_index: int, cost: int, limit: int) -> tuple[int, int] | None:
        """Spend ``cost`` leased units: (previous, current as this process knows them), or None."""
        with self._changed:
            return self._take(bucket, window_index, cost, limit)

    def _take(self, bucket: str, window_index: int, cost: int, limit: int) -> tuple[int, int] | None:
        lease = self._held.get(bucket)
        if lease is None or lease.left < cost:
            return None
        if lease.window_index != window_index or lease.limit != limit:
            # Counted in an earlier window (where they stay, as if spent then: the safe side), or under
            # a limit that has changed since.
            del self._held[bucket]
            return None
        lease.left -= cost
        return lease.previous, lease.current - lease.left

    @contextmanager
    def asking(self, bucket: str) -> Iterator[None]:
        """Around a question to the store about ``bucket`` that may bring a lease."""
        with self._changed:
            ask = next(self._asks)
            self._asking.setdefault(bucket, set()).add(ask)
        try:
            yield
        finally:
            with self._changed:
                asks = self._asking[bucket]
                asks.discard(ask)
                if not asks:
                    del self._asking[bucket]
                self._changed.notify_all()

    def take_when_settled(self, bucket: str, window_index: int, cost: int, limit: int) -> tuple[int, int] | None:
        """After a refusal: wait for this process's questions in flight, then try the lease again."""
        with self._changed:
            pending = set(self._asking.get(bucket, ()))
            if pending:
                self._changed.wait_for(
                    lambda: not pending & self._asking.get(bucket, set()), timeout=LEASE_SETTLE_SECONDS
                )
            return self._take(bucket, window_index, cost, limit)

    def add(self, bucket: str, window_index: int, limit: int, units: int, previous: int, current: int) -> int:
        """Keep ``units`` granted ahead; return how many this process now holds for the bucket."""
        with self._changed:
            if len(self._held) > 10_000:
                self._held.clear()  # many partitions at once: leases are an optimisation, not state
            lease = self._held.get(bucket)
            if lease is None or lease.window_index != window_index or lease.limit != limit:
                lease = self._held[bucket] = _Lease(window_index, limit, 0, previous, current)
            lease.left += units
            lease.previous, lease.current = previous, max(lease.current, current)
            return lease.left

    def give_back(self, bucket: str, window_index: int, cost: int) -> bool:
        """Return refunded units to the lease they came from, while it is current."""
        with self._changed:
            lease = self._held.get(bucket)
            if lease is None or lease.window_index != window_index:
                return False
            lease.left += cost
            return True

    def clear(self) -> None:
        with self._changed:
            self._held.clear()


# --- The limiter -----------------------------------------------------------------------------


# What a store that does not answer raises: the limiter then decides in process memory.
_STORE_ERRORS = (redis.RedisError, DatabaseError, OSError)


@dataclass
class Limiter:
    """Decisions against the shared store, falling back to process memory while it is unreachable."""

    shared: Store
    local: LocalStore = field(default_factory=LocalStore)
    leases: Leases = field(default_factory=Leases)
    clock: Callable[[], float] = time.time
    _down_until: float = 0.0
    _down: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, policy: Policy, partition: str, *, cost: int = 1) -> Decision:
        """Spend ``cost`` units of ``policy`` for ``partition`` if they fit (atomically)."""
        bucket = _bucket(policy, partition)
        window = Window.at(self.clock(), policy.rate.window_seconds)
        store, local = self._store()
        leasing = policy.leased and not local
        if leasing:
            seen = self.leases.take(bucket, window.index, cost, policy.rate.limit)
            if seen is not None:
                decision = _decide(policy, bucket, window, allowed=True, previous=seen[0], current=seen[1], cost=cost)
                return replace(decision, leased=True)
        try:
            with self.leases.asking(bucket) if leasing else nullcontext():
                granted, previous, current = store.hit(bucket, window, policy.rate, cost, LEASE_MAX_UNITS * leasing)
                if granted > cost:
                    held = self.leases.add(bucket, window.index, policy.rate.limit, granted - cost, previous, current)
                    current -= held  # what this process knows to be spent: its lease is not
        except _STORE_ERRORS as exc:
            self._went_down(exc)
            granted, previous, current = self.local.hit(bucket, window, policy.rate, cost)
            return self._decision(policy, bucket, window, granted > 0, previous, current, cost, True)
        self._answered(local)
        if not granted and leasing:
            seen = self.leases.take_when_settled(bucket, window.index, cost, policy.rate.limit)
            if seen is not None:
                decision = _decide(policy, bucket, window, allowed=True, previous=seen[0], current=seen[1], cost=cost)
                return replace(decision, leased=True)
        return self._decision(policy, bucket, window, granted > 0, previous, current, cost, local)

    def _decision(
        self,
        policy: Policy,
        bucket: str,
        window: Window,
        admitted: bool,
        previous: int,
        current: int,
        cost: int,
        local: bool,
    ) -> Decision:
        decision = _decide(policy, bucket, window, allowed=admitted, previous=previous, current=current, cost=cost)
        if not admitted:
            RATELIMIT_LIMITED.labels(policy.name).inc()
        return decision if not local else _mark_local(decision)

    def peek(self, policy: Policy, partition: str) -> Decision:
        """What a request would be told now, without spending anything."""
        bucket = _bucket(policy, partition)
        window = Window.at(self.clock(), policy.rate.window_seconds)
        store, local = self._store()
        try:
            previous, current = store.counts(bucket, window)
        except _STORE_ERRORS as exc:
            self._went_down(exc)
            store, local = self.local, True
            previous, current = store.counts(bucket, window)
        allowed = _admits(limit=policy.rate.limit, previous=previous, current=current, weight=window.weight, cost=1)
        decision = _decide(policy, bucket, window, allowed=allowed, previous=previous, current=current, cost=1)
        return decision if not local else _mark_local(decision)

    def refund(self, decision: Decision) -> None:
        """Give back what an admitted decision spent (a guess that turned out right)."""
        if not decision.allowed or not decision.bucket:
            return
        if decision.leased and self.leases.give_back(decision.bucket, decision.window_index, decision.cost):
            return
        store: Store = self.local if decision.local else self.shared
        try:
            store.refund(decision.bucket, decision.window_index, decision.cost)
        except _STORE_ERRORS as exc:
            self._went_down(exc)

    def clear(self, *, shared: bool = True) -> None:
        """Forget every count and any outage (tests and benchmarks only)."""
        self.local.clear()
        self.leases.clear()
        with self._lock:
            self._down, self._down_until = False, 0.0
        if shared:
            self.shared.clear()

    def _store(self) -> tuple[Store, bool]:
        if self._down and self.clock() < self._down_until:
            return self.local, True
        return self.shared, False

    def _went_down(self, exc: BaseException) -> None:
        with self._lock:
            self._down_until = self.clock() + STORE_RETRY_SECONDS
            if self._down:
                return
            self._down = True
        RATELIMIT_FALLBACK.set(1)
        # Once per outage, not per request: the gauge says it for as long as it lasts.
        log.warning(
            "rate limits: the shared store does not answer (%s); each process limits on its own until it does",
            type(exc).__name__,
            extra={"store": type(self.shared).__name__},
        )

    def _answered(self, was_local: bool) -> None:
        if was_local or not self._down:
            return
        with self._lock:
            # An answer to a question asked before the outage was noticed proves nothing: only a
            # question asked after the retry delay (a probe) ends the outage.
            if not self._down or self.clock() < self._down_until:
                return
            self._down = False
        RATELIMIT_FALLBACK.set(0)
        log.warning("rate limits: the shared store answers again", extra={"store": type(self.shared).__name__})


def _mark_local(decision: Decision) -> Decision:
    return replace(decision, local=True)


def _bucket(policy: Policy, partition: str) -> str:
    # Hashing keeps odd or long identities (user names, client ids) out of the store's key syntax.
    digest = hashlib.sha256(partition.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{policy.name}:{policy.rate.window_seconds}:{digest}"


_limiters: dict[str, Limiter] = {}
_limiters_lock = threading.Lock()


def store_url() -> str:
    return str(getattr(settings, "RATELIMIT_REDIS_URL", "") or "")


def limiter() -> Limiter:
    """The process's limiter for the configured store (built on first use, then reused)."""
    url = store_url()
    found = _limiters.get(url)
    if found is not None:
        return found
    with _limiters_lock:
        if url not in _limiters:
            _limiters[url] = Limiter(shared=RedisStore(url) if url else DatabaseStore())
        return _limiters[url]


# --- Decisions taken for a request ------------------------------------------------------------

_ATTRIBUTE = "ratelimit_decisions"


def decision_attach(request: HttpRequest, decision: Decision) -> None:
    """Remember a decision taken for this request, for its answer's ``RateLimit`` fields."""
    decisions: list[Decision] = request.__dict__.setdefault(_ATTRIBUTE, [])
    decisions.append(decision)


def decisions_of(request: HttpRequest) -> list[Decision]:
    return list(request.__dict__.get(_ATTRIBUTE, []))
