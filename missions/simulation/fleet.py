"""The simulated fleet: trucks booking, driving and finishing missions through the product.

Every step happens on the sample grid (one sample per truck every ``gap_seconds / 3``): a truck
books its next load (the dispatcher's shipment and tender, the carrier's acceptance), sets off,
sends its samples (batched per carrier, as a carrier's gateway would), suffers its mission's fault,
and arrives. What a carrier does goes through the run's transport (``transport.py``: the services
in this process, or the partner API over HTTP). The simulated on-call does what only a person does
(resolve an incident, resume a paused fleet, clear an emergency stop) at its own scheduled instants.
Everything the fleet does is written to its ``Record`` with the simulated instant.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from missions.choices import ExceptionKind, MissionStatus, OfferKind, TenderStatus
from missions.events import Actor
from missions.models import Carrier, Mission, Tender
from missions.services import (
    carrier_fleet_resume,
    mission_transition,
    shipment_create,
    tender_create,
)
from missions.simulation import profile as p
from missions.simulation.carrier_api import CarrierApi
from missions.simulation.record import IncidentRecord, MissionRecord, Record
from missions.simulation.transport import Transport
from missions.simulation.world import DESTINATION, ORIGIN, Truck, World
from missions.tendering.dispatch import shipment_cancel, tender_publish
from runbooks.choices import IncidentStatus
from runbooks.models import Incident
from runbooks.services import incident_transition
from tms_console.domain import DomainError

ONCALL_SYSTEM = Actor.system("program-simulator")
EVENT_IDS = uuid.UUID("6f1c2a4e-5b0d-4c8e-9a3f-2d7e8b1c0a55")


@dataclass
class Drive:
    """A truck's current mission as the fleet plans it."""

    record: MissionRecord
    vehicle: str | None
    planned_end: datetime
    fault_at: datetime | None
    silent_from: datetime | None = None
    silent_until: datetime | None = None  # None with silent_from set: silent for good
    stopped_until: datetime | None = None
    mode: str = ""
    last_event: dict[str, Any] | None = None


@dataclass
class Booking:
    """A load tendered to the push carrier, waiting for the carrier to find it in its books and answer."""

    shipment_id: int
    tender_id: int
    fault: str
    minutes: int
    window_end: datetime


@dataclass
class TruckState:
    truck: Truck
    free_at: datetime
    drive: Drive | None = None
    booking: Booking | None = None


@dataclass(order=True)
class OncallTask:
    due: datetime
    seq: int
    what: str = field(compare=False)
    incident: IncidentRecord | None = field(compare=False, default=None)
    carrier: str = field(compare=False, default="")
    drive: Drive | None = field(compare=False, default=None)


