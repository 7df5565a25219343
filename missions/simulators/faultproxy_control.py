"""A small HTTP endpoint that sets a running ``FaultProxy``'s faults (``manage.py fault_proxy --control``).

- ``GET /faults``: the faults in force; ``POST /faults`` with a JSON object sets
  some (the keys of ``FaultProxy.configure``: ``latency_ms``, ``jitter_ms``,
  ``bandwidth``, ``direction``, ``stall``, ``blackhole``, ``reset_new``,
  ``refuse``, ``reset``, ``heal``) and answers the faults now in force.
- ``POST /heal``: clears every fault.
- ``GET /stats``: the proxy's counters.

Bad input answers 400 as problem+json. It listens on loopback only by default
and has no authentication: it is a test and demo tool, like the simulators.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from missions.simulators.faultproxy import FaultProxy

MAX_BODY_BYTES = 4096


class _Handler(BaseHTTPRequestHandler):
    server: ControlServer

    def log_message(self, format: str, *args: Any) -> None:
        return  # the command prints what changed

    def do_GET(self) -> None:
        proxy = self.server.proxy
        if self.path == "/faults":
            self._send(200, proxy.faults().public())
        elif self.path == "/stats":
            self._send(200, asdict(proxy.stats()))
        else:
            self._problem(404, "Not Found", f"No route for GET {self.path}.")

    def do_POST(self) -> None:
        proxy = self.server.proxy
        if self.path == "/heal":
            proxy.heal()
            self._send(200, proxy.faults().public())
            return
        if self.path != "/faults":
            self._problem(404, "Not Found", f"No route for POST {self.path}.")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._problem(413, "Content Too Large", f"At most {MAX_BODY_BYTES} bytes.")
            return
        try:
            changes = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            faults = proxy.configure(**changes)
        except (ValueError, TypeError) as exc:
            self._problem(400, "Bad Request", str(exc))
            return
        self._send(200, faults.public())

    def _send(self, status: int, body: dict[str, Any], content_type: str = "application/json") -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _problem(self, status: int, title: str, detail: str) -> None:
        self._send(status, {"title": title, "status": status, "detail": detail}, "application/problem+json")


class ControlServer(ThreadingHTTPServer):
    """The control endpoint of one proxy; ``start()`` serves it from a daemon thread."""

    daemon_threads = True

    def __init__(self, proxy: FaultProxy, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.proxy = proxy
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ControlServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fault-proxy-control", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()
