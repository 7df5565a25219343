"""How many telemetry batches one server process works on at once.

A telemetry batch is bulk work: parsing, validating and storing a hundred
events or more holds the interpreter for milliseconds at a time. The partner
server that takes the batches also answers the control plane (tenders, offers,
mission updates), and a control-plane request that has to win the interpreter
lock from a dozen batch threads, at every statement it sends, waits for all of
them. So a process works on at most ``TELEMETRY_BATCH_CONCURRENCY`` batches at
once, and the others wait for their turn without using the CPU; the machine is
no less busy, but a tender read competes with two batches, not with every
thread of the server (docs/decisions/0034-batch-turns.md; README, Performance).

An NDJSON backfill takes a turn for each chunk of its upload, waiting as long
as it must (a 503 would cut an upload in the middle). Other waits are bounded
both ways. A batch that finds ``TELEMETRY_BATCH_WAITING_MAX`` others already
waiting, or that waits ``TELEMETRY_BATCH_WAIT_SECONDS`` without its turn, is
refused with ``IngestBusy`` (the API answers 503 ``ingest-busy`` with
``Retry-After``): a flood of batches cannot hold every thread of the server and
starve the control plane, and the sender learns to slow down. Nothing of a
refused batch was read or stored, so it is retried as it is, with the same
Idempotency-Key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

RETRY_AFTER_SECONDS = 1


class IngestBusy(Exception):
    """The process has no turn for another batch now; retry after ``retry_after`` seconds."""

    def __init__(self, detail: str, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class BatchAdmission:
    """At most ``concurrency`` batches at once (0: no limit); at most ``waiting_max`` waiting, each ``wait_seconds``."""

    def __init__(self, concurrency: int, waiting_max: int, wait_seconds: float) -> None:
        self.concurrency = concurrency
        self.waiting_max = waiting_max
        self.wait_seconds = wait_seconds
        self._free = threading.Condition()
        self._working = 0
        self._waiting = 0

    @property
    def shape(self) -> tuple[int, int, float]:
        return (self.concurrency, self.waiting_max, self.wait_seconds)

    @property
    def working(self) -> int:
        return self._working

    @property
    def waiting(self) -> int:
        return self._waiting

    @contextmanager
    def turn(self, *, patient: bool = False) -> Iterator[None]:
        """Hold one of the process's turns for the block; raise ``IngestBusy`` when none comes.

        ``patient``: wait as long as it takes, outside the waiting room (an NDJSON backfill between two
        chunks of an upload already under way, which a 503 would cut in the middle).
        """
        if self.concurrency <= 0:
            yield
            return
        with self._free:
            if patient:
                while self._working >= self.concurrency:
                    self._free.wait()
            elif self._working >= self.concurrency:
                if self._waiting >= self.waiting_max:
                    raise IngestBusy(
                        f"This server is working on {self._working} telemetry batches with {self._waiting} more "
                        "waiting; nothing of this batch was stored. Retry it after Retry-After seconds."
                    )
                self._waiting += 1
                try:
                    deadline = time.monotonic() + self.wait_seconds
                    while self._working >= self.concurrency:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise IngestBusy(
                                f"This batch waited {self.wait_seconds:g} s for its turn on this server; nothing "
                                "of it was stored. Retry it after Retry-After seconds."
                            )
                        self._free.wait(left)
                finally:
                    self._waiting -= 1
            self._working += 1
        try:
            yield
        finally:
            with self._free:
                self._working -= 1
                self._free.notify()  # one turn freed, one waiter woken (it checks for itself)


_admission: BatchAdmission | None = None
_admission_lock = threading.Lock()


def batch_admission() -> BatchAdmission:
    """This process's admission, as the settings say (built anew when they change: tests override them)."""
    global _admission
    shape = (
        int(settings.TELEMETRY_BATCH_CONCURRENCY),
        int(settings.TELEMETRY_BATCH_WAITING_MAX),
        float(settings.TELEMETRY_BATCH_WAIT_SECONDS),
    )
    current = _admission
    if current is not None and current.shape == shape:
        return current
    with _admission_lock:
        if _admission is None or _admission.shape != shape:
            _admission = BatchAdmission(*shape)
        return _admission
