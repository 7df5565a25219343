"""``manage.py run_carrier_sim``: serve the simulated autonomous carrier (docs/carrier-api.yaml).

SIGTERM (or Ctrl-C): no new connections; the requests being handled are answered, and the
process exits within ``SIMULATOR_DRAIN_SECONDS``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from missions.simulators.carrier import CarrierSimulator, SimConfig, policy_parse
from missions.simulators.edi_carrier import EdiCarrierSimulator
from tms_console import tracing
from tms_console.demo import demo_sandbox_credentials
from tms_console.shutdown import EXIT_MARGIN_SECONDS, SIMULATOR_DRAIN_SECONDS, exit_deadline


class _Stop(Exception):
    """SIGTERM: leave ``serve_forever`` and drain."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    exit_deadline(SIMULATOR_DRAIN_SECONDS, process="carrier-sim")
    raise _Stop


class Command(BaseCommand):
    help = "Run a simulated autonomous carrier API (OAuth2, tenders, cancel, vehicle ping, fault injection)."

    def add_arguments(self, parser: CommandParser) -> None:
        env = os.environ.get
        parser.add_argument("--port", type=int, default=int(env("CARRIER_SIM_PORT", "8100")))
        parser.add_argument("--host", default=env("CARRIER_SIM_HOST", "127.0.0.1"))
        parser.add_argument(
            "--policy",
            default=env("CARRIER_SIM_POLICY", "accept=0.7,reject=0.2,counter=0.1"),
            help="answer weights, e.g. accept=0.7,reject=0.2,counter=0.1 (accept=1: always accept)",
        )
        parser.add_argument(
            "--answer",
            choices=("sync", "async", "hold"),
            default=env("CARRIER_SIM_ANSWER", "sync"),
            help="answer in the submit response (sync), later by callback (async), or never: leave tenders "
            "pending for the carrier's own dispatcher to answer through the partner API (hold)",
        )
        parser.add_argument(
            "--delay-ms",
            type=int,
            default=int(env("CARRIER_SIM_DELAY_MS", "0")),
            help="delay before an async answer is given",
        )
        parser.add_argument("--client-id", default=env("CARRIER_SIM_CLIENT_ID", "sim-carrier"))
        parser.add_argument("--client-secret", default=env("CARRIER_SIM_CLIENT_SECRET", "sim-secret"))
        parser.add_argument(
            "--vehicles",
            default=env("CARRIER_SIM_VEHICLES", "SIM-001,SIM-002,SIM-003"),
            help="comma-separated vehicle ids the carrier assigns on accept",
        )
        parser.add_argument("--seed", type=int, default=None, help="seed for reproducible answers")
        parser.add_argument(
            "--console-url",
            default=env("CARRIER_SIM_CONSOLE_URL", ""),
            help="console base URL for async answers through the partner API",
        )
        parser.add_argument("--console-token-url", default=env("CARRIER_SIM_CONSOLE_TOKEN_URL", ""))
        parser.add_argument("--console-client-id", default=env("CARRIER_SIM_CONSOLE_CLIENT_ID", ""))
        parser.add_argument("--console-client-secret", default=env("CARRIER_SIM_CONSOLE_CLIENT_SECRET", ""))
        parser.add_argument("--tls-cert", default=env("CARRIER_SIM_TLS_CERT", ""), help="serve HTTPS with this cert")
        parser.add_argument("--tls-key", default=env("CARRIER_SIM_TLS_KEY", ""))
        parser.add_argument(
            "--client-ca",
            default=env("CARRIER_SIM_CLIENT_CA", ""),
            help="require client certificates signed by this CA (mutual TLS)",
        )
        parser.add_argument(
            "--webhook-secret",
            default=env("CARRIER_SIM_WEBHOOK_SECRET", ""),
            help="Standard Webhooks secret (whsec_...) for async answers as signed webhooks",
        )

        parser.add_argument(
            "--no-demo-carriers",
            action="store_true",
            help="serve only the default carrier, not the seeded demo carriers under /carriers/<slug>/",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tracing.configure("carrier-sim")
        try:
            policy = policy_parse(options["policy"])
        except ValueError as exc:
            raise CommandError(f"--policy: {exc}") from exc
        config = SimConfig(
            client_id=options["client_id"],
            client_secret=options["client_secret"],
            policy=policy,
            answer=options["answer"],
            delay_ms=max(0, options["delay_ms"]),
            vehicles=[v.strip() for v in options["vehicles"].split(",") if v.strip()],
            seed=options["seed"],
            console_url=options["console_url"],
            console_token_url=options["console_token_url"],
            console_client_id=options["console_client_id"],
            console_client_secret=options["console_client_secret"],
            webhook_secret=options["webhook_secret"],
            tls_cert=options["tls_cert"],
            tls_key=options["tls_key"],
            client_ca=options["client_ca"],
        )
        if not options["no_demo_carriers"]:
            config.secret_for, config.tenant_vehicles = demo_carriers()
            config.sandbox_credentials_for = demo_sandbox_credentials
        sim = CarrierSimulator(config, host=options["host"], port=options["port"])
        if config.tenant_vehicles:
            # Reported on stderr: the first line on stdout announces the address.
            self.stderr.write(f"carrier simulator: {_books_restore(sim, list(config.tenant_vehicles))}")
        edi_sims = [] if options["no_demo_carriers"] else _edi_simulators()
        demo = ", ".join(f"/carriers/{slug}" for slug in config.tenant_vehicles) or "none"
        self.stdout.write(
            f"carrier simulator on {sim.url} (policy {options['policy']}, answers {config.answer}; "
            f"demo carriers: {demo})"
        )
        for edi_sim in edi_sims:
            self.stdout.write(f"simulated EDI carrier {edi_sim.scac} reading {edi_sim.reads_from}")
            edi_sim.start()
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        try:
            sim.serve_forever()
        except (_Stop, KeyboardInterrupt):
            pass
        finally:
            for edi_sim in edi_sims:
                edi_sim.stop()
            left = sim.stop(drain_seconds=SIMULATOR_DRAIN_SECONDS - EXIT_MARGIN_SECONDS)
            self.stdout.write(f"carrier simulator stopped ({left} requests unanswered)")


def demo_carriers() -> tuple[Callable[[str], str], dict[str, list[str]]]:
    """The seeded demo carriers this process also serves: secrets derived like the seed's, and their trucks.

    ``seed_demo`` points each demo carrier with an API at ``/carriers/<slug>``
    here, with client id = slug and a secret both sides derive from SECRET_KEY.
    """
    from tms_console.demo import carrier_sim_client_secret

    vehicles: dict[str, list[str]] = {}
    try:
        from missions.management.commands.seed_demo import DEMO_CARRIERS
    except ImportError:  # the demo seed is optional
        return carrier_sim_client_secret, vehicles
    from missions.management.demo_onboarding import DEMO_ONBOARDING

    for spec in DEMO_CARRIERS:
        if spec.has_api:
            vehicles[spec.slug] = list(spec.vehicles)
    vehicles[DEMO_ONBOARDING.slug] = list(DEMO_ONBOARDING.vehicles)
    return carrier_sim_client_secret, vehicles


def _edi_simulators() -> list[EdiCarrierSimulator]:
    """A simulated EDI carrier for each seeded demo carrier configured for EDI over the local folder pair."""
    from django.conf import settings
    from django.db import DatabaseError, connections

    from missions.models.edi import EdiPartner, EdiTransport

    try:
        from missions.management.commands.seed_demo import DEMO_CARRIERS
    except ImportError:  # the demo seed is optional
        return []
    slugs = [spec.slug for spec in DEMO_CARRIERS if spec.edi_id]
    sims = []
    try:
        partners = EdiPartner.objects.select_related("carrier").filter(
            carrier__slug__in=slugs, transport=EdiTransport.FOLDER, is_active=True
        )
        for partner in partners:
            folder = Path(settings.EDI_DIR) / partner.carrier.slug
            sims.append(
                EdiCarrierSimulator(
                    reads_from=folder / "outbound",
                    writes_to=folder / "inbound",
                    qualifier=partner.interchange_qualifier,
                    interchange_id=partner.interchange_id,
                    scac=partner.scac,
                    console_qualifier=settings.EDI_SENDER_QUALIFIER,
                    console_id=settings.EDI_SENDER_ID,
                    version=partner.version,
                    step_seconds=float(os.environ.get("EDI_SIM_STEP_SECONDS", "20")),
                )
            )
    except DatabaseError:  # no console database (yet): no EDI carrier to play
        return []
    finally:
        connections.close_all()
    return sims


def demo_books_restore(sim: CarrierSimulator, slugs: list[str]) -> int:
    """Before serving: put the console's open tenders at the demo carriers back in the books.

    An in-memory carrier forgets everything when it restarts, while the console's database keeps
    the tenders it sent (the demo seed's among them); without this every status poll would find
    them unknown (docs/decisions/0018). Returns how many were restored.
    """
    try:
        from missions.management.commands.seed_demo import carrier_books
    except ImportError:  # the demo seed is optional
        return 0
    books = carrier_books(slugs)
    return sum(sim.tenders_restore(entries, tenant=slug) for slug, entries in books.items())


def _books_restore(sim: CarrierSimulator, slugs: list[str]) -> str:
    from django.db import DatabaseError, connections

    try:
        return f"restored {demo_books_restore(sim, slugs)} open tenders of the demo carriers"
    except DatabaseError as exc:  # no console database (yet): nothing to restore
        return f"no tenders restored ({type(exc).__name__})"
    finally:
        connections.close_all()  # the simulator has no further use for the database
