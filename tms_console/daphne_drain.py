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
   less ``tms_console.shutdown.EXIT_MARGIN_SECONDS``; their answers carry
   ``Connection: close``, so no client sends another request on a connection
   that is about to go;
4. a request still running then is answered ``503`` ``shutdown-interrupted``
   (its work may still be committed by the thread that runs it: the answer
   says to retry with the same ``Idempotency-Key``), daphne's own trigger
   cancels whatever is left, and the reactor stops.

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


NOT_PROCESSED = "The server is shutting down and takes no new requests; the request was not processed: retry."
INTERRUPTED = (
    "The server stopped before this request was finished; it may have been applied: "
    "retry with the same Idempotency-Key to find out."
)


def unavailable(path: str, *, code: str, detail: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Headers and body of a 503 during the drain: a problem document under the API, plain text elsewhere."""
    if path.startswith(_PROBLEM_PREFIXES):
        body = json.dumps(problem_body(status=503, code=code, detail=detail, instance=path)).encode()
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
    return headers, body


async def refuse_while_draining(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI application that answers everything reaching daphne once the drain has begun."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": GOING_AWAY})  # before the accept: a refused handshake
        return
    if scope["type"] != "http":
        return
    headers, body = unavailable(str(scope.get("path", "")), code="shutting-down", detail=NOT_PROCESSED)
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _answer_interrupted(server: Any) -> int:
    """At the end of the drain, answer the HTTP requests still running (503) before daphne cancels them.

    Their work may still be committed by the thread that runs it, so the answer says so; a
    request whose answer has begun is left to be cut off.
    """
    from daphne.http_protocol import WebRequest

    answered = 0
    for protocol, details in list(server.connections.items()):
        if not isinstance(protocol, WebRequest) or "disconnected" in details or protocol._response_started:
            continue
        path = protocol.path.decode("ascii", "replace") if protocol.path else ""
        headers, body = unavailable(path, code="shutdown-interrupted", detail=INTERRUPTED)
        protocol.handle_reply({"type": "http.response.start", "status": 503, "headers": headers})
        protocol.handle_reply({"type": "http.response.body", "body": body})
        answered += 1
    return answered


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
    original_handle_reply = server_class.handle_reply

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

    async def handle_reply(self: Any, protocol: Any, message: dict[str, Any]) -> Any:
        # While draining, an answer tells the client not to send another request on its connection.
        if getattr(self, "_tms_draining", False) and message.get("type") == "http.response.start":
            headers = list(message.get("headers", []))
            if not any(name.lower() == b"connection" for name, _ in headers):
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
        return await original_handle_reply(self, protocol, message)

    def kill_all_applications(self: Any) -> Any:
        if getattr(self, "_tms_draining", False):
            return _cancel_the_rest(self)
        try:
            return _drain(self)
        except Exception:  # a drain that fails must still let daphne stop
            log.exception("drain failed; cancelling the requests in flight")
            return _cancel_the_rest(self)

    server_class.listen_success = listen_success
    server_class.create_application = create_application
    server_class.handle_reply = handle_reply
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


def _cancel_the_rest(server: Any) -> Any:
    """daphne's ``kill_all_applications``, which also meets connections that have no application.

    (A request upgraded to a websocket, or one whose body is still arriving, has none; daphne's
    own version fails on them with a KeyError and the reactor never finishes stopping.)
    """
    import asyncio

    from twisted.internet import defer

    cancelled = []
    for details in list(server.connections.values()):
        instance = details.get("application_instance")
        if instance is not None and not instance.done():
            instance.cancel()
            cancelled.append(instance)
    waited: defer.Deferred[Any] = defer.Deferred.fromFuture(asyncio.gather(*cancelled))
    waited.addErrback(lambda _: None)
    return waited


def _drain(server: Any) -> Any:
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
            # Below autobahn's sendClose, which allows an application only 1000 and 3000-4999.
            protocol.sendCloseFrame(code=GOING_AWAY)
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
        # Called from the reactor, which would swallow an exception and never stop: none escapes.
        try:
            busy = _in_flight(server)
            loops = [loop.name for loop in _background if loop.running()]
            if (busy or loops) and drain_left(deadline) > 0:
                reactor.callLater(POLL_SECONDS, check)
                return
            finish(busy, loops)
        except Exception:
            log.exception("drain failed; cancelling the requests in flight")
            if not ending:
                ending.append(True)
                _cancel_the_rest(server).chainDeferred(done)

    def finish(busy: int, loops: list[str]) -> None:
        interrupted = _answer_interrupted(server) if busy else 0
        log.log(
            logging.WARNING if busy or loops else logging.INFO,
            "drained" if not busy and not loops else "drain time over; cancelling what is left",
            extra={
                "event": "shutdown.drained",
                "component": "daphne",
                "seconds": round(time.monotonic() - started, 3),
                "cancelled": busy,
                "answered_interrupted": interrupted,
                "still_running": loops,
            },
        )
        ending.append(True)
        _cancel_the_rest(server).chainDeferred(done)

    ending: list[bool] = []  # set once the cancellation is under way
    check()
    return done
