"""``manage.py fault_proxy``: put network faults between a client and a server (missions/simulators/faultproxy.py).

    python manage.py fault_proxy --listen 8101 --upstream 127.0.0.1:8100 --control 8102
    curl -X POST localhost:8102/faults -d '{"latency_ms": 800, "direction": "up"}'
    curl -X POST localhost:8102/faults -d '{"blackhole": true}'
    curl -X POST localhost:8102/heal

Point a carrier's API base URL (or any TCP client) at the listen port.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from missions.simulators.faultproxy import FaultProxy
from missions.simulators.faultproxy_control import ControlServer


def _host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--upstream must be HOST:PORT, not {value!r}")
    return host, int(port)


class Command(BaseCommand):
    help = "A TCP proxy with run-time network faults (latency, bandwidth, blackhole, reset, half-open, refusal)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
        parser.add_argument("--listen", type=int, default=0, help="port to listen on (0: a free one)")
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
        parser.add_argument("--control", type=int, default=None, help="port of the HTTP control endpoint (0: free)")

    def handle(self, *args: Any, **options: Any) -> None:
        upstream_host, upstream_port = _host_port(options["upstream"])
        proxy = FaultProxy(upstream_host, upstream_port, listen_host=options["host"], listen_port=options["listen"])
        proxy.start()
        control = (
            ControlServer(proxy, options["host"], options["control"]).start()
            if options["control"] is not None
            else None
        )
        self.stdout.write(f"fault proxy: {proxy.listen_host}:{proxy.port} -> {upstream_host}:{upstream_port}")
        if control is not None:
            self.stdout.write(f"fault proxy control: {control.url} (GET/POST /faults, POST /heal, GET /stats)")
        self.stdout.flush()
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        try:
            done.wait()
        except KeyboardInterrupt:
            pass
        finally:
            if control is not None:
                control.stop()
            proxy.stop()
