"""``python manage.py simulate_fleet``: drive active missions' trucks along interstates and send telemetry.

SIGTERM (or Ctrl-C): the batch being sent is finished, nothing new is sent, and the process
exits within ``SIMULATOR_DRAIN_SECONDS``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import InterfaceError, OperationalError, connection

from missions.choices import MissionStatus
from missions.events import Actor
from missions.models import Mission
from missions.models.partner import PartnerClient
from missions.partner.services import partner_client_create, partner_client_rotate_secret
from missions.simulators.fleet import (
    Credentials,
    Fault,
    FleetSimulator,
    HttpTransport,
    MqttTransport,
    Transport,
    WsTransport,
    vehicles_from_missions,
)
from tms_console import tracing
from tms_console.shutdown import SIMULATOR_DRAIN_SECONDS, exit_deadline

SIM_CLIENT_NAME = "Fleet simulator ({slug})"
DRIVING = (MissionStatus.ASSIGNED, MissionStatus.EN_ROUTE, MissionStatus.ARRIVING)


def demo_credentials(slugs: set[str]) -> dict[str, Credentials]:
    """A client-credentials client per carrier for the simulator (created once, its secret re-issued per run)."""

    actor = Actor.system("fleet-simulator")
    out: dict[str, Credentials] = {}
    for slug in sorted(slugs):
        name = SIM_CLIENT_NAME.format(slug=slug)
        existing = PartnerClient.objects.filter(carrier__slug=slug, application__name=name).first()
        if existing is not None:
            issued = partner_client_rotate_secret(client_id=existing.pk, actor=actor)
        else:
            carrier_id = Mission.objects.filter(carrier__slug=slug).values_list("carrier_id", flat=True).first()
            assert carrier_id is not None
            issued = partner_client_create(
                carrier_id=carrier_id, name=name, scopes=["telemetry:write", "missions:read"], actor=actor
            )
        out[slug] = Credentials(client_id=issued.client_id, client_secret=issued.client_secret)
    return out


def demo_fault(*, enabled: bool) -> Fault | None:
    """The demo's scripted incident (settings ``DEMO_SCENARIO``), when the simulator runs ``--demo``."""
    scenario = str(settings.DEMO_SCENARIO).strip().lower()
    if not enabled or scenario in ("", "off", "none"):
        return None
    if scenario != "lost-comms":
        raise CommandError(f"DEMO_SCENARIO={settings.DEMO_SCENARIO!r}: use 'lost-comms' or 'off'.")
    after = float(settings.DEMO_INCIDENT_AFTER_SECONDS)
    if after < 0:
        raise CommandError("DEMO_INCIDENT_AFTER_SECONDS must be 0 or more.")
    return Fault(kind="comms_loss", vehicle=str(settings.DEMO_INCIDENT_VEHICLE), at_s=after)


def refreshing(read: Callable[[], list[Mission]], warn: Callable[[str], None]) -> Callable[[], list[Mission] | None]:
    """``read``, or None when the database does not answer: the trucks on the road keep driving.

    The fleet's connection is its own, outside any pool: a database restart or a
    terminated session would otherwise end the simulator (and ``make run`` with
    it). The connection is dropped, and the next refresh opens a new one.
    """

    def refresh() -> list[Mission] | None:
        try:
            return read()
        except (OperationalError, InterfaceError) as exc:
            connection.close()
            warn(f"missions not refreshed: the database did not answer ({type(exc).__name__}); the trucks keep driving")
            return None

    return refresh


