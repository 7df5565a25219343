"""``--transport ws``: the carriers' telemetry over the WebSocket ingest stream of a console process of the run's own.

The carriers' answers still go to the partner server over HTTP (``transport.PartnerHttp``). Their gateways
hold one ``ws/ingest/`` socket each to a daphne process serving the console (``tms_console.asgi``) on the
run's database and clock file, opened with a bearer token and opened again with a new one when the token is
renewed in simulated time. Every batch is a ``{"seq": n, "events": [...]}`` message, answered once it is
committed, so the run stays in lockstep as over HTTP.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from missions.models import Carrier
from missions.simulation.transport import (
    PartnerHttp,
    TransportError,
    process_stop,
    refusal_lines,
    server_start,
    wait_until_serving,
)

ACK_SECONDS = 60.0


class PartnerWs(PartnerHttp):
    """The partner server for the carriers' answers, and a console process's ingest stream for their telemetry."""

    def __init__(
        self, *, carriers: list[Carrier], out: Path, start: datetime, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(carriers=carriers, out=out, start=start, env=env)
        self._sockets: dict[int, tuple[Any, str]] = {}  # carrier -> (socket, the token it was opened with)
        self._seq = 0
        self._console_log = (out / "console-server.log").open("wb")
        self._console, self.console_url = server_start("daphne", self._console_log, self.env)
        try:
            with httpx.Client(base_url=self.console_url, timeout=10.0) as http:
                wait_until_serving(http, self._console, "console server")
        except BaseException:
            self.close()
            raise
        self.counts["connections"] = 0

    def _socket(self, carrier: Carrier, now: datetime) -> Any:
        from websockets.sync.client import connect
        from websockets.typing import Origin

        token = self._token(carrier, now)
        held = self._sockets.get(carrier.pk)
        if held is not None and held[1] == token:
            return held[0]
        if held is not None:
            held[0].close()  # the gateway reconnects with its renewed token
        sock = connect(
            self.console_url.replace("http://", "ws://", 1) + "/ws/ingest/",
            origin=Origin(self.console_url),  # the console checks Origin against ALLOWED_HOSTS
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=10,
            legacy=True,  # the connection itself, held across batches and closed by ``close``
        )
        ready = json.loads(sock.recv(timeout=10))
        if ready.get("type") != "ready":
            raise TransportError(f"the ingest stream of {carrier.slug} did not open: {ready}")
        self._sockets[carrier.pk] = (sock, token)
        self.counts["connections"] += 1
        return sock

    def send(self, carrier: Carrier, events: list[dict[str, Any]], now: datetime) -> list[str]:
        self.clock_to(now)
        sock = self._socket(carrier, now)
        self._seq += 1
        sock.send(json.dumps({"seq": self._seq, "events": events}))
        ack = json.loads(sock.recv(timeout=ACK_SECONDS))
        if ack.get("ack") != self._seq or "error" in ack:
            raise TransportError(f"batch {self._seq} of {carrier.slug} refused on the ingest stream: {ack}")
        self.counts["batches"] += 1
        return refusal_lines(events, ack.get("rejected", []))

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "name": "ws", "telemetry": "daphne ws/ingest/"}

    def close(self) -> None:
        for sock, _token in getattr(self, "_sockets", {}).values():
            sock.close()
        process_stop(getattr(self, "_console", None))
        log = getattr(self, "_console_log", None)
        if log is not None:
            log.close()
        super().close()
