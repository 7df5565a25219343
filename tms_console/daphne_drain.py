"""daphne drains on SIGTERM instead of cutting its requests off.

On SIGTERM (or SIGINT) daphne stops Twisted's reactor, and its "before
shutdown" trigger, ``Server.kill_all_applications``, cancels every request
and websocket at once: a request in the middle of its view loses its answer
although its work may still commit. ``install()`` puts a drain in front of
that trigger:

1. the listening sockets close, so new connections are refused;
2. a request that begins after that (on a connection that was already open)
   is answered ``503`` with ``Retry-After`` and
   ``Connection: close`` (a problem document under ``/api/``, ``/oauth2/``
   and ``/webhooks/``), and a websocket handshake is refused; open websockets
   are closed with 1001 (going away), so their consumers run their disconnect;
   background loops registered with ``background_register`` (the safety
   ticker) are told to stop after their current round;
3. requests in flight (those begun before, a body still arriving included) and
   the websockets' disconnects run to their end, for up to ``WEB_DRAIN_SECONDS``
   less ``tms_console.shutdown.EXIT_MARGIN_SECONDS``;
4. daphne's own trigger then cancels whatever is left, and the reactor stops.

``tms_console.shutdown.exit_deadline`` ends the process at ``WEB_DRAIN_SECONDS``
if the interpreter is still waiting for a thread by then.

The ASGI entry point calls ``install()``. It patches daphne only when daphne's
server module is loaded, that is when daphne is what imports the application
(its command line imports the application before it builds the server); an
import of ``tms_console.asgi`` in a test process leaves Twisted alone.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from tms_console.problem import PROBLEM_CONTENT_TYPE, problem_body
from tms_console.shutdown import drain_left, exit_deadline

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05
RETRY_AFTER_SECONDS = 1
# WebSocket close code 1001: the endpoint is going away (RFC 6455 section 7.4.1).
GOING_AWAY = 1001
_PROBLEM_PREFIXES = ("/api/", "/oauth2/", "/webhooks/")


@dataclass(frozen=True)
class Background:
    """A loop of the web process that must finish its round before the process exits."""

    name: str
    stop: Callable[[], None]
    running: Callable[[], bool]


_background: list[Background] = []


def background_register(*, name: str, stop: Callable[[], None], running: Callable[[], bool]) -> None:
    """Have the drain tell ``name`` to stop, and wait (within the drain time) until it has."""
    _background.append(Background(name=name, stop=stop, running=running))


async def refuse_while_draining(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI application that answers everything reaching daphne once the drain has begun."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": GOING_AWAY})  # before the accept: a refused handshake
        return
    if scope["type"] != "http":
        return
    path = str(scope.get("path", ""))
    detail = "The server is shutting down and takes no new requests; retry, the request was not processed."
    if path.startswith(_PROBLEM_PREFIXES):
        body = json.dumps(problem_body(status=503, code="shutting-down", detail=detail, instance=path)).encode()
        content_type = PROBLEM_CONTENT_TYPE.encode()
    else:
        body, content_type = (detail + "\n").encode(), b"text/plain; charset=utf-8"
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install() -> None:
    """Give daphne's server the drain above (idempotent; nothing to do when daphne is not running us)."""
    server_module = sys.modules.get("daphne.server")
    if server_module is None:
        return
    server_class = server_module.Server
    if getattr(server_class, "_tms_drain_installed", False):
        return
    original_listen_success = server_class.listen_success
    original_create_application = server_class.create_application
    original_kill_all = server_class.kill_all_applications

    def listen_success(self: Any, port: Any) -> Any:
        self.__dict__.setdefault("_tms_ports", []).append(port)
        return original_listen_success(self, port)

    def create_application(self: Any, protocol: Any, scope: dict[str, Any]) -> Any:
        # A request that had begun arriving when the drain began is in flight: it is served.
        if not getattr(self, "_tms_draining", False) or protocol in self._tms_in_flight_at_stop:
            return original_create_application(self, protocol, scope)
        application = self.application
        self.application = refuse_while_draining
        try:
            return original_create_application(self, protocol, scope)
        finally:
            self.application = application

    def kill_all_applications(self: Any) -> Any:
        if getattr(self, "_tms_draining", False):
            return original_kill_all(self)
        try:
            return _drain(self, lambda: original_kill_all(self))
        except Exception:  # a drain that fails must still let daphne stop the old way
            log.exception("drain failed; cancelling the requests in flight")
            return original_kill_all(self)

    server_class.listen_success = listen_success
    server_class.create_application = create_application
    server_class.kill_all_applications = kill_all_applications
    server_class._tms_drain_installed = True


def _in_flight(server: Any) -> int:
    """Requests and websockets not yet answered or closed, or whose application has not finished."""
    busy = 0
    for details in list(server.connections.values()):
        instance = details.get("application_instance")
        if "disconnected" not in details or (instance is not None and not instance.done()):
            busy += 1
    return busy


def _drain(server: Any, kill_the_rest: Callable[[], Any]) -> Any:
    from daphne.ws_protocol import WebSocketProtocol
    from twisted.internet import defer
    from twisted.internet import reactor as twisted_reactor

    reactor: Any = twisted_reactor
    seconds = float(settings.WEB_DRAIN_SECONDS)
    deadline = exit_deadline(seconds, process="daphne")
    server._tms_in_flight_at_stop = set(server.connections)
    server._tms_draining = True
    for port in server.__dict__.get("_tms_ports", []):
        port.stopListening()
    sockets = 0
    for protocol in list(server.connections):
        if isinstance(protocol, WebSocketProtocol) and protocol.state == protocol.STATE_OPEN:
            protocol.serverClose(code=GOING_AWAY)
            sockets += 1
    for loop in _background:
        loop.stop()
    log.info(
        "draining: no new connections; finishing requests in flight",
        extra={
            "event": "shutdown.drain",
            "component": "daphne",
            "in_flight": _in_flight(server),
            "websockets_closed": sockets,
            "drain_seconds": seconds,
        },
    )
    started = time.monotonic()
    done: defer.Deferred[Any] = defer.Deferred()

    def check() -> None:
        busy = _in_flight(server)
        loops = [loop.name for loop in _background if loop.running()]
        if (busy or loops) and drain_left(deadline) > 0:
            reactor.callLater(POLL_SECONDS, check)
            return
        log.log(
            logging.WARNING if busy or loops else logging.INFO,
            "drained" if not busy and not loops else "drain time over; cancelling what is left",
            extra={
                "event": "shutdown.drained",
                "component": "daphne",
                "seconds": round(time.monotonic() - started, 3),
                "cancelled": busy,
                "still_running": loops,
            },
        )
        result = kill_the_rest()
        if isinstance(result, defer.Deferred):
            result.chainDeferred(done)
        else:
            done.callback(None)

    check()
    return done
