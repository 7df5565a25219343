"""Group commit: one transaction for the telemetry of many concurrent small requests.

A fleet posting one signed event per truck per second means hundreds of
requests a second, each too small to pay for its own transaction. Request
threads hand their events to this process's writer thread and wait; the
writer takes everything that queued up while the previous transaction was
committing (up to the batch limit), runs it through ``ingest_events`` as one
batch per carrier, and gives each request its own part of the outcome. A
request is answered only after its events are committed, so an
acknowledged event is never lost; at low load a batch holds one request and
nothing waits longer than before.

Events that may change domain state beyond the telemetry tables (a safety
event, an autonomy mode other than the mission's) are not grouped: the
caller ingests them itself, inside its ``carrier_signed`` block, so the
attestations they cause name the delivery that caused them.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from django.db import connection

from missions.telemetry.ingest import IngestResult, MissionCache, ingest_events, telemetry_batch_max
from tms_console import tracing

log = logging.getLogger(__name__)

WAIT_SECONDS = 10.0


class GroupCommitUnavailable(Exception):
    """The writer did not answer in time or its transaction failed; the caller ingests by itself."""


@dataclass
class _Request:
    carrier: Any  # missions.models.Carrier
    events: list[Any]
    vehicle_cert: str = ""  # the SVID fingerprint the transport verified (missions.identity)
    done: threading.Event = field(default_factory=threading.Event)
    result: IngestResult | None = None  # stays None when the grouped write failed


class GroupCommit:
    """One writer thread per process that commits the queued requests' events together."""

    def __init__(self, cache: MissionCache, source: str = "webhook") -> None:
        self.cache = cache
        self.source = source
        self._queue: list[_Request] = []
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def ingest(self, *, carrier: Any, events: list[Any], vehicle_cert: str = "") -> IngestResult:
        """Store ``events`` with whatever else is queued; return this request's outcome once committed."""
        request = _Request(carrier=carrier, events=events, vehicle_cert=vehicle_cert)
        with self._ready:
            # Started on first use in this process: a writer started before a server forks its
            # workers (gunicorn --preload) would not exist in them.
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._queue = [request]
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="telemetry-group-commit", daemon=True)
                self._thread.start()
            else:
                self._queue.append(request)
            self._ready.notify()
        if not request.done.wait(WAIT_SECONDS) or request.result is None:
            raise GroupCommitUnavailable("the grouped write did not complete")
        return request.result

    def groupable(self, events: list[Any], *, carrier_id: int) -> bool:
        """True when none of the events can do more than add telemetry (see the module docstring).

        A mission not yet in the cache is loaded here (once per process, on the caller's connection).
        """
        for event in events:
            if not isinstance(event, dict) or event.get("safety_event") is not None:
                return False
            mode = event.get("autonomy_mode")
            if mode is not None:
                mission_id = event.get("mission_id")
                if isinstance(mission_id, bool) or not isinstance(mission_id, int):
                    return False
                info = self.cache.peek(mission_id)
                if info is None:
                    info = self.cache.get_many([mission_id], carrier_id).get(mission_id)
                if info is None or info.autonomy_mode != mode:
                    return False
        return True

    def _take(self) -> list[_Request]:
        limit = telemetry_batch_max()
        with self._ready:
            while not self._queue:
                self._ready.wait()
            taken: list[_Request] = []
            count = 0
            while self._queue and (not taken or count + len(self._queue[0].events) <= limit):
                request = self._queue.pop(0)
                taken.append(request)
                count += len(request.events)
            return taken

    def _run(self) -> None:
        with tracing.untraced():  # it writes for many requests at once: its calls are no request's
            self._serve()

    def _serve(self) -> None:
        while True:
            batch = self._take()
            try:
                self._write(batch)
            except Exception:
                # Requests of a carrier whose transaction committed keep their answer; the rest write themselves.
                log.exception("grouped telemetry write failed")
                connection.close()
            finally:
                if connection.errors_occurred:
                    connection.close()
                for request in batch:
                    request.done.set()

    def _write(self, batch: list[_Request]) -> None:
        by_carrier: dict[int, list[_Request]] = {}
        for request in batch:
            by_carrier.setdefault(request.carrier.pk, []).append(request)
        for requests in by_carrier.values():
            events: list[Any] = []
            certs: list[str] = []  # each event's vehicle certificate: the requests may come from several vehicles
            spans = []
            for request in requests:
                spans.append((request, len(events), len(events) + len(request.events)))
                events.extend(request.events)
                certs.extend([request.vehicle_cert] * len(request.events))
            result = ingest_events(
                carrier=requests[0].carrier,
                events=events,
                source=self.source,
                cache=self.cache,
                vehicle_cert=certs if any(certs) else "",
            )
            for request, start, stop in spans:
                request.result = result.part(start, stop)