class Command(BaseCommand):
    help = "Simulate a fleet of trucks on real US interstate corridors, sending telemetry over http, ws or mqtt."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--vehicles", type=int, default=10, help="at most this many active missions")
        parser.add_argument("--rate", type=float, default=1.0, help="events per vehicle per second")
        parser.add_argument("--transport", choices=["http", "ws", "mqtt"], default="http")
        parser.add_argument("--duration", type=float, default=0, help="seconds; 0 runs until interrupted")
        parser.add_argument("--console-url", default=settings.PARTNER_BASE_URL or settings.PUBLIC_BASE_URL)
        parser.add_argument("--demo", action="store_true", help="issue the simulator's own partner clients")
        parser.add_argument("--carrier", default="", help="only this carrier's missions (slug)")
        parser.add_argument("--client-id", default="")
        parser.add_argument("--client-secret", default="")
        parser.add_argument("--mqtt-url", default=settings.MQTT_URL)
        parser.add_argument("--fault", action="append", default=[], help="KIND:VEHICLE[@SECONDS], repeatable")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: Any, **options: Any) -> None:
        tracing.configure("fleet-sim")
        try:
            faults = [Fault.parse(text) for text in options["fault"]]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if options["rate"] <= 0 or options["rate"] > 50:
            raise CommandError("--rate must be in (0, 50] events per second per vehicle.")
        scripted = demo_fault(enabled=options["demo"])
        if scripted is not None:
            faults.append(scripted)
            self.stdout.write(
                f"Demo scenario: {scripted.vehicle} loses comms {scripted.at_s:.0f} s from now "
                "(lost-comms runbook; DEMO_SCENARIO=off turns it off)"
            )

        def active_missions() -> list[Mission]:
            qs = Mission.objects.filter(status__in=DRIVING, vehicle__isnull=False).select_related(
                "shipment", "carrier", "vehicle"
            )
            if options["carrier"]:
                qs = qs.filter(carrier__slug=options["carrier"])
            return list(qs.order_by("pk")[: max(1, options["vehicles"])])

        missions = active_missions()
        if not missions and not options["demo"]:
            raise CommandError("No active missions with a vehicle: run `manage.py seed_demo` or tender a load first.")
        vehicles = vehicles_from_missions(missions, seed=options["seed"])
        transport = self._transport(options, {v.carrier_slug for v in vehicles})
        simulator = FleetSimulator(
            vehicles=vehicles,
            transport=transport,
            rate_hz=options["rate"],
            faults=faults,
            missions_refresh=refreshing(active_missions, self.stderr.write),
            seed=options["seed"],
        )
        self.stdout.write(
            f"Simulating {len(vehicles)} trucks at {options['rate']} Hz over {options['transport']}"
            + (": " + ", ".join(sorted({v.route.name for v in vehicles})) if vehicles else "; waiting for missions")
        )
        last = [time.monotonic()]

        def progress(stats: dict[str, int]) -> None:
            if time.monotonic() - last[0] >= 10:
                last[0] = time.monotonic()
                self.stdout.write(f"sent {stats['sent']} accepted {stats['accepted']} rejected {stats['rejected']}")

        stop = threading.Event()

        def on_signal(*_: Any) -> None:
            stop.set()
            exit_deadline(SIMULATOR_DRAIN_SECONDS, process="fleet-sim")

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            stats = simulator.run(options["duration"], on_tick=progress, stop=stop)
        finally:
            transport.close()
        self.stdout.write(f"done: {stats}")

    def _transport(self, options: dict[str, Any], slugs: set[str]) -> Transport:
        if options["transport"] == "mqtt":
            if not options["mqtt_url"]:
                raise CommandError("--transport mqtt needs MQTT_URL or --mqtt-url.")
            return MqttTransport(
                options["mqtt_url"],
                username=settings.MQTT_USERNAME,
                password=settings.MQTT_PASSWORD,
                ca_file=settings.MQTT_CA_FILE,
                topic_prefix=settings.MQTT_TOPIC_PREFIX,
            )
        if options["client_id"]:
            if len(slugs) != 1:
                raise CommandError("--client-id acts for one carrier: add --carrier SLUG.")
            creds = {slugs.pop(): Credentials(options["client_id"], options["client_secret"])}
        elif options["demo"]:
            return (HttpTransport if options["transport"] == "http" else WsTransport)(
                options["console_url"], demo_credentials(slugs), lambda slug: demo_credentials({slug})[slug]
            )
        else:
            raise CommandError("http and ws need --client-id/--client-secret (with --carrier) or --demo.")
        base = options["console_url"]
        return HttpTransport(base, creds, None) if options["transport"] == "http" else WsTransport(base, creds, None)
