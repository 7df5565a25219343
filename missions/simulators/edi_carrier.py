"""A simulated human-driven carrier that speaks EDI X12 through a drop-folder pair.

It reads what the console writes to the carrier's folder (``outbound/``: 204
load tenders, 997s) and writes its answers where the console picks them up
(``inbound/``): a 997 for every 204 group, a 990 accepting the tender, then a
214 per step of the trip (arrived at pick-up, departed, en route, arrived at
delivery, unloaded), ``step_seconds`` apart. A 204 cancellation (B2A 01) is
acknowledged and stops the trip. Uses only the X12 core (no console internals).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from missions.edi import transactions as tx
from missions.edi.x12 import (
    FunctionalGroup,
    Interchange,
    Segment,
    TransactionSet,
    X12Error,
    interchange_read,
    interchange_write,
)

log = logging.getLogger(__name__)

# The trip the simulated driver reports: AT701 status codes with their AT702 reason (normal status).
TRIP = ("X3", "AF", "X6", "X1", "D1")


@dataclass
class _Trip:
    shipment_id: str
    region: str
    due: list[tuple[float, str]] = field(default_factory=list)


@dataclass
class EdiCarrierSimulator:
    """One simulated EDI carrier; ``tick()`` does one round of work (``start()`` runs it in a thread)."""

    reads_from: Path  # the console's outbound folder for this carrier
    writes_to: Path  # the console's inbound folder for this carrier
    qualifier: str = "ZZ"
    interchange_id: str = "REDRIVER"
    scac: str = "RRFL"
    console_qualifier: str = "ZZ"
    console_id: str = "TMSCONSOLE"
    version: str = "004010"
    step_seconds: float = 5.0
    decline: bool = False
    trips: dict[str, _Trip] = field(default_factory=dict)
    received: list[str] = field(default_factory=list)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(int(time.time()) % 800_000_000 + 1))
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def tick(self, now: float | None = None) -> int:
        """Read new files, answer them, and send the 214s that are due; returns how many files it wrote."""
        now = time.monotonic() if now is None else now
        written = 0
        if self.reads_from.is_dir():
            for path in sorted(p for p in self.reads_from.iterdir() if p.is_file() and not p.name.startswith(".")):
                written += self._read(path, now)
                done = self.reads_from / "read-by-carrier"
                done.mkdir(exist_ok=True)
                path.replace(done / path.name)
        for trip in list(self.trips.values()):
            while trip.due and trip.due[0][0] <= now:
                _, code = trip.due.pop(0)
                report = tx.StatusReport(code, "NS", datetime.now(UTC), "", trip.region)
                body = tx.shipment_status_segments(
                    tx.ShipmentStatus(f"RR-{trip.shipment_id}", trip.shipment_id, self.scac, (report,))
                )
                self._write([("214", body)], "QM")
                written += 1
            if not trip.due:
                self.trips.pop(trip.shipment_id, None)
        return written

    def _read(self, path: Path, now: float) -> int:
        try:
            interchange = interchange_read(path.read_text(encoding="utf-8"))
        except (OSError, X12Error) as exc:
            log.warning("simulated EDI carrier could not read %s: %s", path.name, exc)
            return 0
        written = 0
        for group in interchange.groups:
            self.received.extend(t.id_code for t in group.transactions)
            if group.functional_id == "FA":
                continue  # a 997 is never acknowledged
            ack = tx.group_ack(group, interchange_errors=bool(interchange.errors))
            self._write([("997", tx.ack_segments(ack))], "FA")
            written += 1
            for transaction in group.transactions:
                if transaction.id_code != "204" or not transaction.accepted:
                    continue
                tender = tx.load_tender_read(transaction)
                if tender.purpose == tx.PURPOSE_CANCEL:
                    self.trips.pop(tender.shipment_id, None)
                    continue
                self._write([("990", tx.tender_response_segments(self._answer(tender)))], "GF")
                written += 1
                if not self.decline:
                    region = tender.stops[-1].region if tender.stops else ""
                    due = [(now + self.step_seconds * (n + 1), code) for n, code in enumerate(TRIP)]
                    self.trips[tender.shipment_id] = _Trip(tender.shipment_id, region, due)
        return written

    def _answer(self, tender: tx.LoadTender) -> tx.TenderResponse:
        today = datetime.now(UTC).strftime("%Y%m%d")
        if self.decline:
            return tx.TenderResponse(self.scac, tender.shipment_id, today, tx.DECLINE, reason="NO DRIVER AVAILABLE")
        return tx.TenderResponse(self.scac, tender.shipment_id, today, tx.ACCEPT, f"RR-{tender.shipment_id}")

    def _write(self, sets: list[tuple[str, list[Segment]]], functional_id: str) -> None:
        now = datetime.now(UTC)
        isa13 = next(self._numbers)
        group = FunctionalGroup(
            functional_id, self.interchange_id, self.console_id, now.strftime("%Y%m%d"), now.strftime("%H%M"),
            str(isa13), version=self.version,
            transactions=[TransactionSet(code, f"{n:04d}", body) for n, (code, body) in enumerate(sets, start=1)],
        )  # fmt: skip
        interchange = Interchange(
            self.qualifier, self.interchange_id, self.console_qualifier, self.console_id,
            now.strftime("%y%m%d"), now.strftime("%H%M"), f"{isa13:09d}",
            version="00501" if self.version == "005010" else "00401", groups=[group],
        )  # fmt: skip
        self.writes_to.mkdir(parents=True, exist_ok=True)
        name = f"{sets[0][0]}-{isa13:09d}.x12"
        part = self.writes_to / f".{name}.part"
        part.write_text(interchange_write(interchange, line_breaks=True), encoding="utf-8")
        part.replace(self.writes_to / name)

    def start(self, interval: float = 0.5) -> EdiCarrierSimulator:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.tick()
                except Exception:  # keep simulating; the next tick tries again
                    log.exception("simulated EDI carrier tick failed")

        self._thread = threading.Thread(target=loop, name="edi-carrier-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
