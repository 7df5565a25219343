"""``manage.py run_pager_sim``: a local PagerDuty Events API v2 receiver for the demo (prints each page)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from missions.simulators.pager import PagerSimulator
from tms_console import tracing


class Command(BaseCommand):
    help = "Receive on-call pages locally (PagerDuty Events API v2 at /v2/enqueue; GET /pages lists them)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("PAGER_SIM_PORT", "8101")))
        parser.add_argument("--host", default="127.0.0.1")

    def handle(self, *args: Any, **options: Any) -> None:
        tracing.configure("pager-sim")
        pager = PagerSimulator(options["host"], options["port"])
        self.stdout.write(f"pager: pages to {pager.events_url}; received pages at {pager.url}/pages")
        # SIGTERM: stop serving (nothing to drain: a page is answered before it is kept).
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=pager.server.shutdown).start())
        try:
            pager.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            pager.stop()
