"""A simulated clock for the whole product in this process (``time_machine``).

While the clock runs, ``timezone.now()``, ``datetime.now()`` and ``time.time()`` answer the
simulated instant everywhere in the process (services, tasks run eagerly, the SLA engine), and
time stands still between two moves (``tick=False``): everything done at one simulated instant
sees exactly that instant, so the fleet's record and the product's timestamps agree to the
microsecond. ``time.monotonic()`` is left alone, so deadlines measured on it (rollup catch-up
budgets) still count real time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import time_machine


class SimClock:
    """The simulated now; only moves forward, and only when ``advance_to`` is called."""

    def __init__(self, traveller: time_machine.Traveller, start: datetime) -> None:
        self._traveller = traveller
        self._now = start

    @property
    def now(self) -> datetime:
        return self._now

    def advance_to(self, instant: datetime) -> None:
        if instant < self._now:
            raise ValueError(f"The simulated clock cannot go back ({instant} < {self._now}).")
        if instant != self._now:
            self._traveller.move_to(instant)
            self._now = instant


@contextmanager
def sim_clock(start: datetime) -> Iterator[SimClock]:
    """Freeze the process's time at ``start`` (UTC) and hand out the clock that moves it."""
    start = start.astimezone(UTC)
    with time_machine.travel(start, tick=False) as traveller:
        yield SimClock(traveller, start)
