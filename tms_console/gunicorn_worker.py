"""gunicorn's gthread worker, answering the requests gunicorn refuses itself with problem documents.

gunicorn turns some requests away before the application sees them (a request
line over ``--limit-request-line``: 414; malformed request lines, headers or
chunked framing: 400) and writes an HTML page for them. A partner client reads
``application/problem+json`` for every other error (``tms_console.problem``),
and the OpenAPI schema promises it for these statuses too, so this worker
writes the same status as a problem document.

On SIGTERM gunicorn's gthread worker stops accepting, finishes the requests
in flight (answering a request that arrives on a kept-alive connection
meanwhile with ``Connection: close``) and exits, within ``--graceful-timeout``.
It only stops *watching* its listening socket, though: the kernel keeps
completing connections into the socket's backlog until the worker exits, and
those clients get a reset where a refusal was due. This worker serves the
connections already in the backlog and then closes its listening sockets, so
a client connecting after the stop began is refused (README, "Graceful
shutdown").

Serve with ``gunicorn -k tms_console.gunicorn_worker.ProblemThreadWorker``
(README, "Scaling").
"""

from __future__ import annotations

import json
import socket
from http import HTTPStatus

from gunicorn import util
from gunicorn.workers.gthread import TConn, ThreadWorker

# As in tms_console.problem, which this module cannot import: gunicorn loads the worker class
# before Django is set up, and that module needs DRF and the app registry.
PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_BASE = "/api/v1/problems/"
# The problem types of the statuses gunicorn answers (docs/api-versioning.md).
_CODES = {
    400: "malformed-request",
    403: "forbidden",
    414: "uri-too-long",
    417: "expectation-failed",
    431: "header-fields-too-large",
    500: "internal-error",
    501: "not-implemented",
}


def problem_write(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """``gunicorn.util.write_error`` with a problem document instead of an HTML page."""
    try:
        title = HTTPStatus(status_int).phrase
    except ValueError:
        title = reason
    problem = {
        "type": f"{PROBLEM_BASE}{_CODES.get(status_int, 'error')}",
        "title": title,
        "status": status_int,
        "detail": mesg or reason,
    }
    body = json.dumps(problem).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        f"Content-Type: {PROBLEM_CONTENT_TYPE}\r\n"
        "Cache-Control: no-store\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class ProblemThreadWorker(ThreadWorker):  # type: ignore[misc]
    """The gthread worker; its own error answers are problem documents."""

    def init_process(self) -> None:
        # gunicorn's workers write every error they answer through this one module function;
        # replaced in the worker process only, before it serves anything.
        util.write_error = problem_write
        super().init_process()

    def set_accept_enabled(self, enabled: bool) -> None:
        super().set_accept_enabled(enabled)
        # Also called while running, when the worker has as many connections as it may hold;
        # only once it stops (``alive`` false) do the listening sockets go.
        if not enabled and not self.alive:
            self.listeners_close()

    def listeners_close(self) -> None:
        """Take the connections waiting in the backlog (they are served), then close the listening sockets."""
        for listener in self.sockets:
            listener.setblocking(False)
            while True:
                try:
                    client, address = listener.accept()
                except OSError:  # BlockingIOError: the backlog is empty
                    break
                client.setblocking(True)
                self.nr_conns += 1
                self.enqueue_req(TConn(self.cfg, client, address, listener.getsockname()))
            listener.close()
