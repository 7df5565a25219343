"""The request-body limit inside daphne, where it can be enforced while the body arrives.

daphne's request (a Twisted ``http.Request``) writes the whole body to memory
or a temporary file before the ASGI application sees any of it, with no
limit, so neither Django nor a middleware can refuse a large body in time.
``LimitedWebRequest`` counts the body as Twisted hands it over: a declared
``Content-Length`` over the limit is refused before the body is read, a
chunked body the moment it passes the limit, with a 413 problem document and
a closed connection (the rest of the body is never read). A chunked body that
fits is handed to the application with the ``Content-Length`` it turned out
to have, which Django and DRF need to read it. Limits and the answer come
from ``tms_console.request_body``.

A streamed path (``tms_console.body_limits``: the telemetry backfill) gets
its own limit, and its body is not copied into the application's queue:
daphne would put the whole body there at once, in memory. The application
receives an empty body and, in its scope (``SCOPE_BODY_KEY``), the file
Twisted wrote the body to as it arrived (a temporary file on disk for any
body of 100 kB or more, or of unknown length), which the view reads
incrementally (``request_body.body_stream``); the file is closed when the
answer is finished.

Its answer (one result per line: megabytes) is paced by the socket: daphne
writes whatever the application sends to Twisted's transport at once, which
buffers it without bound when the client reads slower than the view
answers. The request registers a push producer (``WriteWindow``) that Twisted
pauses while the socket's send buffer is full, and puts its ``wait`` in the
scope (``SCOPE_DRAINED_KEY``); ``paced`` (around the ASGI application in
``tms_console.asgi``) awaits it after each piece of the body.

``install()`` makes daphne build its requests from this class; the ASGI
entry point calls it, so every way of starting daphne on
``tms_console.asgi:application`` gets it.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import IO, Any

from daphne import http_protocol

from tms_console.body_limits import streamed_limit
from tms_console.request_body import SCOPE_BODY_KEY, body_limit, path_of_target, too_large

# The ASGI scope key of the awaitable that returns once the socket has room for more of the answer.
SCOPE_DRAINED_KEY = "tms_console.send_drained"


class LimitedWebRequest(http_protocol.WebRequest):
    """daphne's request with the body limit applied while the body is received."""

    body_received = 0
    limit_bytes = 0
    body_refused = False
    body_streamed = False
    body_handed_over: IO[bytes] | None = None
    write_window: WriteWindow | None = None

    def gotLength(self, length: int | None) -> None:
        # Called once the headers are in; the request line is still the channel's.
        path = path_of_target(getattr(self.channel, "_path", b"/"))
        self.limit_bytes = body_limit(path)
        self.body_streamed = streamed_limit(path) is not None
        if length is not None and length > self.limit_bytes:
            # No "100 Continue" for a body that is refused before it is sent.
            self.requestHeaders.removeHeader(b"expect")
            self._refuse(path, declared=length)
            length = 0  # nothing will be kept
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_refused:
            return
        self.body_received += len(data)
        if self.body_received > self.limit_bytes:
            self._refuse(path_of_target(getattr(self.channel, "_path", b"/")))
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.body_refused:
            return  # answered already; the connection is closing
        if self.requestHeaders.hasHeader(b"transfer-encoding") and not self.requestHeaders.hasHeader(b"content-length"):
            # A chunked body, now complete: the application reads it by its length.
            self.requestHeaders.setRawHeaders(b"content-length", [str(self.body_received).encode("ascii")])
        super().requestReceived(command, path, version)

    def process(self) -> Any:
        if self.body_streamed and not self.body_refused:
            # The application gets an empty body in its queue and the file in its scope.
            body: IO[bytes] = self.content  # type: ignore[has-type]  # Twisted's request, untyped
            self.body_handed_over, self.content = body, io.BytesIO()
            self.write_window = WriteWindow()
            self.registerProducer(self.write_window, True)
            self.server = _HandOver(self.server, body, self.write_window)  # type: ignore[has-type]
        return super().process()

    def finish(self) -> Any:
        self._window_close()
        try:
            return super().finish()
        finally:
            if self.body_handed_over is not None:
                self.body_handed_over.close()  # the answer is complete: nobody reads the body any more

    def connectionLost(self, reason: Any) -> None:
        self._window_close()  # a paused answer must not wait for a client that is gone
        super().connectionLost(reason)

    def _window_close(self) -> None:
        if self.write_window is not None:
            self.write_window.stopProducing()
            if self.producer is not None and self.channel is not None:
                self.unregisterProducer()
            self.write_window = None

    def _refuse(self, path: str, *, declared: int | None = None) -> None:
        self.body_refused = True
        status, headers, body = too_large(path=path, limit=self.limit_bytes, declared=declared)
        # Written straight to the transport: Twisted's response API needs the request line
        # it only parses once the whole body is in.
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode("ascii")]
        head += [f"{name}: {value}".encode("latin-1") for name, value in headers]
        channel: Any = self.channel
        channel.transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        channel.loseConnection()


class WriteWindow:
    """A push producer for one answer: Twisted pauses it while the socket's send buffer is full.

    Twisted calls it from the reactor, which runs on daphne's asyncio loop, the loop the
    application awaits ``wait`` on.
    """

    def __init__(self) -> None:
        self._open = asyncio.Event()
        self._open.set()

    def pauseProducing(self) -> None:
        self._open.clear()

    def resumeProducing(self) -> None:
        self._open.set()

    def stopProducing(self) -> None:
        self._open.set()  # the connection is going: nothing may wait on it any more

    async def wait(self) -> None:
        await self._open.wait()


class _HandOver:
    """daphne's server, seen by one request: the application it creates finds the body file in its scope."""

    def __init__(self, server: Any, body: IO[bytes], window: WriteWindow) -> None:
        self._server = server
        self._body = body
        self._window = window

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        self._body.seek(0)
        scope[SCOPE_BODY_KEY] = self._body
        scope[SCOPE_DRAINED_KEY] = self._window.wait
        return self._server.create_application(protocol, scope)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def paced(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: after each piece of an answer's body, wait until the socket has taken it.

    Only requests whose scope carries ``SCOPE_DRAINED_KEY`` (a streamed path under daphne) are paced.
    """

    async def application(
        scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
    ) -> None:
        drained = scope.get(SCOPE_DRAINED_KEY)
        if drained is None:
            return await app(scope, receive, send)

        async def paced_send(message: Any) -> None:
            await send(message)
            if message.get("type") == "http.response.body" and message.get("more_body"):
                await drained()

        return await app(scope, receive, paced_send)

    return application


def install() -> None:
    """Have daphne build every HTTP request as a ``LimitedWebRequest`` (idempotent)."""
    # daphne's HTTPFactory reads the module's WebRequest each time it builds a connection.
    http_protocol.WebRequest = LimitedWebRequest