class Fleet:
    def __init__(
        self,
        *,
        world: World,
        profile: p.Profile,
        record: Record,
        rng: random.Random,
        transport: Transport,
        api: CarrierApi | None = None,
    ) -> None:
        self.world, self.profile, self.record, self.rng = world, profile, record, rng
        self.transport = transport
        self.api = api
        self.carriers: dict[str, Carrier] = {**world.carriers, world.fallback.slug: world.fallback}
        self.trucks = [TruckState(truck=t, free_at=record.start) for t in world.trucks]
        self.fallback_drives: dict[int, Drive] = {}
        self.fallback_free = list(world.fallback_trucks)
        self.forced = list(profile.forced)
        self.oncall: list[OncallTask] = []
        self._seq = 0
        self._events = 0
        self.step_delta = timedelta(seconds=profile.sample_seconds)

    # --- helpers --------------------------------------------------------------------------

    def _grid(self, t: datetime) -> datetime:
        """The first sample instant at or after ``t``."""
        steps = math.ceil((t - self.record.start) / self.step_delta)
        return self.record.start + steps * self.step_delta

    def _refused(self, what: str, exc: Exception) -> None:
        self.record.refusals.append(f"{what}: {exc}")

    def _schedule(self, due: datetime, what: str, **kwargs: Any) -> None:
        self._seq += 1
        self.oncall.append(OncallTask(due=due, seq=self._seq, what=what, **kwargs))
        self.oncall.sort()

    def _next_event(self) -> int:
        self._events += 1
        return self._events

    def _pick_fault(self) -> str:
        if self.forced:
            return self.forced.pop(0)
        for kind in p.FAULT_KINDS:
            if self.rng.random() < self.profile.fault_rates.get(kind, 0.0):
                return kind
        return ""

    # --- the step ---------------------------------------------------------------------------

    def step(self, now: datetime) -> None:
        """One sample instant: finish, fault, book, then send every carrier's batch."""
        batches: dict[str, list[dict[str, Any]]] = {}
        for state in self.trucks:
            if state.drive is None and now >= state.free_at:
                self._book(state, now)
            if state.drive is not None:
                self._drive(state, now, batches)
        for drive in list(self.fallback_drives.values()):
            self._drive_fallback(drive, now, batches)
        for slug, events in batches.items():
            self.record.refusals.extend(self.transport.send(self.carriers[slug], events, now))

    def _book(self, state: TruckState, now: datetime) -> None:
        truck = state.truck
        carrier = self.carriers[truck.carrier_slug]
        push = self.api is not None and truck.carrier_slug == self.api.slug
        if state.booking is not None:
            self._answer(state, now)
            return
        if Carrier.objects.filter(pk=carrier.pk, fleet_paused=True).exists():
            return  # the fleet waits for on-call to resume it
        if push and not self.api.circuit_closed():  # type: ignore[union-attr]
            return  # the dispatcher sees the carrier's circuit open: tendering to it waits
        fault = self._pick_fault()
        lo, hi = self.profile.mission_minutes
        minutes = self.rng.randint(lo, hi)
        window_end = now + timedelta(minutes=minutes + self.profile.window_slack_minutes)
        if fault == p.LATE:
            minutes += self.profile.window_slack_minutes + self.rng.randint(*self.profile.late_extra_minutes)
        try:
            shipment = shipment_create(
                actor=ONCALL_SYSTEM,
                origin_address=ORIGIN[0], origin_region=ORIGIN[1], origin_lat=ORIGIN[2], origin_lon=ORIGIN[3],
                destination_address=DESTINATION[0], destination_region=DESTINATION[1],
                destination_lat=DESTINATION[2], destination_lon=DESTINATION[3],
                pickup_window_start=now, pickup_window_end=now + timedelta(hours=1),
                delivery_window_start=now, delivery_window_end=window_end, weight_kg=18000,
            )  # fmt: skip
            tender = tender_create(actor=ONCALL_SYSTEM, shipment_id=shipment.pk, carrier_id=carrier.pk)
            if push:
                # The console sends it to the carrier's API; the carrier answers what reached it at its next step.
                tender_publish(tender_id=tender.pk)
                state.booking = Booking(shipment.pk, tender.pk, fault, minutes, window_end)
                return
            self.transport.offer(carrier, tender.pk, kind=OfferKind.ACCEPT, vehicle=truck.external_id, now=now)
            mission = Mission.objects.get(tender=tender)
            self.transport.mission_status(carrier, mission.pk, MissionStatus.EN_ROUTE, now=now)
        except DomainError as exc:
            self._refused(f"booking for {truck.external_id}", exc)
            state.free_at = now + timedelta(minutes=10)
            return
        self._start(state, mission.pk, fault, minutes, window_end, now)

    def _answer(self, state: TruckState, now: datetime) -> None:
        """The push carrier's dispatcher: accept the tender if it reached the carrier's books; otherwise the
        console's dispatcher, once the tender failed, cancels the load and books another when it can."""
        booking, truck = state.booking, state.truck
        assert booking is not None and self.api is not None
        carrier = self.carriers[truck.carrier_slug]
        if self.api.holds(booking.tender_id):
            state.booking = None
            try:
                self.transport.offer(
                    carrier, booking.tender_id, kind=OfferKind.ACCEPT, vehicle=truck.external_id, now=now
                )
                mission = Mission.objects.get(tender_id=booking.tender_id)
                self.transport.mission_status(carrier, mission.pk, MissionStatus.EN_ROUTE, now=now)
            except DomainError as exc:
                self._refused(f"answering tender {booking.tender_id} for {truck.external_id}", exc)
                state.free_at = now + timedelta(minutes=10)
                return
            self._start(state, mission.pk, booking.fault, booking.minutes, booking.window_end, now)
            return
        status = Tender.objects.filter(pk=booking.tender_id).values_list("status", flat=True).first()
        if status == TenderStatus.PENDING:
            return  # not sent yet
        state.booking = None
        self.record.api_rebooked += 1
        if booking.fault:
            self.forced.insert(0, booking.fault)  # the fault drawn for this load goes to the next one
        try:
            shipment_cancel(
                shipment_id=booking.shipment_id, actor=ONCALL_SYSTEM,
                reason=f"tender {booking.tender_id} never reached {carrier.name} (API failing); load rebooked",
            )  # fmt: skip
        except DomainError as exc:
            self._refused(f"cancelling the load of tender {booking.tender_id}", exc)

    def _start(
        self, state: TruckState, mission_id: int, fault: str, minutes: int, window_end: datetime, now: datetime
    ) -> None:
        """The truck sets off on its accepted load."""
        truck = state.truck
        planned_end = self._grid(now + timedelta(minutes=minutes))
        fault_at = self._grid(now + timedelta(minutes=minutes * 0.4)) if fault else None
        record = MissionRecord(
            mission_id=mission_id, carrier=truck.carrier_slug, truck=truck.external_id, fault=fault,
            delivery_window_end=window_end, started_at=now,
        )  # fmt: skip
        self.record.missions[mission_id] = record
        state.drive = Drive(record=record, vehicle=truck.external_id, planned_end=planned_end, fault_at=fault_at)

    def _event(self, drive: Drive, now: datetime) -> dict[str, Any]:
        rec = drive.record
        total = max((drive.planned_end - rec.started_at).total_seconds(), 1.0)
        f = min(max((now - rec.started_at).total_seconds() / total, 0.0), 1.0)
        lat = ORIGIN[2] + (DESTINATION[2] - ORIGIN[2]) * f
        lon = ORIGIN[3] + (DESTINATION[3] - ORIGIN[3]) * f
        stopped = drive.stopped_until is not None and now < drive.stopped_until
        event: dict[str, Any] = {
            # Unique per run (the prefix), the same for the same run: runs can share a database.
            "event_id": str(uuid.uuid5(EVENT_IDS, f"{self.world.prefix}:{self._next_event()}")),
            "mission_id": rec.mission_id,
            "vehicle_id": drive.vehicle,
            "ts": now.isoformat().replace("+00:00", "Z"),
            "position": {"lat": round(lat, 5), "lon": round(lon, 5), "speed_kph": 0.0 if stopped else 88.0},
        }
        if drive.mode:
            event["autonomy_mode"] = drive.mode
        return event

    def _drive(self, state: TruckState, now: datetime, batches: dict[str, list[dict[str, Any]]]) -> None:
        drive = state.drive
        assert drive is not None
        rec = drive.record
        if rec.outcome:  # handed over by the product's failover: the truck is out of this load
            return
        if drive.fault_at is not None and now >= drive.fault_at:
            drive.fault_at = None
            if self._fault(state, drive, now, batches):
                return
        silent = drive.silent_from is not None and now >= drive.silent_from
        if silent and drive.silent_until is not None and now >= drive.silent_until:
            drive.silent_from = drive.silent_until = None
            silent = False
        if silent and drive.silent_until is None:
            return  # silent for good: the product's failover takes the load (``watch_failovers``)
        if now >= drive.planned_end and not (drive.stopped_until and now < drive.stopped_until):
            self._finish(state, drive, now)
            return
        if silent:
            return
        event = self._event(drive, now)
        batch = batches.setdefault(rec.carrier, [])
        if rec.fault == p.DUPLICATES and drive.last_event is not None:
            batch.append(drive.last_event)  # the previous sample again, same event id
            self.record.duplicates_sent += 1
        self._send(drive, event, now, batches)

    def _finish(self, state: TruckState, drive: Drive, now: datetime) -> None:
        rec = drive.record
        carrier = self.carriers[rec.carrier]
        try:
            self.transport.mission_status(carrier, rec.mission_id, MissionStatus.ARRIVING, now=now)
            self.transport.mission_status(carrier, rec.mission_id, MissionStatus.COMPLETED, now=now)
        except DomainError as exc:
            self._refused(f"completing mission {rec.mission_id}", exc)
            return
        rec.completed_at, rec.outcome = now, "completed"
        state.drive = None
        state.free_at = now + timedelta(minutes=self.rng.randint(*self.profile.turnaround_minutes))

    def _incident(self, kind: str, rec: MissionRecord, now: datetime, **kwargs: Any) -> IncidentRecord:
        incident = IncidentRecord(
            kind=kind, carrier=rec.carrier, mission_id=rec.mission_id, caused_at=now,
            trigger_earliest=kwargs.pop("trigger_earliest", now), trigger_latest=kwargs.pop("trigger_latest", now),
            **kwargs,
        )  # fmt: skip
        self.record.incidents.append(incident)
        return incident

    def _fault(self, state: TruckState, drive: Drive, now: datetime, batches: dict[str, list[dict[str, Any]]]) -> bool:
        """Apply the mission's fault at its instant; True when the truck is done with this step."""
        rec, g = drive.record, self.record.gap_seconds
        oncall = timedelta(minutes=self.profile.oncall_minutes)
        carrier = self.carriers[rec.carrier]
        if rec.fault == p.FAILURE:
            try:
                self.transport.mission_status(
                    carrier, rec.mission_id, MissionStatus.FAILED, now=now, reason="tractor breakdown"
                )
            except DomainError as exc:
                self._refused(f"failing mission {rec.mission_id}", exc)
                return False
            rec.completed_at, rec.outcome = now, "failed"
            state.drive = None
            state.free_at = now + timedelta(hours=2)
            return True
        if rec.fault == p.DEGRADATION:
            drive.mode = "supervised"
            rec.human_intervened = True
            incident = self._incident("degraded_autonomy", rec, now, resolved_by="oncall")
            self._schedule(now + oncall, "resolve", incident=incident, carrier=rec.carrier)
        elif rec.fault == p.SHORT_GAP:
            drive.silent_from, drive.silent_until = now, now + self.step_delta  # one sample not sent
        elif rec.fault in (p.LOST_COMMS_RECOVERED, p.LOST_COMMS_FAILOVER):
            last = rec.samples[-1] if rec.samples else rec.started_at
            due = last + timedelta(seconds=g)
            check = timedelta(seconds=self.profile.gap_check_seconds)
            drive.silent_from = now
            kwargs: dict[str, Any] = {"trigger_earliest": due, "trigger_latest": due + check}
            if rec.fault == p.LOST_COMMS_RECOVERED:
                drive.silent_until = self._grid(due + check + self.step_delta)
                self._incident("lost_comms", rec, last, resolved_by="recovery", comms_back_at=drive.silent_until,
                               **kwargs)  # fmt: skip
                self._schedule(drive.silent_until + oncall, "resume_fleet", carrier=rec.carrier)
            else:
                self._incident("lost_comms", rec, last, resolved_by="oncall", fails_over=True, **kwargs)
            return False
        elif rec.fault == p.EMERGENCY_STOP:
            stop = timedelta(minutes=self.profile.emergency_stop_minutes)
            drive.stopped_until = self._grid(now + stop)
            drive.planned_end = self._grid(drive.planned_end + stop)
            event = self._event(drive, now)
            event["safety_event"] = "emergency_stop"
            incident = self._incident("emergency_stop", rec, now, resolved_by="oncall")
            self._schedule(drive.stopped_until, "clear_stop", incident=incident, carrier=rec.carrier, drive=drive)
            self._send(drive, event, now, batches)
            return True
        elif rec.fault == p.OTA_FAILURE:
            try:
                self.transport.mission_exception(
                    carrier, rec.mission_id, kind=ExceptionKind.OTA_FAILURE, now=now,
                    detail="OTA deployment av-stack/4.3.0 failed to activate; vehicle on 4.2.1",
                )  # fmt: skip
            except DomainError as exc:
                self._refused(f"OTA exception on mission {rec.mission_id}", exc)
                return False
            incident = self._incident("ota_failure", rec, now, resolved_by="oncall")
            self._schedule(now + oncall, "resolve", incident=incident, carrier=rec.carrier)
        return False

    # --- failover: the product hands the load to the fallback carrier -----------------------------

    def watch_failovers(self, now: datetime) -> None:
        """After the runbook's tick: pick up loads the product failed over, and drive the fallback mission."""
        for state in self.trucks:
            drive = state.drive
            if drive is None or drive.record.fault != p.LOST_COMMS_FAILOVER or drive.record.outcome:
                continue
            rec = drive.record
            handed = Mission.objects.filter(pk=rec.mission_id, status=MissionStatus.HANDED_OVER).first()
            if handed is None:
                continue
            incident = next(i for i in self.record.incidents if i.mission_id == rec.mission_id and i.fails_over)
            rec.outcome, rec.completed_at = "handed_over", handed.completed_at
            incident.failover_at = handed.completed_at
            replacement = Mission.objects.filter(replaces_id=rec.mission_id).first()
            if replacement is not None:
                fallback = MissionRecord(
                    mission_id=replacement.pk, carrier=self.world.fallback.slug, truck="(fallback driver)",
                    fault="", delivery_window_end=rec.delivery_window_end, started_at=now, replaces=rec.mission_id,
                )  # fmt: skip
                start = self._grid(now + timedelta(minutes=30))
                remaining = max(drive.planned_end - now, timedelta(minutes=60)) + timedelta(minutes=60)
                self.fallback_drives[replacement.pk] = Drive(
                    record=fallback, vehicle=None, planned_end=self._grid(start + remaining), fault_at=start
                )
            self._schedule(now + timedelta(minutes=self.profile.oncall_minutes), "resolve", incident=incident,
                           carrier=rec.carrier)  # fmt: skip
            state.drive = None
            state.free_at = now + timedelta(hours=3)  # the truck is recovered and serviced

    def _drive_fallback(self, drive: Drive, now: datetime, batches: dict[str, list[dict[str, Any]]]) -> None:
        """The human-driven fallback mission: the carrier names a free tractor at pickup, the tractor's
        ELD reports on the sample grid until delivery (no faults), then the load is delivered."""
        rec = drive.record
        fallback = self.world.fallback
        try:
            if drive.fault_at is not None and now >= drive.fault_at:  # here: the pickup instant
                drive.fault_at = None
                if self.fallback_free:
                    drive.vehicle = self.fallback_free.pop(0)  # back to the pool if the product refuses it
                    self.transport.mission_vehicle(fallback, rec.mission_id, vehicle=drive.vehicle, now=now)
                    rec.truck = drive.vehicle
                self.transport.mission_status(fallback, rec.mission_id, MissionStatus.EN_ROUTE, now=now)
                rec.started_at = now
                self.record.missions[rec.mission_id] = rec
            elif drive.fault_at is None and now >= drive.planned_end:
                self.transport.mission_status(fallback, rec.mission_id, MissionStatus.ARRIVING, now=now)
                self.transport.mission_status(fallback, rec.mission_id, MissionStatus.COMPLETED, now=now)
                rec.completed_at, rec.outcome = now, "completed"
                self._fallback_done(drive)
                return
        except DomainError as exc:
            self._refused(f"fallback mission {rec.mission_id}", exc)
            self._fallback_done(drive)
            return
        if drive.fault_at is None and drive.vehicle is not None:
            self._send(drive, self._event(drive, now), now, batches)

    def _send(
        self, drive: Drive, event: dict[str, Any], now: datetime, batches: dict[str, list[dict[str, Any]]]
    ) -> None:
        """Put a sample in its carrier's batch of this step and on the record."""
        batches.setdefault(drive.record.carrier, []).append(event)
        drive.last_event = event
        drive.record.samples.append(now)
        self.record.samples_sent += 1

    def _fallback_done(self, drive: Drive) -> None:
        del self.fallback_drives[drive.record.mission_id]
        if drive.vehicle is not None:
            self.fallback_free.append(drive.vehicle)

    def next_runbook_tick(self, now: datetime) -> datetime:
        """When the runbook tick runs next: every ``runbook_tick_seconds`` (the beat's 2 s) around the
        instants a lost-comms run can move (comms back, the recovery timeout running out), else on the
        sample step. Between those instants a tick finds every run waiting on an unchanged condition."""
        tick = timedelta(seconds=self.profile.runbook_tick_seconds)
        nxt = now + self.step_delta
        for start, end in self._hot_windows():
            if start <= now < end:
                return now + tick
            if now < start < nxt:
                nxt = start
        return nxt

    def _hot_windows(self) -> list[tuple[datetime, datetime]]:
        timeout = timedelta(seconds=self.profile.recovery_timeout_seconds)
        slack = timedelta(seconds=self.profile.runbook_tick_seconds * 3)
        windows = []
        for i in self.record.incidents:
            if i.kind != "lost_comms":
                continue
            if i.comms_back_at is not None:
                windows.append((i.comms_back_at, i.comms_back_at + slack))
            windows.append((i.trigger_earliest + timeout, i.trigger_latest + timeout + slack))
        return windows

    # --- the push carrier's API ---------------------------------------------------------------

    def api_observe(self, now: datetime) -> None:
        """Take the calls of the instant that just ended onto the record; a breaker trip is an incident the
        product must open then (unless the carrier's is still open: it is joined), and on-call's to handle."""
        if self.api is None:
            return
        calls, tripped_at = self.api.observe(now)
        self.record.api_calls.extend(calls)
        if tripped_at is None:
            return
        slug = self.api.slug
        if any(i.kind == "carrier_api_down" and i.carrier == slug and i.resolved_at is None
               for i in self.record.incidents):  # fmt: skip
            return
        incident = IncidentRecord(
            kind="carrier_api_down", carrier=slug, mission_id=None, caused_at=tripped_at,
            trigger_earliest=tripped_at, trigger_latest=tripped_at, resolved_by="oncall",
        )  # fmt: skip
        self.record.incidents.append(incident)
        self._schedule(now + timedelta(minutes=self.profile.oncall_minutes), "api_check", incident=incident,
                       carrier=slug)  # fmt: skip

    # --- the simulated on-call ------------------------------------------------------------------

    def oncall_due(self, now: datetime) -> None:
        while self.oncall and self.oncall[0].due <= now:
            task = self.oncall.pop(0)
            actor = Actor.for_user(self.world.oncall)
            if task.what == "api_check" and task.incident is not None and self.api is not None:
                # Resolved once the carrier answers again (its circuit closed); otherwise looked at later.
                if self.api.circuit_closed():
                    self._resolve(task.incident, now, actor)
                else:
                    self._schedule(now + timedelta(minutes=self.profile.oncall_minutes), "api_check",
                                   incident=task.incident, carrier=task.carrier)  # fmt: skip
                continue
            if task.what == "clear_stop" and task.drive is not None:
                try:
                    mission_transition(
                        mission_id=task.drive.record.mission_id,
                        to_status=MissionStatus.EN_ROUTE,
                        actor=actor,
                        reason="carrier's written clearance after the emergency stop",
                    )
                except DomainError as exc:
                    self._refused(f"clearing emergency stop on {task.drive.record.mission_id}", exc)
            if task.what in ("resolve", "clear_stop") and task.incident is not None:
                self._resolve(task.incident, now, actor)
            if task.what in ("resolve", "clear_stop", "resume_fleet"):
                carrier = self.carriers[task.carrier]
                if Carrier.objects.filter(pk=carrier.pk, fleet_paused=True).exists():
                    carrier_fleet_resume(carrier_id=carrier.pk, actor=actor, confirmation="root cause known; cleared")

    def _resolve(self, incident: IncidentRecord, now: datetime, actor: Actor) -> None:
        found = product_incident(self.record, incident)
        if found is None:
            incident.problems.append("no incident was opened")
            return
        if found.status in (IncidentStatus.RESOLVED, IncidentStatus.CLOSED):
            incident.problems.append(f"already {found.status} before on-call resolved it")
            return
        incident_transition(incident_id=found.pk, to_status=IncidentStatus.RESOLVED, actor=actor,
                            note="handled by the simulated on-call")  # fmt: skip
        incident.resolved_at, incident.incident_id = now, found.pk


def product_incident(record: Record, rec: IncidentRecord) -> Incident | None:
    """The product's incident for one the fleet caused: by mission and kind; a carrier's (no mission) is the
    oldest of that carrier and kind that no other record has claimed."""
    if rec.incident_id is not None:
        return Incident.objects.filter(pk=rec.incident_id).first()
    if rec.mission_id is not None:
        return Incident.objects.filter(mission_id=rec.mission_id, kind=rec.kind).order_by("id").first()
    claimed = [i.incident_id for i in record.incidents if i.incident_id is not None]
    return (
        Incident.objects.filter(carrier_id=record.carriers[rec.carrier], kind=rec.kind, mission__isnull=True)
        .exclude(pk__in=claimed)
        .order_by("id")
        .first()
    )
